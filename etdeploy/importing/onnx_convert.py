"""Convert a simplified ONNX classifier graph into etdeploy's contract: plain ``features`` + ``classifier``.

The graph (after onnxsim, batch fixed to 1) must be one chain from the image input to the output:
each node reads the previous node's output and constants (initializers, ``Constant`` nodes). The
chain is read in four stretches:

1. **input**: ``Mul``/``Add``/``Sub``/``Div`` by per-channel (or scalar) constants, ``Transpose``,
   ``Cast`` to float, ``Identity``, before the first other op: a per-channel affine of the input
   (Keras ``Rescaling``/``Normalization``). It is folded *out* of the graph into :class:`InputAffine`
   (``original_input * scale + bias`` = the imported model's input); the import composes it with the
   user's normalisation, which is exact (unlike folding it into a padded conv, where the padding
   would see the shifted zeros).
2. **features** (image tensors): ``Conv`` (2-D, ``pads``/``auto_pad`` and any preceding zero ``Pad``
   folded in; what stays asymmetric becomes an ``nn.ZeroPad2d`` before a symmetrically padded
   ``Conv2d``), ``BatchNormalization``, elementwise affines by per-channel constants (folded into
   the conv they follow, else a ``BatchNorm2d`` with mean 0, variance 1, eps 0), ``Relu``,
   ``LeakyRelu``, ``Clip``, ``Sigmoid``, ``Tanh``, ``MaxPool``/``AveragePool`` (symmetric pads),
   ``GlobalAveragePool``, ``LRN``, ``Dropout``, ``Identity``.
3. **flatten**: ``Flatten`` (axis 1), ``Reshape`` to ``(batch, -1)``, ``ReduceMean`` over the two
   spatial axes, or ``Squeeze`` of a 1x1 map.
4. **classifier** (vectors): ``Gemm`` or ``MatMul`` (+ ``Add``) by constant weights -> ``nn.Linear``;
   elementwise affines and ``BatchNormalization`` fold into the Linear before them (else the one after);
   activations as above; ``Dropout``/``Identity``; a final ``Softmax``/``LogSoftmax`` over the classes
   is recorded (:attr:`Converted.output`), not converted: the imported model gives logits.

NHWC graphs (Keras, tf2onnx): every tensor carries a layout, ``NCHW`` (the ONNX tensor is the torch
tensor) or ``NHWC`` (the ONNX tensor is the torch tensor permuted ``(0, 2, 3, 1)``). ``Transpose``
``(0, 3, 1, 2)`` / ``(0, 2, 3, 1)`` only switches the layout; elementwise constants are read on the
tensor's own channel axis. A flatten of an NHWC tensor flattens in ``(h, w, c)`` order: the
permutation is folded into the columns of the first ``Linear``, so the imported model flattens in
etdeploy's NCHW order and computes the same function.

Anything else raises :class:`~etdeploy.errors.UnsupportedOpError` naming the op, the node and the file.
All weight arithmetic (folding) is done in float64 and rounded to float32 once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import OnnxModelError, UnsupportedOpError

#: Ops the converter reads (the README and docs/method.md §2 list the same set).
SUPPORTED_OPS: tuple[str, ...] = (
    "Conv", "Pad", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "MaxPool", "AveragePool",
    "GlobalAveragePool", "ReduceMean", "LRN", "Flatten", "Reshape", "Squeeze", "Gemm", "MatMul", "Add", "Sub",
    "Mul", "Div", "Transpose", "Cast", "Dropout", "Identity", "Softmax", "LogSoftmax", "Constant",
)
AFFINE_OPS = ("Add", "Sub", "Mul", "Div")
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class InputAffine:
    """``original_input * scale + bias`` = the imported model's input, per RGB channel."""

    scale: tuple[float, float, float]
    bias: tuple[float, float, float]


@dataclass
class Converted:
    """The converted parts (torch modules), the original's input layout and output kind."""

    features: Any
    classifier: Any
    layout: str
    output: str
    input_affine: InputAffine | None
    ops: dict[str, int] = field(default_factory=dict)


