"""Deterministic training, evaluation and fine-tuning.

Seeded end to end: weight init (in :func:`etdeploy.models.build_model`), batch order and
augmentation draw from explicit generators, and torch runs with deterministic algorithms, so the
same data, seed and thread count give byte-identical weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from etdeploy.data.images import ImageSplit, normalise
from etdeploy.errors import ConfigError, DataError
from etdeploy.progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. The paper: Adam, learning rate 1e-3, batch 32."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    hflip: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    per_class_accuracy: tuple[float | None, ...]
    confusion: tuple[tuple[int, ...], ...]
    loss: float
    n: int

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_class_accuracy": list(self.per_class_accuracy),
                "confusion": [list(r) for r in self.confusion], "loss": self.loss, "n": self.n}


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "history": self.history, "best_epoch": self.best_epoch,
                "best_val_accuracy": self.best_val_accuracy}


@contextmanager
def deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def predict_logits(model: nn.Module, images: np.ndarray, mean, std, *, batch_size: int = 128) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 -> ``(N, n_classes)`` float32 logits, eval mode, no grad."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size], mean, std)
            outs.append(model(x))
    if not outs:
        return torch.zeros((0, model.classifier[-1].out_features))
    return torch.cat(outs)


def metrics_from_logits(logits: torch.Tensor, labels: np.ndarray, num_classes: int) -> EvalResult:
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    n = int(labels_t.numel())
    if n == 0:
        return EvalResult(float("nan"), tuple([None] * num_classes), tuple((0,) * num_classes for _ in range(num_classes)),
                          float("nan"), 0)
    pred = logits.argmax(dim=1)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (labels_t.numpy(), pred.numpy()), 1)
    per = []
    for k in range(num_classes):
        total = int(conf[k].sum())
        per.append(None if total == 0 else round(float(conf[k, k]) / total, 6))
    loss = float(nn.functional.cross_entropy(logits, labels_t).item())
    return EvalResult(accuracy=round(float((pred == labels_t).float().mean().item()), 6),
                      per_class_accuracy=tuple(per), confusion=tuple(tuple(int(v) for v in row) for row in conf),
                      loss=round(loss, 6), n=n)


def evaluate(model: nn.Module, split: ImageSplit, mean, std, num_classes: int | None = None) -> EvalResult:
    k = num_classes or model.classifier[-1].out_features
    return metrics_from_logits(predict_logits(model, split.images, mean, std), split.labels, k)


def train(model: nn.Module, train_split: ImageSplit, val_split: ImageSplit, config: TrainConfig, *,
          mean, std, progress: bool = True, desc: str = "train",
          after_backward: Callable[[nn.Module], None] | None = None) -> TrainResult:
    """Adam on cross-entropy; keeps the weights of the best validation epoch (ties: earliest).

    ``after_backward(model)`` runs after each backward pass, before the optimiser step (fine-tuning
    uses it to hold masked weights). Returns the model with the best weights loaded.
    """
    if len(train_split) == 0:
        raise DataError("training split is empty")
    num_classes = model.classifier[-1].out_features
    gen = torch.Generator().manual_seed(config.seed)
    result = TrainResult(model=model, config=config)
    best_state = copy.deepcopy(model.state_dict())
    best_acc = -1.0
    if len(val_split):
        best_acc = evaluate(model, val_split, mean, std, num_classes).accuracy
    result.history.append({"epoch": 0, "train_loss": None, "val_accuracy": best_acc if len(val_split) else None})
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = len(train_split)
    with deterministic(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            batches = range(0, n, config.batch_size)
            for start in progress_bar(batches, desc=f"{desc} epoch {epoch}/{config.epochs}", enabled=progress,
                                      total=len(batches), unit="batch"):
                idx = order[start:start + config.batch_size].numpy()
                x = normalise(train_split.images[idx], mean, std)
                if config.hflip:
                    flip = torch.rand(len(idx), generator=gen) < 0.5
                    x[flip] = x[flip].flip(-1)
                y = torch.as_tensor(train_split.labels[idx])
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                if not torch.isfinite(loss):
                    raise DataError(f"training loss became {loss.item()} at epoch {epoch}; lower the learning rate")
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                optimiser.step()
                total += float(loss.item()) * len(idx)
                count += len(idx)
            val = evaluate(model, val_split, mean, std, num_classes) if len(val_split) else None
            record = {"epoch": epoch, "train_loss": round(total / max(count, 1), 6),
                      "val_accuracy": None if val is None else val.accuracy}
            result.history.append(record)
            if val is None or val.accuracy > best_acc:
                best_acc = val.accuracy if val is not None else best_acc
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch = epoch
    model.load_state_dict(best_state)
    model.eval()
    result.best_val_accuracy = best_acc
    return result


# ------------------------------------------------------------------------------------------ use cases
def train_model(arch: str, dataset, *, epochs: int = 10, seed: int = 0, lr: float = 1e-3, batch_size: int = 32,
                input_size: int | None = None, hflip: bool = True, out=None, force: bool = False,
                progress: bool = True, model_kwargs: dict | None = None):
    """Train ``arch`` from scratch on ``dataset`` (best-on-validation) and optionally save it to ``out``.

    Returns ``(model, metrics)``; ``metrics`` holds per-split accuracy, per-class accuracy and the
    confusion matrix. Normalisation mean/std come from the training split and go into the spec.
    """
    from pathlib import Path

    from etdeploy.data.images import channel_mean_std, load_split_images
    from etdeploy.fileio import atomic_write_json, refuse_existing_output
    from etdeploy.models import build_model, count_parameters, save_model

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
    trained_on = dataset.training_record()  # what later commands default to and check against
    metrics = {"arch": model.spec.arch, "parameters": count_parameters(model), "classes": list(dataset.classes),
               "data": trained_on, "training": result.to_dict(), "evaluation": evals,
               "torch_threads": torch.get_num_threads()}
    model.spec = model.spec.replace(mean=mean, std=std, meta={
        **model.spec.meta, "trained_on": trained_on, "training": {**result.to_dict(), "history": result.history},
        "test_accuracy": evals["test"]["accuracy"]})
    if out is not None:
        save_model(model, out, force=force)
        atomic_write_json(Path(out) / "metrics.json", metrics)
    return model, metrics


def evaluate_model(model, dataset, split: str = "test", *, progress: bool = True, images: ImageSplit | None = None,
                   where=None, allow_other_data: bool = False):
    """Accuracy, per-class accuracy, confusion matrix and loss of ``model`` on one split of ``dataset``.

    Refuses a data set whose classes are not the model's, and one whose splits are not those the
    model was trained on unless ``allow_other_data`` (then it warns): a "test" split of other
    splits can hold training images (:func:`etdeploy.data.check_compatible`).
    ``images``: the split already decoded at the model's input size (skips decoding); ``where``: the
    path an incompatibility error names (the model directory).
    """
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images

    check_compatible(model, dataset, where, split=split, allow_other_data=allow_other_data)
    if images is None:
        images = load_split_images(dataset, split, model.spec.input_size, progress=progress)
    result = evaluate(model, images, model.spec.mean, model.spec.std).to_dict()
    result["split"] = split
    result["classes"] = list(dataset.classes)
    return result


def training_summary(model_dir) -> dict:
    """What a model directory says about its training (``metrics.json`` + spec): the train stage's summary.

    Keys: ``arch``, ``parameters``, ``input_size``, ``accuracy`` (per split), ``per_class_test_accuracy``,
    ``confusion_test``, ``history``, ``best_epoch``, ``weights_sha256``; for an imported model also
    ``imported`` (the spec's ``meta["imported"]``: file, SHA-256, route, normalisation, the import's
    original-vs-imported logit check) and ``interface`` (``meta["interface"]``, ONNX imports). A model
    imported without data has no ``metrics.json``: its ``accuracy`` is ``None`` and the per-class and
    confusion entries are empty.
    """
    from pathlib import Path

    from etdeploy.errors import ModelError
    from etdeploy.fileio import read_json_artefact, sha256_file
    from etdeploy.models.serialization import SPEC_FILE, WEIGHTS_FILE

    model_dir = Path(model_dir)
    spec = read_json_artefact(model_dir / SPEC_FILE, what="model spec", format="etdeploy-model", error=ModelError)
    meta = (spec.get("spec") or {}).get("meta") or {}
    origin = {k: meta[k] for k in ("imported", "interface") if k in meta}
    if origin.get("imported") is not None and not (model_dir / "metrics.json").exists():
        from etdeploy.models import count_parameters, load_model

        return {"arch": spec["spec"]["arch"], "parameters": count_parameters(load_model(model_dir)),
                "input_size": spec["spec"]["input_size"], "accuracy": None, "per_class_test_accuracy": [],
                "confusion_test": [], "history": [], "best_epoch": None,
                "weights_sha256": sha256_file(model_dir / WEIGHTS_FILE), **origin}
    metrics = read_json_artefact(model_dir / "metrics.json", what="training metrics (written by etdeploy train)",
                                 error=ModelError)
    try:
        ev = metrics["evaluation"]
        return {"arch": metrics["arch"], "parameters": metrics["parameters"],
                "input_size": spec["spec"]["input_size"],
                "accuracy": {s: ev[s]["accuracy"] for s in ("train", "val", "test")},
                "per_class_test_accuracy": ev["test"]["per_class_accuracy"],
                "confusion_test": ev["test"]["confusion"],
                "history": metrics.get("training", {}).get("history", []),
                "best_epoch": metrics.get("training", {}).get("best_epoch"),
                "weights_sha256": sha256_file(model_dir / WEIGHTS_FILE), **origin}
    except (KeyError, TypeError) as exc:
        raise ModelError(f"training metrics lack {exc}", model_dir / "metrics.json") from exc
