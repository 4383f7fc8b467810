"""Pure summary of an ONNX graph for the export manifest: op histogram, node and parameter counts,
opset, I/O signature. The counts themselves are defined once in :mod:`etdeploy.onnx_graph`."""

from __future__ import annotations

from typing import Any

from etdeploy.onnx_graph import data_inputs, op_histogram, opset_version, parameter_count

__all__ = ["onnx_summary", "op_histogram", "opset_version", "parameter_count", "value_signature"]


def value_signature(value_info) -> dict[str, Any]:
    """``{"name", "elem_type", "shape"}`` with symbolic dims as their names."""
    import onnx

    ttype = value_info.type.tensor_type
    dims: list[Any] = []
    for d in ttype.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return {"name": value_info.name, "elem_type": onnx.TensorProto.DataType.Name(ttype.elem_type).lower(),
            "shape": dims}


def onnx_summary(model) -> dict[str, Any]:
    """Op histogram, node and parameter counts, opset, IR version, inputs and outputs."""
    return {
        "op_histogram": op_histogram(model),
        "nodes": len(model.graph.node),
        "parameters": parameter_count(model),
        "opset": opset_version(model),
        "ir_version": int(model.ir_version),
        "inputs": [value_signature(v) for v in data_inputs(model)],
        "outputs": [value_signature(v) for v in model.graph.output],
    }
