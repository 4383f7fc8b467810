"""The sweep use case: a saved model + its ranking -> accuracy vs neurons masked, as a typed :class:`SweepRun`.

    from etdeploy.pruning import sweep_dirs
    run = sweep_dirs("runs/model", "runs/rank", dataset=dataset, schedules=["bottom-first", "random"],
                     layer="dense2", split="test", out="runs/sweep")
    run.curves["bottom-first"].auc

Writes ``sweep.csv`` (one row per schedule and grid point) and ``sweep.json`` = ``SweepRun.to_dict()``
into a fresh folder (atomically). The computation is :func:`etdeploy.pruning.sweep.sweep`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etdeploy.records import Record

RUN_FILE = "sweep.json"
CSV_FILE = "sweep.csv"


@dataclass(frozen=True)
class RandomBandRun(Record):
    """``random`` over several seeds: ``seeds`` ``(r,)``; ``accuracy_min``/``accuracy_max`` ``(p,)`` pointwise
    over seeds; ``auc_seeds`` ``(r,)`` each seed's area, and their min/max. Computed by
    :func:`etdeploy.pruning.sweep.sweep` (there named ``RandomBand``) and stored as is."""

    seeds: tuple[int, ...]
    accuracy_min: tuple[float, ...]
    accuracy_max: tuple[float, ...]
    auc_seeds: tuple[float, ...]
    auc_min: float
    auc_max: float


@dataclass(frozen=True)
class SweepCurveRun(Record):
    """One schedule's curve over the grid (``p`` points, ``K`` classes): ``counts`` ``(p,)`` neurons masked,
    ``fractions`` ``(p,)`` of the layer width, ``accuracy`` ``(p,)``, ``per_class_accuracy`` ``(p, K)``
    (None: no image of the class), normalised areas under the curves (see :func:`~etdeploy.pruning.sweep.curve_area`),
    95 % intervals (``accuracy_ci95`` ``(p, 2)`` Wilson, ``auc_ci95`` bootstrap; empty/None in sweeps
    written before they existed) and, for ``random`` over several seeds, the ``band`` (``accuracy`` is
    then the seeds' mean)."""

    counts: tuple[int, ...]
    fractions: tuple[float, ...]
    accuracy: tuple[float, ...]
    per_class_accuracy: tuple[tuple[float | None, ...], ...]
    auc: float | None
    auc_per_class: tuple[float | None, ...]
    accuracy_ci95: tuple[tuple[float, float], ...] = ()
    auc_ci95: tuple[float, float] | None = None
    band: RandomBandRun | None = None


@dataclass(frozen=True)
class SweepRun(Record):
    """What :func:`sweep_dirs` found (``sweep.json``; the pipeline's sweep stage summary).

    ``schedules`` in the order they were asked for (``curves`` is keyed by them).
    """

    layer: str
    width: int
    split: str
    n_images: int
    classes: tuple[str, ...]
    schedules: tuple[str, ...]
    curves: dict[str, SweepCurveRun]
    ranking_sha256: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def auc(self) -> dict[str, float | None]:
        """Area under each schedule's accuracy curve, by schedule."""
        return {name: self.curves[name].auc for name in self.schedules}

    @property
    def n_live(self) -> int | None:
        return self.settings.get("n_live")

    @property
    def main_schedules(self) -> tuple[str, ...]:
        """The schedules that are not per-class (``class-ea:<k>``)."""
        return tuple(s for s in self.schedules if not s.startswith("class-ea"))

    @property
    def class_schedules(self) -> tuple[str, ...]:
        return tuple(s for s in self.schedules if s.startswith("class-ea"))


def sweep_run(result, *, split: str, ranking_sha256: str) -> SweepRun:
    """The :class:`SweepRun` of a :class:`~etdeploy.pruning.sweep.SweepResult`."""
    d = result.to_dict()
    return SweepRun.from_dict({**d, "split": split, "ranking_sha256": ranking_sha256,
                               "schedules": list(result.curves)})


def sweep_dirs(model_dir: str | os.PathLike, ranking_dir: str | os.PathLike, *, dataset, schedules: Sequence[str],
               layer: str | Sequence[str], split: str, out: str | os.PathLike, counts: Sequence[int] | None = None,
               percents: Sequence[float] | None = None, points: int = 21, grid: str = "uniform", seed: int = 0,
               random_seeds: int = 1, force: bool = False, progress: bool = True,
               split_images: Callable[[str, int], Any] | None = None, allow_other_data: bool = False) -> SweepRun:
    """Accuracy (overall, per class) on ``split`` vs neurons of ``layer`` masked, per schedule, no retraining.

    ``layer``: one layer, or several masked together at shared percentages
    (:func:`~etdeploy.pruning.sweep.sweep`); ``split``: one of :data:`~etdeploy.vocab.SPLITS`, or
    several joined by ``+`` and measured together (``"val+test"``: both held-out splits). ``counts`` or ``percents`` give the grid
    (default: ``points`` counts spread by ``grid``, :func:`~etdeploy.pruning.sweep.sweep_grid`);
    ``seed`` seeds the ``random`` schedule (seeds ``seed .. seed + random_seeds - 1``: a band) and
    the bootstrap. ``split_images(split, size) -> ImageSplit``: where decoded images
    come from (default: decode from ``dataset``). ``allow_other_data``: use splits other than the
    model's training data's (warns instead of refusing; :func:`~etdeploy.data.check_compatible`). Every input is validated before the images are
    decoded. Returns the :class:`SweepRun` (``sweep.json``).
    """
    import numpy as np

    from etdeploy.attribution.result import load_ranking
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.errors import PruningError
    from etdeploy.fileio import StagedDir, atomic_write_bytes, canonical_json, refuse_existing_output
    from etdeploy.models import load_model
    from etdeploy.pruning.masking import check_ranking, resolve_layers
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.pruning.schedules import validate_schedule
    from etdeploy.pruning.sweep import percent_grid, sweep, sweep_csv, sweep_grid
    from etdeploy.vocab import SPLITS

    out = Path(out)
    refuse_existing_output(out, force=force)
    parts = split.split("+")
    if any(p not in SPLITS for p in parts) or len(set(parts)) != len(parts):
        raise PruningError(f"unknown split {split!r} for a sweep; use one of {', '.join(SPLITS)} or several "
                           "joined by '+' (val+test)")
    if isinstance(random_seeds, bool) or not isinstance(random_seeds, int) or random_seeds < 1:
        raise PruningError(f"the number of random seeds must be a positive integer, got {random_seeds!r}")
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    rhash = ranking_sha256(ranking_dir)
    for s in schedules:
        validate_schedule(s, ranking.classes, len(ranking.classes))
    wanted = [layer] if isinstance(layer, str) else list(layer)
    names = resolve_layers(model, ranking, wanted)
    check_ranking(model, ranking, names)
    if len(names) == 1:
        sweep_grid(ranking.layer(names[0]).width, counts=counts, percents=percents, points=points, grid=grid)
    elif counts is not None:
        raise PruningError("a sweep of several layers takes percents (shared by the layers), not counts")
    else:
        percent_grid([ranking.layer(n).width for n in names], percents=percents, points=points, grid=grid)
    for part in parts:
        check_compatible(model, dataset, model_dir, split=part, allow_other_data=allow_other_data)
    load = split_images or (lambda s, px: load_split_images(dataset, s, px, progress=progress))
    loaded = [load(part, model.spec.input_size) for part in parts]
    images = np.concatenate([d.images for d in loaded])
    labels = np.concatenate([d.labels for d in loaded])
    result = sweep(model, ranking, images, labels, layer=names, schedules=schedules, counts=counts,
                   percents=percents, points=points, grid=grid, seed=seed, random_seeds=random_seeds,
                   progress=progress)
    run = sweep_run(result, split=split, ranking_sha256=rhash)
    with StagedDir(out, force=force) as tmp:
        atomic_write_bytes(tmp / CSV_FILE, sweep_csv(result).encode())
        atomic_write_bytes(tmp / RUN_FILE, canonical_json(run.to_dict()).encode())
    return run


def read_sweep_run(folder: str | os.PathLike) -> SweepRun:
    """The :class:`SweepRun` a :func:`sweep_dirs` folder holds (its ``sweep.json``)."""
    from etdeploy.errors import PruningError
    from etdeploy.records import read_record

    return read_record(Path(folder) / RUN_FILE, SweepRun, what="sweep result", error=PruningError)


__all__ = ["RandomBandRun", "SweepCurveRun", "SweepRun", "read_sweep_run", "sweep_dirs", "sweep_run"]
