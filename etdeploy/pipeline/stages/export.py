"""The export stage: the trained model (``original``) and the pruned, sliced one (``sliced``), each into
its own folder; the summary is their ``export.json`` manifests (:class:`~etdeploy.export.ExportSet`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_export_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export import ExportSet, export_dir

    sources = {"original": ctx.stage_dir("train") / "model", "sliced": ctx.pruned_dir() / "sliced"}
    return ExportSet({name: export_dir(model_dir, tmp / name) for name, model_dir in sources.items()}).to_dict()


def describe_export(s: dict[str, Any]) -> str:
    from etdeploy.export import ExportSet

    e = ExportSet.from_dict(s).exports
    return (f"original {e['original'].sim.bytes / 1e6:.2f} MB, sliced {e['sliced'].sim.bytes / 1e6:.2f} MB "
            f"ONNX ({e['sliced'].sim.parameters:,} parameters)")
