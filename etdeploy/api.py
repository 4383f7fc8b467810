"""etdeploy's Python API: one import surface, a function for every job the CLI does.

    from etdeploy import api
    ds = api.open_data("bundled")
    model, metrics = api.train_model("alexnet-mini", ds, epochs=8, seed=0, out="runs/m")

Each name is the library use case the matching CLI command and pipeline stage call (they add only
option parsing, printing or serialisation); results are typed (frozen dataclasses with
``to_dict()``) unless noted. Names resolve lazily, so ``import etdeploy.api`` is cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# name -> "module:attribute" (the CLI command that calls it in the comment)
_EXPORTS: dict[str, str] = {
    # data
    "load_dataset": "etdeploy.data:load_dataset",                        # data info
    "check_compatible": "etdeploy.data:check_compatible",
    "open_model_data": "etdeploy.data.compat:open_model_data",           # the data a model was trained on
    "load_split_images": "etdeploy.data.images:load_split_images",
    # models and training
    "build_model": "etdeploy.models:build_model",
    "load_model": "etdeploy.models:load_model",
    "save_model": "etdeploy.models:save_model",
    "import_torch_model": "etdeploy.importing:import_torch_model",        # import --arch --weights
    "import_onnx_model": "etdeploy.importing:import_onnx_model",          # import --onnx
    "train_model": "etdeploy.training:train_model",                      # train
    "evaluate_model": "etdeploy.training:evaluate_model",                # evaluate
    # ranking and pruning
    "rank_dirs": "etdeploy.attribution:rank_dirs",                        # rank
    "sweep_dirs": "etdeploy.pruning:sweep_dirs",                          # sweep
    "prune_dirs": "etdeploy.pruning:prune_dirs",                          # prune
    "params_table": "etdeploy.pruning.params:params_table",               # params
    # export, parity, int8, fit
    "export_dir": "etdeploy.export:export_dir",                          # export
    "read_export": "etdeploy.export:read_export",
    "parity_from_dirs": "etdeploy.export:parity_from_dirs",              # parity
    "read_parity": "etdeploy.export:read_parity",
    "quantize_model": "etdeploy.export:quantize_model",                  # quantize
    "fit_targets": "etdeploy.targets:fit_targets",                        # fit
    "read_fit": "etdeploy.targets:read_fit",
    "load_profiles": "etdeploy.targets:load_profiles",                    # targets list
    "compress_dirs": "etdeploy.compress:compress_dirs",                  # compress
    "package_export": "etdeploy.packaging:package_export",               # package --export
    "package_onnx": "etdeploy.packaging:package_onnx",                   # package --onnx --model
    "read_package": "etdeploy.packaging:read_package",
    # explanations
    "explain_images": "etdeploy.occlusion:explain_images",                # explain
    "NaiveOcclusionExecutor": "etdeploy.occlusion:NaiveOcclusionExecutor",
    "IncrementalOcclusionExecutor": "etdeploy.occlusion:IncrementalOcclusionExecutor",
    "ExplainInput": "etdeploy.occlusion:ExplainInput",
    "read_explain": "etdeploy.occlusion:read_explain",
    "explain_archive": "etdeploy.archive:explain_archive",              # explain --data (--workers)
    "evaluate_archive": "etdeploy.archive:evaluate_archive",            # evaluate --onnx (--workers)
    "select_images": "etdeploy.archive:select_images",
    # V&V evidence (the pipeline's quantize .. robustness stages)
    "evaluate_forms": "etdeploy.assurance.forms:evaluate_forms",
    "robustness_from_dirs": "etdeploy.assurance.robustness:robustness_from_dirs",
    "explanation_stability": "etdeploy.assurance.stability:explanation_stability",
    "wilson_interval": "etdeploy.assurance.stats:wilson_interval",
    "mcnemar_exact": "etdeploy.assurance.stats:mcnemar_exact",
    # pipeline and report
    "load_config": "etdeploy.pipeline:load_config",                      # run
    "run_pipeline": "etdeploy.pipeline:run_pipeline",                    # run, demo
    "record_from_artefacts": "etdeploy.report.artefacts:record_from_artefacts",  # report
    "write_report": "etdeploy.report:write_report",                      # report
}

__all__ = ["data_provenance", "open_data", *sorted(_EXPORTS)]  # noqa: PLE0604 (names resolve in __getattr__)


def open_data(source: str | os.PathLike = "bundled", *, grouping: str = "paper5", recipe: str = "paper",
              seed: int = 0, cap: int | None = None):
    """Open a data set (``"bundled"``, an MSL root or an ImageFolder root); see :func:`etdeploy.data.load_dataset`."""
    from etdeploy.data import load_dataset

    return load_dataset(source, grouping=grouping, recipe=recipe, seed=seed, cap=cap)


def data_provenance(dataset) -> dict[str, Any]:
    """What a model's spec records of its data (:meth:`DataSet.provenance`)."""
    return dataset.provenance()


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'etdeploy.api' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted(__all__)
