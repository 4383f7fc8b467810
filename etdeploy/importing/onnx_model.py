"""Use case of ``etdeploy import --onnx FILE``: an ONNX image classifier (Keras 3 / tf2onnx / torch.onnx /
others, opset 11+) becomes an ordinary etdeploy model directory.

Steps (nothing is written unless all succeed; the output folder appears atomically):

1. the normalisation and class names are checked (as for every import route,
   :mod:`etdeploy.importing.common`); the file is loaded with the safety checks of
   :func:`etdeploy.onnx_safety.load_onnx_checked` (size, external data, IR version, ``onnx.checker``);
2. the graph is simplified with onnxsim, its batch fixed to 1 (so shape arithmetic and explicit
   ``Pad`` amounts fold into constants), and converted op by op into plain torch modules
   (:mod:`etdeploy.importing.onnx_convert`): an unsupported op stops the import naming the op, the
   node and the file; a leading per-channel input affine (Keras ``Rescaling``/``Normalization``) is
   folded out of the graph into the normalisation: with the user's ``x_orig = (u/255 - mean)/std``
   and ``x = x_orig * scale + bias``, the imported model is fed ``x = (u/255 - mean')/std'`` with
   ``mean' = mean - bias * std / scale`` and ``std' = std / scale`` (``scale > 0``);
3. the model is saved, read back from disk and its logits are compared with the *original* file's
   on ONNX Runtime, on the data set's first test images (or seeded random images): the original is
   fed its own input (``x_orig``, NHWC where it takes NHWC) and its logits are read where they are
   computed (a graph ending in ``Softmax``/``LogSoftmax`` gets the input of that node as an extra
   output, so nothing is inverted); accepted only within ``tol`` (1e-5);
4. the model directory gets ``spec.json`` + ``model.safetensors``, a byte-identical copy of the user's
   file as ``original.onnx`` and, with a data set, ``metrics.json``.

The spec records ``meta["imported"]`` (:class:`~etdeploy.importing.common.ImportOrigin`, route
``onnx``, with the SHA-256 of the original file) and ``meta["interface"]``
(:class:`etdeploy.export.interface.Interface`: layout, input and output names, output kind, the folded
input affine, opset): how the original is called, so its exports and parity keep the user's interface.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import ContractError, EtdeployError, ModelError, OnnxModelError, UnsupportedOpError
from etdeploy.export.interface import InputAffine, Interface
from etdeploy.importing.common import (
    DEFAULT_TOL,
    ImportRun,
    check_images,
    check_request,
    run_fields,
    save_checked_import,
)
from etdeploy.importing.normalisation import Normalisation

ROUTE = "onnx"
ORIGINAL_FILE = "original.onnx"
MIN_OPSET = 11
#: Ops a final Softmax may be separated from the graph output by (values unchanged).
_PASS_TO_OUTPUT = ("Identity", "Cast")


@dataclass(frozen=True)
class OnnxImportRun(ImportRun):
    """:class:`ImportRun` of an ONNX import, plus the original's interface and the ops the graph had
    after simplification (op type -> count)."""

    interface: Interface | None = None
    ops: dict[str, int] | None = None


def _opset(proto) -> int:
    versions = [int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else 0


def _io(proto, path: Path) -> tuple[str, str, str, int]:
    """``(input name, output name, layout, size)`` of a one-image-input, one-output classifier graph."""
    from etdeploy.onnx_graph import data_inputs

    inputs = data_inputs(proto)
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise OnnxModelError(f"the graph has {len(inputs)} inputs and {len(proto.graph.output)} outputs; an image "
                             "classifier has one of each", path)
    value = inputs[0]
    tensor = value.type.tensor_type
    if tensor.elem_type != 1:
        raise OnnxModelError(f"the input {value.name!r} is not float32 (element type {tensor.elem_type}); export the "
                             "model with a float32 image input", path)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4:
        raise OnnxModelError(f"the input {value.name!r} has shape {dims}; expected an image batch (4 axes)", path)
    if dims[0] not in (None, 1):
        raise OnnxModelError(f"the input {value.name!r} has a fixed batch of {dims[0]}; export it with a dynamic "
                             "batch axis (or batch 1)", path)
    if dims[1] == 3 and dims[3] != 3:
        layout, (h, w) = "NCHW", dims[2:]
    elif dims[3] == 3 and dims[1] != 3:
        layout, (h, w) = "NHWC", dims[1:3]
    else:
        raise OnnxModelError(f"cannot tell the input layout of {value.name!r} from its shape {dims}: expected "
                             "(batch, 3, S, S) or (batch, S, S, 3) with a static image size", path)
    if h is None or w is None or h != w:
        raise OnnxModelError(f"the input {value.name!r} has shape {dims}; etdeploy needs a static square image size",
                             path)
    return value.name, proto.graph.output[0].name, layout, int(h)


def _simplify(proto, input_name: str, layout: str, size: int, path: Path):
    """onnxsim with the batch fixed to 1 (constant shapes fold, e.g. Keras's computed Pad amounts), after
    the decomposition torch.onnx emits for ``nn.LocalResponseNorm`` is folded back into one ``LRN`` node
    (:func:`etdeploy.occlusion.graph.fold_lrn`; the import's check compares with the unmodified file)."""
    import onnxsim

    from etdeploy.occlusion.graph import fold_lrn

    shape = [1, 3, size, size] if layout == "NCHW" else [1, size, size, 3]
    try:
        simplified, ok = onnxsim.simplify(fold_lrn(proto), check_n=0, overwrite_input_shapes={input_name: shape})
    except Exception as exc:  # onnxsim raises many types on graphs it cannot fold
        raise OnnxModelError(f"onnxsim cannot simplify the graph: {type(exc).__name__}: {exc}", path) from exc
    if not ok:
        raise OnnxModelError("onnxsim reported that the simplified graph is not valid", path)
    return simplified


def _check_domains(proto, path: Path) -> None:
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"cannot import op {node.domain}.{node.op_type} (node {node.name or '(unnamed)'}):"
                                     " only standard ONNX ops are supported", path)


def logits_output(proto) -> tuple[str, str]:
    """``(tensor name, output kind)``: where the original graph computes its logits. A graph whose
    output comes from a ``Softmax``/``LogSoftmax`` (past ``Identity``/``Cast`` nodes) -> that node's
    input, ``softmax``/``log_softmax``; otherwise the output itself, ``logits``."""
    output = proto.graph.output[0].name
    producers = {out: node for node in proto.graph.node for out in node.output}
    node = producers.get(output)
    while node is not None and node.op_type in _PASS_TO_OUTPUT:
        node = producers.get(node.input[0])
    if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
        return node.input[0], "softmax" if node.op_type == "Softmax" else "log_softmax"
    return output, "logits"


def original_logits(proto, input_name: str, x_orig, tap: str):
    """The original graph's logits (tensor ``tap``) for the float32 inputs ``x_orig`` on ONNX Runtime
    (reference settings of :func:`etdeploy.ort_session.make_session`); a graph with a fixed batch of
    1 is run one image at a time."""
    import numpy as np
    import onnx
    from onnx import helper

    from etdeploy.ort_session import make_session

    tapped = onnx.ModelProto.FromString(proto.SerializeToString())
    if tap != tapped.graph.output[0].name:
        tapped.graph.output.append(helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    session = make_session(tapped)
    batch = next(v for v in tapped.graph.input if v.name == input_name).type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value"):
        return np.concatenate([session.run([tap], {input_name: x_orig[i:i + 1]})[0] for i in range(len(x_orig))])
    return session.run([tap], {input_name: x_orig})[0]


def compose_normalisation(norm: Normalisation, affine) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The imported model's ``(mean, std)``: the user's normalisation of the original input followed by
    the folded ``x * scale + bias`` (module doc, step 2)."""
    if affine is None:
        return tuple(norm.mean), tuple(norm.std)
    mean = tuple(m - b * s / a for m, s, a, b in zip(norm.mean, norm.std, affine.scale, affine.bias))
    std = tuple(s / a for s, a in zip(norm.std, affine.scale))
    return mean, std


def import_onnx_model(onnx_path: str | os.PathLike, out: str | os.PathLike, *, mean: Any = None, std: Any = None,
                      scale: float | None = None, class_names: Any = None, dataset: Any = None,
                      tol: float = DEFAULT_TOL, force: bool = False, progress: bool = True) -> OnnxImportRun:
    """Import the ONNX classifier ``onnx_path`` into the new model directory ``out`` (module doc).

    ``mean``/``std`` or ``scale``: how the ORIGINAL model's input is normalised
    (:func:`~etdeploy.importing.normalisation.resolve_normalisation`; a Keras model with a
    ``Rescaling(1/255)`` layer takes raw pixels: ``scale=255``); ``class_names`` and/or ``dataset``.
    """
    import numpy as np
    import onnx

    from etdeploy.data.images import normalise
    from etdeploy.fileio import StagedDir, atomic_write_bytes, sha256_bytes
    from etdeploy.importing.onnx_convert import convert_graph
    from etdeploy.models import ETModel, ModelSpec, dense_layers
    from etdeploy.onnx_safety import check_external_data, first_line, load_onnx_checked

    out, norm, names = check_request(out, force=force, tol=tol, mean=mean, std=std, scale=scale,
                                     class_names=class_names, dataset=dataset)
    path = Path(onnx_path)
    proto = load_onnx_checked(path)
    data = path.read_bytes()
    if check_external_data(onnx.load(str(path), load_external_data=False), path):
        raise OnnxModelError("the model keeps its weights in external data files; save it as one file "
                             "(onnx.save(model, path, save_as_external_data=False)) so that the import can keep a "
                             "copy of it", path)
    opset = _opset(proto)
    if opset < MIN_OPSET:
        raise OnnxModelError(f"opset {opset} is too old; etdeploy imports opset {MIN_OPSET} and newer (convert it with "
                             "onnx.version_converter)", path)
    _check_domains(proto, path)
    input_name, output_name, layout, size = _io(proto, path)
    tap, output_kind = logits_output(proto)
    simplified = _simplify(proto, input_name, layout, size, path)
    try:
        converted = convert_graph(simplified.graph, path=path, opset=_opset(simplified), input_name=input_name,
                                  output_name=simplified.graph.output[0].name, size=size, layout=layout)
    except EtdeployError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as exc:  # a malformed node the checker let by
        raise OnnxModelError(f"cannot convert the graph: {type(exc).__name__}: {first_line(exc)}", path) from exc
    if converted.output != output_kind:
        raise OnnxModelError(f"the simplified graph ends in {converted.output}, the original in {output_kind}", path)
    affine = converted.input_affine
    if affine is not None and not all(a > 0 for a in affine.scale):
        raise UnsupportedOpError(f"the input is multiplied by {list(affine.scale)} before the first layer; only a "
                                 "positive scale per channel can be folded into the normalisation", path)
    model_mean, model_std = compose_normalisation(norm, affine)
    arch = f"{ROUTE}:{path.name}"
    spec = ModelSpec(arch=arch, num_classes=len(names), class_names=names, input_size=size, mean=model_mean,
                     std=model_std, seed=None, kwargs={})
    model = ETModel(converted.features, converted.classifier, spec).eval()
    try:
        dense_layers(model)
    except ContractError as exc:
        raise ContractError(f"the converted graph does not fit etdeploy's contract: {exc.message}", path) from exc
    outputs = converted.classifier[-1].out_features
    if outputs != len(names):
        raise ModelError(f"the model has {outputs} outputs for {len(names)} class names", path)

    images, inputs = check_images(dataset, size, progress)
    x = normalise(images, model_mean, model_std)
    x_orig = normalise(images, norm.mean, norm.std).numpy()
    if layout == "NHWC":
        x_orig = np.ascontiguousarray(x_orig.transpose(0, 2, 3, 1))
    want = original_logits(proto, input_name, x_orig, tap)
    interface = Interface(layout=layout, input_name=input_name, output_name=output_name, output=output_kind,
                          input_affine=None if affine is None else InputAffine(tuple(affine.scale), tuple(affine.bias)),
                          opset=opset)
    origin_fields = {"route": ROUTE, "file": path.name, "sha256": sha256_bytes(data), "bytes": len(data),
                     "arch": arch, "layout": layout, "normalisation": norm}
    with StagedDir(out, force=force) as tmp:
        origin, accuracy = save_checked_import(
            tmp, model, spec, x=x, want=want, inputs=f"{inputs}; original on ONNX Runtime (logits: {tap!r})",
            tol=tol, origin_fields=origin_fields, dataset=dataset, progress=progress,
            extra_meta={"interface": interface.to_dict()}, where=path,
            refusal=f"the conversion is not exact for this graph, or float32 rounding exceeds the tolerance "
                    f"(the original's logits reach {float(np.abs(want).max()):.3g} in magnitude)")
        atomic_write_bytes(tmp / ORIGINAL_FILE, data)
    return OnnxImportRun(**run_fields(out, model, origin, accuracy), interface=interface, ops=converted.ops)
