"""Pruning schedules: the order in which a layer's neurons are masked (docs/method.md §3).

A schedule is a small callable with one contract::

    schedule.order(layer_attr, seed=..., classes=...) -> (m,) int64 array of neuron indices

where the first entry is masked first. Dead neurons (``live == False``) come first in every schedule,
in index order; the schedule only orders the live ones. Ties are broken by neuron index (stable
sort), so orders are deterministic.

Registered schedules (``SCHEDULES``): ``bottom-first`` (lowest rank first: the paper's method),
``top-first`` (highest rank first: the control that should hurt most), ``random`` (seeded
permutation: the second control) and ``class-ea:<k>`` (descending ``E^k_kk``, ``k`` a class index or
name). Adding a schedule means adding one class to ``SCHEDULES``. The importance criteria of the
pruning literature (magnitude, Taylor, APoZ, ...: :data:`etdeploy.pruning.criteria.CRITERIA`) follow
the same contract and are accepted wherever a schedule is (:func:`parse_schedule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from etdeploy.attribution.result import LayerAttribution
from etdeploy.errors import PruningError


class Schedule(Protocol):
    """Orders the live neurons of one layer: ``(m,)`` statistics -> live indices in pruning order."""

    name: str
    parameterised: bool

    def order_live(self, layer_attr: LayerAttribution, live_idx: np.ndarray, *, seed: int,
                   argument: str | None, classes: Sequence[str] | None) -> np.ndarray: ...


def _stable_ascending(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` sorted by ``values[idx]`` ascending, ties by index. ``(p,) -> (p,)``."""
    return idx[np.argsort(values[idx], kind="stable")]


@dataclass(frozen=True)
class BottomFirst:
    """Lowest rank (``-E[A^L]``) masked first: the least useful neurons go first (the paper's method)."""

    name: str = "bottom-first"
    parameterised: bool = False

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        return _stable_ascending(np.asarray(layer_attr.rank, dtype=np.float64), live_idx)


@dataclass(frozen=True)
class TopFirst:
    """Highest rank masked first (control: should hurt accuracy the most)."""

    name: str = "top-first"
    parameterised: bool = False

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        return _stable_ascending(-np.asarray(layer_attr.rank, dtype=np.float64), live_idx)


@dataclass(frozen=True)
class RandomOrder:
    """A seeded random permutation of the live neurons (control)."""

    name: str = "random"
    parameterised: bool = False

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        rng = np.random.default_rng(int(seed))
        return live_idx[rng.permutation(live_idx.shape[0])]


@dataclass(frozen=True)
class ClassEA:
    """``class-ea:<k>``: descending ``E^k_kk`` (the neurons that most support class k go first)."""

    name: str = "class-ea"
    parameterised: bool = True

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        k = resolve_class(argument, int(layer_attr.ea_class.shape[0]), classes)
        values = np.asarray(layer_attr.ea_class[k, :, k], dtype=np.float64)
        if not np.all(np.isfinite(values[live_idx])):
            raise PruningError(f"class-ea:{argument}: E^k_kk is not finite for class {k} in layer "
                               f"{layer_attr.layer!r} (did the ranking set have images of that class?)")
        return _stable_ascending(-values, live_idx)


SCHEDULES: dict[str, Schedule] = {s.name: s for s in (BottomFirst(), TopFirst(), RandomOrder(), ClassEA())}


def schedule_names() -> list[str]:
    """Names accepted by :func:`parse_schedule` (parameterised ones shown as ``name:<k>``)."""
    return [f"{n}:<k>" if s.parameterised else n for n, s in SCHEDULES.items()]


def resolve_class(argument: str | None, num_classes: int, classes: Sequence[str] | None) -> int:
    """A class given as an index (``"2"``) or a name (``"drt"``) -> index in ``[0, num_classes)``."""
    if argument is None or argument == "":
        raise PruningError("class-ea needs a class: class-ea:<index or name>")
    if classes is not None:
        names = list(classes)
        if argument in names:
            return names.index(argument)
    try:
        k = int(argument)
    except ValueError:
        valid = ", ".join(classes) if classes else f"0..{num_classes - 1}"
        raise PruningError(f"unknown class {argument!r} in class-ea; use an index or one of: {valid}") from None
    if not 0 <= k < num_classes:
        raise PruningError(f"class index {k} out of range; the ranking has {num_classes} classes")
    return k


def all_schedule_names() -> list[str]:
    """:func:`schedule_names` followed by the importance criteria (:data:`~etdeploy.pruning.criteria.CRITERIA`)."""
    from etdeploy.pruning.criteria import CRITERIA

    return schedule_names() + list(CRITERIA)


def parse_schedule(schedule: str) -> tuple[Schedule, str | None]:
    """``"class-ea:2"`` -> (ClassEA, "2"); ``"bottom-first"`` -> (BottomFirst, None); a criterion name
    (``"taylor"``) -> that criterion. Unknown -> PruningError."""
    from etdeploy.pruning.criteria import CRITERIA

    if not isinstance(schedule, str):
        raise PruningError(f"schedule must be a string, got {type(schedule).__name__}")
    name, sep, argument = schedule.partition(":")
    sched = SCHEDULES.get(name) or CRITERIA.get(name)
    if sched is None:
        raise PruningError(f"unknown schedule {schedule!r}; choose one of {', '.join(all_schedule_names())}")
    if sched.parameterised and not sep:
        raise PruningError(f"schedule {name!r} needs an argument: {name}:<k>")
    if not sched.parameterised and sep:
        raise PruningError(f"schedule {name!r} takes no argument (got {schedule!r})")
    return sched, (argument if sep else None)


def validate_schedule(schedule: str, classes: Sequence[str] | None = None, num_classes: int | None = None) -> None:
    """Raise :class:`PruningError` for an unknown schedule or a bad class argument (no ranking needed)."""
    sched, argument = parse_schedule(schedule)
    if sched.parameterised and num_classes is not None:
        resolve_class(argument, num_classes, classes)


def pruning_order(layer_attr: LayerAttribution, schedule: str, seed: int = 0,
                  classes: Sequence[str] | None = None) -> np.ndarray:
    """Pruning order of one layer's neurons: ``(m,)`` int64, a permutation of ``range(m)``.

    Dead neurons first (index order), then the live ones in the schedule's order. ``seed`` is used by
    ``random`` only; ``classes`` lets ``class-ea:<name>`` resolve a class name.
    """
    sched, argument = parse_schedule(schedule)
    live = np.asarray(layer_attr.live, dtype=bool).reshape(-1)
    m = int(np.asarray(layer_attr.rank).shape[0])
    if live.shape[0] != m:
        raise PruningError(f"layer {layer_attr.layer!r}: live has {live.shape[0]} entries, rank has {m}")
    dead_idx = np.flatnonzero(~live).astype(np.int64)
    live_idx = np.flatnonzero(live).astype(np.int64)
    ordered = np.asarray(sched.order_live(layer_attr, live_idx, seed=seed, argument=argument, classes=classes),
                         dtype=np.int64)
    order = np.concatenate([dead_idx, ordered])
    if order.shape[0] != m or not np.array_equal(np.sort(order), np.arange(m)):
        raise PruningError(f"schedule {schedule!r} did not return a permutation of layer {layer_attr.layer!r}")
    return order
