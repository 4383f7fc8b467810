"""Accuracy vs neurons masked, without retraining (docs/method.md §3, paper Fig. 9-11).

For one layer ``F(x) = G(H(x))``: ``H(x)`` is computed **once** for every image; each grid point of
each schedule then only runs ``G`` on ``H(x) * mask``. Masks of the other layers stay as they are in
the model (normally none).

Area under a curve: trapezoid rule over ``x = neurons masked / layer width``, divided by the swept
x range, so it lies in ``[0, 1]`` (1 = accuracy 1 everywhere) and curves on the same grid compare
directly.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etdeploy.attribution.result import Ranking
from etdeploy.errors import PruningError
from etdeploy.pruning.masking import check_ranking, kept_count, kept_from_order, resolve_layers
from etdeploy.pruning.schedules import pruning_order, validate_schedule

DEFAULT_POINTS = 21


@dataclass(frozen=True)
class SweepCurve:
    """One schedule's curve: ``counts`` ``(p,)``, ``accuracy`` ``(p,)``, ``per_class`` ``(p, K)`` (None: no images)."""

    schedule: str
    counts: tuple[int, ...]
    accuracy: tuple[float, ...]
    per_class: tuple[tuple[float | None, ...], ...]
    auc: float
    auc_per_class: tuple[float | None, ...]


@dataclass(frozen=True)
class SweepResult:
    layer: str
    width: int
    classes: tuple[str, ...]
    n_images: int
    curves: dict[str, SweepCurve]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "width": self.width, "classes": list(self.classes), "n_images": self.n_images,
                "settings": self.settings,
                "curves": {name: {"counts": list(c.counts),
                                  "fractions": [round(v / self.width, 9) for v in c.counts],
                                  "accuracy": list(c.accuracy), "per_class_accuracy": [list(r) for r in c.per_class],
                                  "auc": c.auc, "auc_per_class": list(c.auc_per_class)}
                           for name, c in self.curves.items()}}


def sweep_grid(width: int, *, counts: Sequence[int] | None = None, percents: Sequence[float] | None = None,
               points: int = DEFAULT_POINTS) -> list[int]:
    """Numbers of masked neurons to evaluate (sorted, unique, each in ``[0, width)``).

    ``percents`` map through the same rounding as :func:`~etdeploy.pruning.masking.apply_percent`
    (``width - kept_count(width, q)``); the default is ``points`` evenly spaced counts ``0 .. width-1``.
    """
    if counts is not None and percents is not None:
        raise PruningError("give either counts or percents for the sweep grid, not both")
    if counts is not None:
        grid = [int(c) for c in counts]
        bad = [c for c in grid if not 0 <= c < width]
        if bad:
            raise PruningError(f"sweep counts must be in [0, {width}) (masking all {width} neurons disconnects "
                               f"the output); got {bad[:5]}")
    elif percents is not None:
        grid = [width - kept_count(width, q) for q in percents]
        bad = [q for q, c in zip(percents, grid) if c >= width]
        if bad:
            raise PruningError(f"masking {bad[0]} % of {width} neurons removes every neuron")
    else:
        if points < 2:
            raise PruningError(f"a sweep needs at least 2 points, got {points}")
        grid = [int(np.floor(v + 0.5)) for v in np.linspace(0, width - 1, points)]
    grid = sorted(set(grid))
    if not grid:
        raise PruningError("the sweep grid is empty")
    return grid


def curve_area(fractions: Sequence[float], values: Sequence[float | None]) -> float | None:
    """Trapezoid area under ``values`` over ``fractions``, divided by the x range. ``(p,), (p,) -> float``.

    One point: its value. Any missing value (a class with no images) -> None.
    """
    if any(v is None for v in values):
        return None
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape[0] == 1:
        return float(y[0])
    span = float(x[-1] - x[0])
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return round(area / span, 9)


def layer_activations(model, layer: str, images_uint8: np.ndarray, *, batch_size: int = 256,
                      progress: bool = False) -> tuple[torch.Tensor, torch.nn.Module]:
    """``H(x)`` of ``layer`` with that layer's own mask open, and ``G``. ``(N, 3, S, S) uint8 -> (N, m)``.

    Works on a copy of ``model`` (with masks attached), so ``model`` is unchanged.
    """
    from etdeploy.data.images import normalise
    from etdeploy.models import masks, split_model, with_masks
    from etdeploy.progress import progress_bar

    work = with_masks(copy.deepcopy(model)).eval()
    masks(work)[layer].reset()
    h_part, g_part = split_model(work, layer)
    spec = model.spec
    outs = []
    starts = range(0, len(images_uint8), batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, desc=f"H({layer})", total=len(starts), enabled=progress, unit="batch"):
            outs.append(h_part(normalise(images_uint8[start:start + batch_size], spec.mean, spec.std)))
    width = masks(work)[layer].width
    h = torch.cat(outs) if outs else torch.zeros((0, width))
    return h, g_part


