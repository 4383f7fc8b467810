"""Use case: accuracy of an ONNX classifier over a whole split, in one process or on Ray (docs/method.md §14).

    run = evaluate_archive("model.onnx", select_images(ds, "test"), mean=m, std=s, input_size=64, workers=2)
    run.accuracy, run.confusion

The images are cut into batches of ``batch_size`` in selection order (the same batches for any number
of workers, so the logits are the same bytes); each batch is one task for a worker holding one ONNX
Runtime session (:func:`etdeploy.ort_session.make_session`, ``threads`` intra-op threads, all graph
optimisations). Metrics are those of ``etdeploy evaluate`` on the PyTorch model
(:func:`etdeploy.training.metrics_from_logits`). With ``out``, ``predictions.csv`` (one row per image:
path, SHA-256, true and predicted class, probability) and ``evaluation.json`` are written there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.archive.images import ArchiveImage
from etdeploy.occlusion.explain import OnnxFile
from etdeploy.records import Record

__all__ = ["ArchiveEvaluation", "EvaluateWorker", "evaluate_archive"]

EVALUATION_FORMAT = "etdeploy-archive-evaluation"
PREDICTIONS_HEADER = ["image", "path", "sha256", "true_class", "true_name", "predicted", "predicted_name",
                      "probability"]


class EvaluateWorker:
    """Holds one ONNX Runtime session; ``worker({"files": [...]})`` -> ``{"logits": (n, k) float32}``."""

    def __init__(self, onnx_path: str, mean: Sequence[float], std: Sequence[float], input_size: int, threads: int):
        from etdeploy.ort_session import make_session

        self.session = make_session(onnx_path, threads=threads, opt_level="all")
        self.input = self.session.get_inputs()[0].name
        self.mean, self.std, self.size = tuple(mean), tuple(std), int(input_size)

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        from etdeploy.data.images import decode_image, normalise

        raw = np.stack([decode_image(f, self.size) for f in task["files"]])
        x = normalise(raw, self.mean, self.std).numpy()
        return {"logits": np.asarray(self.session.run(None, {self.input: x})[0], dtype=np.float32)}


@dataclass(frozen=True)
class ArchiveEvaluation(Record):
    """Result of :func:`evaluate_archive` (``to_dict()`` is ``evaluation.json``): the metrics of ``etdeploy
    evaluate``, the model file, the data, the backend and ``predictions_sha256`` (of ``predictions.csv``'s text)."""

    onnx: OnnxFile
    data: dict[str, Any]
    classes: tuple[str, ...]
    n: int
    accuracy: float
    per_class_accuracy: tuple[float | None, ...]
    confusion: tuple[tuple[int, ...], ...]
    loss: float
    batch_size: int
    threads: int
    backend: dict[str, Any]
    predictions_sha256: str
    format: str = EVALUATION_FORMAT
    format_version: int = 1


def evaluate_archive(onnx_path: str | os.PathLike, images: Sequence[ArchiveImage], *, mean: Sequence[float],
                     std: Sequence[float], input_size: int, class_names: Sequence[str], batch_size: int = 32,
                     workers: int = 1, address: str | None = None, threads: int = 1,
                     out: str | os.PathLike | None = None, data: dict[str, Any] | None = None,
                     progress: bool = True) -> ArchiveEvaluation:
    """Accuracy, per-class accuracy, confusion and loss of the ONNX classifier on ``images``.

    ``workers``/``address``/``threads``: :func:`etdeploy.archive.backend.open_backend`. ``out``: a new
    folder for ``predictions.csv`` and ``evaluation.json`` (None: nothing written).
    """
    import torch

    from etdeploy.archive.backend import open_backend, require_backend, run_tasks
    from etdeploy.errors import DataError
    from etdeploy.fileio import (
        StagedDir,
        atomic_write_json,
        atomic_write_text,
        csv_text,
        refuse_existing_output,
        sha256_bytes,
        sha256_file,
    )
    from etdeploy.progress import progress_bar
    from etdeploy.training import metrics_from_logits

    if not images:
        raise DataError("no images to evaluate")
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if out is not None:
        refuse_existing_output(out)
    require_backend(workers, address)
    tasks = [{"files": [str(i.file) for i in images[start:start + batch_size]]}
             for start in range(0, len(images), batch_size)]
    parts: dict[int, np.ndarray] = {}
    with open_backend(workers, address=address, threads=threads) as backend:
        kwargs = {"onnx_path": str(Path(onnx_path).resolve()), "mean": list(mean), "std": list(std),
                  "input_size": int(input_size)}
        for index, result in progress_bar(run_tasks(EvaluateWorker, kwargs, tasks, backend), desc="evaluate",
                                          total=len(tasks), enabled=progress, unit="batch"):
            parts[index] = result["logits"]
    logits = np.concatenate([parts[i] for i in range(len(tasks))])
    k = logits.shape[1]
    if len(class_names) != k:
        raise DataError(f"{len(class_names)} class names for a model with {k} outputs", onnx_path)
    labels = np.asarray([i.label for i in images], dtype=np.int64)
    metrics = metrics_from_logits(torch.as_tensor(logits), labels, k)
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1).numpy()
    predicted = logits.argmax(axis=1)
    rows = [[n, i.path, i.sha256, i.label, class_names[i.label], int(predicted[n]), class_names[int(predicted[n])],
             float(probabilities[n, predicted[n]])] for n, i in enumerate(images)]
    text = csv_text(PREDICTIONS_HEADER, rows)
    run = ArchiveEvaluation(
        onnx=OnnxFile(file=Path(onnx_path).name, sha256=sha256_file(onnx_path)), data=dict(data or {}),
        classes=tuple(class_names), n=metrics.n, accuracy=metrics.accuracy,
        per_class_accuracy=metrics.per_class_accuracy, confusion=metrics.confusion, loss=metrics.loss,
        batch_size=int(batch_size), threads=int(threads), backend=backend.to_dict(),
        predictions_sha256=sha256_bytes(text.encode("utf-8")))
    if out is not None:
        with StagedDir(Path(out)) as tmp:
            atomic_write_text(tmp / "predictions.csv", text)
            atomic_write_json(tmp / "evaluation.json", run.to_dict())
    return run
