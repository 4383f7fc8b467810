"""Tuner of approximate occlusion (docs/method.md §6.3): pick ``(tau, r_drill, stage1_stride)`` by SSIM.

On a few tuning images compute the exact maps, then for every candidate ``(tau, r_drill, S1)`` the map
it would produce (assembled from the drill-down's own steps, :mod:`etdeploy.occlusion.drilldown`), its
SSIM against the exact map (:func:`map_ssim`) and its modelled cost (MACs); pick the cheapest candidate
whose *minimum* SSIM over the non-flat tuning maps reaches :func:`required_ssim` = the target plus a
safety margin (default 0.05: measured on the trained AlexNet-227, the cheapest setting that just
reaches 0.9 on three tuning images falls below 0.9 on about one held-out image in nine; with the
margin none did). Maps whose range is below ``flat_threshold`` are flagged and left out (SSIM is
ill-conditioned on them).

Which maps are scored: the requested map kind, unless fewer than ``min_maps`` of its tuning maps are usable
(not flat); then the first fallback kind (default ``logit``) that has enough: a confidently classified
image's probability stays near 1 under every patch, so its ``prob`` map is flat while its logit map is
not. The result records the kind it tuned on and why it fell back. A result that rests on a single
usable map carries a warning (:data:`SINGLE_MAP_WARNING`; also raised as a ``UserWarning``); ``min_maps = 2``
refuses it instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.occlusion.drilldown import coarse_stage, drill_macs, drill_selection, merge_drilled
from etdeploy.occlusion.result import map_values
from etdeploy.records import Record

__all__ = ["DEFAULT_FALLBACK_MAP_KINDS", "DEFAULT_R_DRILLS", "DEFAULT_SSIM_MARGIN", "DEFAULT_STAGE1_FACTORS",
           "DEFAULT_TAUS", "SINGLE_MAP_WARNING", "TuneCandidate", "TuneResult", "map_ssim", "required_ssim",
           "tune_approx"]

DEFAULT_TAUS = (1.0, 0.8, 0.6, 0.5, 0.4)
DEFAULT_R_DRILLS = (1.0, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05, 0.02, 0.0)
DEFAULT_SSIM_MARGIN = 0.05
DEFAULT_STAGE1_FACTORS = (2, 3, 4)
DEFAULT_FALLBACK_MAP_KINDS = ("logit",)

#: Why one tuning map is weak evidence (said by the refusal and by the warning).
SINGLE_MAP_WARNING = (
    "a setting tuned on a single map is only known to reach the SSIM bar on that one map: the tuner picks the "
    "cheapest candidate that just clears the bar there, and on the trained AlexNet-227 even three tuning maps "
    "left ~10 % of held-out maps below the target without the margin (docs/method.md §6.3)")


def required_ssim(target_ssim: float, margin: float) -> float:
    """The SSIM the tuning maps must reach: ``target_ssim + margin``, at most 1."""
    return min(1.0, target_ssim + margin)


def map_ssim(reference: np.ndarray, approx: np.ndarray) -> float:
    """SSIM of ``approx`` against ``reference`` (both ``(ny, nx)``), ``data_range`` = reference max - min."""
    from skimage.metrics import structural_similarity

    reference = np.asarray(reference, dtype=np.float64)
    approx = np.asarray(approx, dtype=np.float64)
    data_range = float(reference.max() - reference.min())
    if data_range <= 0:
        raise OcclusionError("SSIM is undefined on a constant reference map")
    win = min(7, *reference.shape)
    win = win if win % 2 else win - 1
    if win < 3:
        raise OcclusionError(f"map {reference.shape} is too small for SSIM (needs at least 3x3 positions)")
    return float(structural_similarity(reference, approx, data_range=data_range, win_size=win))


@dataclass(frozen=True)
class TuneCandidate(Record):
    """One ``(tau, r_drill, stage1_stride)`` tried: its modelled MACs and speedup, SSIM per tuning map."""

    tau: float
    r_drill: float
    stage1_stride: int | None
    macs: int
    modelled_speedup: float
    ssim: tuple[float, ...]

    @property
    def min_ssim(self) -> float:
        return min(self.ssim) if self.ssim else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "min_ssim": self.min_ssim}


@dataclass(frozen=True)
class TuneResult(Record):
    """Chosen ``(tau, r_drill, stage1_stride)``, its SSIM on the non-flat tuning maps and modelled speedup
    (naive MACs / approximate MACs); ``flat_images`` lists ``(image index, map range)`` of excluded maps;
    ``images``: names of the tuning images when the caller knows them (``used_images`` and ``flat_images``
    index them). ``map_kind``: the kind the maps were scored on (and the drill-down selects by);
    ``requested_map_kind`` the one asked for and ``fallback`` why they differ (None: no fallback);
    ``warning``: why the result is weak evidence (it rests on a single usable map), or None.
    ``to_dict()`` is what explain summaries and the report record as the tuning."""

    tau: float
    r_drill: float
    stage1_stride: int | None
    target_ssim: float
    margin: float
    map_kind: str
    min_ssim: float
    mean_ssim: float
    modelled_speedup: float
    used_images: tuple[int, ...]
    flat_images: tuple[tuple[int, float], ...]
    candidates: tuple[TuneCandidate, ...] = field(repr=False, default=())
    images: tuple[str, ...] = ()
    requested_map_kind: str | None = None
    fallback: str | None = None
    warning: str | None = None

    @property
    def flat(self) -> tuple[tuple[int, float], ...]:
        return self.flat_images

    @property
    def required_ssim(self) -> float:
        return required_ssim(self.target_ssim, self.margin)

    def as_dict(self) -> dict[str, Any]:
        return self.to_dict()

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`IncrementalOcclusionExecutor.run` (``mode='approx'``)."""
        return {"mode": "approx", "tau": self.tau, "r_drill": self.r_drill, "stage1_stride": self.stage1_stride,
                "map_kind": self.map_kind}


