"""The compress stage: :func:`etdeploy.compress.compress_dirs` on the trained model and its ranking, into
``model/``, when ``[compress] target`` is set; later stages (export, parity, explain...) then take the
chosen model (:meth:`~etdeploy.pipeline.context.RunContext.pruned_dir`) instead of the prune stage's
``export_percent``. Summary = ``CompressRun.to_dict()``, or ``{"skipped": why}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import COMPRESS_MODEL, RunContext

SKIPPED = "[compress] target is not set: the prune stage's export_percent model is exported"


def run_compress_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.compress import compress_dirs

    cc = ctx.config.compress
    if cc.target is None:
        return {"skipped": SKIPPED}
    run = compress_dirs(ctx.stage_dir("train") / "model", ctx.stage_dir("rank") / "ranking", dataset=ctx.dataset(),
                        target=cc.target, out=tmp / COMPRESS_MODEL, min_accuracy=cc.min_accuracy,
                        max_latency_s=cc.max_latency_s, criteria=list(cc.criteria) or None,
                        precisions=cc.precisions, percents=cc.percents, layers=list(ctx.config.prune.layers),
                        refine_rounds=cc.refine_rounds, finetune_epochs=cc.finetune_epochs,
                        max_finetune=cc.max_finetune, lr=ctx.config.model.lr, batch_size=ctx.config.model.batch_size,
                        seed=ctx.config.seed, split=cc.split, progress=ctx.progress, split_images=ctx.split_images)
    return run.to_dict()


def describe_compress(s: dict[str, Any]) -> str:
    if "skipped" in s:
        return "skipped (no [compress] target)"
    from etdeploy.compress import CompressRun

    run = CompressRun.from_dict(s)
    c = run.chosen
    return (f"{run.target.id}: {c.label}, {run.split} acc {c.accuracy:.3f}, flash {c.cost.flash_bytes / 1e6:.2f} MB; "
            f"{run.evaluated} points, {run.costed} costed, front of {len(run.front)}")
