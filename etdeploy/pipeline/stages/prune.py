"""The prune stage: :func:`etdeploy.pruning.prune_dirs` at each configured percent, into ``p<percent>/``.

Summary = ``PruneSeries.to_dict()``: every run's ``prune.json`` and the percent that is exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext, percent_dir


def run_prune_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.pruning import PruneSeries, prune_dirs

    pc = ctx.config.prune
    runs = tuple(prune_dirs(ctx.stage_dir("train") / "model", ctx.stage_dir("rank") / "ranking", dataset=ctx.dataset(),
                            schedule=pc.schedule, percent=percent, out=tmp / percent_dir(percent),
                            layers=list(pc.layers), finetune_epochs=pc.finetune_epochs, lr=ctx.config.model.lr,
                            batch_size=ctx.config.model.batch_size, seed=ctx.config.seed, progress=ctx.progress,
                            split_images=ctx.split_images)
                 for percent in pc.percents)
    return PruneSeries(export_percent=float(pc.export_percent), runs=runs).to_dict()


def describe_prune(s: dict[str, Any]) -> str:
    from etdeploy.pruning import PruneSeries

    parts = []
    for r in PruneSeries.from_dict(s).runs:
        ft = r.test_accuracy.finetuned
        parts.append(f"{r.percent:g}%: acc {r.test_accuracy.masked.accuracy:.3f}"
                     + (f" -> {ft.accuracy:.3f} fine-tuned" if ft is not None else "")
                     + f", params -{r.parameters.percent_cut:.1f}%")
    return "; ".join(parts)