def tune_approx(executor, images: Sequence[np.ndarray], *, target_ssim: float = 0.9, map_kind: str = "prob",
                target_classes: Sequence[int | None] | None = None, taus: Sequence[float] = DEFAULT_TAUS,
                r_drills: Sequence[float] = DEFAULT_R_DRILLS,
                stage1_factors: Sequence[int] = DEFAULT_STAGE1_FACTORS, flat_threshold: float = 0.05,
                margin: float = DEFAULT_SSIM_MARGIN, fallback_map_kinds: Sequence[str] = DEFAULT_FALLBACK_MAP_KINDS,
                min_maps: int = 1, progress: bool = False) -> TuneResult:
    """Pick the cheapest ``(tau, r_drill, stage1_stride)`` whose maps on ``images`` reach ``target_ssim + margin``.

    ``images``: ``(C, H, W)`` normalised tuning images; their exact maps are the references. Every
    candidate's map is assembled from the same per-position results the real drill-down would compute
    (stage-1 logits, interpolation, selection, stage-2 logits), so its SSIM is that of the real run.
    ``margin`` (capped so that the bar is at most 1) guards held-out images: the tuning images are few, and
    the cheapest setting that just reaches the target on them sits on the edge for other images.
    The exact configuration (tau = 1, r_drill = 1) is always a candidate, so the result always meets the
    target. Maps are scored on ``map_kind``, or on the first of ``fallback_map_kinds`` with at least
    ``min_maps`` usable (non-flat) maps when ``map_kind`` has fewer (recorded in the result). Raises
    :class:`OcclusionError` if no kind has ``min_maps`` usable maps (every map flat, or too few usable);
    warns (``UserWarning``, :data:`SINGLE_MAP_WARNING`) when the result rests on a single map.
    """
    if not -1.0 < target_ssim <= 1.0:
        raise OcclusionError(f"target SSIM must be in (-1, 1], got {target_ssim}")
    if not 0.0 <= margin < 1.0:
        raise OcclusionError(f"SSIM margin must be in [0, 1), got {margin}")
    if not images:
        raise OcclusionError("tuning needs at least one image")
    if min_maps < 1:
        raise OcclusionError(f"the minimum number of usable tuning maps must be >= 1, got {min_maps}")
    classes = list(target_classes) if target_classes is not None else [None] * len(images)
    if len(classes) != len(images):
        raise OcclusionError(f"{len(classes)} target classes for {len(images)} tuning images")
    taus = sorted({float(t) for t in taus} | {1.0}, reverse=True)
    r_drills = sorted({float(r) for r in r_drills} | {1.0}, reverse=True)
    stride, patch = executor.stride, executor.patch
    h = executor.input_hw[0]
    fine = executor.plan(stride, 1.0)
    ny, nx = fine.grid_shape
    all_y, all_x = np.divmod(np.arange(ny * nx), nx)
    stage1 = [f * stride for f in stage1_factors if f > 1 and (h - patch) // (f * stride) >= 1]

    # per image: base, target, exact logits; then the map kind to score on
    exacts = []
    for image, cls in zip(images, classes):
        base = executor.base(image)
        target = executor._target(base.logits, cls)
        exact = executor.logits_at(base, all_y, all_x, progress=progress).reshape(ny, nx, -1)
        exacts.append((base, target, exact))
    requested = map_kind
    map_kind, fallback, prepared, flat = _scored_maps(exacts, map_kind, fallback_map_kinds, flat_threshold, min_maps)
    weak = None
    if len(prepared) == 1:
        weak = f"tuned on a single usable '{map_kind}' map: {SINGLE_MAP_WARNING}"
        warnings.warn(weak, UserWarning, stacklevel=2)

    candidates: list[TuneCandidate] = []
    naive_macs = ny * nx * executor.naive_macs_per_position
    for tau in taus:
        fine_tau = executor.plan(stride, tau)
        per_image_fine = []
        for _, base, _, exact, _ in prepared:
            per_image_fine.append(exact if tau == 1.0 else executor.logits_at(
                base, all_y, all_x, tau=tau, progress=progress).reshape(ny, nx, -1))
        macs = ny * nx * fine_tau.macs_per_position
        ssims = tuple(map_ssim(ref, map_values(f, base.logits, target, map_kind))
                      for (_, base, target, _, ref), f in zip(prepared, per_image_fine))
        candidates.append(TuneCandidate(tau, 1.0, None, int(macs), naive_macs / macs, ssims))
        for s1 in stage1:
            stages = [coarse_stage(executor, base, tau=tau, stage1_stride=s1) for _, base, _, _, _ in prepared]
            for r in r_drills:
                if r >= 1.0:
                    continue
                ssims_r = []
                n_rec = 0
                for (_, base, target, _, ref), f, stage in zip(prepared, per_image_fine, stages):
                    select = drill_selection(stage.interp, base.logits, target, stage.coincident, r, map_kind)
                    n_rec = int(select.sum())
                    mixed = merge_drilled(stage.interp, select, f[select])
                    ssims_r.append(map_ssim(ref, map_values(mixed, base.logits, target, map_kind)))
                macs_r = drill_macs(stages[0], n_rec, fine_tau.macs_per_position)
                candidates.append(TuneCandidate(tau, r, s1, int(macs_r), naive_macs / macs_r, tuple(ssims_r)))
    bar = required_ssim(target_ssim, margin)
    ok = [c for c in candidates if c.min_ssim >= bar - 1e-12]
    best = min(ok, key=lambda c: (c.macs, -c.min_ssim))
    return TuneResult(tau=best.tau, r_drill=best.r_drill, stage1_stride=best.stage1_stride, target_ssim=target_ssim,
                      margin=float(margin), map_kind=map_kind, min_ssim=best.min_ssim,
                      mean_ssim=float(np.mean(best.ssim)), modelled_speedup=best.modelled_speedup,
                      used_images=tuple(p[0] for p in prepared), flat_images=tuple(flat), candidates=tuple(candidates),
                      requested_map_kind=requested, fallback=fallback, warning=weak)


def _scored_maps(exacts, requested: str, fallbacks: Sequence[str], flat_threshold: float, min_maps: int):
    """The map kind to tune on: ``requested`` if at least ``min_maps`` of its maps are usable (range >=
    ``flat_threshold``), else the first of ``fallbacks`` that has that many. Returns ``(kind, why it is not
    the requested one or None, [(index, base, target, exact logits, map)] usable, [(index, range)] flat)``."""
    kinds = list(dict.fromkeys([requested, *fallbacks]))
    tried = []
    for kind in kinds:
        usable, flat = [], []
        for index, (base, target, exact) in enumerate(exacts):
            ref = map_values(exact, base.logits, target, kind)
            value_range = float(ref.max() - ref.min())
            if value_range < flat_threshold:
                flat.append((index, value_range))
            else:
                usable.append((index, base, target, exact, ref))
        tried.append((kind, len(usable)))
        if len(usable) >= min_maps:
            why = None if kind == requested else (
                f"{len(exacts) - tried[0][1]} of {len(exacts)} '{requested}' tuning maps are flat (range < "
                f"{flat_threshold}); tuned on '{kind}' maps")
            return kind, why, usable, flat
    counts = ", ".join(f"'{kind}': {n}" for kind, n in tried)
    if all(n == 0 for _, n in tried):
        raise OcclusionError(f"every tuning map is flat (range < {flat_threshold}) on the map kinds tried ({counts} "
                             "usable); SSIM is meaningless there: tune on other images (--tune-image)")
    raise OcclusionError(f"too few usable tuning maps: {min_maps} needed, usable per map kind {counts} of "
                         f"{len(exacts)} images; {SINGLE_MAP_WARNING}. Give more tuning images (--tune-image), or "
                         "accept a single map explicitly (--min-tune-maps 1, min_tuning_maps=1)")
