"""Assemble report.json, report.html and the CSV tables from the stage folders of a run."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from etdeploy.fileio import atomic_write_json, atomic_write_text, canonical_json
from etdeploy.report import plots
from etdeploy.report.html import Raw, card, fmt, img, page, table, verdict

PACKAGES = ("etdeploy", "torch", "numpy", "onnx", "onnxruntime", "onnxsim", "scikit-image", "matplotlib",
            "safetensors", "pillow", "click", "tqdm")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _stage_manifests(out: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    manifests = {}
    for name in names:
        path = out / name / "stage.json"
        if path.is_file():
            manifests[name] = json.loads(path.read_text())
    return manifests


def _normalised_invocation(argv: list[str], out: Path) -> list[str]:
    text_out = str(out)
    return ["<out>" if a in (text_out, str(out.resolve())) else a for a in argv]


def build_report(ctx, tmp: Path) -> dict[str, Any]:
    """Write report.json, report.html and tables/*.csv into ``tmp`` (the report stage folder)."""
    from etdeploy.pipeline.runner import config_hash
    from etdeploy.pipeline.stages import stage_names

    names = [n for n in stage_names() if n != "report"]
    manifests = _stage_manifests(ctx.out, names)
    summaries = {name: m["summary"] for name, m in manifests.items()}
    provenance = {
        "config": ctx.config.to_dict(),
        "config_sha256": config_hash(ctx.config),
        "seed": ctx.config.seed,
        "versions": _versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "release": platform.release()},
        "command": _normalised_invocation(list(ctx.cache.get("invocation") or []), ctx.out),
        "artefacts": {f"{name}/{rel}": digest for name, m in manifests.items()
                      for rel, digest in m["artefacts"].items()},
    }

    tables_dir = tmp / "tables"
    tables_dir.mkdir()
    csv_count = 0
    for name in names:
        for csv_path in sorted((ctx.out / name).rglob("*.csv")):
            target = tables_dir / f"{name}__{csv_path.relative_to(ctx.out / name).as_posix().replace('/', '__')}"
            shutil.copyfile(csv_path, target)
            csv_count += 1

    report = {"format": "etdeploy-report", "format_version": 1, "name": ctx.config.name,
              "stages": summaries, "provenance": provenance}
    atomic_write_json(tmp / "report.json", report)
    sections = [s for s in (builder(ctx, summaries) for builder in SECTIONS) if s is not None]
    sections.append(("provenance", "Provenance", _provenance_html(provenance)))
    title = f"etdeploy V&V report: {ctx.config.name}"
    train = summaries.get("train", {})
    subtitle = f"model {train.get('arch', '?')} on {summaries.get('data', {}).get('name', '?')} data"
    atomic_write_text(tmp / "report.html", page(title, subtitle, sections))
    return {"csv_tables": csv_count, "report_json_sha256": __import__("hashlib").sha256(
        canonical_json(report).encode()).hexdigest()}


# ------------------------------------------------------------------------------------------- sections
def _summary(ctx, s: dict[str, Any]) -> tuple[str, str, str]:
    cards = []
    if "train" in s:
        t = s["train"]
        cards.append(card("model", t["arch"], f" {t['input_size']} px"))
        cards.append(card("test accuracy (trained)", f"{t['accuracy']['test']:.3f}"))
        cards.append(card("parameters", f"{t['parameters']:,}"))
    for builder in SUMMARY_CARDS:
        cards.extend(builder(s))
    return ("summary", "Summary", f"<div class='cards'>{''.join(cards)}</div>")


def _data(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "data" not in s:
        return None
    d = s["data"]
    rows = [[c, d["counts"]["train"][k], d["counts"]["val"][k], d["counts"]["test"][k]]
            for k, c in enumerate(d["classes"])]
    notes = "".join(f"<p class='bad'>warning: {w}</p>" for w in d["warnings"])
    return ("data", "Data", f"<p>source <code>{d['source']}</code>; every image's SHA-256 is in "
            f"<code>data/manifest.csv</code> (sha256 {d['manifest_sha256'][:16]}…).</p>"
            + table(["class", "train", "val", "test"], rows) + notes + f"<p class='muted'>Cite: {d['citation']}</p>")


def _training(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "train" not in s:
        return None
    t = s["train"]
    classes = s.get("data", {}).get("classes", [])
    rows = [[c, t["per_class_test_accuracy"][k]] for k, c in enumerate(classes)]
    conf = [[classes[k]] + list(row) for k, row in enumerate(t["confusion_test"])] if classes else []
    parts = [table(["split", "accuracy"], [[k, v] for k, v in t["accuracy"].items()]),
             "<h3>Per-class test accuracy</h3>", table(["class", "accuracy"], rows),
             "<h3>Test confusion matrix (rows: true, columns: predicted)</h3>",
             table(["true \\ predicted"] + classes, conf)]
    if t.get("history"):
        parts.append(img(plots.training_curve(t["history"]), "training curve"))
    return ("training", "Training", "".join(parts))


def _provenance_html(p: dict[str, Any]) -> str:
    rows = [[k, v] for k, v in p["versions"].items()]
    arts = [[k, Raw(f"<code>{v}</code>")] for k, v in sorted(p["artefacts"].items())]
    return (f"<p>config sha256 <code>{p['config_sha256']}</code>, seed {p['seed']}, platform "
            f"{p['platform']['system']} {p['platform']['machine']}; command: <code>"
            f"{' '.join(p['command']) or '(Python API)'}</code></p>"
            + table(["package", "version"], rows)
            + f"<details><summary>SHA-256 of {len(arts)} artefacts</summary>{table(['artefact', 'sha256'], arts)}"
            + "</details>" + f"<details><summary>configuration</summary><pre>{json.dumps(p['config'], indent=2)}"
            + "</pre></details>")


SUMMARY_CARDS: list[Callable[[dict[str, Any]], list[str]]] = []
SECTIONS: list[Callable[[Any, dict[str, Any]], tuple[str, str, str] | None]] = [_summary, _data, _training]

__all__ = ["build_report", "fmt", "verdict"]
