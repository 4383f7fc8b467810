"""Accuracy vs neurons masked, without retraining (docs/method.md §3, paper Fig. 9-11).

For one layer ``F(x) = G(H(x))``: ``H(x)`` is computed **once** for every image; each grid point of
each schedule then only runs ``G`` on ``H(x) * mask``. Masks of the other layers stay as they are in
the model (normally none). For several layers masked together (``flatten+dense1+dense2`` at a shared
percentage), ``H`` ends at the first of them and the later ones are masked inside ``G``.

Every curve carries 95 % confidence intervals from the number of images: Wilson per point, a
percentile bootstrap over images for the area. ``random`` can run over several seeds (a band).

Area under a curve: trapezoid rule over ``x = neurons masked / layer width``, divided by the swept
x range, so it lies in ``[0, 1]`` (1 = accuracy 1 everywhere) and curves on the same grid compare
directly.
"""

from __future__ import annotations

import copy
import io
import math
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

# the band is computed here and stored as is in sweep.json (one record, defined with the light use-case records)
from etdeploy.pruning.sweep_dirs import RandomBandRun as RandomBand

DEFAULT_POINTS = 21


@dataclass(frozen=True)
class SweepCurve:
    """One schedule's curve: ``counts`` ``(p,)``, ``accuracy`` ``(p,)``, ``per_class`` ``(p, K)`` (None: no images).

    ``accuracy_ci95`` ``(p, 2)``: Wilson 95 % interval of each accuracy over the ``N`` images;
    ``auc_ci95``: 95 % percentile-bootstrap interval of the area (images resampled); ``band``: the seeds
    of ``random`` when several were run (``accuracy`` is then their mean); ``correct`` ``(r, p, N)`` bool:
    which image each seed got right at each point (kept in memory for paired comparisons, not written).
    """

    schedule: str
    counts: tuple[int, ...]
    accuracy: tuple[float, ...]
    per_class: tuple[tuple[float | None, ...], ...]
    auc: float
    auc_per_class: tuple[float | None, ...]
    accuracy_ci95: tuple[tuple[float, float], ...] = ()
    auc_ci95: tuple[float, float] | None = None
    band: RandomBand | None = None
    correct: np.ndarray | None = field(default=None, repr=False, compare=False)


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
                                  "auc": c.auc, "auc_per_class": list(c.auc_per_class),
                                  "accuracy_ci95": [list(ci) for ci in c.accuracy_ci95],
                                  "auc_ci95": None if c.auc_ci95 is None else list(c.auc_ci95),
                                  "band": None if c.band is None else c.band.to_dict()}
                           for name, c in self.curves.items()}}


#: Fraction of the layer where the ``dense-tail`` grid switches from sparse to dense points.
TAIL_START = 0.8
#: z of a two-sided 95 % interval.
Z95 = 1.959963984540054
#: Bootstrap resamples of the area's confidence interval.
BOOTSTRAP = 1000


def _spaced(lo: float, hi: float, n: int) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, n)] if n > 1 else [float(lo)]


