"""The parity stage: masked torch, sliced torch, ONNX and simplified ONNX of the pruned model on one split (and,
for an imported model, the original ONNX file or PyTorch module against the imported model); the summary is
``parity.json`` (:class:`~etdeploy.export.ParityRun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json
from etdeploy.pipeline.context import RunContext


def run_parity_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export import ExportSet, parity_from_dirs
    from etdeploy.export.parity import ORIGINAL_FILE

    pc = ctx.config.parity
    size = ExportSet.from_dict(ctx.summary("export")).exports["sliced"].model.input_size
    images = ctx.split_images(pc.split, size)  # decoded once per run (explain reads the same split)
    imported = ctx.stage_dir("train") / "model"  # an ONNX import keeps the user's file there: the fifth member
    original = imported if (imported / ORIGINAL_FILE).is_file() else None
    source = ctx.config.model.import_
    if original is None and source and Path(source).is_file():  # a PyTorch import: its weights rebuild the original
        original = Path(source)
    run = parity_from_dirs(ctx.pruned_dir() / "sliced", ctx.stage_dir("export") / "sliced",
                           masked_dir=ctx.pruned_dir() / "masked",
                           dataset=ctx.dataset(), split=pc.split, tol=pc.tolerance, images=images,
                           progress=ctx.progress, original=original)
    atomic_write_json(tmp / "parity.json", run.to_dict())
    return run.to_dict()


def describe_parity(s: dict[str, Any]) -> str:
    from etdeploy.export import ParityRun

    run = ParityRun.from_dict(s)
    worst = max(p.max_abs_logit_delta for p in run.pairs)
    return (f"{'PASS' if run.passed else 'FAIL'}: {len(run.names)} implementations on {run.n} {run.split} images, "
            f"max |delta logit| {worst:.2g} (tolerance {run.tolerance:g})")
