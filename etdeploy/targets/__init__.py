"""Flight-processor target profiles (``targets/*.toml``) and fit analysis of ONNX models."""

from etdeploy.targets.fit import (
    FitReport,
    GraphAnalysis,
    LayerRow,
    ResourceCheck,
    analyse_graph,
    fit_analysis,
    fit_onnx_file,
    format_fit_report,
)
from etdeploy.targets.profile import (
    CONFIDENCE_LEVELS,
    TargetProfile,
    default_targets_dir,
    get_profile,
    load_profile,
    load_profiles,
    profile_from_dict,
    profile_to_dict,
)

__all__ = [
    "CONFIDENCE_LEVELS", "FitReport", "GraphAnalysis", "LayerRow", "ResourceCheck", "TargetProfile",
    "analyse_graph", "default_targets_dir", "fit_analysis", "fit_onnx_file", "format_fit_report", "get_profile",
    "load_profile", "load_profiles", "profile_from_dict", "profile_to_dict",
]
