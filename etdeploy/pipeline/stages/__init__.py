"""The pipeline's stages, in order, with the stages each one reads (its inputs).

Each stage is a thin adapter: call one library use case, write its artefacts into the stage folder,
return its typed result serialised. The report stage renders the run record assembled from them.
"""

from __future__ import annotations

from etdeploy.pipeline.context import Stage
from etdeploy.pipeline.stages.compress import describe_compress, run_compress_stage
from etdeploy.pipeline.stages.data import describe_data, run_data
from etdeploy.pipeline.stages.evaluate import describe_evaluate, run_evaluate_stage
from etdeploy.pipeline.stages.explain import describe_explain, run_explain_stage
from etdeploy.pipeline.stages.export import describe_export, run_export_stage
from etdeploy.pipeline.stages.fit import describe_fit, run_fit_stage
from etdeploy.pipeline.stages.package import describe_package, run_package_stage
from etdeploy.pipeline.stages.parity import describe_parity, run_parity_stage
from etdeploy.pipeline.stages.prune import describe_prune, run_prune_stage
from etdeploy.pipeline.stages.quantize import describe_quantize, run_quantize_stage
from etdeploy.pipeline.stages.rank import describe_rank, run_rank
from etdeploy.pipeline.stages.report import describe_report, run_report
from etdeploy.pipeline.stages.robustness import describe_robustness, run_robustness_stage
from etdeploy.pipeline.stages.stability import describe_stability, run_stability_stage
from etdeploy.pipeline.stages.sweep import describe_sweep, run_sweep_stage
from etdeploy.pipeline.stages.train import describe_train, run_train

STAGES: list[Stage] = [
    Stage("data", run_data, describe_data),
    Stage("train", run_train, describe_train, inputs=("data",)),
    Stage("rank", run_rank, describe_rank, inputs=("data", "train")),
    Stage("sweep", run_sweep_stage, describe_sweep, inputs=("data", "train", "rank")),
    Stage("prune", run_prune_stage, describe_prune, inputs=("data", "train", "rank")),
    Stage("compress", run_compress_stage, describe_compress, inputs=("data", "train", "rank")),
    Stage("export", run_export_stage, describe_export, inputs=("train", "prune", "compress")),
    Stage("parity", run_parity_stage, describe_parity, inputs=("data", "prune", "export")),
    Stage("quantize", run_quantize_stage, describe_quantize, inputs=("data", "prune", "export")),
    Stage("evaluate", run_evaluate_stage, describe_evaluate, inputs=("data", "train", "prune", "export", "quantize")),
    Stage("explain", run_explain_stage, describe_explain, inputs=("data", "prune", "export")),
    Stage("stability", run_stability_stage, describe_stability, inputs=("data", "train", "prune", "export", "explain")),
    Stage("robustness", run_robustness_stage, describe_robustness, inputs=("data", "train", "prune", "quantize")),
    Stage("fit", run_fit_stage, describe_fit, inputs=("export",)),
    Stage("package", run_package_stage, describe_package, inputs=("data", "export")),
    Stage("report", run_report, describe_report,
          inputs=("data", "train", "rank", "sweep", "prune", "compress", "export", "parity", "quantize", "evaluate", "explain",
                  "stability", "robustness", "fit", "package")),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


__all__ = ["STAGES", "run_explain_stage", "stage_names"]
