"""The explain stage: occlusion maps of test images (correct and misclassified, per class) on the sliced ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_explain_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export.interface import interface_of
    from etdeploy.fileio import sha256_file
    from etdeploy.models import load_model
    from etdeploy.occlusion import ExplainInput, explain_images, pick_explain_images
    from etdeploy.training import predict_logits

    oc = ctx.config.occlusion
    model = load_model(ctx.pruned_dir() / "sliced")
    spec = model.spec
    test = ctx.split_images("test", spec.input_size)
    predictions = predict_logits(model, test.images, spec.mean, spec.std).argmax(dim=1).numpy()
    images = [ExplainInput(name=test.paths[i].name, sha256=sha256_file(test.paths[i]), image=test.images[i],
                           true_class=int(test.labels[i]), kind=kind)
              for i, kind in pick_explain_images(test.labels, predictions, oc.images_per_class)]
    approx = oc.mode == "approx"
    interface = interface_of(spec)  # an imported model's export takes the original's input and normalisation
    mean, std = (spec.mean, spec.std) if interface is None else interface.normalisation(spec.mean, spec.std)
    result = explain_images(ctx.stage_dir("export") / "sliced" / "model.sim.onnx", images, mean=mean,
                            std=std, class_names=spec.class_names, input_size=spec.input_size, patch=oc.patch,
                            stride=oc.stride, mode=oc.mode, map_kind=oc.map_kind, target_ssim=oc.target_ssim,
                            ssim_margin=oc.ssim_margin, tune_images=images if approx and images else None, check_ssim=approx,
                            out=tmp, staged=False, timing=False, progress=ctx.progress)
    return result.to_dict()


def describe_explain(s: dict[str, Any]) -> str:
    from etdeploy.occlusion import ExplainRun

    run = ExplainRun.from_dict(s)
    speed = [image.modelled_speedup for image in run.images if image.modelled_speedup]
    extra = f", modelled speedup over naive {min(speed):.2f}-{max(speed):.2f}x" if speed else ""
    return f"{len(run.all_maps())} {run.mode} maps (patch {run.patch}, stride {run.stride}){extra}"
