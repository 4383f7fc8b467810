"""The rank stage: :func:`etdeploy.attribution.rank_dirs` on the trained model; summary = ``RankRun.to_dict()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_rank(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.attribution import rank_dirs

    r = ctx.config.ranking
    run = rank_dirs(ctx.stage_dir("train") / "model", ctx.dataset(), split=r.split, layers=list(r.layers),
                    steps=r.steps, method=r.method, batch_size=r.batch_size, max_images=r.max_images,
                    seed=ctx.config.seed, out=tmp / "ranking", progress=ctx.progress, split_images=ctx.split_images)
    return run.to_dict()


def describe_rank(s: dict[str, Any]) -> str:
    from etdeploy.attribution import RankRun

    run = RankRun.from_dict(s)
    parts = [f"{la.name} {la.live}/{la.width} live" for la in run.layers]
    return f"{run.n_images} images, {run.steps} steps: " + ", ".join(parts)
