"""The sweep stage: :func:`etdeploy.pruning.sweep_dirs` on the trained model; summary = ``SweepRun.to_dict()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_sweep_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.pruning import sweep_dirs

    sw = ctx.config.sweep
    ds = ctx.dataset()
    schedules = list(sw.schedules)
    if sw.class_ea:
        schedules += [f"class-ea:{k}" for k in range(len(ds.classes))]
    run = sweep_dirs(ctx.stage_dir("train") / "model", ctx.stage_dir("rank") / "ranking", dataset=ds,
                     schedules=schedules, layer=sw.layer, split=sw.split, out=tmp / "sweep", points=sw.points,
                     seed=ctx.config.seed, progress=ctx.progress, split_images=ctx.split_images)
    return run.to_dict()


def describe_sweep(s: dict[str, Any]) -> str:
    from etdeploy.pruning import SweepRun

    run = SweepRun.from_dict(s)
    return f"{run.layer} ({run.width} neurons) on {run.split}: area " + ", ".join(
        f"{n} {run.curves[n].auc:.3f}" for n in run.main_schedules)
