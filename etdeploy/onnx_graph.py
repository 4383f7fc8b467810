"""Pure facts about an ONNX graph, defined once: constants, image input, parameters, MACs, ops, opset.

Used by the export summary, the fit analysis (``etdeploy.targets``) and the occlusion executor, so the
three report the same numbers.

- **Constants**: initializers and the ``value`` tensors of ``Constant`` nodes
  (:func:`constant_tensors`; as numpy, with the scalar/list ``value_*`` forms too: :func:`constant_values`).
- **Image input**: the graph input that is not an initializer (:func:`data_inputs`, :func:`image_input`).
- **Parameters**: elements of the *floating-point* constants (fp32/fp16/bf16/fp64)::

      parameters = sum(prod(t.dims) for t in constant_tensors(graph) if t is floating point)

  Integer tensors (Gather indices of a sliced model's feature selection, Reshape shapes) are data the
  target must store, not parameters.
- **MACs** of one node (multiply-accumulates; :func:`node_macs`)::

      MACs = output elements x MACs per output element      (batch as in the output shape)
      Conv:   per output = C_in / groups x k_h x k_w = prod(W.shape[1:])
      Gemm:   per output = K  (A is (M, K), or (K, M) with transA)
      MatMul: per output = K = A.shape[-1]
      every other op: 0 (pooling, normalisation, activations, elementwise, reshapes, Gather)

  The occlusion executor applies the same formula to the output window it computes
  (:func:`mac_count` with the window's shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from etdeploy.errors import OnnxModelError

MAC_OPS = ("Conv", "Gemm", "MatMul")

Shape = tuple[int, ...]


def prod(shape: Sequence[int]) -> int:
    """Product of the dims (1 for a scalar ``()``)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ---------------------------------------------------------------------------------------------- constants
def constant_tensors(graph) -> dict[str, Any]:
    """``{name: TensorProto}`` of the initializers and the ``value`` tensors of ``Constant`` nodes."""
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors[node.output[0]] = attr.t
    return tensors


def constant_values(graph) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of ``graph`` as numpy arrays (``value_float(s)`` /
    ``value_int(s)`` included)."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_float", "value_int"):
                    consts[node.output[0]] = np.asarray(attr.f if attr.name == "value_float" else attr.i)
                elif attr.name in ("value_floats", "value_ints"):
                    consts[node.output[0]] = np.asarray(attr.floats if attr.name == "value_floats" else attr.ints)
    return consts


def is_float_tensor(tensor) -> bool:
    """True for fp32, fp16, bf16 and fp64 tensors (the ones that count as parameters)."""
    import onnx

    return tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                                onnx.TensorProto.BFLOAT16)


def tensor_elements(tensor) -> int:
    """Number of elements of a ``TensorProto`` (from its dims)."""
    return prod(tensor.dims)


def dtype_bytes(elem_type: int) -> int:
    """Bytes per element of an ONNX element type; an unknown type -> :class:`OnnxModelError`."""
    from onnx import helper

    try:
        return int(helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError) as exc:
        raise OnnxModelError(f"unsupported tensor element type {elem_type}") from exc


def parameter_count(model) -> int:
    """Elements of the floating-point initializers and Constant-node tensors (the graph's weights).

    Integer tensors (Gather indices of a sliced flatten layer, Reshape shapes) are not parameters.
    """
    return sum(tensor_elements(t) for t in constant_tensors(model.graph).values() if is_float_tensor(t))


# ---------------------------------------------------------------------------------------------- inputs, ops
def data_inputs(model) -> list[Any]:
    """The graph inputs that are not initializers (``ValueInfoProto``), in order."""
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def image_input(model) -> tuple[str, list[Any]]:
    """Name and dims (int or symbolic str) of the first non-initializer graph input."""
    for inp in data_inputs(model):
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in inp.type.tensor_type.shape.dim]
        return inp.name, dims
    raise OnnxModelError("the ONNX model has no image input")