def _tail_split(points: int) -> tuple[int, int]:
    """Points of the ``dense-tail`` grid before and from :data:`TAIL_START`: a quarter / three quarters."""
    head = max(2, points // 4)
    return head, max(2, points - head + 1)  # the tail's first point repeats the head's last


def sweep_grid(width: int, *, counts: Sequence[int] | None = None, percents: Sequence[float] | None = None,
               points: int = DEFAULT_POINTS, grid: str = "uniform") -> list[int]:
    """Numbers of masked neurons to evaluate (sorted, unique, each in ``[0, width)``).

    ``percents`` map through the same rounding as :func:`~etdeploy.pruning.masking.apply_percent`
    (``width - kept_count(width, q)``); the default is ``points`` evenly spaced counts ``0 .. width-1``
    (``grid="uniform"``) or, with ``grid="dense-tail"``, a quarter of them evenly over ``[0, 80 %]`` and
    the rest evenly over ``[80 %, width-1]``, where accuracy falls.
    """
    from etdeploy.vocab import SWEEP_GRIDS

    if grid not in SWEEP_GRIDS:
        raise PruningError(f"unknown sweep grid {grid!r}; choose one of {', '.join(SWEEP_GRIDS)}")
    if counts is not None and percents is not None:
        raise PruningError("give either counts or percents for the sweep grid, not both")
    if counts is not None:
        grid_counts = [int(c) for c in counts]
        bad = [c for c in grid_counts if not 0 <= c < width]
        if bad:
            raise PruningError(f"sweep counts must be in [0, {width}) (masking all {width} neurons disconnects "
                               f"the output); got {bad[:5]}")
    elif percents is not None:
        grid_counts = [width - kept_count(width, q) for q in percents]
        bad = [q for q, c in zip(percents, grid_counts) if c >= width]
        if bad:
            raise PruningError(f"masking {bad[0]} % of {width} neurons removes every neuron")
    else:
        if points < 2:
            raise PruningError(f"a sweep needs at least 2 points, got {points}")
        if grid == "uniform":
            values = _spaced(0, width - 1, points)
        else:
            head, tail = _tail_split(points)
            values = _spaced(0, TAIL_START * width, head) + _spaced(TAIL_START * width, width - 1, tail)
        grid_counts = [min(int(np.floor(v + 0.5)), width - 1) for v in values]
    grid_counts = sorted(set(grid_counts))
    if not grid_counts:
        raise PruningError("the sweep grid is empty")
    return grid_counts


def percent_grid(widths: Sequence[int], *, percents: Sequence[float] | None = None, points: int = DEFAULT_POINTS,
                 grid: str = "uniform") -> list[float]:
    """Shared masking percentages of an all-layers sweep (each layer masks ``q`` % of itself).

    Default: ``points`` percentages evenly over ``[0, q_max]`` (``grid="uniform"``), or a quarter of them
    over ``[0, 80]`` and the rest over ``[80, q_max]`` (``"dense-tail"``); ``q_max = 100 (1 - 1/n_min)``
    leaves the narrowest layer one neuron. Rounded to 6 decimals, sorted, unique.
    """
    from etdeploy.pruning.masking import check_percent
    from etdeploy.vocab import SWEEP_GRIDS

    if grid not in SWEEP_GRIDS:
        raise PruningError(f"unknown sweep grid {grid!r}; choose one of {', '.join(SWEEP_GRIDS)}")
    if percents is not None:
        values = [float(q) for q in percents]
        for q in values:
            check_percent(q)
            for w in widths:
                if kept_count(w, q) < 1:
                    raise PruningError(f"masking {q} % of {w} neurons removes every neuron")
    else:
        if points < 2:
            raise PruningError(f"a sweep needs at least 2 points, got {points}")
        q_max = 100.0 * (1.0 - 1.0 / min(widths))
        if grid == "uniform":
            values = _spaced(0.0, q_max, points)
        else:
            head, tail = _tail_split(points)
            tail_start = min(100.0 * TAIL_START, q_max)
            values = _spaced(0.0, tail_start, head) + _spaced(tail_start, q_max, tail)
    out = sorted({round(q, 6) for q in values})
    if not out:
        raise PruningError("the sweep grid is empty")
    return out


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


def wilson_interval(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``accuracy`` observed on ``n`` trials (95 % by default).

    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``, rounded to 6 decimals; never outside [0, 1]
    and not degenerate at 0 or 1 (unlike the normal approximation). ``n = 0``: ``(0, 1)``.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = float(accuracy)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6))


def bootstrap_indices(n: int, seed: int, resamples: int = BOOTSTRAP) -> np.ndarray:
    """``(resamples, n)`` image indices drawn with replacement (seeded; shared by every curve: paired)."""
    return np.random.default_rng(int(seed)).integers(0, n, size=(resamples, n))


