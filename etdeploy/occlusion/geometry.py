"""Pure geometry of incremental occlusion (docs/method.md §6.1, KRYPTON eq. 8-14).

Everything here works on one spatial axis at a time (the two axes are independent) with
half-open integer ranges ``[a, b)``. A layer (or a fused group of layers) is described by an
:class:`AxisGeom`: effective kernel ``k``, stride ``s``, padding before ``pb`` and after ``pe``.

For a changed input range ``[a, b)`` the changed output range is::

    [max(0, ceil((a + pb - k + 1) / s)), min(n_out, floor((b - 1 + pb) / s) + 1))

and the input needed to compute output ``[o0, o1)`` is ``[o0*s - pb, (o1 - 1)*s - pb + k)``
(in unpadded coordinates; add ``pb`` for coordinates in the padded input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.onnx_graph import mac_count


@dataclass(frozen=True)
class AxisGeom:
    """One axis of a sliding-window op: effective kernel ``k`` (dilation folded in), stride ``s``,
    padding before ``pb`` and after ``pe``."""

    k: int
    s: int
    pb: int
    pe: int

    def out_len(self, n_in: int) -> int:
        return (n_in + self.pb + self.pe - self.k) // self.s + 1

    def then(self, other: AxisGeom) -> AxisGeom:
        """Composition ``other ∘ self`` (``other`` must not pad): one window op equivalent to both."""
        if other.pb or other.pe:
            raise ValueError("only an unpadded op can be folded into a group")
        return AxisGeom(k=self.k + (other.k - 1) * self.s, s=self.s * other.s, pb=self.pb, pe=self.pe)


POINTWISE = AxisGeom(1, 1, 0, 0)


def grid_starts(n: int, patch: int, stride: int) -> np.ndarray:
    """Top-left coordinates ``0, S, 2S, ...`` of every patch that fits: ``(n - P)//S + 1`` values."""
    validate_patch(n, n, patch, stride)
    return np.arange((n - patch) // stride + 1, dtype=np.int64) * stride


def validate_patch(h: int, w: int, patch: int, stride: int) -> None:
    if not isinstance(patch, (int, np.integer)) or patch < 1:
        raise OcclusionError(f"patch size must be a positive integer, got {patch!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise OcclusionError(f"stride must be a positive integer, got {stride!r}")
    if patch > min(h, w):
        raise OcclusionError(f"patch {patch} is larger than the {h}x{w} image; choose a patch <= {min(h, w)}")


def changed_output(a: np.ndarray, b: np.ndarray, g: AxisGeom, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Changed output range for changed input ranges ``[a, b)``: ``(n,), (n,) -> (n,), (n,)``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    o0 = np.maximum(0, -((-(a + g.pb - g.k + 1)) // g.s))
    o1 = np.minimum(n_out, (b - 1 + g.pb) // g.s + 1)
    return o0, np.maximum(o1, o0)


def needed_input(o0: np.ndarray, o1: np.ndarray, g: AxisGeom) -> tuple[np.ndarray, np.ndarray]:
    """Input range (unpadded coordinates) that output ``[o0, o1)`` reads: ``(n,), (n,) -> (n,), (n,)``."""
    o0 = np.asarray(o0, dtype=np.int64)
    o1 = np.asarray(o1, dtype=np.int64)
    return o0 * g.s - g.pb, (o1 - 1) * g.s - g.pb + g.k


def clip_region(o0: np.ndarray, o1: np.ndarray, n_out: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Projective-field threshold: clip ``[o0, o1)`` to at most ``ceil(tau * n_out)`` elements, centred on
    the region's centre (the patch's projection). ``tau = 1`` returns the range unchanged."""
    limit = max(1, math.ceil(tau * n_out - 1e-9))
    o0 = np.asarray(o0, dtype=np.int64)
    o1 = np.asarray(o1, dtype=np.int64)
    length = o1 - o0
    over = length > limit
    if not over.any():
        return o0, o1
    centre2 = o0 + o1  # twice the centre
    start = (centre2 - limit) // 2
    start = np.clip(start, o0, o1 - limit)
    return np.where(over, start, o0), np.where(over, start + limit, o1)


@dataclass(frozen=True)
class AxisStep:
    """Plan of one group on one axis for a set of patch starts (arrays indexed by start).

    ``changed`` = ``(lo, hi)`` changed (possibly clipped) output range; ``win_start`` / ``win`` = the
    constant-size output window actually computed (it contains ``changed``); ``crop_start`` / ``crop`` = the
    input crop in padded input coordinates (``crop = (win - 1)*s + k``).
    """

    lo: np.ndarray
    hi: np.ndarray
    win_start: np.ndarray
    win: int
    crop_start: np.ndarray
    crop: int


def plan_axis(starts: np.ndarray, patch: int, geoms: list[AxisGeom], n_ins: list[int], tau: float = 1.0,
              ) -> list[AxisStep]:
    """Propagate the patch ranges ``[start, start + P)`` through ``geoms`` (one per group).

    ``n_ins[i]`` is the (unpadded) input length of group ``i``. Window sizes are the maximum region
    length over ``starts`` so every position uses the same shapes (windows are shifted inward at the
    borders, never shrunk).
    """
    a = np.asarray(starts, dtype=np.int64)
    b = a + patch
    steps: list[AxisStep] = []
    for g, n_in in zip(geoms, n_ins):
        n_out = g.out_len(n_in)
        lo, hi = changed_output(a, b, g, n_out)
        lo, hi = clip_region(lo, hi, n_out, tau)
        win = int(max(1, int((hi - lo).max()) if len(lo) else 1))
        win = min(win, n_out)
        win_start = np.minimum(lo, n_out - win)
        crop = (win - 1) * g.s + g.k
        steps.append(AxisStep(lo=lo, hi=hi, win_start=win_start, win=win, crop_start=win_start * g.s, crop=crop))
        a, b = lo, hi
    return steps


def redundancy_ratio(layers: list[tuple[AxisGeom, AxisGeom, int, int, int]], h: int, w: int, patch: int) -> dict:
    """KRYPTON eq. 10-14 for a patch centred in an ``h x w`` image.

    ``layers`` = every spatial layer of the prefix in order as ``(gy, gx, macs_per_output, c_out, is_conv)``
    (pools carry MACs 0 but still grow the region). Returns ``{"R", "Q", "Q_inc", "per_layer"}``.
    """
    y0, x0 = (h - patch) // 2, (w - patch) // 2
    ay, by = np.array([y0]), np.array([y0 + patch])
    ax, bx = np.array([x0]), np.array([x0 + patch])
    hh, ww = h, w
    q_total = 0
    q_inc = 0
    per_layer = []
    for gy, gx, macs, c_out, is_conv in layers:
        ho, wo = gy.out_len(hh), gx.out_len(ww)
        ay, by = changed_output(ay, by, gy, ho)
        ax, bx = changed_output(ax, bx, gx, wo)
        hp, wp = int(by[0] - ay[0]), int(bx[0] - ax[0])
        if is_conv:
            q = mac_count((c_out, ho, wo), macs)
            qi = mac_count((c_out, hp, wp), macs)
            q_total += q
            q_inc += qi
            per_layer.append({"out": [ho, wo], "changed": [hp, wp], "Q": q, "Q_inc": qi})
        hh, ww = ho, wo
    return {"R": (q_total / q_inc) if q_inc else math.inf, "Q": q_total, "Q_inc": q_inc, "per_layer": per_layer}
