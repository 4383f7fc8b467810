"""Occlusion results and the map variants derived from per-position logits.

The executor keeps the logits of every class at every patch position, so maps for any class and any
variant come from one run:

* ``prob``    softmax probability of class ``c`` with the patch in place (docs/method.md §6, the default);
* ``drop``    unoccluded probability minus occluded probability (positive = the patch hurts class ``c``);
* ``logit``   raw logit of ``c``;
* ``logprob`` log-softmax of ``c`` (saturates less than ``prob`` on confident images; better for SSIM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.vocab import MAP_KINDS

__all__ = ["MAP_KINDS", "OcclusionResult", "log_softmax", "map_values"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``(..., K) -> (..., K)`` in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def map_values(logits: np.ndarray, base_logits: np.ndarray, target: int, kind: str = "prob") -> np.ndarray:
    """``(ny, nx, K), (K,) -> (ny, nx)`` float64 map of class ``target``."""
    if kind not in MAP_KINDS:
        raise OcclusionError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")
    k = logits.shape[-1]
    if not 0 <= target < k:
        raise OcclusionError(f"class {target} is out of range for a model with {k} classes")
    if kind == "logit":
        return np.asarray(logits[..., target], dtype=np.float64)
    lp = log_softmax(logits)[..., target]
    if kind == "logprob":
        return lp
    p = np.exp(lp)
    if kind == "prob":
        return p
    return float(np.exp(log_softmax(base_logits)[target])) - p


@dataclass
class OcclusionResult:
    """Occlusion run on one image.

    ``logits``: ``(ny, nx, K)`` float32, position ``(i, j)`` has its patch's top-left corner at
    ``(starts_y[i], starts_x[j])``; ``base_logits``: ``(K,)`` of the unoccluded image; ``target``: the
    class of :meth:`map` by default (the predicted class unless asked otherwise). ``exact_mask``
    ``(ny, nx)`` marks positions computed (not interpolated); ``macs`` counts multiply-accumulates spent.
    """

    logits: np.ndarray
    base_logits: np.ndarray
    target: int
    patch: int
    stride: int
    starts_y: np.ndarray
    starts_x: np.ndarray
    image_hw: tuple[int, int]
    mode: str
    tau: float = 1.0
    r_drill: float = 1.0
    stage1_stride: int | None = None
    exact_mask: np.ndarray | None = None
    macs: int = 0
    naive_macs: int = 0
    seconds: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.logits.shape[0]), int(self.logits.shape[1])

    def map(self, kind: str = "prob", target: int | None = None) -> np.ndarray:
        """``(ny, nx)`` map of ``target`` (default: this result's class)."""
        return map_values(self.logits, self.base_logits, self.target if target is None else int(target), kind)

    def summary(self) -> dict[str, Any]:
        """Deterministic description (no timings)."""
        return {
            "mode": self.mode, "patch": self.patch, "stride": self.stride, "map_shape": list(self.shape),
            "image_hw": list(self.image_hw), "target": self.target, "tau": self.tau, "r_drill": self.r_drill,
            "stage1_stride": self.stage1_stride, "macs": int(self.macs), "naive_macs": int(self.naive_macs),
            "modelled_speedup": (self.naive_macs / self.macs) if self.macs else None,
            "base_probability": float(np.exp(log_softmax(self.base_logits)[self.target])),
        }