def sweep(model, ranking: Ranking, images_uint8: np.ndarray, labels: np.ndarray, *, layer: str,
          schedules: Sequence[str] = ("bottom-first", "top-first", "random"), counts: Sequence[int] | None = None,
          percents: Sequence[float] | None = None, points: int = DEFAULT_POINTS, seed: int = 0,
          batch_size: int = 256, progress: bool = False, check_fingerprint: bool = True) -> SweepResult:
    """Accuracy (overall, per class) vs neurons of ``layer`` masked, for each schedule, no retraining.

    ``images_uint8`` ``(N, 3, S, S)``, ``labels`` ``(N,)``. The grid is ``counts`` or ``percents`` (see
    :func:`sweep_grid`). All inputs are validated before any computation.
    """
    from etdeploy.progress import progress_bar
    from etdeploy.training import metrics_from_logits

    if not schedules:
        raise PruningError("no schedule given for the sweep")
    for s in schedules:
        validate_schedule(s, ranking.classes, len(ranking.classes))
    if len(set(schedules)) != len(schedules):
        raise PruningError(f"schedules repeat: {list(schedules)}")
    names = resolve_layers(model, ranking, [layer])
    check_ranking(model, ranking, names, check_fingerprint=check_fingerprint)
    la = ranking.layer(layer)
    grid = sweep_grid(la.width, counts=counts, percents=percents, points=points)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images_uint8) != labels.shape[0] or labels.shape[0] == 0:
        raise PruningError(f"{len(images_uint8)} images and {labels.shape[0]} labels: need the same, non-zero number")
    k = model.classifier[-1].out_features
    orders = {s: pruning_order(la, s, seed=seed, classes=ranking.classes) for s in schedules}

    h, g_part = layer_activations(model, layer, images_uint8, batch_size=batch_size, progress=progress)
    fractions = [c / la.width for c in grid]
    curves = {}
    jobs = [(s, c) for s in schedules for c in grid]
    results: dict[str, list] = {s: [] for s in schedules}
    with torch.no_grad():
        for s, c in progress_bar(jobs, desc=f"sweep {layer}", total=len(jobs), enabled=progress, unit="point"):
            mask = torch.zeros(la.width)
            mask[torch.tensor(kept_from_order(orders[s], c), dtype=torch.long)] = 1.0
            logits = torch.cat([g_part(h[i:i + batch_size] * mask) for i in range(0, h.shape[0], batch_size)])
            results[s].append(metrics_from_logits(logits, labels, k))
    for s in schedules:
        acc = tuple(r.accuracy for r in results[s])
        per = tuple(tuple(r.per_class_accuracy) for r in results[s])
        auc_pc = tuple(curve_area(fractions, [row[j] for row in per]) for j in range(k))
        curves[s] = SweepCurve(schedule=s, counts=tuple(grid), accuracy=acc, per_class=per,
                               auc=curve_area(fractions, acc), auc_per_class=auc_pc)
    settings = {"seed": seed, "grid": "counts" if counts is not None else ("percents" if percents is not None
                                                                            else f"{points} points"),
                "percents": None if percents is None else [float(q) for q in percents],
                "model_fingerprint": ranking.model_fingerprint, "n_live": la.n_live}
    return SweepResult(layer=layer, width=la.width, classes=tuple(ranking.classes), n_images=int(labels.shape[0]),
                       curves=curves, settings=settings)


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.9g}"


def sweep_csv(result: SweepResult) -> str:
    """One row per (schedule, count): ``schedule,layer,count,fraction,accuracy,acc_<class>...``."""
    buf = io.StringIO()
    header = ["schedule", "layer", "count", "fraction", "accuracy"] + [f"acc_{c}" for c in result.classes]
    buf.write(",".join(header) + "\n")
    for name, curve in result.curves.items():
        for count, acc, per in zip(curve.counts, curve.accuracy, curve.per_class):
            row = [name, result.layer, str(count), _fmt(count / result.width), _fmt(acc)] + [_fmt(v) for v in per]
            buf.write(",".join(row) + "\n")
    return buf.getvalue()


def write_sweep(result: SweepResult, out_dir: str | os.PathLike, *, force: bool = False,
                extra: dict[str, Any] | None = None) -> Path:
    """Write ``sweep.csv`` and ``sweep.json`` into a fresh ``out_dir`` (atomically, as a folder)."""
    from etdeploy.fileio import StagedDir, atomic_write_bytes, canonical_json

    out_dir = Path(out_dir)
    doc = result.to_dict()
    if extra:
        doc.update(extra)
    with StagedDir(out_dir, force=force) as tmp:
        atomic_write_bytes(tmp / "sweep.csv", sweep_csv(result).encode())
        atomic_write_bytes(tmp / "sweep.json", canonical_json(doc).encode())
    return out_dir
