"""Golden vectors of a bundle: real test images, preprocessed as the model expects, and ONNX Runtime's
outputs on them (docs/method.md §10).

``count`` images evenly spaced over the split (so spread over the classes), decoded at the model's
input size and normalised with its mean/std (``(x/255 - mean)/std``, float32, NCHW), are run one by
one (batch 1, as the C entry point) through ONNX Runtime's CPU provider with graph optimisations
off and one thread. The files (little-endian whatever the machine):

- ``inputs.f32``: ``count x C x H x W`` float32 (``count x H x W x C`` for an NHWC model);
  ``expected_logits.f32``: ``count x K`` float32 (the model's outputs: logits, or probabilities for an
  imported model whose output is a softmax); ``expected_labels.i32``: ``count`` int32 (argmax, the
  first on a tie);
- ``expected.csv``: per vector the image file name, its true class, ORT's label and logits (9
  decimals: for reading; the harness compares against the binary files);
- ``tolerance.txt``: the absolute tolerance on logits the harness applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import DataError
from etdeploy.records import Record

DEFAULT_VECTORS = 16
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class GoldenVectors(Record):
    """What ``vectors/`` holds: ``count`` images of ``split`` (file names, true labels), ORT's labels,
    the tolerance, and the accuracy of ORT's labels on them (a sanity figure, not a claim)."""

    count: int
    split: str
    tolerance: float
    images: tuple[str, ...]
    true_labels: tuple[int, ...]
    expected_labels: tuple[int, ...]
    accuracy: float


def pick_samples(dataset: Any, split: str, count: int) -> tuple[Any, ...]:
    """``count`` samples of ``split``, evenly spaced over it (a :class:`DataError` if it is empty)."""
    samples = dataset.split(split)
    if not samples:
        raise DataError(f"the {split} split is empty: no images for golden vectors", getattr(dataset, "root", None))
    return tuple(samples[::max(1, len(samples) // count)][:count])


def ort_logits(model: Any, inputs: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` float32 -> ``(N, K)`` float32, one image per run (batch 1)."""
    from etdeploy.onnx_graph import image_input
    from etdeploy.ort_session import make_session

    session = make_session(model, threads=1, opt_level="disable")
    name, _ = image_input(model)
    out = session.get_outputs()[0].name
    return np.concatenate([np.asarray(session.run([out], {name: inputs[i:i + 1]})[0], np.float32)
                           for i in range(len(inputs))])


def make_vectors(model: Any, dataset: Any, *, split: str, count: int, input_size: int, mean, std,
                 class_names: tuple[str, ...], tolerance: float = DEFAULT_TOLERANCE, layout: str = "NCHW"
                 ) -> tuple[GoldenVectors, dict[str, bytes], np.ndarray]:
    """The golden vectors of ``model`` (checked ONNX proto): the record, ``{file name: bytes}`` and the
    expected outputs ``(count, K)``. ``layout``: the model input's (``NHWC`` inputs are the same
    normalised values, transposed)."""
    from etdeploy.data.images import load_split, normalise
    from etdeploy.fileio import csv_text

    split_images = load_split(pick_samples(dataset, split, count), input_size)
    inputs = normalise(split_images.images, mean, std).numpy()
    inputs = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1) if layout == "NHWC" else inputs, dtype=np.float32)
    logits = ort_logits(model, inputs)
    labels = logits.argmax(axis=1).astype(np.int32)
    truth = np.asarray(split_images.labels, dtype=np.int64)
    names = tuple(Path(p).name for p in split_images.paths)
    rows = [[i, names[i], class_names[int(truth[i])], class_names[int(labels[i])], *map(float, logits[i])]
            for i in range(len(labels))]
    csv = csv_text(["index", "image", "true_class", "expected_class", *(f"logit_{c}" for c in class_names)], rows)
    files = {
        "inputs.f32": inputs.astype("<f4").tobytes(),
        "expected_logits.f32": logits.astype("<f4").tobytes(),
        "expected_labels.i32": labels.astype("<i4").tobytes(),
        "expected.csv": csv.encode(),
        "tolerance.txt": f"{tolerance!r}\n".encode(),
    }
    record = GoldenVectors(count=len(labels), split=split, tolerance=float(tolerance), images=names,
                           true_labels=tuple(int(t) for t in truth), expected_labels=tuple(int(v) for v in labels),
                           accuracy=float(np.mean(labels == truth)))
    return record, files, logits
