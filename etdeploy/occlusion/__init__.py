"""Occlusion explanations on ONNX Runtime: naive, incremental exact (KRYPTON) and approximate.

    from etdeploy.occlusion import IncrementalOcclusionExecutor, occlusion_map, tune_approx
    ex = IncrementalOcclusionExecutor("model.onnx", patch=16, stride=4)
    result = ex.run(image_chw, mode="exact")      # OcclusionResult; result.map("prob")
"""

from etdeploy.occlusion.api import occlusion_map
from etdeploy.occlusion.approx import TuneResult, map_ssim, tune_approx
from etdeploy.occlusion.executor import MODES, IncrementalOcclusionExecutor
from etdeploy.occlusion.geometry import grid_starts, redundancy_ratio
from etdeploy.occlusion.ops import GLOBAL_OPS, OP_HANDLERS, SUPPORTED_OPS
from etdeploy.occlusion.result import MAP_KINDS, OcclusionResult, map_values

__all__ = [
    "GLOBAL_OPS",
    "MAP_KINDS",
    "MODES",
    "OP_HANDLERS",
    "SUPPORTED_OPS",
    "IncrementalOcclusionExecutor",
    "OcclusionResult",
    "TuneResult",
    "grid_starts",
    "map_ssim",
    "map_values",
    "occlusion_map",
    "redundancy_ratio",
    "tune_approx",
]
