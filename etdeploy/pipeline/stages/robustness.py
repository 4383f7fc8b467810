"""The robustness stage: accuracy of the original, the sliced (deployed) and the int8 model under rover-camera
perturbations at graded severities (:func:`etdeploy.assurance.robustness.robustness_from_dirs`;
docs/method.md §12.2); writes ``robustness.json`` (= the summary, a
:class:`~etdeploy.assurance.robustness.RobustnessRun`) and ``robustness.csv`` (the report's table).
``[robustness] enabled = false`` records why and writes nothing. The int8 model is the quantize stage's
``model.int8.onnx`` when that stage ran; otherwise the record says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_robustness_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    rc = ctx.config.robustness
    if not rc.enabled:
        return {"skipped": "turned off in the configuration ([robustness] enabled = false)"}
    from etdeploy.assurance.robustness import robustness_from_dirs
    from etdeploy.models import load_model

    int8 = ctx.stage_dir("quantize") / "model.int8.onnx"
    size = load_model(ctx.pruned_dir() / "sliced").spec.input_size
    run = robustness_from_dirs(ctx.stage_dir("train") / "model", ctx.pruned_dir() / "sliced", dataset=ctx.dataset(),
                               int8=int8, int8_missing="the run has no quantize stage output (model.int8.onnx)",
                               split=rc.split, perturbations=rc.perturbations, severities=rc.severities,
                               seed=rc.seed, max_images=rc.max_images, images=ctx.split_images(rc.split, size),
                               out=tmp)
    return run.to_dict()


def describe_robustness(s: dict[str, Any]) -> str:
    if "skipped" in s:
        return f"not evaluated: {s['skipped']}"
    from etdeploy.assurance.robustness import RobustnessRun

    run = RobustnessRun.from_dict(s)
    worst = [f"{m.name} {run.clean(m.name).accuracy:.3f} -> worst {run.worst(m.name).accuracy:.3f} "
             f"({run.worst(m.name).perturbation} {run.worst(m.name).severity})" for m in run.models]
    return (f"{len(run.perturbations)} perturbations x severities {max(run.severities)} on {run.n} {run.split} "
            f"images: " + "; ".join(worst))
