"""The stability stage: exact occlusion maps of the original export and the pruned (sliced) export on the
images the explain stage explained, and their SSIM (:func:`etdeploy.assurance.stability.explanation_stability`;
docs/method.md §12.3); writes both maps per image (``.npy``), ``stability.png`` and ``stability.json`` (= the
summary, a :class:`~etdeploy.assurance.stability.StabilityRun`). ``[stability] enabled = false`` records why
and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def _normalisation(model_dir: Path):
    from etdeploy.export.interface import interface_of
    from etdeploy.models import load_model

    spec = load_model(model_dir).spec
    interface = interface_of(spec)  # an imported model's export takes the original's input and normalisation
    mean, std = (spec.mean, spec.std) if interface is None else interface.normalisation(spec.mean, spec.std)
    return spec, mean, std


def run_stability_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    if not ctx.config.stability.enabled:
        return {"skipped": "turned off in the configuration ([stability] enabled = false)"}
    from etdeploy.assurance.stability import explanation_stability, stability_inputs
    from etdeploy.export import SIM_FILE
    from etdeploy.occlusion import ExplainRun

    oc = ctx.config.occlusion
    spec, mean, std = _normalisation(ctx.pruned_dir() / "sliced")
    _, original_mean, original_std = _normalisation(ctx.stage_dir("train") / "model")
    images, classes = stability_inputs(ExplainRun.from_dict(ctx.summary("explain")),
                                       ctx.split_images("test", spec.input_size))
    run = explanation_stability(ctx.stage_dir("export") / "original" / SIM_FILE,
                                ctx.stage_dir("export") / "sliced" / SIM_FILE, images, mean=original_mean,
                                std=original_std, pruned_mean=mean, pruned_std=std, classes=classes,
                                class_names=spec.class_names, input_size=spec.input_size, patch=oc.patch,
                                stride=oc.stride, map_kind=oc.map_kind, out=tmp)
    return run.to_dict()


def describe_stability(s: dict[str, Any]) -> str:
    if "skipped" in s:
        return f"not compared: {s['skipped']}"
    from etdeploy.assurance.stability import StabilityRun

    run = StabilityRun.from_dict(s)
    if run.min_ssim is None:
        return f"{len(run.images)} images, no SSIM defined (constant original maps)"
    return (f"{len(run.images)} images, {run.map_kind} maps original vs pruned: SSIM min {run.min_ssim:.3f}, "
            f"median {run.median_ssim:.3f}")
