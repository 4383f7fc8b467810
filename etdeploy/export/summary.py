"""Pure summaries of an ONNX graph: op histogram, parameter count, I/O signature."""

from __future__ import annotations

from typing import Any


def op_histogram(model) -> dict[str, int]:
    """``{op_type: count}`` over the main graph's nodes (domain-qualified when not the default)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _tensor_elements(tensor) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


def _is_float(tensor) -> bool:
    import onnx

    return tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                                onnx.TensorProto.BFLOAT16)


def parameter_count(model) -> int:
    """Elements of the floating-point initializers and Constant-node tensors (the graph's weights).

    Integer tensors (Gather indices of a sliced flatten layer, Reshape shapes) are not parameters.
    """
    total = sum(_tensor_elements(t) for t in model.graph.initializer if _is_float(t))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.HasField("t") and _is_float(attr.t):
                    total += _tensor_elements(attr.t)
    return total


def value_signature(value_info) -> dict[str, Any]:
    """``{"name", "elem_type", "shape"}`` with symbolic dims as their names."""
    import onnx

    ttype = value_info.type.tensor_type
    dims: list[Any] = []
    for d in ttype.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return {"name": value_info.name, "elem_type": onnx.TensorProto.DataType.Name(ttype.elem_type).lower(),
            "shape": dims}


def opset_version(model) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def onnx_summary(model) -> dict[str, Any]:
    """Op histogram, node and parameter counts, opset, IR version, inputs and outputs."""
    init_names = {t.name for t in model.graph.initializer}
    return {
        "op_histogram": op_histogram(model),
        "nodes": len(model.graph.node),
        "parameters": parameter_count(model),
        "opset": opset_version(model),
        "ir_version": int(model.ir_version),
        "inputs": [value_signature(v) for v in model.graph.input if v.name not in init_names],
        "outputs": [value_signature(v) for v in model.graph.output],
    }
