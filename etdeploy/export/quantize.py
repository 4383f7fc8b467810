"""Static int8 quantisation of an exported model with onnxruntime.quantization (optional stage).

QDQ format, per-channel symmetric int8 weights, uint8 activations, MinMax calibration on images
the caller provides (the training split, normalised exactly as for inference). The quantised
model is not expected to match the fp32 one within the parity tolerance: :func:`compare_int8`
reports the accuracy of both, the top-1 agreement and the logit deltas instead.

Use case: :func:`quantize_model` (``etdeploy quantize``) picks the calibration images from the
training split (:func:`calibration_samples`), quantises, compares on one split and returns a
:class:`QuantizeRun`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import DataError, ExportError, OutputExistsError
from etdeploy.records import Record

DEFAULT_CALIBRATION_IMAGES = 128


@dataclass(frozen=True)
class Int8Comparison(Record):
    """fp32 vs int8 on ``n`` images: accuracy of both, top-1 agreement, |delta logit|, file sizes."""

    n: int
    accuracy_fp32: float
    accuracy_int8: float
    top1_agreement: float
    max_abs_logit_delta: float
    mean_abs_logit_delta: float
    bytes_fp32: int
    bytes_int8: int
    compared: str | None = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record; ``compared`` (the output kind when it is not logits) only when set."""
        out = super().to_dict()
        if self.compared is None:
            del out["compared"]
        return out


@dataclass(frozen=True)
class QuantizeRun(Int8Comparison):
    """What ``etdeploy quantize`` reports: the comparison on ``split``, the number of training images
    calibrated on, and the int8 file written (``int8``, its path as given)."""

    split: str
    calibration_images: int
    int8: str


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration_uint8: np.ndarray,
                  mean, std, *, batch_size: int = 16, per_channel: bool = True, force: bool = False,
                  interface: Any = None) -> Path:
    """Write a QDQ int8 copy of ``onnx_path`` to ``out_path`` (atomically; refuses to overwrite).

    ``calibration_uint8``: ``(N, 3, S, S)`` uint8 images (N >= 1), normalised with ``mean``/``std``
    (the model's); ``interface``: the model's :class:`~etdeploy.export.interface.Interface` when the
    file is called like an imported original (the batches are converted to its input).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from etdeploy.data.images import normalise
    from etdeploy.onnx_safety import load_onnx_checked

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise OutputExistsError("refusing to overwrite an existing file", out_path)
    calibration_uint8 = np.asarray(calibration_uint8)
    if calibration_uint8.ndim != 4 or calibration_uint8.dtype != np.uint8 or len(calibration_uint8) == 0:
        raise ExportError(f"calibration images must be uint8 (N>0, 3, S, S), got {calibration_uint8.dtype} "
                          f"{calibration_uint8.shape}")
    from etdeploy.onnx_graph import image_input

    input_name = image_input(load_onnx_checked(onnx_path))[0]
    batches = [_model_input(normalise(calibration_uint8[i:i + batch_size], mean, std).numpy(), interface)
               for i in range(0, len(calibration_uint8), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        tmp = tmp_dir / out_path.name
        with _quiet_root_logger():
            quantize_static(str(onnx_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        load_onnx_checked(tmp)
        os.replace(tmp, out_path)
    except OutputExistsError:
        raise
    except Exception as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"int8 quantisation failed: {type(exc).__name__}: {exc}", onnx_path) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_path


def _model_input(x: np.ndarray, interface: Any) -> np.ndarray:
    """The normalised NCHW batch as the ONNX file takes it (an interface's layout and scaling)."""
    x = np.ascontiguousarray(x, np.float32)
    return x if interface is None else interface.deployable_input(x)


def compare_int8(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, images_uint8: np.ndarray,
                 labels: np.ndarray, mean, std, *, batch_size: int = 32, interface: Any = None) -> Int8Comparison:
    """Accuracy of both models, top-1 agreement and |delta logit| statistics (ORT CPU, no optimisation).

    With ``interface`` (a file called like an imported original) the outputs compared are the interface's
    kind (``compared``: probabilities for a softmax output), not logits."""
    from etdeploy.data.images import normalise
    from etdeploy.ort_session import make_session

    sessions = [make_session(Path(fp32_path)), make_session(Path(int8_path))]
    outs: list[list[np.ndarray]] = [[], []]
    for i in range(0, len(images_uint8), batch_size):
        x = _model_input(normalise(images_uint8[i:i + batch_size], mean, std).numpy(), interface)
        for k, s in enumerate(sessions):
            outs[k].append(s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: x})[0])
    a, b = (np.concatenate(o) for o in outs)
    labels = np.asarray(labels)
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return Int8Comparison(
        n=len(labels), accuracy_fp32=float(np.mean(a.argmax(1) == labels)),
        accuracy_int8=float(np.mean(b.argmax(1) == labels)), top1_agreement=float(np.mean(a.argmax(1) == b.argmax(1))),
        max_abs_logit_delta=float(delta.max()), mean_abs_logit_delta=float(delta.mean()),
        bytes_fp32=Path(fp32_path).stat().st_size, bytes_int8=Path(int8_path).stat().st_size,
        compared=None if interface is None or interface.output == "logits" else interface.output)


