"""Occlusion explanations on ONNX Runtime: naive, incremental exact (KRYPTON) and approximate.

    from etdeploy.occlusion import IncrementalOcclusionExecutor, occlusion_map, tune_approx
    ex = IncrementalOcclusionExecutor("model.onnx", patch=16, stride=4)
    result = ex.run(image_chw, mode="exact")      # OcclusionResult; result.map("prob")

The use case behind ``etdeploy explain`` and the pipeline's explain stage:

    from etdeploy.occlusion import ExplainInput, explain_images
    run = explain_images("model.onnx", [ExplainInput.from_file("a.jpg")], mean=m, std=s, out="maps")
"""

from etdeploy.occlusion.api import occlusion_map
from etdeploy.occlusion.executor import MODES, IncrementalOcclusionExecutor
from etdeploy.occlusion.explain import (
    ApproxSettings,
    ClassMap,
    ExplainedImage,
    ExplainInput,
    ExplainRun,
    Tuning,
    explain_images,
    pick_explain_images,
    read_explain,
)
from etdeploy.occlusion.geometry import grid_starts, redundancy_ratio
from etdeploy.occlusion.ops import GLOBAL_OPS, OP_HANDLERS, SUPPORTED_OPS
from etdeploy.occlusion.result import MAP_KINDS, OcclusionResult, map_values
from etdeploy.occlusion.tuner import TuneResult, map_ssim, required_ssim, tune_approx

__all__ = [
    "GLOBAL_OPS",
    "MAP_KINDS",
    "MODES",
    "OP_HANDLERS",
    "SUPPORTED_OPS",
    "ApproxSettings",
    "ClassMap",
    "ExplainInput",
    "ExplainRun",
    "ExplainedImage",
    "IncrementalOcclusionExecutor",
    "OcclusionResult",
    "TuneResult",
    "Tuning",
    "explain_images",
    "grid_starts",
    "map_ssim",
    "map_values",
    "occlusion_map",
    "pick_explain_images",
    "read_explain",
    "redundancy_ratio",
    "required_ssim",
    "tune_approx",
]
