"""Pruning section: accuracy before/after masking and fine-tuning, parameters after slicing (from ``PruneSeries``)."""

from __future__ import annotations

from etdeploy.pruning.prune_dirs import PruneSeries
from etdeploy.report import plots
from etdeploy.report.html import Raw, card, img, join, markup, table
from etdeploy.report.record import RunRecord, Section


def section(record: RunRecord) -> Section | None:
    p = record.stage("prune", PruneSeries)
    if p is None:
        return None
    rows = [[f"{r.percent:g} %", r.kept_text(), r.test_accuracy.original.accuracy, r.test_accuracy.masked.accuracy,
             None if r.test_accuracy.finetuned is None else r.test_accuracy.finetuned.accuracy,
             r.parameters.original, r.parameters.sliced, r.parameters.percent_cut, r.parity.max_abs_logit_diff]
            for r in p.runs]
    parts = [markup("<p>Schedule <b>{}</b> on layers {}; fine-tuning {} epochs with the masks held (masked weights "
                    "receive no update). Accuracy on the test split. Parameters after physical slicing (an "
                    "ordinary smaller network).</p>", p.schedule, ", ".join(p.layers), p.finetune_epochs),
             table(["masking", "neurons kept", "acc. original", "acc. masked", "acc. fine-tuned", "params before",
                    "params after", "% cut", "sliced vs masked max |Δ logit|"], rows)]
    export = p.export_run
    if export is not None and export.layer_parameters:
        layer_rows = [[r.layer, r.shape_before, r.shape_after, r.before, r.after] for r in export.layer_parameters]
        parts += [markup("<h3>Parameter reduction per layer at {:g} %</h3>", p.export_percent),
                  table(["layer", "shape before", "shape after", "params before", "params after"], layer_rows, left=3)]
    for r in p.runs:
        if r.finetune is not None and r.finetune.history:
            parts.append(img(plots.training_curve([h.to_dict() for h in r.finetune.history],
                                                  f"fine-tuning at {r.percent:g} %"), "fine-tuning"))
    return Section("prune", "Pruning, fine-tuning and slicing", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    p = record.stage("prune", PruneSeries)
    r = None if p is None else p.export_run
    if r is None:
        return []
    return [card(f"test accuracy, {r.percent:g} % pruned",
                 f"{r.test_accuracy.masked.accuracy:.3f} → {r.test_accuracy.final.accuracy:.3f}", " masked → fine-tuned"),
            card("parameters after slicing", f"{r.parameters.sliced:,}", f" (−{r.parameters.percent_cut:.1f} %)")]
