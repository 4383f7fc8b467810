"""The data stage: the data set's description (``data.json``) and every image's SHA-256 (``manifest.csv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text
from etdeploy.pipeline.context import RunContext
from etdeploy.vocab import SPLITS


def run_data(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.data.manifest import data_summary, manifest_csv

    ds = ctx.dataset()
    manifest = manifest_csv(ds, progress=ctx.progress)
    atomic_write_text(tmp / "manifest.csv", manifest)
    info = ds.describe()
    info["root"] = ctx.config.data.source
    atomic_write_json(tmp / "data.json", info)
    return data_summary(ds, ctx.config.data.source, manifest)


def describe_data(s: dict[str, Any]) -> str:
    sizes = "/".join(str(sum(s["counts"][k])) for k in SPLITS)
    return f"{s['name']}: {len(s['classes'])} classes, train/val/test {sizes} images"
