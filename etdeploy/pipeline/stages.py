"""The pipeline's stages. Each reads earlier stages' artefacts from the run directory (so a resumed
run needs nothing in memory) and writes its own into a temporary folder that becomes its stage folder.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text, sha256_file
from etdeploy.pipeline.runner import RunContext, Stage


# ----------------------------------------------------------------------------------------------- helpers
def dataset(ctx: RunContext):
    from etdeploy.data import load_dataset

    d = ctx.config.data
    return ctx.cached("dataset", lambda: load_dataset(d.source, grouping=d.grouping, recipe=d.recipe, seed=d.seed,
                                                      cap=d.cap))


def split_images(ctx: RunContext, split: str, size: int):
    from etdeploy.data.images import load_split

    return ctx.cached(f"images:{split}:{size}", lambda: load_split(dataset(ctx).split(split), size,
                                                                   progress=ctx.progress, desc=f"decode {split}"))


def trained_model(ctx: RunContext):
    """A fresh copy of the trained model (callers may modify it)."""
    from etdeploy.models import load_model

    return load_model(ctx.stage_dir("train") / "model")


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([fmt_cell(v) for v in row])
    return buf.getvalue()


def fmt_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)


# ----------------------------------------------------------------------------------------------- data
def run_data(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.progress import progress_bar

    ds = dataset(ctx)
    rows = []
    for split in ("train", "val", "test"):
        for sample in progress_bar(ds.split(split), desc=f"hash {split}", enabled=ctx.progress):
            rows.append([split, sample.path.relative_to(ds.root).as_posix(), sample.label, ds.classes[sample.label],
                         sample.source_class, sha256_file(sample.path)])
    manifest = csv_text(["split", "path", "label", "class", "source_class", "sha256"], rows)
    atomic_write_text(tmp / "manifest.csv", manifest)
    info = ds.describe()
    info["root"] = ctx.config.data.source
    atomic_write_json(tmp / "data.json", info)
    counts = ds.counts()
    return {"name": ds.name, "source": ctx.config.data.source, "classes": list(ds.classes), "counts": counts,
            "citation": ds.citation, "warnings": list(ds.warnings),
            "manifest_sha256": sha256_file(tmp / "manifest.csv")}


def describe_data(s: dict[str, Any]) -> str:
    sizes = "/".join(str(sum(s["counts"][k])) for k in ("train", "val", "test"))
    return f"{s['name']}: {len(s['classes'])} classes, train/val/test {sizes} images"


# ----------------------------------------------------------------------------------------------- train
def run_train(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.api import train_model
    from etdeploy.models import count_parameters, load_model, save_model
    from etdeploy.training import evaluate

    m = ctx.config.model
    ds = dataset(ctx)
    if m.load:
        model = load_model(m.load)
        if tuple(model.spec.class_names) != tuple(ds.classes):
            from etdeploy.errors import ModelError

            raise ModelError(f"model classes {list(model.spec.class_names)} differ from the data's "
                             f"{list(ds.classes)}", m.load)
        evals = {s: evaluate(model, split_images(ctx, s, model.spec.input_size), model.spec.mean,
                             model.spec.std).to_dict() for s in ("train", "val", "test")}
        metrics = {"arch": model.spec.arch, "parameters": count_parameters(model), "classes": list(ds.classes),
                   "loaded_from": str(m.load), "evaluation": evals}
        save_model(model, tmp / "model")
        atomic_write_json(tmp / "model" / "metrics.json", metrics)
    else:
        model, metrics = train_model(m.arch, ds, epochs=m.epochs, seed=m.seed, lr=m.lr, batch_size=m.batch_size,
                                     input_size=m.input_size, out=tmp / "model", progress=ctx.progress)
    ev = metrics["evaluation"]
    return {"arch": metrics["arch"], "parameters": metrics["parameters"], "input_size": model.spec.input_size,
            "accuracy": {s: ev[s]["accuracy"] for s in ("train", "val", "test")},
            "per_class_test_accuracy": ev["test"]["per_class_accuracy"],
            "confusion_test": ev["test"]["confusion"],
            "history": metrics.get("training", {}).get("history", []),
            "best_epoch": metrics.get("training", {}).get("best_epoch"),
            "weights_sha256": sha256_file(tmp / "model" / "model.safetensors")}


def describe_train(s: dict[str, Any]) -> str:
    a = s["accuracy"]
    return (f"{s['arch']} {s['parameters']:,} parameters, train/val/test accuracy "
            f"{a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")


# ----------------------------------------------------------------------------------------------- report
def run_report(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.report import build_report

    return build_report(ctx, tmp)


def describe_report(s: dict[str, Any]) -> str:
    return f"report.html, report.json and {s['csv_tables']} CSV tables"


STAGES: list[Stage] = [
    Stage("data", run_data, describe_data),
    Stage("train", run_train, describe_train),
    Stage("report", run_report, describe_report),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