@dataclass
class _Affine:
    """``y = x * a + b`` per channel (image) or per feature (vector, torch order)."""

    a: np.ndarray
    b: np.ndarray

    def then(self, other: _Affine) -> _Affine:
        return _Affine(self.a * other.a, self.b * other.a + other.b)


@dataclass
class _PendingConv:
    weight: np.ndarray  # (out, in/groups, kh, kw) float64
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


@dataclass
class _PendingLinear:
    weight: np.ndarray  # (out, in) float64, columns in torch order
    bias: np.ndarray | None


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


class _Converter:
    def __init__(self, graph, path: Path, opset: int):
        from etdeploy.onnx_graph import constant_values

        self.graph = graph
        self.path = path
        self.opset = opset
        self.consts = constant_values(graph)
        self.features: list = []
        self.classifier: list = []
        self.pending: _PendingConv | _PendingLinear | None = None
        self.pending_pad = (0, 0, 0, 0)  # top, left, bottom, right (torch spatial axes)
        self.pending_in: _Affine | None = None  # dense: an affine that folds into the next Linear's input side
        self.input_affine: _Affine | None = None
        self.stage = "input"
        self.output = "logits"
        self.output_op = ""
        self.gap_index: int | None = None  # features index of a GlobalAveragePool (AvgPool2d over the whole map)
        self.ops: dict[str, int] = {}

    # ------------------------------------------------------------------ errors and constants
    def _where(self, node) -> str:
        name = node.name or f"(unnamed; output {node.output[0]!r})"
        return f"node {name}"

    def unsupported(self, node, why: str = "") -> UnsupportedOpError:
        reason = f": {why}" if why else f"; supported: {', '.join(sorted(set(SUPPORTED_OPS) - {'Constant'}))}"
        return UnsupportedOpError(f"cannot import op {node.op_type} ({self._where(node)}){reason}", self.path)

    def const(self, node, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.unsupported(node, f"its {what} ({name!r}) is computed by the graph, not a constant")
        return np.asarray(self.consts[name])

    def optional_const(self, node, index: int, what: str) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        return self.const(node, node.input[index], what)

    # ------------------------------------------------------------------ the walk
    def run(self, input_name: str, output_name: str, shape: tuple[int, int, int], layout: str) -> Converted:
        self.cur = input_name
        self.layout = layout
        self.shape = shape  # torch (C, H, W) for images, (N,) for vectors
        self.first_shape = shape
        self.order: np.ndarray | None = None  # vectors: torch index of each ONNX position
        self.first_layout = layout
        done = False
        for node in self.graph.node:
            if node.op_type == "Constant":
                continue
            data = [i for i in node.input if i and i not in self.consts]
            if done:
                raise self.unsupported(node, f"it follows the final {self.output_op}, which must end the graph")
            if data != [self.cur]:
                raise self.unsupported(node, "the graph is not one chain from the input to the output (this node "
                                       f"reads {', '.join(data) or 'only constants'}; expected {self.cur!r}); "
                                       "residual branches are not supported")
            if node.op_type not in SUPPORTED_OPS:
                raise self.unsupported(node)
            if len([o for o in node.output if o]) != 1 and node.op_type not in ("Dropout", "MaxPool"):
                raise self.unsupported(node, "it has more than one output")
            self.ops[node.op_type] = self.ops.get(node.op_type, 0) + 1
            done = self.step(node)
            self.cur = node.output[0]
        if self.cur != output_name:
            raise OnnxModelError(f"the graph output {output_name!r} is not the end of the chain ({self.cur!r})",
                                 self.path)
        self.flush()
        if self.stage != "dense" or not any(type(m).__name__ == "Linear" for m in self.classifier):
            raise OnnxModelError("the graph has no dense classifier (Flatten/Reshape then Gemm or MatMul): not a "
                                 "classifier etdeploy can import", self.path)
        if self.pending_in is not None:
            raise OnnxModelError("the graph ends with an elementwise op after the last activation (not foldable "
                                 "into a Linear)", self.path)
        return self.result()

    def step(self, node) -> bool:
        op = node.op_type
        if op in ("Identity", "Dropout"):
            if op == "Dropout" and len(node.output) > 1 and node.output[1]:
                raise self.unsupported(node, "its mask output is used")
            return False
        if op == "Cast":
            if _attrs(node).get("to") != FLOAT:
                raise self.unsupported(node, "only casts to float32 are supported")
            return False
        if op in ("Softmax", "LogSoftmax"):
            return self.final(node)
        if op == "Transpose":
            self.transpose(node)
            return False
        if op in AFFINE_OPS:
            self.affine(node, self.affine_of(node))
            return False
        if self.stage == "input":
            self.stage = "features"
        if op == "BatchNormalization":
            self.batchnorm(node)
        elif op in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh"):
            self.activation(node)
        elif self.stage == "dense":
            if op not in ("Gemm", "MatMul"):
                raise self.unsupported(node, "it comes after the flatten; the classifier takes Gemm/MatMul, "
                                       "elementwise affines, activations and Dropout only")
            self.linear(node)
        elif op == "Conv":
            self.conv(node)
        elif op == "Pad":
            self.pad(node)
        elif op in ("MaxPool", "AveragePool"):
            self.pool(node)
        elif op == "GlobalAveragePool":
            self.global_pool(node, keepdims=True)
        elif op == "LRN":
            self.lrn(node)
        elif op in ("Flatten", "Reshape", "Squeeze"):
            self.flatten(node)
        elif op == "ReduceMean":
            self.reduce_mean(node)
        else:  # Gemm / MatMul on an image
            raise self.unsupported(node, "a Gemm/MatMul before any Flatten/Reshape")
        return False

    # ------------------------------------------------------------------ pending layers
    def flush(self, keep_pad: bool = False) -> None:
        """Materialise the pending conv / linear (and a pending zero pad unless ``keep_pad``)."""
        import torch
        from torch import nn

        p = self.pending
        self.pending = None
        if isinstance(p, _PendingConv):
            out_c, in_per_group, kh, kw = p.weight.shape
            conv = nn.Conv2d(in_per_group * p.groups, out_c, (kh, kw), stride=p.stride, padding=p.padding,
                             dilation=p.dilation, groups=p.groups, bias=p.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(p.weight.astype(np.float32)))
                if p.bias is not None:
                    conv.bias.copy_(torch.from_numpy(p.bias.astype(np.float32)))
            self.features.append(conv)
        elif isinstance(p, _PendingLinear):
            out_f, in_f = p.weight.shape
            lin = nn.Linear(in_f, out_f, bias=p.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(p.weight.astype(np.float32)))
                if p.bias is not None:
                    lin.bias.copy_(torch.from_numpy(p.bias.astype(np.float32)))
            self.classifier.append(lin)
        if not keep_pad and any(self.pending_pad):
            t, left, b, r = self.pending_pad
            self.features.append(nn.ZeroPad2d((left, r, t, b)))
            self.shape = (self.shape[0], self.shape[1] + t + b, self.shape[2] + left + r)
            self.pending_pad = (0, 0, 0, 0)

    def result(self) -> Converted:
        from torch import nn

        affine = None
        if self.input_affine is not None:
            affine = InputAffine(tuple(float(v) for v in self.input_affine.a),  # type: ignore[arg-type]
                                 tuple(float(v) for v in self.input_affine.b))  # type: ignore[arg-type]
        return Converted(nn.Sequential(*self.features), nn.Sequential(*self.classifier), self.first_layout,
                         self.output, affine, dict(sorted(self.ops.items())))

    # ------------------------------------------------------------------ layout
    def onnx_shape(self) -> tuple[int, ...]:
        if len(self.shape) == 1:
            return (1, self.shape[0])
        c, h, w = self.shape
        return (1, c, h, w) if self.layout == "NCHW" else (1, h, w, c)

    def need_nchw(self, node) -> None:
        if len(self.shape) != 3 or self.layout != "NCHW":
            raise self.unsupported(node, f"it reads a {'vector' if len(self.shape) == 1 else self.layout} tensor; "
                                   "it needs an NCHW image")

    def transpose(self, node) -> None:
        perm = tuple(_attrs(node).get("perm", ()))
        if len(self.shape) == 3 and self.layout == "NHWC" and perm == NHWC_TO_NCHW:
            self.layout = "NCHW"
        elif len(self.shape) == 3 and self.layout == "NCHW" and perm == NCHW_TO_NHWC:
            self.layout = "NHWC"
        else:
            raise self.unsupported(node, f"only NCHW<->NHWC transposes of an image are supported, got perm {perm} "
                                   f"on a {self.layout if len(self.shape) == 3 else 'vector'} tensor")

    # ------------------------------------------------------------------ elementwise affines
    def affine_of(self, node) -> _Affine:
        """``y = x * a + b`` of an Add/Sub/Mul/Div by a constant, per channel / feature in torch order."""
        first_is_data = node.input[0] == self.cur
        other = node.input[1] if first_is_data else node.input[0]
        c = self.const(node, other, "second operand")
        if node.op_type == "Div" and not first_is_data:
            raise self.unsupported(node, "a constant divided by the tensor is not affine")
        vec = self.per_channel(node, c)
        ones, zeros = np.ones_like(vec), np.zeros_like(vec)
        if node.op_type == "Add":
            return _Affine(ones, vec)
        if node.op_type == "Sub":
            return _Affine(ones, -vec) if first_is_data else _Affine(-ones, vec)
        if node.op_type == "Mul":
            return _Affine(vec, zeros)
        if np.any(vec == 0):
            raise self.unsupported(node, "division by zero")
        return _Affine(1.0 / vec, zeros)

    def per_channel(self, node, c: np.ndarray) -> np.ndarray:
        """The constant ``c`` broadcast onto the current tensor as a float64 vector per channel (image) or
        per feature (vector, in torch order); a constant that varies along another axis is refused."""
        if not np.issubdtype(c.dtype, np.floating):
            raise self.unsupported(node, f"its constant operand is {c.dtype}, not float")
        shape = self.onnx_shape()
        if c.ndim > len(shape):
            raise self.unsupported(node, f"its constant of shape {c.shape} has more axes than the tensor {shape}")
        c = c.reshape((1,) * (len(shape) - c.ndim) + c.shape).astype(np.float64)
        axis = 1 if len(shape) == 2 or self.layout == "NCHW" else 3
        n = shape[axis]
        for i, (dc, dt) in enumerate(zip(c.shape, shape)):
            if dc != 1 and (i != axis or dc != dt):
                what = "feature" if len(shape) == 2 else f"channel of the {self.layout}"
                raise self.unsupported(node, f"its constant of shape {tuple(c.shape)} is not per {what} tensor "
                                       f"{shape}")
        vec = np.broadcast_to(c.reshape(-1) if c.size > 1 else c.reshape(1), (n,)).copy()
        if len(shape) == 2 and self.order is not None:  # ONNX feature order -> torch order
            out = np.empty_like(vec)
            out[self.order] = vec
            vec = out
        if not np.all(np.isfinite(vec)):
            raise self.unsupported(node, "its constant is not finite")
        return vec

    def affine(self, node, aff: _Affine) -> None:
        if self.stage == "input":
            if len(self.shape) != 3:
                raise self.unsupported(node)
            self.input_affine = aff if self.input_affine is None else self.input_affine.then(aff)
            return
        if any(self.pending_pad):
            raise self.unsupported(node, "an elementwise op between a Pad and the next Conv")
        p = self.pending
        if isinstance(p, _PendingConv):
            p.weight = p.weight * aff.a[:, None, None, None]
            base = p.bias if p.bias is not None else np.zeros(p.weight.shape[0])
            p.bias = base * aff.a + aff.b
        elif isinstance(p, _PendingLinear):
            p.weight = p.weight * aff.a[:, None]
            base = p.bias if p.bias is not None else np.zeros(p.weight.shape[0])
            p.bias = base * aff.a + aff.b
        elif self.stage == "dense":
            self.pending_in = aff if self.pending_in is None else self.pending_in.then(aff)
        else:
            self.batchnorm_layer(aff)

    def batchnorm_layer(self, aff: _Affine) -> None:
        """``x * a + b`` per channel as a BatchNorm2d (running mean 0, variance 1, eps 0), merged into a
        BatchNorm2d right before it."""
        import torch
        from torch import nn

        last = self.features[-1] if self.features else None
        if isinstance(last, nn.BatchNorm2d):
            with torch.no_grad():
                w = last.weight.double().numpy() * aff.a
                b = last.bias.double().numpy() * aff.a + aff.b
                last.weight.copy_(torch.from_numpy(w.astype(np.float32)))
                last.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            return
        bn = nn.BatchNorm2d(len(aff.a), eps=0.0)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(aff.a.astype(np.float32)))
            bn.bias.copy_(torch.from_numpy(aff.b.astype(np.float32)))
        self.features.append(bn.eval())

    def batchnorm(self, node) -> None:
        import torch
        from torch import nn

        a = _attrs(node)
        if len([o for o in node.output if o]) != 1 or a.get("training_mode", 0):
            raise self.unsupported(node, "training-mode batch normalisation")
        scale, bias, mean, var = (self.const(node, node.input[i], w).astype(np.float64)
                                  for i, w in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        eps = float(a.get("epsilon", 1e-5))
        channels = self.onnx_shape()[1] if len(self.shape) == 1 or self.layout == "NCHW" else self.shape[0]
        if any(v.size != channels for v in (scale, bias, mean, var)) or not np.all(var + eps > 0):
            raise self.unsupported(node, f"its scale/bias/mean/variance do not hold one value per channel "
                                   f"({channels}) with variance + epsilon > 0")
        scale, bias, mean, var = (v.reshape(-1) for v in (scale, bias, mean, var))
        if len(self.shape) == 3 and self.pending is None and not any(self.pending_pad):
            self.need_nchw(node)
            bn = nn.BatchNorm2d(len(scale), eps=eps)
            with torch.no_grad():
                for t, v in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
                    t.copy_(torch.from_numpy(v.astype(np.float32)))
            self.features.append(bn.eval())
            return
        if len(self.shape) == 3:
            self.need_nchw(node)
        s = scale / np.sqrt(var + eps)
        vec = _Affine(s, bias - mean * s)
        if len(self.shape) == 1 and self.order is not None:
            a_t, b_t = np.empty_like(vec.a), np.empty_like(vec.b)
            a_t[self.order], b_t[self.order] = vec.a, vec.b
            vec = _Affine(a_t, b_t)
        self.affine(node, vec)

    # ------------------------------------------------------------------ activations
    def activation(self, node) -> None:
        from torch import nn

        if self.stage == "input":
            self.stage = "features"
        a = _attrs(node)
        op = node.op_type
        if op == "Relu":
            module = nn.ReLU()
        elif op == "LeakyRelu":
            module = nn.LeakyReLU(float(a.get("alpha", 0.01)))
        elif op == "Sigmoid":
            module = nn.Sigmoid()
        elif op == "Tanh":
            module = nn.Tanh()
        else:
            module = self.clip(node, a)
        if self.stage == "dense" and (op == "Sigmoid" or (isinstance(module, nn.Hardtanh)
                                                        and not module.min_val <= 0 <= module.max_val)):
            raise self.unsupported(node, "between dense layers etdeploy's contract takes activations that map 0 to "
                                   "0 (Relu, LeakyRelu, Clip with 0 in its range, Tanh)")
        self.flush()
        if self.pending_in is not None:
            raise self.unsupported(node, "an elementwise affine right before it, with no Linear to fold it into")
        (self.classifier if self.stage == "dense" else self.features).append(module)

    def clip(self, node, a: dict):
        from torch import nn

        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo_c, hi_c = self.optional_const(node, 1, "min"), self.optional_const(node, 2, "max")
            lo = None if lo_c is None else float(lo_c.reshape(-1)[0])
            hi = None if hi_c is None else float(hi_c.reshape(-1)[0])
        if lo == 0 and hi == 6:
            return nn.ReLU6()
        if lo == 0 and (hi is None or hi == math.inf):
            return nn.ReLU()
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise self.unsupported(node, f"a Clip to [{lo}, {hi}] (supported: both bounds finite, or [0, inf))")
        return nn.Hardtanh(float(lo), float(hi))

    # ------------------------------------------------------------------ convolution, padding, pooling
    def spatial_pads(self, node, a: dict, kernel: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of a Conv/pool from ``pads`` or ``auto_pad``."""
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            pads = tuple(int(v) for v in a.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4 or min(pads) < 0:
                raise self.unsupported(node, f"pads {pads}")
            return pads[0], pads[1], pads[2], pads[3]
        if auto == "VALID":
            return 0, 0, 0, 0
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise self.unsupported(node, f"auto_pad {auto}")
        begin, end = [], []
        for n, k, s, d in zip(self.shape[1:], kernel, stride, dilation):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
        return begin[0], begin[1], end[0], end[1]

    def pad(self, node) -> None:
        self.need_nchw_or_nhwc_image(node)
        a = _attrs(node)
        if a.get("mode", "constant") != "constant":
            raise self.unsupported(node, f"{a.get('mode')} padding (only zero padding is supported)")
        if self.opset < 11:
            pads = np.asarray(a.get("pads", ()))
            value = float(a.get("value", 0.0))
        else:
            pads = self.const(node, node.input[1], "pads")
            v = self.optional_const(node, 2, "constant value")
            value = 0.0 if v is None else float(v.reshape(-1)[0])
            axes_c = self.optional_const(node, 3, "axes")
            if axes_c is not None:
                full = np.zeros(8, dtype=np.int64)
                for i, ax in enumerate(int(x) % 4 for x in axes_c.reshape(-1)):
                    full[ax], full[ax + 4] = pads[i], pads[i + len(axes_c.reshape(-1))]
                pads = full
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        if value != 0.0 or len(pads) != 8 or min(pads) < 0:
            raise self.unsupported(node, f"pads {pads} with value {value:g} (only non-negative zero padding of "
                                   "the spatial axes is supported)")
        h_ax, w_ax = (2, 3) if self.layout == "NCHW" else (1, 2)
        others = [pads[i] + pads[i + 4] for i in range(4) if i not in (h_ax, w_ax)]
        if any(others):
            raise self.unsupported(node, f"pads {pads} pad the batch or channel axis")
        self.flush()
        t, left, b, r = self.pending_pad
        self.pending_pad = (t + pads[h_ax], left + pads[w_ax], b + pads[h_ax + 4], r + pads[w_ax + 4])

    def need_nchw_or_nhwc_image(self, node) -> None:
        if len(self.shape) != 3:
            raise self.unsupported(node, "it reads a vector; it needs an image")

    def conv(self, node) -> None:
        self.need_nchw(node)
        a = _attrs(node)
        w = self.const(node, node.input[1], "weight").astype(np.float64)
        bias = self.optional_const(node, 2, "bias")
        if w.ndim != 4:
            raise self.unsupported(node, f"a {w.ndim - 2}-D convolution (only 2-D)")
        kernel = (int(w.shape[2]), int(w.shape[3]))
        stride = tuple(int(v) for v in a.get("strides", (1, 1)))
        dilation = tuple(int(v) for v in a.get("dilations", (1, 1)))
        groups = int(a.get("group", 1))
        if w.shape[1] * groups != self.shape[0]:
            raise self.unsupported(node, f"its weight takes {w.shape[1] * groups} channels, the tensor has "
                                   f"{self.shape[0]}")
        self.flush(keep_pad=True)
        t, left, b, r = self.spatial_pads(node, a, kernel, stride, dilation)  # type: ignore[arg-type]
        pt, pl, pb, pr = self.pending_pad
        t, left, b, r = t + pt, left + pl, b + pb, r + pr
        self.pending_pad = (0, 0, 0, 0)
        ch, cw = min(t, b), min(left, r)
        if (t, left, b, r) != (ch, cw, ch, cw):
            self.pending_pad = (t - ch, left - cw, b - ch, r - cw)
            self.flush()  # the asymmetric rest as an nn.ZeroPad2d before the conv
        _, h, wd = self.shape
        oh = (h + 2 * ch - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        ow = (wd + 2 * cw - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        if oh < 1 or ow < 1:
            raise self.unsupported(node, f"its output would be empty ({oh}x{ow})")
        if bias is not None and bias.size != w.shape[0]:
            raise self.unsupported(node, f"{bias.size} bias values for {w.shape[0]} filters")
        self.pending = _PendingConv(w, None if bias is None else bias.astype(np.float64).reshape(-1),
                                    stride, (ch, cw), dilation, groups)  # type: ignore[arg-type]
        self.shape = (int(w.shape[0]), oh, ow)

    def pool(self, node) -> None:
        from torch import nn

        self.need_nchw(node)
        a = _attrs(node)
        if len([o for o in node.output if o]) != 1:
            raise self.unsupported(node, "its indices output is used")
        kernel = tuple(int(v) for v in a.get("kernel_shape", ()))
        if len(kernel) != 2:
            raise self.unsupported(node, f"kernel_shape {kernel} (only 2-D pooling)")
        stride = tuple(int(v) for v in a.get("strides", (1, 1)))
        dilation = tuple(int(v) for v in a.get("dilations", (1, 1)))
        t, left, b, r = self.spatial_pads(node, a, kernel, stride, dilation)  # type: ignore[arg-type]
        if (t, left) != (b, r):
            raise self.unsupported(node, f"asymmetric pooling pads (top, left, bottom, right) = {(t, left, b, r)}")
        if t > kernel[0] // 2 or left > kernel[1] // 2:
            raise self.unsupported(node, f"pads {(t, left)} larger than half the kernel {kernel}")
        ceil = bool(a.get("ceil_mode", 0))
        self.flush()
        if node.op_type == "MaxPool":
            module = nn.MaxPool2d(kernel, stride, (t, left), dilation, ceil_mode=ceil)
        else:
            if dilation != (1, 1):
                raise self.unsupported(node, f"dilations {dilation}")
            module = nn.AvgPool2d(kernel, stride, (t, left), ceil_mode=ceil,
                                  count_include_pad=bool(a.get("count_include_pad", 0)))
        self.features.append(module)
        self.shape = self.probe_shape()

    def probe_shape(self) -> tuple[int, int, int]:
        """The torch shape after the features built so far (run on zeros)."""
        import torch
        from torch import nn

        with torch.no_grad():
            out = nn.Sequential(*self.features).eval()(torch.zeros(1, *self.first_shape))
        return tuple(int(v) for v in out.shape[1:])  # type: ignore[return-value]

    def global_pool(self, node, keepdims: bool) -> None:
        from torch import nn

        if len(self.shape) != 3:
            raise self.unsupported(node, "it reads a vector")
        self.flush()
        _, h, w = self.shape
        self.features.append(nn.AvgPool2d((h, w), (h, w)))
        self.gap_index = len(self.features) - 1
        self.shape = (self.shape[0], 1, 1)
        if not keepdims:
            self.start_dense(node)

    def reduce_mean(self, node) -> None:
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = self.const(node, node.input[1], "axes").reshape(-1).tolist()
        spatial = {2, 3} if self.layout == "NCHW" else {1, 2}
        if len(self.shape) != 3 or axes is None or {int(x) % 4 for x in axes} != spatial:
            raise self.unsupported(node, f"ReduceMean over axes {axes} (only over the two spatial axes)")
        self.global_pool(node, keepdims=bool(a.get("keepdims", 1)))

    def lrn(self, node) -> None:
        from torch import nn

        self.need_nchw(node)
        a = _attrs(node)
        self.flush()
        self.features.append(nn.LocalResponseNorm(int(a["size"]), float(a.get("alpha", 1e-4)),
                                                  float(a.get("beta", 0.75)), float(a.get("bias", 1.0))))

    # ------------------------------------------------------------------ flatten and classifier
    def flatten(self, node) -> None:
        c, h, w = self.shape if len(self.shape) == 3 else (0, 0, 0)
        if len(self.shape) != 3:
            raise self.unsupported(node, "the tensor is already flat")
        n = c * h * w
        if node.op_type == "Flatten":
            if int(_attrs(node).get("axis", 1)) != 1:
                raise self.unsupported(node, f"Flatten with axis {_attrs(node).get('axis')} (only 1)")
        elif node.op_type == "Reshape":
            target = [int(v) for v in self.const(node, node.input[1], "shape").reshape(-1)]
            if len(target) != 2 or target[0] not in (1, 0, -1) or target[1] not in (n, -1) or target == [-1, -1]:
                raise self.unsupported(node, f"Reshape to {target} (only to (batch, {n}))")
        else:  # Squeeze
            axes = _attrs(node).get("axes")
            if axes is None and len(node.input) > 1:
                axes = self.const(node, node.input[1], "axes").reshape(-1).tolist()
            spatial = {2, 3} if self.layout == "NCHW" else {1, 2}
            if (h, w) != (1, 1) or axes is None or {int(x) % 4 for x in axes} != spatial:
                raise self.unsupported(node, f"Squeeze of axes {axes} (only the two spatial axes of a 1x1 map)")
        self.start_dense(node)

    def start_dense(self, node) -> None:
        from torch import nn

        self.flush()
        c, h, w = self.shape
        last = self.features[-1] if self.features else None
        if last is not None and self.gap_index == len(self.features) - 1:
            self.features.pop()  # a global average pool: the classifier's adaptive pool (contract)
            self.classifier.append(nn.AdaptiveAvgPool2d(1))
        self.classifier.append(nn.Flatten())
        if self.layout == "NHWC" and h * w > 1:  # ONNX flattens (h, w, c): its position j is torch's order[j]
            self.order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        self.shape = (c * h * w,)
        self.stage = "dense"

    def linear(self, node) -> None:
        if len(self.shape) != 1:
            raise self.unsupported(node, "it reads an image")
        n = self.shape[0]
        if node.op_type == "Gemm":
            a = _attrs(node)
            if int(a.get("transA", 0)):
                raise self.unsupported(node, "transA = 1")
            if node.input[0] != self.cur:
                raise self.unsupported(node, "the tensor is Gemm's second operand")
            b = self.const(node, node.input[1], "weight").astype(np.float64)
            b = b.T if int(a.get("transB", 0)) else b
            weight = float(a.get("alpha", 1.0)) * b.T
            c = self.optional_const(node, 2, "bias")
            bias = None if c is None else float(a.get("beta", 1.0)) * c.astype(np.float64)
        else:
            if node.input[0] != self.cur:
                raise self.unsupported(node, "the tensor is MatMul's second operand")
            b = self.const(node, node.input[1], "weight").astype(np.float64)
            if b.ndim != 2:
                raise self.unsupported(node, f"a MatMul by a {b.ndim}-D constant")
            weight, bias = b.T, None
        if weight.ndim != 2 or weight.shape[1] != n:
            raise self.unsupported(node, f"weight of shape {tuple(weight.shape)} for {n} input features")
        out = weight.shape[0]
        if bias is not None:
            if bias.size not in (1, out) or (bias.ndim == 2 and bias.shape[0] != 1):
                raise self.unsupported(node, f"bias of shape {bias.shape} for {out} outputs")
            bias = np.broadcast_to(bias.reshape(-1), (out,)).copy()
        if self.order is not None:  # columns to torch's flatten order
            cols = np.empty_like(weight)
            cols[:, self.order] = weight
            weight = cols
        if self.pending_in is not None:  # an affine between the previous layer and this one
            shift = weight @ self.pending_in.b
            weight = weight * self.pending_in.a[None, :]
            bias = shift if bias is None else bias + shift
            self.pending_in = None
        self.flush()
        if self.classifier and type(self.classifier[-1]).__name__ == "Linear":
            raise self.unsupported(node, "two Linear layers without an activation between them")
        self.pending = _PendingLinear(weight, bias)
        self.order = None
        self.shape = (out,)

    def final(self, node) -> bool:
        axis = int(_attrs(node).get("axis", -1 if self.opset >= 13 else 1))
        if len(self.shape) != 1 or axis not in (-1, 1):
            raise self.unsupported(node, f"a {node.op_type} over axis {axis} of a non-vector (only over the classes)")
        self.output = "softmax" if node.op_type == "Softmax" else "log_softmax"
        self.output_op = node.op_type
        return True


def convert_graph(graph, *, path: Path, opset: int, input_name: str, output_name: str, size: int,
                  layout: str) -> Converted:
    """Convert the simplified single-chain ``graph`` (module doc); :class:`UnsupportedOpError` otherwise."""
    return _Converter(graph, path, opset).run(input_name, output_name, (3, size, size), layout)
