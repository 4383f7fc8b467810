"""Importance criteria from the pruning literature, as pruning schedules (docs/method.md §3).

Each criterion is a :class:`~etdeploy.pruning.schedules.Schedule`: it orders a layer's live neurons,
least important first (dead neurons still go first, in index order, as in every schedule; ties by
index). ``parse_schedule`` accepts these names wherever a schedule is asked for (``etdeploy sweep
--schedules``, ``etdeploy prune --schedule``). The statistics come with the ranking
(``LayerAttribution.criteria``, computed by ``rank_model`` on the ranking's split:
:mod:`etdeploy.attribution.neuron_stats`), so a criterion orders neurons without the model or data.

| criterion | masked first | reference |
|---|---|---|
| ``magnitude`` | smallest L2 norm of the neuron's weights (producing row + bias, consuming column) | Torch-Pruning ``MagnitudeImportance(p=2)``; Li et al. 2017 |
| ``magnitude-l1`` | smallest L1 norm of the same weights | ``MagnitudeImportance(p=1)``; Li et al. 2017 |
| ``taylor`` | smallest ``mean |h_i ∂L/∂h_i|`` | Molchanov et al. 2017 |
| ``activation`` | smallest mean activation | the "mean activation" baseline of Molchanov et al. 2017 |
| ``apoz`` | highest fraction of zero activations | Hu et al. 2016 |
| ``ig-vote`` | lowest ``Σ_k P(k) E^k_ik`` (IG, class-vote form) | the paper's eq. 3-5 |
| ``class-balanced`` | last picked by a round robin over classes on the per-class IG rank | redundancy-aware selection (this project) |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etdeploy.errors import PruningError
from etdeploy.pruning.schedules import _stable_ascending


def _statistic(layer_attr, key: str, criterion: str) -> np.ndarray:
    values = layer_attr.criteria.get(key) if key != "activation_mean" else layer_attr.activation_mean
    if values is None:
        raise PruningError(f"criterion {criterion!r} needs the neuron statistic {key!r}, which the ranking of "
                           f"layer {layer_attr.layer!r} lacks (it was written by an older etdeploy or from "
                           "precomputed activations); rank the model again with 'etdeploy rank'")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise PruningError(f"criterion {criterion!r}: statistic {key!r} of layer {layer_attr.layer!r} is not finite")
    return values


@dataclass(frozen=True)
class StatisticCriterion:
    """Order by one per-neuron statistic: ascending (least important = smallest) or descending."""

    name: str
    key: str
    descending: bool = False
    parameterised: bool = False

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        values = _statistic(layer_attr, self.key, self.name)
        return _stable_ascending(-values if self.descending else values, live_idx)


def class_balanced_keep_order(scores: np.ndarray, live_idx: np.ndarray) -> np.ndarray:
    """Round robin over classes: each class in turn keeps its best live neuron not yet kept.

    ``scores`` ``(K, m)``: per-class importance (higher = more useful to class k); rows with a
    non-finite live entry (a class without images) are skipped. Returns ``live_idx`` in keep order
    (first = kept longest). Equal-sized turns for every class keep the surviving set covering all
    classes, instead of the neurons that are individually best on average, which can serve the same
    few classes.
    """
    rows = [k for k in range(scores.shape[0]) if np.all(np.isfinite(scores[k, live_idx]))]
    if not rows:
        raise PruningError("class-balanced: no class has finite per-class ranks (the ranking set had no images?)")
    prefs = [_stable_ascending(-scores[k], live_idx) for k in rows]
    taken = np.zeros(int(scores.shape[1]), dtype=bool)
    pointers = [0] * len(rows)
    picked: list[int] = []
    while len(picked) < live_idx.shape[0]:
        for r, pref in enumerate(prefs):
            while pointers[r] < pref.shape[0] and taken[pref[pointers[r]]]:
                pointers[r] += 1
            if pointers[r] < pref.shape[0]:
                i = int(pref[pointers[r]])
                taken[i] = True
                picked.append(i)
    return np.asarray(picked, dtype=np.int64)


@dataclass(frozen=True)
class ClassBalanced:
    """Keep neurons by a round robin over classes on the per-class rank ``rank^k_i`` (prune in reverse)."""

    name: str = "class-balanced"
    parameterised: bool = False

    def order_live(self, layer_attr, live_idx, *, seed, argument, classes):
        scores = np.asarray(layer_attr.rank_class, dtype=np.float64)
        return class_balanced_keep_order(scores, live_idx)[::-1].copy()


CRITERIA = {c.name: c for c in (
    StatisticCriterion("magnitude", "weight_l2"),
    StatisticCriterion("magnitude-l1", "weight_l1"),
    StatisticCriterion("taylor", "taylor"),
    StatisticCriterion("activation", "activation_mean"),
    StatisticCriterion("apoz", "apoz", descending=True),
    StatisticCriterion("ig-vote", "ig_vote"),
    ClassBalanced(),
)}


__all__ = ["CRITERIA", "ClassBalanced", "StatisticCriterion", "class_balanced_keep_order"]
