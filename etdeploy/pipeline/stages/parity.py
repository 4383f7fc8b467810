"""The parity stage: masked torch, sliced torch, ONNX and simplified ONNX of the pruned model on one split;
the summary is ``parity.json`` (:class:`~etdeploy.export.ParityRun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json
from etdeploy.pipeline.context import RunContext


def run_parity_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export import ExportSet, parity_from_dirs

    pc = ctx.config.parity
    size = ExportSet.from_dict(ctx.summary("export")).exports["sliced"].model.input_size
    images = ctx.split_images(pc.split, size)  # decoded once per run (explain reads the same split)
    run = parity_from_dirs(ctx.pruned_dir() / "sliced", ctx.stage_dir("export") / "sliced",
                           masked_dir=ctx.pruned_dir() / "masked",
                           dataset=ctx.dataset(), split=pc.split, tol=pc.tolerance, images=images,
                           progress=ctx.progress)
    atomic_write_json(tmp / "parity.json", run.to_dict())
    return run.to_dict()


def describe_parity(s: dict[str, Any]) -> str:
    from etdeploy.export import ParityRun

    run = ParityRun.from_dict(s)
    worst = max(p.max_abs_logit_delta for p in run.pairs)
    return (f"{'PASS' if run.passed else 'FAIL'}: {len(run.names)} implementations on {run.n} {run.split} images, "
            f"max |delta logit| {worst:.2g} (tolerance {run.tolerance:g})")
