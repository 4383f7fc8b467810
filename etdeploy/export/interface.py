"""The deployable's interface: how the user's original ONNX model is called, kept by every export of it.

An ONNX import (``etdeploy import --onnx``) records in the model spec ``meta["interface"]``::

    {"layout": "NHWC" | "NCHW", "input_name": str, "output_name": str,
     "output": "logits" | "softmax" | "log_softmax",
     "input_affine": null | {"scale": [3 floats], "bias": [3 floats]}, "opset": int}

``input_affine`` is the per-channel affine the original applied to its input before the first conv,
folded out by the import: ``original_input * scale + bias`` = the imported model's NCHW input ``x``
(``x = (uint8 / 255 - mean) / std`` with the spec's ``mean``/``std``). Masked, sliced and fine-tuned
models keep the spec's ``meta``, so they carry the interface forward.

:func:`interface_of` reads it (``None`` for a model etdeploy trained: its exports keep the plain
``input``/``logits`` NCHW contract). An :class:`Interface` converts the imported model's input into the
deployable's (:meth:`Interface.deployable_input`), gives the deployable's own normalisation
(:meth:`Interface.normalisation`) and applies the output kind to logits (:meth:`Interface.output_of`).
:func:`deployable_module` wraps a torch model so that it is called like the original (the export
uses it); :func:`logits_tap` finds the logits inside an ONNX graph whose output is a Softmax, so
parity can compare logits (docs/method.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from etdeploy.errors import ModelError
from etdeploy.onnx_graph import final_activation
from etdeploy.records import Record, RecordError

INTERFACE_LAYOUTS = ("NCHW", "NHWC")
INTERFACE_OUTPUTS = ("logits", "softmax", "log_softmax")

__all__ = ["INTERFACE_LAYOUTS", "INTERFACE_OUTPUTS", "InputAffine", "Interface", "deployable_module",
           "interface_of", "logits_tap"]


@dataclass(frozen=True)
class InputAffine(Record):
    """``original_input * scale + bias`` = the imported model's input, per channel (RGB)."""

    scale: tuple[float, ...]
    bias: tuple[float, ...]


@dataclass(frozen=True)
class Interface(Record):
    """How the original (and therefore the deployable) ONNX model is called: input layout and name,
    output name and kind, the input affine the import folded out, and the original's opset."""

    layout: str
    input_name: str
    output_name: str
    output: str
    input_affine: InputAffine | None = None
    opset: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in INTERFACE_LAYOUTS:
            raise RecordError(f"interface layout must be one of {', '.join(INTERFACE_LAYOUTS)}, got {self.layout!r}")
        if self.output not in INTERFACE_OUTPUTS:
            raise RecordError(f"interface output must be one of {', '.join(INTERFACE_OUTPUTS)}, got {self.output!r}")
        if not self.input_name or not self.output_name:
            raise RecordError("interface input and output names must be non-empty")
        a = self.input_affine
        if a is not None and (len(a.scale) != 3 or len(a.bias) != 3 or not all(np.isfinite(a.scale + a.bias))
                              or any(s == 0 for s in a.scale)):
            raise RecordError(f"interface input_affine needs 3 finite non-zero scales and 3 finite biases, got {a}")

    def input_shape(self, size: int) -> list[Any]:
        """The deployable's input shape, symbolic batch: ``["batch", S, S, 3]`` (NHWC) or ``["batch", 3, S, S]``."""
        return ["batch", size, size, 3] if self.layout == "NHWC" else ["batch", 3, size, size]

    def deployable_input(self, x: np.ndarray) -> np.ndarray:
        """The imported model's float32 input ``(b, 3, S, S)`` -> the original's (NHWC or NCHW), float32."""
        x = np.asarray(x, dtype=np.float32)
        if self.input_affine is not None:
            scale = np.asarray(self.input_affine.scale, np.float32).reshape(1, 3, 1, 1)
            bias = np.asarray(self.input_affine.bias, np.float32).reshape(1, 3, 1, 1)
            x = (x - bias) / scale
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def normalisation(self, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean', std')`` of the deployable's input: ``original_input = (uint8 / 255 - mean') / std'``,
        given the imported model's ``mean``/``std`` (``mean' = mean + bias * std``, ``std' = std * scale``)."""
        if self.input_affine is None:
            return tuple(float(v) for v in mean), tuple(float(v) for v in std)
        a = self.input_affine
        return (tuple(float(m + b * s) for m, b, s in zip(mean, a.bias, std)),
                tuple(float(s * k) for s, k in zip(std, a.scale)))

    def output_of(self, logits: np.ndarray) -> np.ndarray:
        """What the deployable outputs for these ``(b, K)`` logits (softmax/log-softmax in float64), float32."""
        z = np.asarray(logits, dtype=np.float64)
        if self.output == "logits":
            return z.astype(np.float32)
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return (np.exp(log_p) if self.output == "softmax" else log_p).astype(np.float32)


def interface_of(spec: Any) -> Interface | None:
    """The spec's ``meta["interface"]`` as an :class:`Interface`; ``None`` when it has none."""
    meta = getattr(spec, "meta", None) or {}
    raw = meta.get("interface")
    if raw is None:
        return None
    try:
        return Interface.from_dict(raw, where='meta["interface"]')
    except RecordError as exc:
        raise ModelError(f"the model spec's interface is not valid: {exc.message}") from exc


def deployable_module(model, interface: Interface):
    """``model`` (``(b, 3, S, S)`` normalised -> ``(b, K)`` logits) called like the original:
    the original's input (NHWC through a ``Transpose``, the input affine re-applied as ``Mul``/``Add``)
    and its output kind (``Softmax``/``LogSoftmax`` over the classes appended)."""
    import torch
    from torch import nn

    class Deployable(nn.Module):
        """``original input -> model -> output kind``; the wrapped model is ``self.model``."""

        def __init__(self):
            super().__init__()
            self.model = model
            affine = interface.input_affine
            self.affine = affine is not None
            if affine is not None:
                self.register_buffer("scale", torch.tensor(affine.scale, dtype=torch.float32).reshape(1, 3, 1, 1))
                self.register_buffer("bias", torch.tensor(affine.bias, dtype=torch.float32).reshape(1, 3, 1, 1))

        def forward(self, x):
            if interface.layout == "NHWC":
                x = x.permute(0, 3, 1, 2)
            if self.affine:
                x = x * self.scale + self.bias
            y = self.model(x)
            if interface.output == "softmax":
                return torch.softmax(y, dim=1)
            if interface.output == "log_softmax":
                return torch.log_softmax(y, dim=1)
            return y

    return Deployable().eval()


def logits_tap(proto, interface: Interface | None) -> str | None:
    """Name of the logits tensor of an ONNX graph called through ``interface``: the graph output itself
    for ``logits``; the input of the final ``Softmax``/``LogSoftmax`` (over the last axis of a 2-D
    output, past ``Identity``/``Cast`` nodes) otherwise; ``None`` when no such node produces the output."""
    output = proto.graph.output[0].name
    if interface is None or interface.output == "logits":
        return output
    found = final_activation(proto)
    wanted = "Softmax" if interface.output == "softmax" else "LogSoftmax"
    return found[1] if found is not None and found[0] == wanted else None
