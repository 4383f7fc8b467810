"""Occlusion explanations on ONNX Runtime: naive, incremental exact (KRYPTON) and approximate.

    from etdeploy.occlusion import IncrementalOcclusionExecutor, occlusion_map, tune_approx
    ex = IncrementalOcclusionExecutor("model.onnx", patch=16, stride=4)
    result = ex.run(image_chw, mode="exact")      # OcclusionResult; result.map("prob")
    ex.redundancy_ratio()["R"]                    # KRYPTON's R for a centred patch

The incremental executor runs chains and DAGs (residual Add, Concat, depthwise conv; ops in
``SUPPORTED_OPS``); ``NaiveOcclusionExecutor`` (full forwards) runs any classifier ONNX Runtime can run.

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
from etdeploy.occlusion.geometry import dag_redundancy_ratio, grid_starts, redundancy_ratio
from etdeploy.occlusion.naive import NaiveOcclusionExecutor
from etdeploy.occlusion.ops import GLOBAL_OPS, MERGE_HANDLERS, OP_HANDLERS, SUPPORTED_OPS
from etdeploy.occlusion.result import MAP_KINDS, OcclusionResult, map_values
from etdeploy.occlusion.tuner import TuneResult, map_ssim, required_ssim, tune_approx

__all__ = [
    "GLOBAL_OPS",
    "MAP_KINDS",
    "MERGE_HANDLERS",
    "MODES",
    "OP_HANDLERS",
    "SUPPORTED_OPS",
    "ApproxSettings",
    "ClassMap",
    "ExplainInput",
    "ExplainRun",
    "ExplainedImage",
    "IncrementalOcclusionExecutor",
    "NaiveOcclusionExecutor",
    "OcclusionResult",
    "TuneResult",
    "Tuning",
    "dag_redundancy_ratio",
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
