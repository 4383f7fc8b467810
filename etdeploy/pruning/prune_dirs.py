"""The pruning use case: a saved model + its ranking -> a pruned model folder and a typed :class:`PruneRun`.

    from etdeploy.pruning import prune_dirs
    run = prune_dirs("runs/model", "runs/rank", dataset=dataset, schedule="bottom-first", percent=95,
                     finetune_epochs=10, out="runs/p95")
    run.test_accuracy.masked.accuracy, run.parameters.sliced

Every input is validated before anything is computed or written; the folder ``out`` appears whole
or not at all: ``sliced/`` (an ordinary smaller model), ``masked/`` (the masked checkpoint, after
fine-tuning if any), ``record.json`` (replayable), ``params.json`` (parameter report) and
``prune.json`` = ``PruneRun.to_dict()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import PruningError
from etdeploy.records import Record

#: Largest |logit difference| allowed between the masked and the sliced model (float32 reassociation).
PARITY_ATOL = 1e-5
RUN_FILE = "prune.json"


@dataclass(frozen=True)
class SplitAccuracy(Record):
    """Accuracy of a model on one split: overall, per class (None: no image of the class), confusion
    ``(K, K)`` (row = true class), mean cross-entropy and number of images."""

    accuracy: float
    per_class_accuracy: tuple[float | None, ...]
    confusion: tuple[tuple[int, ...], ...]
    loss: float
    n: int


@dataclass(frozen=True)
class PruneAccuracy(Record):
    """Test accuracy of the original, the masked and (when fine-tuned) the fine-tuned masked model."""

    original: SplitAccuracy
    masked: SplitAccuracy
    finetuned: SplitAccuracy | None = None

    @property
    def final(self) -> SplitAccuracy:
        """The accuracy of the model that is kept: fine-tuned if it was, else masked."""
        return self.finetuned if self.finetuned is not None else self.masked


@dataclass(frozen=True)
class EpochRecord(Record):
    """One fine-tuning epoch (epoch 0: before training): mean training loss, validation accuracy."""

    epoch: int
    train_loss: float | None
    val_accuracy: float | None


@dataclass(frozen=True)
class FinetuneRun(Record):
    """Fine-tuning with the masks held: training settings, history, best (kept) epoch."""

    config: dict[str, Any]
    history: tuple[EpochRecord, ...]
    best_epoch: int
    best_val_accuracy: float


@dataclass(frozen=True)
class SliceParity(Record):
    """Largest |logit difference| between the sliced and the masked model on ``n`` images of ``split``."""

    split: str
    n: int
    max_abs_logit_diff: float
    tolerance: float


@dataclass(frozen=True)
class ParameterCounts(Record):
    """Parameters of the whole model before and after slicing."""

    original: int
    sliced: int
    cut: int
    percent_cut: float


@dataclass(frozen=True)
class LayerParameters(Record):
    """One parameter-holding layer before and after slicing (``features.<i>`` / ``classifier.<j>``)."""

    layer: str
    type: str
    before: int
    after: int
    cut: int
    shape_before: str
    shape_after: str


@dataclass(frozen=True)
class PruneRun(Record):
    """What :func:`prune_dirs` did (``prune.json``).

    ``layers``: the masked layers in model order; ``kept``: neurons kept per layer; fingerprints of
    the source and the sliced weights and the ranking's SHA-256 tie the run to its inputs.
    """

    schedule: str
    percent: float
    seed: int
    layers: tuple[str, ...]
    kept: dict[str, int]
    finetune_epochs: int
    ranking_sha256: str
    source_fingerprint: str
    sliced_fingerprint: str
    test_accuracy: PruneAccuracy
    finetune: FinetuneRun | None
    parity: SliceParity
    parameters: ParameterCounts
    layer_parameters: tuple[LayerParameters, ...] = ()

    def kept_text(self) -> str:
        """``"dense1 13, dense2 13"``: neurons kept per layer, in model order."""
        return ", ".join(f"{name} {self.kept[name]}" for name in self.layers)


@dataclass(frozen=True)
class PruneSeries(Record):
    """One schedule at several percents (the pipeline's prune stage): the runs, and which one is exported."""

    export_percent: float
    runs: tuple[PruneRun, ...]

    @property
    def schedule(self) -> str:
        return self.runs[0].schedule if self.runs else ""

    @property
    def layers(self) -> tuple[str, ...]:
        return self.runs[0].layers if self.runs else ()

    @property
    def finetune_epochs(self) -> int:
        return self.runs[0].finetune_epochs if self.runs else 0

    @property
    def export_run(self) -> PruneRun | None:
        """The run at ``export_percent`` (the model that is exported), if there is one."""
        return self.at(self.export_percent)

    def at(self, percent: float) -> PruneRun | None:
        """The run that masked ``percent`` %, if there is one."""
        return next((r for r in self.runs if r.percent == float(percent)), None)


def sliced_parity(masked, sliced, images_uint8, *, batch_size: int = 128) -> float:
    """Largest absolute logit difference between the masked and the sliced model on ``images_uint8``."""
    from etdeploy.training import predict_logits

    spec = masked.spec
    a = predict_logits(masked, images_uint8, spec.mean, spec.std, batch_size=batch_size)
    b = predict_logits(sliced, images_uint8, spec.mean, spec.std, batch_size=batch_size)
    return float((a - b).abs().max().item()) if a.numel() else 0.0


def _accuracy(model, split) -> SplitAccuracy:
    from etdeploy.training import evaluate

    return SplitAccuracy.from_dict(evaluate(model, split, model.spec.mean, model.spec.std).to_dict())


def prune_dirs(model_dir: str | os.PathLike, ranking_dir: str | os.PathLike, *, dataset, schedule: str,
               percent: float, out: str | os.PathLike, layers: Sequence[str] | None = None,
               finetune_epochs: int = 0, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
               force: bool = False, progress: bool = True,
               split_images: Callable[[str, int], Any] | None = None, allow_other_data: bool = False) -> PruneRun:
    """Mask ``percent`` % of each layer by ``schedule``, optionally fine-tune, slice, check and save.

    ``model_dir``: a saved model; ``ranking_dir``: its ranking (:func:`~etdeploy.attribution.rank_dirs`);
    ``dataset``: a :class:`~etdeploy.data.sources.DataSet` with the model's classes (test split:
    accuracy and the sliced-vs-masked check; train/val: fine-tuning); ``layers``: the layers to
    mask (default: every layer the ranking covers); ``finetune_epochs``/``lr``/``batch_size``/
    ``seed``: fine-tuning with the masks held (``seed`` also seeds the ``random`` schedule).
    ``split_images(split, size) -> ImageSplit``: where decoded images come from (default: decode
    from ``dataset``; the pipeline passes its cache). ``allow_other_data``: use splits other than the
    model's training data's (warns instead of refusing; :func:`~etdeploy.data.check_compatible`).
    Returns the :class:`PruneRun` (``prune.json``).
    """
    from etdeploy.attribution.result import load_ranking
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import StagedDir, atomic_write_json, refuse_existing_output
    from etdeploy.models import count_parameters, load_model, save_model, weights_fingerprint
    from etdeploy.pruning.finetune import finetune_masked
    from etdeploy.pruning.masking import plan_percent, set_layer_masks
    from etdeploy.pruning.params import params_report
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.pruning.slicing import slice_model
    from etdeploy.training import TrainConfig

    out = Path(out)
    refuse_existing_output(out, force=force)
    if finetune_epochs < 0:
        raise PruningError(f"fine-tuning epochs must be >= 0, got {finetune_epochs}")
    config = TrainConfig(epochs=finetune_epochs, batch_size=batch_size, lr=lr, seed=seed)
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    rhash = ranking_sha256(ranking_dir)
    plan = plan_percent(model, ranking, schedule, percent, layers, seed=seed)
    check_compatible(model, dataset, model_dir, split="test", allow_other_data=allow_other_data)
    source_fp = weights_fingerprint(model)
    load = split_images or (lambda s, px: load_split_images(dataset, s, px, progress=progress))

    size = model.spec.input_size
    test = load("test", size)
    original = _accuracy(model, test)
    set_layer_masks(model, plan)
    masked = _accuracy(model, test)
    finetune = finetuned = None
    if finetune_epochs > 0:
        result = finetune_masked(model, load("train", size), load("val", size), config, progress=progress)
        finetune = FinetuneRun.from_dict(result.to_dict())
        finetuned = _accuracy(model, test)
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
    n_sliced = count_parameters(sliced)
    run = PruneRun(
        schedule=schedule, percent=float(percent), seed=seed, layers=tuple(plan),
        kept={name: len(idx) for name, idx in plan.items()}, finetune_epochs=finetune_epochs,
        ranking_sha256=rhash, source_fingerprint=source_fp, sliced_fingerprint=record["sliced_fingerprint"],
        test_accuracy=PruneAccuracy(original=original, masked=masked, finetuned=finetuned), finetune=finetune,
        parity=SliceParity(split="test", n=len(test), max_abs_logit_diff=diff, tolerance=PARITY_ATOL),
        parameters=ParameterCounts(original=n_sliced + params["total_cut"], sliced=n_sliced, cut=params["total_cut"],
                                   percent_cut=params["percent_cut"]),
        layer_parameters=tuple(LayerParameters.from_dict(row) for row in params["layers"]))
    with StagedDir(out, force=force) as tmp:
        save_model(model, tmp / "masked")
        save_model(sliced, tmp / "sliced")
        atomic_write_json(tmp / "record.json", record)
        atomic_write_json(tmp / "params.json", params)
        atomic_write_json(tmp / RUN_FILE, run.to_dict())
    return run


def read_prune_run(folder: str | os.PathLike) -> PruneRun:
    """The :class:`PruneRun` a :func:`prune_dirs` folder holds (its ``prune.json``)."""
    from etdeploy.records import read_record

    return read_record(Path(folder) / RUN_FILE, PruneRun, what="pruning result", error=PruningError)


def read_prune_series(folder: str | os.PathLike, *, export_percent: float | None = None) -> PruneSeries:
    """A :class:`PruneSeries` from one :func:`prune_dirs` folder, or a folder of them (one per percent,
    as the pipeline's prune stage writes). ``export_percent``: default the highest percent."""
    folder = Path(folder)
    if (folder / RUN_FILE).is_file():
        runs = [read_prune_run(folder)]
    else:
        subs = sorted(p for p in folder.iterdir() if (p / RUN_FILE).is_file()) if folder.is_dir() else []
        if not subs:
            raise PruningError(f"no {RUN_FILE} in the folder or its sub-folders (give a folder written by "
                               "'etdeploy prune')", folder)
        runs = sorted((read_prune_run(p) for p in subs), key=lambda r: r.percent)
    chosen = runs[-1].percent if export_percent is None else float(export_percent)
    return PruneSeries(export_percent=chosen, runs=tuple(runs))


__all__ = ["PARITY_ATOL", "EpochRecord", "FinetuneRun", "LayerParameters", "ParameterCounts", "PruneAccuracy",
           "PruneRun", "PruneSeries", "SliceParity", "SplitAccuracy", "prune_dirs", "read_prune_run", "read_prune_series",
           "sliced_parity"]
