"""End-to-end pruning and sweep runs (what ``etdeploy prune`` / ``etdeploy sweep`` call).

Every input is validated before anything is computed or written; outputs go into a fresh folder,
written atomically (nothing appears on error).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etdeploy.errors import DataError, PruningError
from etdeploy.fileio import refuse_existing_output

PARITY_ATOL = 1e-5


def _check_out(out: Path, force: bool) -> None:
    refuse_existing_output(out, force=force)


def _check_classes(model, dataset, where) -> None:
    if tuple(dataset.classes) != tuple(model.spec.class_names):
        raise DataError(f"data classes {list(dataset.classes)} differ from the model's "
                        f"{list(model.spec.class_names)}", where)


def sliced_parity(masked, sliced, images_uint8, *, batch_size: int = 128) -> float:
    """Largest absolute logit difference between the masked and the sliced model on ``images_uint8``."""
    from etdeploy.training import predict_logits

    spec = masked.spec
    a = predict_logits(masked, images_uint8, spec.mean, spec.std, batch_size=batch_size)
    b = predict_logits(sliced, images_uint8, spec.mean, spec.std, batch_size=batch_size)
    return float((a - b).abs().max().item()) if a.numel() else 0.0


def prune(model_dir: str | os.PathLike, ranking_dir: str | os.PathLike, *, schedule: str, percent: float,
          dataset, out: str | os.PathLike, layers: Sequence[str] | None = None, finetune_epochs: int = 0,
          lr: float = 1e-3, batch_size: int = 32, seed: int = 0, force: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Mask ``percent`` % of each layer by ``schedule``, optionally fine-tune, slice, check and save.

    Writes into ``out``: ``sliced/`` (ordinary smaller model), ``masked/`` (masked checkpoint, after
    fine-tuning if any), ``record.json`` (replayable), ``params.json`` (parameter report) and
    ``prune.json`` (settings, test accuracy original / masked / fine-tuned, parity). Returns prune.json.
    """
    from etdeploy.api import load_split_images
    from etdeploy.attribution.result import load_ranking
    from etdeploy.fileio import StagedDir, atomic_write_json
    from etdeploy.models import count_parameters, load_model, save_model, weights_fingerprint
    from etdeploy.pruning.finetune import finetune_masked
    from etdeploy.pruning.masking import plan_percent, set_layer_masks
    from etdeploy.pruning.params import params_report
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.pruning.slicing import slice_model
    from etdeploy.training import TrainConfig, evaluate

    out = Path(out)
    _check_out(out, force)
    if finetune_epochs < 0:
        raise PruningError(f"finetune epochs must be >= 0, got {finetune_epochs}")
    config = TrainConfig(epochs=finetune_epochs, batch_size=batch_size, lr=lr, seed=seed)
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    rhash = ranking_sha256(ranking_dir)
    plan = plan_percent(model, ranking, schedule, percent, layers, seed=seed)
    _check_classes(model, dataset, model_dir)
    source_fp = weights_fingerprint(model)

    size = model.spec.input_size
    test = load_split_images(dataset, "test", size, progress=progress)
    acc = {"original": evaluate(model, test, model.spec.mean, model.spec.std).to_dict()}
    set_layer_masks(model, plan)
    acc["masked"] = evaluate(model, test, model.spec.mean, model.spec.std).to_dict()
    history = None
    if finetune_epochs > 0:
        train_split = load_split_images(dataset, "train", size, progress=progress)
        val_split = load_split_images(dataset, "val", size, progress=progress)
        result = finetune_masked(model, train_split, val_split, config, progress=progress)
        history = result.to_dict()
        acc["finetuned"] = evaluate(model, test, model.spec.mean, model.spec.std).to_dict()
    context = {"schedule": schedule, "percent": float(percent), "seed": seed, "layers": list(plan),
               "ranking_sha256": rhash, "ranking_model_fingerprint": ranking.model_fingerprint,
               "original_fingerprint": source_fp, "finetune_epochs": finetune_epochs}
    model.spec = model.spec.replace(meta={**model.spec.meta, "masked": {
        k: context[k] for k in ("schedule", "percent", "seed", "layers", "ranking_sha256", "finetune_epochs")}})
    sliced, record = slice_model(model, context=context)
    diff = sliced_parity(model, sliced, test.images)
    if not diff <= PARITY_ATOL:
        raise PruningError(f"sliced and masked logits differ by {diff:.3g} > {PARITY_ATOL} (internal error)")
    params = params_report(model, sliced, record=record)
    summary = {"schedule": schedule, "percent": float(percent), "seed": seed, "layers": list(plan),
               "kept": {name: len(idx) for name, idx in plan.items()},
               "ranking_sha256": rhash, "source_fingerprint": source_fp,
               "sliced_fingerprint": record["sliced_fingerprint"], "test_accuracy": acc,
               "finetune": None if history is None else {"config": history["config"], "history": history["history"],
                                                         "best_epoch": history["best_epoch"],
                                                         "best_val_accuracy": history["best_val_accuracy"]},
               "parity": {"split": "test", "n": len(test), "max_abs_logit_diff": diff, "tolerance": PARITY_ATOL},
               "parameters": {"original": count_parameters(sliced) + params["total_cut"],
                              "sliced": count_parameters(sliced), "cut": params["total_cut"],
                              "percent_cut": params["percent_cut"]}}
    with StagedDir(out, force=force) as tmp:
        save_model(model, tmp / "masked")
        save_model(sliced, tmp / "sliced")
        atomic_write_json(tmp / "record.json", record)
        atomic_write_json(tmp / "params.json", params)
        atomic_write_json(tmp / "prune.json", summary)
    return summary


def run_sweep(model_dir: str | os.PathLike, ranking_dir: str | os.PathLike, *, schedules: Sequence[str],
              layer: str, split: str, dataset, out: str | os.PathLike, counts: Sequence[int] | None = None,
              percents: Sequence[float] | None = None, points: int = 21, seed: int = 0, force: bool = False,
              progress: bool = True):
    """Run :func:`etdeploy.pruning.sweep.sweep` from saved artefacts and write ``sweep.csv`` + ``sweep.json``."""
    from etdeploy.api import load_split_images
    from etdeploy.attribution.result import load_ranking
    from etdeploy.models import load_model
    from etdeploy.pruning.masking import check_ranking, resolve_layers
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.pruning.schedules import validate_schedule
    from etdeploy.pruning.sweep import sweep, sweep_grid, write_sweep

    out = Path(out)
    _check_out(out, force)
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    rhash = ranking_sha256(ranking_dir)
    for s in schedules:
        validate_schedule(s, ranking.classes, len(ranking.classes))
    names = resolve_layers(model, ranking, [layer])
    check_ranking(model, ranking, names)
    sweep_grid(ranking.layer(layer).width, counts=counts, percents=percents, points=points)
    _check_classes(model, dataset, model_dir)
    data = load_split_images(dataset, split, model.spec.input_size, progress=progress)
    result = sweep(model, ranking, data.images, data.labels, layer=layer, schedules=schedules, counts=counts,
                   percents=percents, points=points, seed=seed, progress=progress)
    write_sweep(result, out, force=force, extra={"split": split, "ranking_sha256": rhash})
    return result
