"""Training section: accuracy per split and class, confusion matrix, training curve; for an imported model
its origin (file, SHA-256, route, normalisation, interface) and the original-vs-imported check."""

from __future__ import annotations

from etdeploy.report import plots
from etdeploy.report.html import Raw, card, img, join, markup, table
from etdeploy.report.record import RunRecord, Section
from etdeploy.vocab import SPLITS


def _affine_text(affine) -> str:
    if not affine:
        return "none"
    return f"original input × {affine['scale']} + {affine['bias']} (folded into the normalisation)"


def origin_parts(t: dict) -> list[Raw]:
    """An imported model's origin: file, SHA-256, route, normalisation, interface, and the import's own
    check of the original against the imported model (max |Δ logit|)."""
    origin = t.get("imported")
    if not origin:
        return []
    norm = origin.get("normalisation") or {}
    rows = [["file", origin.get("file")], ["sha256", markup("<code>{}</code>", origin.get("sha256"))],
            ["route", origin.get("route")], ["architecture", origin.get("arch")],
            ["normalisation (the original's input)", f"mean {norm.get('mean')}, std {norm.get('std')}"
             + (f" (uint8 / {norm['scale']:g})" if norm.get("scale") else "")]]
    interface = t.get("interface")
    if interface:
        rows += [["input", f"{interface['input_name']} ({interface['layout']}), opset {interface.get('opset')}"],
                 ["input scaling", _affine_text(interface.get("input_affine"))],
                 ["output", f"{interface['output_name']} ({interface['output']})"]]
    parts = [Raw("<h3>Imported model</h3>"), table(["", "value"], rows)]
    check = origin.get("check")
    if check:
        parts.append(markup("<p>Original vs imported (the import's check): max |Δ logit| {:.3g} on {} ({} images), "
                            "tolerance {:g}, top-1 labels {}.</p>", check["max_abs_logit_delta"], check["inputs"],
                            check["images"], check["tolerance"],
                            "agree" if check.get("labels_agree") else "differ"))
    return parts


def section(record: RunRecord) -> Section | None:
    t = record.stages.get("train")
    if t is None:
        return None
    imported = bool(t.get("imported"))
    parts = origin_parts(t)
    if t["accuracy"] is not None:
        classes = record.stages.get("data", {}).get("classes", [])
        rows = [[c, t["per_class_test_accuracy"][k]] for k, c in enumerate(classes)]
        conf = [[classes[k], *row] for k, row in enumerate(t["confusion_test"])] if classes else []
        parts += [table(["split", "accuracy"], [[k, t["accuracy"][k]] for k in SPLITS]),
                  Raw("<h3>Per-class test accuracy</h3>"), table(["class", "accuracy"], rows),
                  Raw("<h3>Test confusion matrix (rows: true, columns: predicted)</h3>"),
                  table(["true \\ predicted", *classes], conf)]
    if t.get("history"):
        parts.append(img(plots.training_curve(t["history"]), "training curve"))
    return Section("training", "Imported model" if imported else "Training", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    t = record.stages.get("train")
    if t is None:
        return []
    out = [card("model", t["arch"], f" {t['input_size']} px")]
    if t["accuracy"] is not None:
        label = "test accuracy (imported)" if t.get("imported") else "test accuracy (trained)"
        out.append(card(label, f"{t['accuracy']['test']:.3f}"))
    return [*out, card("parameters", f"{t['parameters']:,}")]
