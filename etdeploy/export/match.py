"""Is this ONNX file the export of that model? (``etdeploy explain --onnx F --model D``.)

Two ways, the first that applies (docs/method.md §5):

- **fingerprint**: ``F`` is ``model.onnx`` or ``model.sim.onnx`` of a folder ``etdeploy export`` wrote
  (``export.json`` beside it, whose SHA-256 of ``F`` must hold): the manifest's weights fingerprint must
  be the model's (:func:`etdeploy.models.weights_fingerprint`);
- **outputs**: any other file (the user's own export, an import's ``original.onnx``) is run on
  :data:`CHECK_IMAGES` seeded random images beside the model: called through the model's interface
  when its input is laid out that way (NHWC, input scaling), else as the plain NCHW contract; its logits
  (the tensor entering a final Softmax/LogSoftmax when the interface says so) must match the model's
  within :data:`CHECK_TOL`.

A mismatch is a :class:`~etdeploy.errors.ModelError` naming both files (exit 2). The result carries the
normalisation of the file's input (the deployable's, :meth:`Interface.normalisation`), which explain
must use for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etdeploy.errors import ModelError, OnnxModelError
from etdeploy.records import Record

CHECK_IMAGES = 2
CHECK_TOL = 1e-4


@dataclass(frozen=True)
class ExportMatch(Record):
    """How ``onnx`` was matched to ``model`` (``fingerprint`` or ``outputs``; ``max_abs_delta`` for the
    latter), and the per-channel ``mean``/``std`` of the file's input (uint8 / 255 normalised)."""

    onnx: str
    model: str
    method: str
    max_abs_delta: float | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _static_dims(proto) -> list:
    from etdeploy.onnx_graph import image_input

    return list(image_input(proto)[1])


def _layout_fits(dims: list, interface, size: int) -> bool:
    want = [size, size, 3] if interface is not None and interface.layout == "NHWC" else [3, size, size]
    return len(dims) == 4 and all(not isinstance(d, int) or d <= 0 or d == w for d, w in zip(dims[1:], want))


def check_export_of(onnx_path: str | os.PathLike, model_dir: str | os.PathLike) -> ExportMatch:
    """:class:`ExportMatch` when ``onnx_path`` is an export of the model in ``model_dir`` (module doc),
    else :class:`ModelError` naming both."""
    from etdeploy.export.interface import interface_of
    from etdeploy.export.manifest import MANIFEST_FILE, ONNX_FILE, SIM_FILE, read_export
    from etdeploy.models import load_model, weights_fingerprint

    onnx_path = Path(onnx_path)
    model = load_model(model_dir)
    spec = model.spec
    interface = interface_of(spec)
    manifest = onnx_path.parent / MANIFEST_FILE
    if onnx_path.name in (ONNX_FILE, SIM_FILE) and manifest.is_file():
        export = read_export(onnx_path.parent)
        if export.model.weights_fingerprint != weights_fingerprint(model):
            raise ModelError(f"{onnx_path} is not an export of the model {model_dir}: its {MANIFEST_FILE} records "
                             f"the weights fingerprint {export.model.weights_fingerprint[:16]}..., the model's is "
                             f"{weights_fingerprint(model)[:16]}...")
        mean, std = (spec.mean, spec.std) if export.interface is None else \
            export.interface.normalisation(spec.mean, spec.std)
        return ExportMatch(str(onnx_path), str(model_dir), "fingerprint", None, tuple(mean), tuple(std))
    return _match_outputs(onnx_path, model, model_dir, interface)


def _match_outputs(onnx_path: Path, model, model_dir, interface) -> ExportMatch:
    import torch

    from etdeploy.data.images import normalise
    from etdeploy.export.interface import logits_tap
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session

    spec = model.spec
    proto = load_onnx_checked(onnx_path)
    dims = _static_dims(proto)
    called = interface if interface is not None and _layout_fits(dims, interface, spec.input_size) else None
    if not _layout_fits(dims, called, spec.input_size):
        raise ModelError(f"{onnx_path} is not an export of the model {model_dir}: its input {dims} does not take "
                         f"the model's {spec.input_size}x{spec.input_size} RGB images")
    tap = logits_tap(proto, called)
    out = proto.graph.output[0].name
    if tap is None:
        tap = out  # a softmax that cannot be read before it: compare the outputs themselves
    elif tap != out:
        import onnx

        proto.graph.output.append(onnx.helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    images = np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES, 3, spec.input_size, spec.input_size),
                                               dtype=np.uint8)
    x = np.ascontiguousarray(normalise(images, spec.mean, spec.std).numpy(), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    if tap == out and called is not None:
        want = called.output_of(want)
    session = make_session(proto)
    feed = x if called is None else called.deployable_input(x)
    try:
        got = np.asarray(session.run([tap], {session.get_inputs()[0].name: feed})[0], dtype=np.float32)
    except OnnxModelError as exc:  # ORT refuses the input: another model
        raise ModelError(f"{onnx_path} is not an export of the model {model_dir}: it does not run on the model's "
                         f"input ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    delta = float(np.max(np.abs(got.astype(np.float64) - want))) if got.shape == want.shape else float("inf")
    if not delta <= CHECK_TOL:
        shown = "outputs of another shape" if got.shape != want.shape else f"logits that differ by {delta:.3g}"
        raise ModelError(f"{onnx_path} is not an export of the model {model_dir}: on {CHECK_IMAGES} seeded random "
                         f"images it gives {shown} (tolerance {CHECK_TOL:g}); no export.json beside it records "
                         "which model it came from")
    mean, std = (spec.mean, spec.std) if called is None else called.normalisation(spec.mean, spec.std)
    return ExportMatch(str(onnx_path), str(model_dir), "outputs", delta, tuple(mean), tuple(std))
