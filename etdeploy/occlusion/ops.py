"""Registry of the ONNX operators the incremental executor can run in the local prefix.

One handler per operator. A handler reads an ONNX node (attributes + constant inputs) and
returns a :class:`PrefixOp`: its per-axis window geometry, the value its input is padded with, MACs
per output element (conv only, :func:`etdeploy.onnx_graph.macs_per_output`) and a copy of the node
with padding stripped (the executor pads the cached base activation once instead). Operators that
share a rule share a handler class, instantiated once per operator type. Supporting a new operator means adding one handler to :data:`OP_HANDLERS`.

``GLOBAL_OPS`` start the global suffix (the first one met ends the prefix).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from etdeploy.errors import UnsupportedOpError
from etdeploy.occlusion.geometry import POINTWISE, AxisGeom
from etdeploy.onnx_graph import mac_count, macs_per_output

GLOBAL_OPS = frozenset({
    "Flatten", "Reshape", "Gemm", "MatMul", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
    "ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2", "Transpose", "Shape", "Squeeze", "Unsqueeze",
    "Softmax", "LogSoftmax",
})


@dataclass(frozen=True)
class PrefixOp:
    """One prefix operator. ``node`` has its padding removed; ``const_inputs`` name its constant inputs."""

    op_type: str
    name: str
    node: Any  # onnx.NodeProto (pads stripped)
    gy: AxisGeom
    gx: AxisGeom
    pad_value: float
    c_in: int
    c_out: int
    macs_per_output: int = 0
    is_conv: bool = False
    const_inputs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pointwise(self) -> bool:
        return self.gy == POINTWISE and self.gx == POINTWISE

    @property
    def padded(self) -> bool:
        return bool(self.gy.pb or self.gy.pe or self.gx.pb or self.gx.pe)

    def macs(self, out_h: int, out_w: int) -> int:
        """MACs of computing an ``out_h x out_w`` output window of this op (all ``c_out`` channels, one image):
        :func:`etdeploy.onnx_graph.mac_count` of ``(c_out, out_h, out_w)`` with ``macs_per_output``."""
        return mac_count((self.c_out, out_h, out_w), self.macs_per_output)


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _strip(node, **replace: Any):
    """Copy of ``node`` with attributes in ``replace`` set (``None`` removes the attribute)."""
    import onnx

    new = onnx.NodeProto()
    new.CopyFrom(node)
    keep = [a for a in new.attribute if a.name not in replace]
    del new.attribute[:]
    new.attribute.extend(keep)
    for key, value in replace.items():
        if value is not None:
            new.attribute.append(onnx.helper.make_attribute(key, value))
    return new


def _unsupported(node, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"operator {node.op_type} (node {node.name or '?'}) cannot run in the incremental "
                              f"occlusion executor: {why}")


def _const_inputs(node, consts: dict[str, np.ndarray], first: int = 1) -> tuple[str, ...]:
    names = []
    for name in list(node.input)[first:]:
        if not name:
            continue
        if name not in consts:
            raise _unsupported(node, f"input {name!r} is not a constant (two activations meet here: residual or "
                                     "branching graphs are not supported)")
        names.append(name)
    return tuple(names)


def _window(node, attrs: dict[str, Any], kernel: tuple[int, int], in_hw: tuple[int, int]
            ) -> tuple[AxisGeom, AxisGeom, list[int]]:
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID"):
        raise _unsupported(node, f"auto_pad={auto_pad} (export with explicit pads)")
    if len(kernel) != 2:
        raise _unsupported(node, f"only 2-D windows are supported, got kernel {list(kernel)}")
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    dil = list(attrs.get("dilations", [1, 1]))
    ky = dil[0] * (kernel[0] - 1) + 1
    kx = dil[1] * (kernel[1] - 1) + 1
    gy = AxisGeom(ky, int(strides[0]), int(pads[0]), int(pads[2]))
    gx = AxisGeom(kx, int(strides[1]), int(pads[1]), int(pads[3]))
    if attrs.get("ceil_mode", 0):
        for g, n in ((gy, in_hw[0]), (gx, in_hw[1])):
            span = n + g.pb + g.pe - g.k
            if span % g.s:
                raise _unsupported(node, "ceil_mode=1 changes the output size here (export with ceil_mode=False)")
    return gy, gx, pads


class OpHandler(abc.ABC):
    """Parse one ONNX node of the local prefix. ``in_shape`` is ``(C, H, W)`` of its activation input."""

    op_type: str = ""

    def __init__(self, op_type: str | None = None) -> None:
        if op_type is not None:
            self.op_type = op_type

    @abc.abstractmethod
    def parse(self, node, consts: dict[str, np.ndarray], in_shape: tuple[int, int, int]) -> PrefixOp:
        """Describe ``node`` as a :class:`PrefixOp` (geometry, stripped node) or raise UnsupportedOpError."""


class ConvHandler(OpHandler):
    op_type = "Conv"

    def parse(self, node, consts, in_shape):
        attrs = _attrs(node)
        const_inputs = _const_inputs(node, consts)
        weight = consts[node.input[1]]
        if weight.ndim != 4:
            raise _unsupported(node, f"only 2-D convolutions are supported (weight shape {list(weight.shape)})")
        kernel = tuple(attrs.get("kernel_shape", weight.shape[2:]))
        gy, gx, _ = _window(node, attrs, kernel, in_shape[1:])
        stripped = _strip(node, pads=[0, 0, 0, 0], auto_pad=None)
        return PrefixOp("Conv", node.name, stripped, gy, gx, 0.0, in_shape[0], int(weight.shape[0]),
                        macs_per_output=macs_per_output(node, lambda name: consts[name].shape), is_conv=True,
                        const_inputs=const_inputs)


class MaxPoolHandler(OpHandler):
    op_type = "MaxPool"

    def parse(self, node, consts, in_shape):
        attrs = _attrs(node)
        if len([o for o in node.output if o]) > 1:
            raise _unsupported(node, "the Indices output is not supported")
        gy, gx, _ = _window(node, attrs, tuple(attrs["kernel_shape"]), in_shape[1:])
        stripped = _strip(node, pads=[0, 0, 0, 0], auto_pad=None, ceil_mode=None)
        return PrefixOp("MaxPool", node.name, stripped, gy, gx, -math.inf, in_shape[0], in_shape[0])


class AveragePoolHandler(OpHandler):
    op_type = "AveragePool"

    def parse(self, node, consts, in_shape):
        attrs = _attrs(node)
        gy, gx, pads = _window(node, attrs, tuple(attrs["kernel_shape"]), in_shape[1:])
        if any(pads) and not attrs.get("count_include_pad", 0):
            raise _unsupported(node, "padding with count_include_pad=0 cannot be applied once on the cached base "
                                     "(export with count_include_pad=True or without padding)")
        stripped = _strip(node, pads=[0, 0, 0, 0], auto_pad=None, ceil_mode=None, count_include_pad=None)
        return PrefixOp("AveragePool", node.name, stripped, gy, gx, 0.0, in_shape[0], in_shape[0])


class PointwiseHandler(OpHandler):
    """Ops that act on each spatial location independently (they may mix channels, e.g. LRN)."""

    def parse(self, node, consts, in_shape):
        const_inputs = _const_inputs(node, consts)
        return PrefixOp(node.op_type, node.name, node, POINTWISE, POINTWISE, 0.0, in_shape[0], in_shape[0],
                        const_inputs=const_inputs)


class BatchNormalizationHandler(PointwiseHandler):
    op_type = "BatchNormalization"

    def parse(self, node, consts, in_shape):
        if len([o for o in node.output if o]) > 1:
            raise _unsupported(node, "training-mode outputs (running mean/var) are not supported")
        return super().parse(node, consts, in_shape)


class ElementwiseConstHandler(PointwiseHandler):
    """``x (op) c`` or ``c (op) x`` with a constant ``c`` that does not vary over space."""

    def parse(self, node, consts, in_shape):
        inputs = list(node.input)
        const_names = [n for n in inputs if n in consts]
        if len(const_names) != 1 or len(inputs) != 2:
            raise _unsupported(node, "only an activation combined with one constant is supported (two activations "
                                     "meet here: residual Add is not supported)")
        value = consts[const_names[0]]
        shape4 = (1,) * max(0, 4 - value.ndim) + tuple(value.shape)
        if shape4[-1] != 1 or shape4[-2] != 1:
            raise _unsupported(node, f"the constant varies over space (shape {list(value.shape)})")
        return PrefixOp(node.op_type, node.name, node, POINTWISE, POINTWISE, 0.0, in_shape[0], in_shape[0],
                        const_inputs=tuple(const_names))


OP_HANDLERS: dict[str, OpHandler] = {h.op_type: h for h in (
    ConvHandler(), MaxPoolHandler(), AveragePoolHandler(), BatchNormalizationHandler(),
    *(PointwiseHandler(t) for t in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Identity", "LRN")),
    *(ElementwiseConstHandler(t) for t in ("Add", "Sub", "Mul", "Div")),
)}

SUPPORTED_OPS = tuple(sorted(OP_HANDLERS))