def bootstrap_areas(fractions: Sequence[float], correct: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Area of the mean-over-seeds curve for each image resample: ``correct`` ``(r, p, N)`` -> ``(B,)``."""
    x = np.asarray(fractions, dtype=np.float64)
    acc = correct.astype(np.float64).mean(axis=0)[:, idx].mean(axis=2)  # seeds, then each resample: (p, B)
    if x.shape[0] == 1:
        return acc[0]
    return np.sum((x[1:, None] - x[:-1, None]) * (acc[1:] + acc[:-1]) / 2.0, axis=0) / float(x[-1] - x[0])


def _interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (round(float(lo), 6), round(float(hi), 6))


def layer_activations(model, layer: str, images_uint8: np.ndarray, *, batch_size: int = 256,
                      progress: bool = False) -> tuple[torch.Tensor, torch.nn.Module]:
    """``H(x)`` of ``layer`` with that layer's own mask open, and ``G``. ``(N, 3, S, S) uint8 -> (N, m)``.

    Works on a copy of ``model`` (with masks attached), so ``model`` is unchanged.
    """
    h, g_part, _ = _activations(model, layer, images_uint8, batch_size=batch_size, progress=progress)
    return h, g_part


def _activations(model, layer: str, images_uint8: np.ndarray, *, batch_size: int, progress: bool):
    """:func:`layer_activations` plus the masked working copy whose later masks ``G`` shares."""
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
    return h, g_part, work


def _layer_names(model, ranking: Ranking, layer: str | Sequence[str]) -> list[str]:
    """The swept layers in model order (``"dense2"`` or ``["flatten", "dense1", "dense2"]``)."""
    from etdeploy.models import layer_names

    wanted = [layer] if isinstance(layer, str) else list(layer)
    if not wanted:
        raise PruningError("no layer given for the sweep")
    names = resolve_layers(model, ranking, wanted)
    order = layer_names(model)
    return sorted(names, key=order.index)


def sweep(model, ranking: Ranking, images_uint8: np.ndarray, labels: np.ndarray, *, layer: str | Sequence[str],
          schedules: Sequence[str] = ("bottom-first", "top-first", "random"), counts: Sequence[int] | None = None,
          percents: Sequence[float] | None = None, points: int = DEFAULT_POINTS, grid: str = "uniform",
          seed: int = 0, random_seeds: int = 1, batch_size: int = 256, progress: bool = False,
          check_fingerprint: bool = True) -> SweepResult:
    """Accuracy (overall, per class) vs neurons masked, for each schedule, no retraining.

    ``layer``: one layer (the grid counts its neurons), or several, masked together at a shared
    percentage (:func:`percent_grid`; ``counts`` are refused); the result's ``layer`` is then
    ``"flatten+dense1+dense2"``, ``width`` their total and ``counts`` the total masked.
    ``images_uint8`` ``(N, 3, S, S)``, ``labels`` ``(N,)``. The grid is ``counts`` or ``percents`` or
    ``points`` spread by ``grid`` (see :func:`sweep_grid`). ``random`` runs with seeds ``seed ..
    seed + random_seeds - 1``; with more than one its curve is their mean and ``band`` holds the
    spread. Each curve carries Wilson intervals per point and a bootstrap interval of its area
    (:data:`BOOTSTRAP` image resamples from ``seed``, the same for every curve). All inputs are
    validated before any computation.
    """
    from etdeploy.models import masks
    from etdeploy.progress import progress_bar
    from etdeploy.training import metrics_from_logits

    if not schedules:
        raise PruningError("no schedule given for the sweep")
    for s in schedules:
        validate_schedule(s, ranking.classes, len(ranking.classes))
    if len(set(schedules)) != len(schedules):
        raise PruningError(f"schedules repeat: {list(schedules)}")
    if isinstance(random_seeds, bool) or not isinstance(random_seeds, int) or random_seeds < 1:
        raise PruningError(f"random_seeds must be a positive integer, got {random_seeds!r}")
    names = _layer_names(model, ranking, layer)
    check_ranking(model, ranking, names, check_fingerprint=check_fingerprint)
    attrs = {n: ranking.layer(n) for n in names}
    widths = {n: attrs[n].width for n in names}
    total_width = sum(widths.values())
    if len(names) == 1:
        grid_counts = sweep_grid(total_width, counts=counts, percents=percents, points=points, grid=grid)
        plan = [{names[0]: c} for c in grid_counts]
        shared = None
    else:
        if counts is not None:
            raise PruningError("a sweep of several layers takes percents (shared by the layers), not counts")
        shared = percent_grid(list(widths.values()), percents=percents, points=points, grid=grid)
        plan = [{n: w - kept_count(w, q) for n, w in widths.items()} for q in shared]
        grid_counts = [sum(p.values()) for p in plan]
    labels = np.asarray(labels, dtype=np.int64)
    if len(images_uint8) != labels.shape[0] or labels.shape[0] == 0:
        raise PruningError(f"{len(images_uint8)} images and {labels.shape[0]} labels: need the same, non-zero number")
    k = model.classifier[-1].out_features
    seeds = {s: ([seed + r for r in range(random_seeds)] if s == "random" else [seed]) for s in schedules}
    orders = {(s, r): {n: pruning_order(attrs[n], s, seed=r, classes=ranking.classes) for n in names}
              for s in schedules for r in seeds[s]}

    first = names[0]
    h, g_part, work = _activations(model, first, images_uint8, batch_size=batch_size, progress=progress)
    later = {n: m for n, m in masks(work).items() if n in names[1:]}
    fractions = [c / total_width for c in grid_counts]
    jobs = [(key, i) for key in orders for i in range(len(plan))]
    results: dict[tuple[str, int], list] = {key: [] for key in orders}
    correct: dict[tuple[str, int], list] = {key: [] for key in orders}
    with torch.no_grad():
        for key, i in progress_bar(jobs, desc=f"sweep {'+'.join(names)}", total=len(jobs), enabled=progress,
                                   unit="point"):
            order = orders[key]
            mask = torch.zeros(widths[first])
            mask[torch.tensor(kept_from_order(order[first], plan[i][first]), dtype=torch.long)] = 1.0
            for n, module in later.items():
                module.set_kept(kept_from_order(order[n], plan[i][n]))
            logits = torch.cat([g_part(h[j:j + batch_size] * mask) for j in range(0, h.shape[0], batch_size)])
            results[key].append(metrics_from_logits(logits, labels, k))
            correct[key].append(logits.argmax(dim=1).numpy() == labels)
    n = int(labels.shape[0])
    boot = bootstrap_indices(n, seed)
    curves = {}
    for s in schedules:
        runs = [results[(s, r)] for r in seeds[s]]
        acc_runs = np.array([[res.accuracy for res in run] for run in runs], dtype=np.float64)  # (r, p)
        acc = tuple(round(float(v), 6) if len(runs) > 1 else float(v) for v in acc_runs.mean(axis=0))
        per = tuple(tuple(_mean_or_none([run[i].per_class_accuracy[j] for run in runs]) for j in range(k))
                    for i in range(len(plan)))
        auc_pc = tuple(curve_area(fractions, [row[j] for row in per]) for j in range(k))
        hits = np.stack([np.stack(correct[(s, r)]) for r in seeds[s]])  # (r, p, N)
        band = None
        if len(runs) > 1:
            aucs = tuple(curve_area(fractions, list(row)) for row in acc_runs)
            band = RandomBand(seeds=tuple(seeds[s]), accuracy_min=tuple(float(v) for v in acc_runs.min(axis=0)),
                              accuracy_max=tuple(float(v) for v in acc_runs.max(axis=0)), auc_seeds=aucs,
                              auc_min=min(aucs), auc_max=max(aucs))
        curves[s] = SweepCurve(schedule=s, counts=tuple(grid_counts), accuracy=acc, per_class=per,
                               auc=curve_area(fractions, acc), auc_per_class=auc_pc,
                               accuracy_ci95=tuple(wilson_interval(a, n) for a in acc),
                               auc_ci95=_interval(bootstrap_areas(fractions, hits, boot)), band=band, correct=hits)
    settings = {"seed": seed, "grid": "counts" if counts is not None else ("percents" if percents is not None
                                                                            else f"{points} points"),
                "percents": None if percents is None else [float(q) for q in percents],
                "model_fingerprint": ranking.model_fingerprint, "n_live": sum(attrs[n].n_live for n in names)}
    if grid != "uniform":
        settings["grid_spacing"] = grid
    if random_seeds > 1:
        settings["random_seeds"] = random_seeds
    if len(names) > 1:
        settings["layers"] = list(names)
        settings["shared_percents"] = shared
        settings["counts_by_layer"] = {nm: [p[nm] for p in plan] for nm in names}
    settings["ci"] = (f"accuracy: Wilson 95 % over the images; area: 95 % percentile bootstrap, {BOOTSTRAP} image "
                      "resamples")
    return SweepResult(layer="+".join(names), width=total_width, classes=tuple(ranking.classes),
                       n_images=n, curves=curves, settings=settings)


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of per-seed values, rounded to 6 decimals; one value passes through; None if any is None."""
    if any(v is None for v in values):
        return None
    if len(values) == 1:
        return values[0]
    return round(float(np.mean(values)), 6)


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