def op_histogram(model) -> dict[str, int]:
    """``{op_type: count}`` over the main graph's nodes (domain-qualified when not the default)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def opset_version(model) -> int:
    """Version of the default-domain opset import (0 if there is none)."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


# ---------------------------------------------------------------------------------------------- shapes
def infer_batch1(model):
    """Copy of ``model`` with every graph input's and output's first dim set to 1, shapes inferred (strict)."""
    import onnx

    work = onnx.ModelProto()
    work.CopyFrom(model)
    init_names = {t.name for t in work.graph.initializer}
    for value in list(work.graph.input) + list(work.graph.output):
        if value.name in init_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_value = 1
    del work.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(work, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise OnnxModelError(f"shape inference with batch 1 failed: {exc}") from exc


def static_shape(value_info) -> Shape | None:
    """Dims of a ``ValueInfoProto`` when every one is a known integer, else ``None``."""
    ttype = value_info.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    dims = []
    for d in ttype.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


# ---------------------------------------------------------------------------------------------- MACs
def _attr(node, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def macs_per_output(node, shape_of: Callable[[str], Shape | None]) -> int:
    """Multiply-accumulates per output element of ``node`` (see the module docstring; 0 for non-MAC ops).

    ``shape_of(name)`` returns the static shape of a tensor or ``None``; an unknown weight / A shape of
    a MAC op -> :class:`OnnxModelError`.
    """
    if node.op_type == "Conv":
        w = shape_of(node.input[1])
        if w is None:
            raise OnnxModelError(f"Conv node {node.name!r}: weight shape unknown")
        return prod(w[1:])
    if node.op_type == "Gemm":
        a = shape_of(node.input[0])
        if a is None or len(a) != 2:
            raise OnnxModelError(f"Gemm node {node.name!r}: input A shape unknown")
        return int(a[0] if _attr(node, "transA", 0) else a[1])
    if node.op_type == "MatMul":
        a = shape_of(node.input[0])
        if a is None or not a:
            raise OnnxModelError(f"MatMul node {node.name!r}: input A shape unknown")
        return int(a[-1])
    return 0


def mac_count(output_shape: Sequence[int], per_output: int) -> int:
    """``MACs = prod(output_shape) x per_output`` (a node's full output, or an occlusion window)."""
    return prod(output_shape) * int(per_output)


def node_macs(node, shape_of: Callable[[str], Shape | None]) -> int:
    """Multiply-accumulates of one node: output elements x :func:`macs_per_output` (0 when the output
    shape is unknown or the op is not in :data:`MAC_OPS`). Pure."""
    out = shape_of(node.output[0]) if node.output else None
    if out is None or node.op_type not in MAC_OPS:
        return 0
    return mac_count(out, macs_per_output(node, shape_of))


def batch1_macs(model) -> int:
    """Sum of :func:`node_macs` over ``model``'s nodes with shapes inferred at batch 1."""
    inferred = infer_batch1(model)
    graph = inferred.graph
    shapes: dict[str, Shape] = {}
    for name, tensor in constant_tensors(graph).items():
        shapes[name] = tuple(int(d) for d in tensor.dims)
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = static_shape(value)
        if shape is not None and value.name not in shapes:
            shapes[value.name] = shape
    return sum(node_macs(node, shapes.get) for node in graph.node)


#: Nodes a classifier's output may pass through after its final activation.
OUTPUT_PASS_THROUGH = ("Identity", "Cast")


def final_activation(model) -> tuple[str, str] | None:
    """``(op_type, input tensor name)`` of the ``Softmax``/``LogSoftmax`` that produces a classifier's
    2-D output over its class axis (past ``Identity``/``Cast`` nodes): the input is the logits tensor.
    ``None`` when the output is not produced that way (it then is the logits itself)."""
    graph = model.graph
    output = graph.output[0]
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(output.name)
    while node is not None and node.op_type in OUTPUT_PASS_THROUGH:
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Softmax", "LogSoftmax"):
        return None
    rank = len(output.type.tensor_type.shape.dim)
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
    if rank != 2 or axis not in (-1, 1):
        return None
    return node.op_type, node.input[0]