def calibration_samples(dataset: Any, count: int) -> tuple[Any, ...]:
    """``count`` samples of the training split, evenly spaced over it (so spread over the classes)."""
    if count < 1:
        raise DataError(f"the number of calibration images must be >= 1, got {count}")
    train = dataset.split("train")
    if not train:
        raise DataError("the training split is empty: no images to calibrate int8 on", getattr(dataset, "root", None))
    return tuple(train[::max(1, len(train) // count)][:count])


def _file_interface(onnx_path, spec) -> Any:
    """The model's interface when ``onnx_path`` takes its original's input (its export does), else ``None``."""
    from etdeploy.export.interface import interface_of
    from etdeploy.onnx_graph import image_input
    from etdeploy.onnx_safety import load_onnx_checked

    interface = interface_of(spec)
    if interface is None:
        return None
    return interface if image_input(load_onnx_checked(onnx_path))[0] == interface.input_name else None


def quantize_model(onnx_path: str | os.PathLike, model_dir: str | os.PathLike, *, dataset: Any,
                   out: str | os.PathLike, calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                   split: str = "test", force: bool = False, progress: bool = False,
                   allow_other_data: bool = False) -> QuantizeRun:
    """Static int8 (QDQ) copy of the fp32 ``onnx_path`` at ``out``, and how it compares with fp32 on ``split``.

    ``model_dir``: the model the ONNX file was exported from (input size, normalisation, classes);
    ``dataset`` must have its classes and, unless ``allow_other_data``, the model's training splits
    (:func:`~etdeploy.data.check_compatible`). Calibration: :func:`calibration_samples` of the training split.
    The ONNX file, the model and the output path are checked before any image is decoded; an existing
    ``out`` is refused unless ``force``.
    """
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split, load_split_images
    from etdeploy.models import load_model
    from etdeploy.onnx_safety import load_onnx_checked

    load_onnx_checked(onnx_path)  # fail fast, before the data set is read
    spec = load_model(model_dir).spec
    out = Path(out)
    if out.exists() and not force:
        raise OutputExistsError("refusing to overwrite an existing file; pass --force", out)
    check_compatible(spec, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    picks = calibration_samples(dataset, calibration_images)
    calibration = load_split(picks, spec.input_size, progress=progress, desc="decode calibration").images
    interface = _file_interface(onnx_path, spec)
    written = quantize_int8(onnx_path, out, calibration, spec.mean, spec.std, force=force, interface=interface)
    evaluation = load_split_images(dataset, split, spec.input_size, progress=progress)
    comparison = compare_int8(onnx_path, written, evaluation.images, evaluation.labels, spec.mean, spec.std,
                              interface=interface)
    return QuantizeRun(**{f.name: getattr(comparison, f.name) for f in fields(Int8Comparison)}, split=split,
                       calibration_images=len(calibration), int8=str(written))
