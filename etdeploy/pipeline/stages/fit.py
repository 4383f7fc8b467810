"""The fit stage: the simplified ONNX of the unpruned (``original``) and the pruned (``sliced``) model
against the configured targets; the summary is ``fit.json`` (:class:`~etdeploy.targets.FitRun`), plus one
per-layer CSV per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text, csv_text
from etdeploy.pipeline.context import RunContext

LAYER_COLUMNS = ["id", "name", "op", "output_shape", "params", "macc"]


def run_fit_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export import SIM_FILE
    from etdeploy.targets import fit_targets

    models = {name: ctx.stage_dir("export") / name / SIM_FILE for name in ("original", "sliced")}
    run = fit_targets(models, ctx.config.targets.ids)
    atomic_write_json(tmp / "fit.json", run.to_dict())
    for name, model in run.models.items():
        rows = [[r.id, r.name, r.op, "x".join(str(v) for v in r.output_shape), r.params, r.macc]
                for r in model.analysis.layers]
        atomic_write_text(tmp / f"layers_{name}.csv", csv_text(LAYER_COLUMNS, rows))
    return run.to_dict()


def describe_fit(s: dict[str, Any]) -> str:
    from etdeploy.targets import FitRun

    run = FitRun.from_dict(s)
    n = len(run.ids)
    return f"sliced model fits {run.fit_count('sliced')}/{n} targets (unpruned: {run.fit_count('original')}/{n})"
