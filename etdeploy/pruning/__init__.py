"""Pruning: masking schedules over a ranking, sweeps, fine-tuning with masks held, exact physical
slicing with a replayable record, and parameter accounting (docs/method.md §3-4).

    from etdeploy.pruning import apply_percent, finetune_masked, slice_model, sweep
    kept = apply_percent(model, ranking, "bottom-first", 95, layers=["dense2"])   # masks, in place
    sliced, record = slice_model(model)                                          # smaller ETModel

Use cases over saved folders (what ``etdeploy prune`` / ``etdeploy sweep`` and the pipeline call):
:func:`prune_dirs` -> :class:`PruneRun` (``prune.json``), :func:`sweep_dirs` -> :class:`SweepRun`
(``sweep.json``).
"""

from etdeploy.pruning.finetune import finetune_masked, frozen_slices, hold_masked_gradients
from etdeploy.pruning.masking import (
                                      apply_count,
                                      apply_percent,
                                      check_ranking,
                                      kept_count,
                                      plan_percent,
                                      set_layer_masks,
)
from etdeploy.pruning.params import TABLE3_PERCENTS, dense_parameters, masked_dense_cut, params_report, params_table
from etdeploy.pruning.prune_dirs import PruneRun, PruneSeries, prune_dirs
from etdeploy.pruning.record import load_record, ranking_sha256, save_record
from etdeploy.pruning.replay import apply_record, validate_record
from etdeploy.pruning.schedules import SCHEDULES, parse_schedule, pruning_order, schedule_names
from etdeploy.pruning.slicing import SLICERS, kept_indices, slice_model, slicer_for
from etdeploy.pruning.sweep import SweepCurve, SweepResult, curve_area, sweep, sweep_csv, sweep_grid, write_sweep
from etdeploy.pruning.sweep_dirs import SweepRun, sweep_dirs

__all__ = [
    "SCHEDULES", "SLICERS", "TABLE3_PERCENTS", "PruneRun", "PruneSeries", "SweepCurve", "SweepResult", "SweepRun",
    "apply_count", "apply_percent", "apply_record", "check_ranking", "curve_area", "dense_parameters",
    "finetune_masked", "frozen_slices", "hold_masked_gradients", "kept_count", "kept_indices", "load_record",
    "masked_dense_cut", "params_report", "params_table", "parse_schedule", "plan_percent", "prune_dirs",
    "pruning_order", "ranking_sha256", "save_record", "schedule_names", "set_layer_masks", "slice_model",
    "slicer_for", "sweep", "sweep_csv", "sweep_dirs", "sweep_grid", "validate_record", "write_sweep",
]
