"""High-level Python API: the same operations the CLI offers, as functions.

    from etdeploy import api
    ds = api.open_data("bundled")
    model, report = api.train_model("alexnet-mini", ds, epochs=8, seed=0, out="runs/m")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from etdeploy.data import DataSet, load_dataset
from etdeploy.fileio import atomic_write_json, refuse_existing_output


def open_data(source: str | os.PathLike = "bundled", *, grouping: str = "paper5", recipe: str = "paper",
              seed: int = 0, cap: int | None = None) -> DataSet:
    """Open a data set (``"bundled"``, an MSL root or an ImageFolder root); see :func:`load_dataset`."""
    return load_dataset(source, grouping=grouping, recipe=recipe, seed=seed, cap=cap)


def load_split_images(dataset: DataSet, split: str, size: int, *, progress: bool = True):
    """Decode one split of ``dataset`` at ``size`` pixels -> :class:`~etdeploy.data.images.ImageSplit`."""
    from etdeploy.data.images import load_split

    return load_split(dataset.split(split), size, progress=progress, desc=f"decode {split}")


def data_provenance(dataset: DataSet) -> dict[str, Any]:
    d = dataset.describe()
    d.pop("root", None)
    return d


def train_model(arch: str, dataset: DataSet, *, epochs: int = 10, seed: int = 0, lr: float = 1e-3,
                batch_size: int = 32, input_size: int | None = None, hflip: bool = True,
                out: str | os.PathLike | None = None, force: bool = False, progress: bool = True,
                model_kwargs: dict[str, Any] | None = None):
    """Train ``arch`` from scratch on ``dataset`` (best-on-validation) and optionally save it to ``out``.

    Returns ``(model, metrics)``; ``metrics`` holds per-split accuracy, per-class accuracy and the
    confusion matrix. Normalisation mean/std come from the training split and go into the spec.
    """
    import torch

    from etdeploy.data.images import channel_mean_std
    from etdeploy.models import build_model, count_parameters, save_model
    from etdeploy.training import TrainConfig, evaluate, train

    if out is not None:
        refuse_existing_output(out, force=force)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, hflip=hflip)
    model = build_model(arch, len(dataset.classes), input_size=input_size, seed=seed,
                        class_names=dataset.classes, **(model_kwargs or {}))
    size = model.spec.input_size
    splits = {s: load_split_images(dataset, s, size, progress=progress) for s in ("train", "val", "test")}
    mean, std = channel_mean_std(splits["train"].images)
    result = train(model, splits["train"], splits["val"], config, mean=mean, std=std, progress=progress)
    evals = {s: evaluate(model, splits[s], mean, std).to_dict() for s in splits}
    metrics = {"arch": arch, "parameters": count_parameters(model), "classes": list(dataset.classes),
               "data": data_provenance(dataset), "training": result.to_dict(), "evaluation": evals,
               "torch_threads": torch.get_num_threads()}
    model.spec = model.spec.replace(mean=mean, std=std, meta={
        "trained_on": data_provenance(dataset), "training": {**result.to_dict(), "history": result.history},
        "test_accuracy": evals["test"]["accuracy"]})
    if out is not None:
        save_model(model, out, force=force)
        atomic_write_json(Path(out) / "metrics.json", metrics)
    return model, metrics


def evaluate_model(model, dataset: DataSet, split: str = "test", *, progress: bool = True) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion matrix and loss of ``model`` on one split."""
    from etdeploy.training import evaluate

    images = load_split_images(dataset, split, model.spec.input_size, progress=progress)
    result = evaluate(model, images, model.spec.mean, model.spec.std).to_dict()
    result["split"] = split
    result["classes"] = list(dataset.classes)
    return result
