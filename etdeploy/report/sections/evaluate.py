"""Every form of the model section (evaluate stage, with the quantize stage's int8 figures): accuracy with
95 % intervals per form and per class, and the exact McNemar tests between forms (docs/method.md §12.1)."""

from __future__ import annotations

from etdeploy.assurance.forms import FormsRun
from etdeploy.export import QuantizeRun
from etdeploy.report.html import Raw, card, join, markup, table
from etdeploy.report.record import RunRecord, Section


def _ci(low: float, high: float) -> str:
    return f"{low:.3f} – {high:.3f}"


def section(record: RunRecord) -> Section | None:
    run = record.stage("evaluate", FormsRun)
    if run is None:
        return None
    pct = f"{run.confidence * 100:g} %"
    form_rows = [[f.name, f.description, f.n, f.correct, f"{f.accuracy:.4f}", _ci(f.ci_low, f.ci_high),
                  _ci(f.cp_low, f.cp_high), f.changed_vs_original, markup("<code>{}…</code>", f.predictions_sha256[:16])]
                 for f in run.ordered()]
    names = [f.name for f in run.ordered()]
    class_rows = []
    for i, c in enumerate(run.classes):
        cells = []
        for f in run.ordered():
            pc = f.per_class[i]
            cells.append(markup("{}/{} ({})", pc.correct, pc.n, "n/a" if pc.n == 0 else _ci(pc.ci_low, pc.ci_high)))
        class_rows.append([c, *cells])
    pair_rows = [[f"{p.first} vs {p.second}", p.relation, p.both_correct, p.b, p.c, p.both_wrong, p.changed,
                  f"{p.p_value:.4g}", f"{p.mid_p:.4g}"] for p in run.pairs]
    parts = [markup("<p>Every form of the model on the same {} {} images (true labels SHA-256 <code>{}…</code>). "
                    "Intervals are {} two-sided: Wilson score and Clopper-Pearson (exact); "
                    "“changed” counts images whose predicted label differs from the original's.</p>",
                    run.n, run.split, run.labels_sha256[:16], pct),
             table(["form", "what runs", "n", "correct", "accuracy", f"Wilson {pct}", f"Clopper-Pearson {pct}",
                    "changed vs original", "predictions sha256"], form_rows)]
    q = record.stage("quantize", QuantizeRun)
    if q is not None:
        parts.append(markup("<p>int8 (quantize stage): static QDQ, per-channel int8 weights, uint8 activations, "
                            "MinMax calibration on {} training images; {} bytes (fp32 {}); on {} {} images top-1 "
                            "agreement with fp32 {:.4f}, |Δ logit| mean {:.3g}, max {:.3g}.</p>",
                            q.calibration_images, q.bytes_int8, q.bytes_fp32, q.n, q.split, q.top1_agreement,
                            q.mean_abs_logit_delta, q.max_abs_logit_delta))
    parts += [markup("<p>Not run: {}.</p>", "; ".join(f"{k}: {v}" for k, v in run.skipped.items()))
              if run.skipped else Raw(""),
              markup("<h3>Per class (correct/n, Wilson {})</h3>", pct),
              table(["class", *names], class_rows),
              Raw("<h3>Paired comparisons (exact McNemar)</h3>"),
              Raw("<p>How to read it: of the images the two forms classify differently in correctness, "
                  "b are right only under the first and c only under the second; if compression did not change "
                  "accuracy, b and c are equally likely, and a small p (below 0.05) says the difference in "
                  "accuracy is unlikely to be chance. A large p is not proof of equality: with few discordant "
                  "images the test has little power, so read it with the count of changed labels.</p>"),
              table(["pair", "relation", "both right", "b (first only)", "c (second only)", "both wrong",
                     "changed labels", "p exact", "mid-p"], pair_rows)]
    return Section("evaluate", "Every form of the model", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    run = record.stage("evaluate", FormsRun)
    if run is None or not run.forms:
        return []
    last = run.ordered()[-1]
    return [card(f"accuracy of {last.name} ({run.split}, {run.confidence * 100:g} % CI)", f"{last.accuracy:.3f}",
                 f" [{last.ci_low:.3f}, {last.ci_high:.3f}]" + ("" if last.changed_vs_original is None else
                                                              f", {last.changed_vs_original} labels changed"))]
