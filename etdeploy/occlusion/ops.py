"""Registries of the ONNX operators the incremental executor can run in the local part of a graph.

Two contracts, one registry each:

* :data:`OP_HANDLERS`: operators with **one** activation input (window ops and pointwise ops). A
  handler reads an ONNX node (attributes + constant inputs) and returns a :class:`PrefixOp`: its
  per-axis window geometry, the value its input is padded with, MACs per output element (conv only,
  :func:`etdeploy.onnx_graph.macs_per_output`) and a copy of the node with padding stripped (the
  executor pads the cached base activation once instead).
* :data:`MERGE_HANDLERS`: operators that combine **several** activations of the same spatial size
  (residual ``Add``, gating ``Mul``, channel ``Concat``). They are pointwise in space; their changed
  region is the bounding box of their inputs' changed regions (docs/method.md §6.1).

Operators that share a rule share a handler class, instantiated once per operator type. Supporting a new
operator means adding one handler to one registry.

``GLOBAL_OPS`` start the global suffix: a tensor read by one of them is where the local part ends.
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
    inputs: tuple[str, ...] = field(default_factory=tuple)  # activation inputs (set by the graph analysis)
    output: str = ""
    is_merge: bool = False

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
            raise _unsupported(node, f"input {name!r} is not a constant (it is computed at run time)")
        names.append(name)
    return tuple(names)


def _window(node, attrs: dict[str, Any], kernel: tuple[int, int], in_hw: tuple[int, int], *,
            ceil_ok: bool = False) -> tuple[AxisGeom, AxisGeom, list[int]]:
    """Per-axis geometry of a 2-D window op. ``auto_pad`` SAME_UPPER/SAME_LOWER become explicit pads (ONNX
    rule: output ``ceil(n / s)``). ``ceil_mode`` that changes the output size is refused unless ``ceil_ok``
    (MaxPool): then the end padding grows so that floor mode gives the ceil-mode size (the extra cells hold
    the pad value -inf and never win; a window may not start in the end padding, as in ONNX Runtime and
    PyTorch). Returns ``(gy, gx, pads)`` with ``pads`` as in the node (or derived from ``auto_pad``)."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise _unsupported(node, f"auto_pad={auto_pad}")
    if len(kernel) != 2:
        raise _unsupported(node, f"only 2-D windows are supported, got kernel {list(kernel)}")
    strides = [int(v) for v in attrs.get("strides", [1, 1])]
    dil = list(attrs.get("dilations", [1, 1]))
    ks = [dil[0] * (kernel[0] - 1) + 1, dil[1] * (kernel[1] - 1) + 1]
    if auto_pad == "NOTSET":
        pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    else:
        total = [max(0, (-(-n // st) - 1) * st + k - n) for n, st, k in zip(in_hw, strides, ks)]
        before = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        pads = [before[0], before[1], total[0] - before[0], total[1] - before[1]]
    ends = [pads[2], pads[3]]
    if attrs.get("ceil_mode", 0):
        for axis in (0, 1):
            n, k, st, pb = in_hw[axis], ks[axis], strides[axis], pads[axis]
            span = n + pb + ends[axis] - k
            if span % st == 0:
                continue
            if not ceil_ok:
                raise _unsupported(node, "ceil_mode=1 changes the output size here (export with ceil_mode=False)")
            out = -(-span // st) + 1
            if (out - 1) * st >= n + pb:  # the last window would start in the end padding: dropped
                out -= 1
            ends[axis] = max(ends[axis], (out - 1) * st + k - n - pb)
    gy = AxisGeom(ks[0], strides[0], pads[0], ends[0])
    gx = AxisGeom(ks[1], strides[1], pads[1], ends[1])
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
        gy, gx, _ = _window(node, attrs, tuple(attrs["kernel_shape"]), in_shape[1:], ceil_ok=True)
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
            raise _unsupported(node, "only an activation combined with one constant is handled here (two "
                                     "activations combined are a merge)")
        value = consts[const_names[0]]
        shape4 = (1,) * max(0, 4 - value.ndim) + tuple(value.shape)
        if shape4[-1] != 1 or shape4[-2] != 1:
            raise _unsupported(node, f"the constant varies over space (shape {list(value.shape)})")
        return PrefixOp(node.op_type, node.name, node, POINTWISE, POINTWISE, 0.0, in_shape[0], in_shape[0],
                        const_inputs=tuple(const_names))


class MergeHandler(abc.ABC):
    """Parse one ONNX node that combines several activations. ``in_shapes``: ``(C, H, W)`` of each input."""

    op_type: str = ""

    def __init__(self, op_type: str | None = None) -> None:
        if op_type is not None:
            self.op_type = op_type

    @abc.abstractmethod
    def out_channels(self, node, in_shapes: list[tuple[int, int, int]]) -> int:
        """Channels of the output, or raise UnsupportedOpError."""

    def parse(self, node, consts: dict[str, np.ndarray], in_shapes: list[tuple[int, int, int]]) -> PrefixOp:
        """Describe ``node`` as a pointwise :class:`PrefixOp` with ``is_merge=True`` or raise UnsupportedOpError."""
        if any(name in consts for name in node.input if name):
            raise _unsupported(node, "a merge of activations with a constant input is not supported")
        if len({shape[1:] for shape in in_shapes}) != 1:
            sizes = ", ".join(f"{h}x{w}" for _, h, w in in_shapes)
            raise _unsupported(node, f"its inputs differ in spatial size ({sizes})")
        return PrefixOp(node.op_type, node.name, node, POINTWISE, POINTWISE, 0.0, in_shapes[0][0],
                        self.out_channels(node, in_shapes), is_merge=True)


class ElementwiseMergeHandler(MergeHandler):
    """``a (op) b`` of two activations of the same shape (residual Add, gating Mul)."""

    def out_channels(self, node, in_shapes):
        if len(in_shapes) != 2 or in_shapes[0] != in_shapes[1]:
            shapes = ", ".join("x".join(map(str, shape)) for shape in in_shapes)
            raise _unsupported(node, f"it broadcasts between activations of shapes {shapes}")
        return in_shapes[0][0]


class ConcatHandler(MergeHandler):
    """Concatenation along the channel axis (Inception, SqueezeNet fire modules)."""

    op_type = "Concat"

    def out_channels(self, node, in_shapes):
        axis = int(_attrs(node).get("axis", 1))
        if axis not in (1, -3):
            raise _unsupported(node, f"only concatenation along channels (axis 1) is supported, got axis {axis}")
        return sum(shape[0] for shape in in_shapes)


OP_HANDLERS: dict[str, OpHandler] = {h.op_type: h for h in (
    ConvHandler(), MaxPoolHandler(), AveragePoolHandler(), BatchNormalizationHandler(),
    *(PointwiseHandler(t) for t in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                                    "Identity", "LRN")),
    *(ElementwiseConstHandler(t) for t in ("Add", "Sub", "Mul", "Div")),
)}

MERGE_HANDLERS: dict[str, MergeHandler] = {h.op_type: h for h in (
    *(ElementwiseMergeHandler(t) for t in ("Add", "Sub", "Mul")),
    ConcatHandler(),
)}

SUPPORTED_OPS = tuple(sorted(set(OP_HANDLERS) | set(MERGE_HANDLERS)))
