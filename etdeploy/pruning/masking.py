"""Masking a model from a ranking: percentages, counts and the checks that guard them.

Masking percentage ``q`` (``percent`` in ``[0, 100)``) applies to each chosen layer separately: a layer
of ``n`` neurons keeps ``round(n * (1 - q))`` of them, rounded half up (not Python's banker's
rounding), computed in exact integer arithmetic so ``0.55`` is not ``0.5499999``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from etdeploy.attribution.result import Ranking
from etdeploy.errors import PruningError
from etdeploy.pruning.schedules import pruning_order, validate_schedule


def kept_count(width: int, percent: float) -> int:
    """Neurons kept when masking ``percent`` % of ``width``: ``floor(width * (100 - percent) / 100 + 1/2)``."""
    check_percent(percent)
    exact = Fraction(int(width)) * (Fraction(100) - Fraction(str(percent))) / 100
    return int((exact + Fraction(1, 2)).__floor__())


def check_percent(percent: float) -> None:
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise PruningError(f"percent must be a number in [0, 100), got {percent!r}") from None
    if not (0.0 <= value < 100.0):
        raise PruningError(f"percent must be in [0, 100), got {percent!r}")


def resolve_layers(model, ranking: Ranking, layers: Sequence[str] | None) -> list[str]:
    """The layers to mask: the given ones, or every model layer the ranking covers (model order)."""
    from etdeploy.models import layer_names

    names = layer_names(model)
    if layers is None or len(layers) == 0:
        chosen = [n for n in names if n in ranking.layers]
        if not chosen:
            raise PruningError(f"the ranking covers none of the model's layers ({', '.join(names)})")
        return chosen
    out = []
    for name in layers:
        if name not in names:
            raise PruningError(f"unknown layer {name!r}; the model's layers are: {', '.join(names)}")
        if name not in ranking.layers:
            raise PruningError(f"the ranking has no layer {name!r}; it has: {', '.join(ranking.layers)}")
        if name not in out:
            out.append(name)
    return out


def check_ranking(model, ranking: Ranking, layers: Sequence[str], *, check_fingerprint: bool = True) -> None:
    """Refuse a ranking computed on another model: fingerprint or layer widths differ."""
    from etdeploy.models import dense_layers, weights_fingerprint

    widths = {layer.name: layer.width for layer in dense_layers(model)}
    for name in layers:
        la = ranking.layer(name) if name in ranking.layers else None
        if la is None:
            raise PruningError(f"the ranking has no layer {name!r}; it has: {', '.join(ranking.layers)}")
        if la.width != widths[name]:
            raise PruningError(f"ranking layer {name!r} has {la.width} neurons but the model's has {widths[name]}: "
                               "the ranking was computed on another model")
    if len(ranking.classes) != model.classifier[-1].out_features:
        raise PruningError(f"the ranking has {len(ranking.classes)} classes, the model "
                           f"{model.classifier[-1].out_features}: the ranking was computed on another model")
    if check_fingerprint:
        fp = weights_fingerprint(model)
        if ranking.model_fingerprint != fp:
            raise PruningError("the ranking was computed on another model (weights fingerprint "
                               f"{ranking.model_fingerprint[:12]}... != model {fp[:12]}...); rank this model first")


def kept_from_order(order: np.ndarray, count_masked: int) -> list[int]:
    """Indices kept after masking the first ``count_masked`` of ``order`` (ascending)."""
    return sorted(int(i) for i in order[int(count_masked):])


def plan_percent(model, ranking: Ranking, schedule: str, percent: float, layers: Sequence[str] | None = None,
                 *, seed: int = 0, check_fingerprint: bool = True) -> dict[str, list[int]]:
    """Validate everything and return the kept indices per layer, without touching the model."""
    check_percent(percent)
    validate_schedule(schedule, ranking.classes, len(ranking.classes))
    names = resolve_layers(model, ranking, layers)
    check_ranking(model, ranking, names, check_fingerprint=check_fingerprint)
    plan: dict[str, list[int]] = {}
    for name in names:
        la = ranking.layer(name)
        keep = kept_count(la.width, percent)
        if keep < 1:
            raise PruningError(f"masking {percent} % of layer {name!r} ({la.width} neurons) removes every neuron "
                               "and disconnects the output; use a lower percentage")
        order = pruning_order(la, schedule, seed=seed, classes=ranking.classes)
        plan[name] = kept_from_order(order, la.width - keep)
    return plan


def set_layer_masks(model, kept: Mapping[str, Sequence[int]]) -> None:
    """Attach masks if missing and set the kept indices of each named layer (in place).

    All checks run before any mask changes: unknown layer, index out of range, duplicate index, or an
    empty kept set (a layer with no neuron left disconnects the output) -> :class:`PruningError`.
    """
    from etdeploy.models import dense_layers, masks, with_masks

    widths = {layer.name: layer.width for layer in dense_layers(model)}
    for name, idx in kept.items():
        if name not in widths:
            raise PruningError(f"unknown layer {name!r}; the model's layers are: {', '.join(widths)}")
        values = [int(i) for i in idx]
        if not values:
            raise PruningError(f"the mask of layer {name!r} removes every neuron and disconnects the output")
        if len(set(values)) != len(values):
            raise PruningError(f"the kept indices of layer {name!r} contain duplicates")
        if min(values) < 0 or max(values) >= widths[name]:
            raise PruningError(f"a kept index of layer {name!r} is outside [0, {widths[name]})")
    with_masks(model)
    mods = masks(model)
    for name, idx in kept.items():
        mods[name].set_kept(sorted(int(i) for i in idx))


def apply_percent(model, ranking: Ranking, schedule: str, percent: float, layers: Sequence[str] | None = None,
                  *, seed: int = 0, check_fingerprint: bool = True) -> dict[str, list[int]]:
    """Mask ``percent`` % of each layer's neurons in ``schedule`` order (in place); returns kept indices.

    ``layers`` defaults to every layer the ranking covers. Errors (unknown schedule, percent outside
    ``[0, 100)``, a layer left empty, ranking of another model) leave the model untouched.
    """
    plan = plan_percent(model, ranking, schedule, percent, layers, seed=seed, check_fingerprint=check_fingerprint)
    set_layer_masks(model, plan)
    return plan


def apply_count(model, ranking: Ranking, schedule: str, layer: str, count: int, *, seed: int = 0,
                check_fingerprint: bool = True) -> list[int]:
    """Mask the first ``count`` neurons of ``layer`` in ``schedule`` order (in place); returns kept indices."""
    validate_schedule(schedule, ranking.classes, len(ranking.classes))
    names = resolve_layers(model, ranking, [layer])
    check_ranking(model, ranking, names, check_fingerprint=check_fingerprint)
    la = ranking.layer(layer)
    if not 0 <= int(count) < la.width:
        raise PruningError(f"count must be in [0, {la.width}) for layer {layer!r}, got {count}")
    kept = kept_from_order(pruning_order(la, schedule, seed=seed, classes=ranking.classes), int(count))
    set_layer_masks(model, {layer: kept})
    return kept
