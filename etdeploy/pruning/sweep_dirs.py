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
class SweepCurveRun(Record):
    """One schedule's curve over the grid (``p`` points, ``K`` classes): ``counts`` ``(p,)`` neurons masked,
    ``fractions`` ``(p,)`` of the layer width, ``accuracy`` ``(p,)``, ``per_class_accuracy`` ``(p, K)``
    (None: no image of the class), normalised areas under the curves (see :func:`~etdeploy.pruning.sweep.curve_area`)."""

    counts: tuple[int, ...]
    fractions: tuple[float, ...]
    accuracy: tuple[float, ...]
    per_class_accuracy: tuple[tuple[float | None, ...], ...]
    auc: float | None
    auc_per_class: tuple[float | None, ...]


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
               layer: str, split: str, out: str | os.PathLike, counts: Sequence[int] | None = None,
               percents: Sequence[float] | None = None, points: int = 21, seed: int = 0, force: bool = False,
               progress: bool = True, split_images: Callable[[str, int], Any] | None = None,
               allow_other_data: bool = False) -> SweepRun:
    """Accuracy (overall, per class) on ``split`` vs neurons of ``layer`` masked, per schedule, no retraining.

    ``counts`` or ``percents`` give the grid (default: ``points`` evenly spaced counts); ``seed``
    seeds the ``random`` schedule. ``split_images(split, size) -> ImageSplit``: where decoded images
    come from (default: decode from ``dataset``). ``allow_other_data``: use splits other than the
    model's training data's (warns instead of refusing; :func:`~etdeploy.data.check_compatible`). Every input is validated before the images are
    decoded. Returns the :class:`SweepRun` (``sweep.json``).
    """
    from etdeploy.attribution.result import load_ranking
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import StagedDir, atomic_write_bytes, canonical_json, refuse_existing_output
    from etdeploy.models import load_model
    from etdeploy.pruning.masking import check_ranking, resolve_layers
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.pruning.schedules import validate_schedule
    from etdeploy.pruning.sweep import sweep, sweep_csv, sweep_grid

    out = Path(out)
    refuse_existing_output(out, force=force)
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    rhash = ranking_sha256(ranking_dir)
    for s in schedules:
        validate_schedule(s, ranking.classes, len(ranking.classes))
    names = resolve_layers(model, ranking, [layer])
    check_ranking(model, ranking, names)
    sweep_grid(ranking.layer(layer).width, counts=counts, percents=percents, points=points)
    check_compatible(model, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    load = split_images or (lambda s, px: load_split_images(dataset, s, px, progress=progress))
    data = load(split, model.spec.input_size)
    result = sweep(model, ranking, data.images, data.labels, layer=layer, schedules=schedules, counts=counts,
                   percents=percents, points=points, seed=seed, progress=progress)
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


__all__ = ["SweepCurveRun", "SweepRun", "read_sweep_run", "sweep_dirs", "sweep_run"]
