"""Flight-processor target profiles (shipped in ``etdeploy/targets/profiles/*.toml``) and fit analysis of
ONNX models: graph facts (:mod:`.analysis`), verdict (:mod:`.fit`), text (:mod:`.text`).

Use case: :func:`fit_targets` -> :class:`FitRun` (``etdeploy fit``, the pipeline's fit stage).
"""

from etdeploy.targets.analysis import GraphAnalysis, LayerRow, analyse_graph
from etdeploy.targets.fit import FitReport, ResourceCheck, fit_analysis, fit_onnx_file, fit_report
from etdeploy.targets.profile import (
    CONFIDENCE_LEVELS,
    TargetProfile,
    default_targets_dir,
    get_profile,
    load_profile,
    load_profiles,
    profile_from_dict,
    profile_to_dict,
    resolve_targets,
)
from etdeploy.targets.run import FitRun, ModelFit, TargetVerdict, fit_targets, read_fit
from etdeploy.targets.text import format_fit_report

__all__ = [
    "CONFIDENCE_LEVELS", "FitReport", "FitRun", "GraphAnalysis", "LayerRow", "ModelFit", "ResourceCheck",
    "TargetProfile", "TargetVerdict", "analyse_graph", "default_targets_dir", "fit_analysis", "fit_onnx_file",
    "fit_report", "fit_targets", "format_fit_report", "get_profile", "load_profile", "load_profiles",
    "profile_from_dict", "profile_to_dict", "read_fit", "resolve_targets",
]
