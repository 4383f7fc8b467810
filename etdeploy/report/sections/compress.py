"""Compress section (compress stage): the target, the chosen model and why, its held-out accuracy, the
Pareto front (accuracy with Wilson 95 % interval vs flash, RAM, MACC, latency) and its plot."""

from __future__ import annotations

from etdeploy.compress import CompressRun
from etdeploy.report.html import Raw, card, img, join, markup, table
from etdeploy.report.record import RunRecord, Section


def _run(record: RunRecord) -> CompressRun | None:
    data = record.stages.get("compress")
    if data is None or "skipped" in data:
        return None
    return record.stage("compress", CompressRun)


def section(record: RunRecord) -> Section | None:
    from etdeploy.compress.plot import front_png

    data = record.stages.get("compress")
    if data is None or "skipped" in data:
        return None
    run = _run(record)
    c = run.chosen
    limits = [f"flash {run.target.flash_bytes:,} bytes" if run.target.flash_bytes else "no flash budget",
              f"model RAM {run.target.model_ram_bytes:,} bytes"]
    if run.max_latency_s is not None:
        limits.append(f"latency ≤ {run.max_latency_s:g} s")
    if run.min_accuracy is not None:
        limits.append(f"accuracy ≥ {run.min_accuracy:g} on {run.split}")
    rows = [[x.label, x.accuracy, f"[{x.ci_low:.3f}, {x.ci_high:.3f}]", x.accuracy_source, x.cost.flash_bytes,
             x.cost.ram_bytes, x.cost.macc, x.cost.latency_s, x.cost.latency_lower_bound_s,
             "fits" if x.cost.fits else ", ".join(x.cost.failing)] for x in run.front]
    parts = [
        markup("<p>Target <b>{}</b> ({}): {}. Searched {} points (masking percent per layer x {} criteria) on "
               "cached conv features, {} precision(s); {} structures exported and costed with the fit analysis, "
               "{} candidates ruled out by the cost bound without an export; {} finalist(s) fine-tuned, {} "
               "quantised (docs/method.md §13).</p>", run.target.name, run.target.id, "; ".join(limits),
               run.evaluated, len(run.criteria), len(run.precisions), run.costed, run.bounded, run.finetuned,
               run.quantized),
        markup("<p><b>Chosen: {}</b>. {}</p>", c.label, run.reason),
        markup("<p>Test accuracy ({} images): unpruned {:.3f} [{:.3f}, {:.3f}], chosen {:.3f} [{:.3f}, {:.3f}] "
               "(Wilson 95 %). Exported model fits: {}; parity of masked, sliced, ONNX and simplified ONNX: {} "
               "(max |Δ logit| {:.2g}).</p>", run.test.n, run.test.original, *run.test.original_ci, run.test.chosen,
               *run.test.chosen_ci, "yes" if run.fits_exported else "no",
               "pass" if run.parity_passed else "FAIL", run.parity_max_abs_logit_delta),
        img(front_png(run), "compress Pareto front"),
        table(["Pareto front", f"accuracy ({run.split})", "Wilson 95 %", "accuracy from", "flash bytes", "RAM bytes",
               "MACC", "latency s", "latency bound s", "verdict"], rows),
    ]
    if run.skipped_criteria:
        parts.append(markup("<p>Criteria not searched (the ranking lacks their statistics): {}.</p>",
                            ", ".join(run.skipped_criteria)))
    return Section("compress", "Compress to a target", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    run = _run(record)
    if run is None:
        return []
    return [card(f"compressed for {run.target.id}", run.chosen.label,
                 f" (test acc. {run.test.chosen:.3f}, unpruned {run.test.original:.3f})")]
