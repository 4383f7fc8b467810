"""Adaptive drill-down of approximate occlusion (docs/method.md §6.3).

The projective-field threshold ``tau`` lives in the executor's plan
(:func:`~etdeploy.occlusion.geometry.clip_region`). The drill-down works in two stages:

1. :func:`coarse_stage`: the map on the coarse grid (stride ``S1 > S``); its logits are interpolated
   (bilinear, in patch-position space, :func:`interp_grid`) onto the fine grid of stride ``S``;
2. :func:`drill_selection`: the fraction ``r_drill`` of the fine positions not already on the coarse
   grid (:func:`coincident_mask`) whose interpolated map value (of the map kind being tuned:
   probability, logit, ...) moved most from the unoccluded one is recomputed at stride ``S``;
   :func:`merge_drilled` puts those logits into the interpolated ones. ``r_drill = 0`` keeps stage 1
   alone.

Cost: ``MACs = n1y * n1x * MACs_per_position(S1, tau) + n_selected * MACs_per_position(S, tau)``
(:func:`drill_macs`). :func:`drill_down` runs both stages for one image; the tuner
(:mod:`etdeploy.occlusion.tuner`) assembles its candidates from the same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.occlusion.geometry import grid_starts
from etdeploy.occlusion.result import map_values

__all__ = ["CoarseStage", "coarse_stage", "coincident_mask", "drill_down", "drill_macs", "drill_selection",
           "interp_grid", "merge_drilled"]


def interp_grid(coarse: np.ndarray, cy: np.ndarray, cx: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``(n1y, n1x, K)`` values at coarse starts onto fine starts -> ``(ny, nx, K)``.

    Fine starts beyond the last coarse start take the edge value.
    """
    def axis(c: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.interp(f.astype(np.float64), c.astype(np.float64), np.arange(len(c), dtype=np.float64))
        i0 = np.floor(t).astype(np.int64)
        i1 = np.minimum(i0 + 1, len(c) - 1)
        return i0, i1, t - i0

    y0, y1, wy = axis(cy, fy)
    x0, x1, wx = axis(cx, fx)
    c = np.asarray(coarse, dtype=np.float64)
    top = c[y0][:, x0] * (1 - wx)[None, :, None] + c[y0][:, x1] * wx[None, :, None]
    bottom = c[y1][:, x0] * (1 - wx)[None, :, None] + c[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def coincident_mask(cy: np.ndarray, cx: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """``(ny, nx)`` True where a fine position is also a coarse (stage-1) position."""
    return np.isin(fy, cy)[:, None] & np.isin(fx, cx)[None, :]


def drill_selection(interp_logits: np.ndarray, base_logits: np.ndarray, target: int, coincident: np.ndarray,
                    r_drill: float, map_kind: str = "prob") -> np.ndarray:
    """``(ny, nx, K) -> (ny, nx)`` bool: the ``ceil(r_drill * n)`` non-coincident positions whose interpolated
    ``map_kind`` value of class ``target`` moved most from the unoccluded one (ties broken by position order)."""
    values = map_values(interp_logits, base_logits, target, map_kind)
    unoccluded = map_values(np.asarray(base_logits)[None, None], base_logits, target, map_kind)[0, 0]
    change = np.abs(values - unoccluded)
    candidates = np.flatnonzero(~coincident.reshape(-1))
    n = math.ceil(r_drill * len(candidates) - 1e-9)
    order = candidates[np.argsort(-change.reshape(-1)[candidates], kind="stable")][:n]
    mask = np.zeros(coincident.size, dtype=bool)
    mask[order] = True
    return mask.reshape(coincident.shape)


def merge_drilled(interp_logits: np.ndarray, select: np.ndarray, fine_logits: np.ndarray | None) -> np.ndarray:
    """Stage-2 logits into the interpolated ones: ``(ny, nx, K), (ny, nx), (n_selected, K) -> (ny, nx, K)``
    float32; ``fine_logits`` row ``i`` belongs to the ``i``-th selected position in row-major order."""
    logits = np.asarray(interp_logits).astype(np.float32)
    if fine_logits is not None and len(fine_logits):
        logits[select] = fine_logits
    return logits


@dataclass(frozen=True)
class CoarseStage:
    """Stage 1 of one image at one ``(stage1_stride, tau)``: coarse starts, coarse logits ``(n1y, n1x, K)``,
    their interpolation onto the fine grid ``(ny, nx, K)`` (float64), the coincident positions ``(ny, nx)``
    and the stage's MACs (``n1y * n1x * MACs_per_position(S1, tau)``)."""

    stride: int
    tau: float
    starts_y: np.ndarray
    starts_x: np.ndarray
    logits: np.ndarray
    interp: np.ndarray
    coincident: np.ndarray
    macs: int


def coarse_stage(executor, base, *, tau: float, stage1_stride: int, progress: bool = False) -> CoarseStage:
    """Run stage 1 on the cached ``base`` activations of one image (see the module docstring)."""
    stride, patch = executor.stride, executor.patch
    if stage1_stride <= stride:
        raise OcclusionError(f"stage-1 stride {stage1_stride} must be larger than the stride {stride}")
    h, w = executor.input_hw
    fine = executor.plan(stride, tau)
    coarse = executor.plan(stage1_stride, tau)
    cy, cx = grid_starts(h, patch, stage1_stride), grid_starts(w, patch, stage1_stride)
    n1y, n1x = len(cy), len(cx)
    iy, ix = np.divmod(np.arange(n1y * n1x), n1x)
    coarse_logits = executor.logits_at(base, iy, ix, stride=stage1_stride, tau=tau, progress=progress)
    coarse_logits = coarse_logits.reshape(n1y, n1x, -1)
    return CoarseStage(stride=int(stage1_stride), tau=float(tau), starts_y=cy, starts_x=cx, logits=coarse_logits,
                       interp=interp_grid(coarse_logits, cy, cx, fine.starts_y, fine.starts_x),
                       coincident=coincident_mask(cy, cx, fine.starts_y, fine.starts_x),
                       macs=int(n1y * n1x * coarse.macs_per_position))


def drill_macs(stage: CoarseStage, n_selected: int, fine_macs_per_position: int) -> int:
    """``stage.macs + n_selected * fine_macs_per_position``: the modelled cost of one drill-down."""
    return int(stage.macs + n_selected * fine_macs_per_position)


def drill_down(executor, base, target: int, *, tau: float, r_drill: float, stage1_stride: int,
               map_kind: str = "prob", progress: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the two-stage drill-down. Returns ``(logits (ny, nx, K), computed mask (ny, nx), MACs)``."""
    stage = coarse_stage(executor, base, tau=tau, stage1_stride=stage1_stride, progress=progress)
    fine = executor.plan(executor.stride, tau)
    select = drill_selection(stage.interp, base.logits, target, stage.coincident, r_drill, map_kind)
    sy, sx = np.nonzero(select)
    fine_logits = None
    if len(sy):
        fine_logits = executor.logits_at(base, sy, sx, stride=executor.stride, tau=tau, progress=progress)
    logits = merge_drilled(stage.interp, select, fine_logits)
    return logits, select | stage.coincident, drill_macs(stage, len(sy), fine.macs_per_position)
