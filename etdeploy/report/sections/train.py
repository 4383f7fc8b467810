"""Training section: accuracy per split and class, confusion matrix, training curve."""

from __future__ import annotations

from etdeploy.report import plots
from etdeploy.report.html import Raw, card, img, join, table
from etdeploy.report.record import RunRecord, Section
from etdeploy.vocab import SPLITS


def section(record: RunRecord) -> Section | None:
    t = record.stages.get("train")
    if t is None:
        return None
    classes = record.stages.get("data", {}).get("classes", [])
    rows = [[c, t["per_class_test_accuracy"][k]] for k, c in enumerate(classes)]
    conf = [[classes[k], *row] for k, row in enumerate(t["confusion_test"])] if classes else []
    parts = [table(["split", "accuracy"], [[k, t["accuracy"][k]] for k in SPLITS]),
             Raw("<h3>Per-class test accuracy</h3>"), table(["class", "accuracy"], rows),
             Raw("<h3>Test confusion matrix (rows: true, columns: predicted)</h3>"),
             table(["true \\ predicted", *classes], conf)]
    if t.get("history"):
        parts.append(img(plots.training_curve(t["history"]), "training curve"))
    return Section("training", "Training", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    t = record.stages.get("train")
    if t is None:
        return []
    return [card("model", t["arch"], f" {t['input_size']} px"),
            card("test accuracy (trained)", f"{t['accuracy']['test']:.3f}"),
            card("parameters", f"{t['parameters']:,}")]
