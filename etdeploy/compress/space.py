"""The search space of ``etdeploy compress`` (docs/method.md §13): masking percent per layer, importance
criterion, precision; the kept neurons of a point, its structure key and a lower bound on its cost.

A *point* is ``(criterion, percents)``: ``percents[l]`` is the masking percentage of layer ``l`` (the
shared-percent points have one value for every layer). Its kept neurons come from the criterion's
order of each layer (:func:`etdeploy.pruning.schedules.pruning_order`, the order ``etdeploy prune
--schedule`` masks in) and :func:`etdeploy.pruning.masking.kept_count`. The sliced model's shapes depend
only on the kept counts and on how many channels of the last conv survive
(:func:`etdeploy.pruning.slicing.plan_channels`): that is the *structure key*; two points with the same
key cost the same on every target, so the exact cost (an ONNX export and its fit analysis) is computed
once per key. Pure apart from the ranking it reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from etdeploy.errors import PruningError

#: Default coarse grid of masking percentages per layer (refined around the best point afterwards).
COARSE_PERCENTS: tuple[float, ...] = (0.0, 50.0, 75.0, 90.0, 95.0, 98.0)
#: Precisions searched: fp32 as exported, int8 as ``etdeploy quantize`` makes it (static QDQ).
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
#: The IG rank's own schedule, searched beside the criteria of :data:`etdeploy.pruning.criteria.CRITERIA`.
IG_SCHEDULE = "bottom-first"


def layer_sort_key(name: str) -> tuple:
    """Model order of ranked layer names (``flatten``, ``dense1``, ``dense2``...), also after a JSON round trip."""
    if name == "flatten":
        return (0, 0, "")
    if name.startswith("dense") and name[5:].isdigit():
        return (1, int(name[5:]), "")
    return (2, 0, name)


def ordered(percents: Mapping[str, float]) -> tuple[str, ...]:
    """The layers of ``percents`` in model order."""
    return tuple(sorted(percents, key=layer_sort_key))


def percent_label(percents: Mapping[str, float], layers: Sequence[str]) -> str:
    """``"90 %"`` for a shared percent, ``"flatten 95 / dense1 90 / dense2 50 %"`` per layer."""
    values = [percents[name] for name in layers]
    if len(set(values)) == 1:
        return f"{values[0]:g} %"
    return " / ".join(f"{name} {percents[name]:g}" for name in layers) + " %"


def point_label(criterion: str, percents: Mapping[str, float], layers: Sequence[str], precision: str) -> str:
    """One-line name of a candidate: ``"taylor 90 % fp32"``."""
    return f"{criterion} {percent_label(percents, layers)} {precision}"


@dataclass(frozen=True)
class LayerOrders:
    """Pruning order of every searched layer for one criterion: ``orders[l]`` ``(m_l,)`` int64, first masked first."""

    criterion: str
    orders: dict[str, np.ndarray]

    def kept(self, layer: str, percent: float) -> list[int] | None:
        """Kept indices of ``layer`` at ``percent`` (sorted), or ``None`` when no neuron would be left."""
        from etdeploy.pruning.masking import kept_count, kept_from_order

        order = self.orders[layer]
        keep = kept_count(order.shape[0], percent)
        if keep < 1:
            return None
        return kept_from_order(order, order.shape[0] - keep)

    def plan(self, percents: Mapping[str, float]) -> dict[str, list[int]] | None:
        """Kept indices per layer, or ``None`` when some layer would be left empty."""
        out = {}
        for layer, percent in percents.items():
            kept = self.kept(layer, percent)
            if kept is None:
                return None
            out[layer] = kept
        return out


def layer_orders(model, ranking, criterion: str, layers: Sequence[str], *, seed: int) -> LayerOrders:
    """Validate ``criterion`` against the ranking and the model, and order each layer's neurons."""
    from etdeploy.pruning.masking import plan_percent
    from etdeploy.pruning.schedules import pruning_order

    plan_percent(model, ranking, criterion, 0.0, list(layers), seed=seed)  # every check, nothing masked
    return LayerOrders(criterion, {name: pruning_order(ranking.layer(name), criterion, seed=seed,
                                                       classes=ranking.classes) for name in layers})


def grid_points(layers: Sequence[str], values: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the per-layer values (layer order kept), as ``{layer: percent}``."""
    return [dict(zip(layers, combo)) for combo in itertools.product(*(sorted(set(values[n])) for n in layers))]


def refine_values(grid: Sequence[float], value: float) -> list[float]:
    """``value`` and the midpoints between it and its neighbours in ``grid`` (the next, finer level)."""
    ordered = sorted(set(grid) | {value})
    i = ordered.index(value)
    out = [value]
    if i > 0:
        out.append((ordered[i - 1] + value) / 2)
    if i + 1 < len(ordered):
        out.append((ordered[i + 1] + value) / 2)
    return sorted(round(v, 4) for v in out)


@dataclass(frozen=True)
class Geometry:
    """What the cost of a sliced model depends on, read once from the unpruned model.

    ``linears``: ``(in, out)`` of every classifier Linear; ``layers``: the ranked layers in model order;
    ``channels``/``positions``: last conv channels and flattened positions per channel (``removable``:
    slicing may drop whole channels); ``tail_parameters``: parameters of the features from the last
    conv on (they scale with the surviving channels).
    """

    layers: tuple[str, ...]
    widths: dict[str, int]
    linears: tuple[tuple[int, int], ...]
    channels: int
    positions: int
    removable: bool
    tail_parameters: int
    tail_macc_per_channel: float = 0.0

    def structure_key(self, plan: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
        """Kept count per ranked layer plus surviving last-conv channels: equal keys, equal shapes."""
        counts = tuple(len(plan[n]) if n in plan else self.widths[n] for n in self.layers)
        return (*counts, self.kept_channels(plan))

    def kept_channels(self, plan: Mapping[str, Sequence[int]]) -> int:
        if not self.removable or "flatten" not in plan or self.positions <= 0:
            return self.channels
        return len({int(i) // self.positions for i in plan["flatten"]})

    def dense_counts(self, key: tuple[int, ...]) -> tuple[int, int]:
        """``(parameters, MACC)`` of the classifier's Linears at ``key``."""
        counts = dict(zip(self.layers, key[:-1]))
        widths = [counts.get("flatten", self.linears[0][0])]
        widths += [counts.get(f"dense{k}", self.linears[k - 1][1]) for k in range(1, len(self.linears))]
        widths.append(self.linears[-1][1])
        params = sum(a * b + b for a, b in itertools.pairwise(widths))
        return params, sum(a * b for a, b in itertools.pairwise(widths))


def geometry_of(model, layers: Sequence[str]) -> Geometry:
    """The :class:`Geometry` of an ETModel (unmasked or masked: masks do not change shapes)."""
    from torch import nn

    from etdeploy.models import dense_layers
    from etdeploy.models.contract import flatten_index
    from etdeploy.pruning.slicing import plan_channels

    dense = dense_layers(model)
    widths = {d.name: d.width for d in dense}
    for name in layers:
        if name not in widths:
            raise PruningError(f"unknown layer {name!r}; the model's layers are: {', '.join(widths)}")
    linears = tuple((m.in_features, m.out_features) for m in model.classifier if isinstance(m, nn.Linear))
    pre = tuple(model.classifier)[:flatten_index(model.classifier)]
    plan = plan_channels(model.features, widths["flatten"], list(range(widths["flatten"])), pre)
    tail = 0
    if plan.conv_index is not None:
        tail = sum(p.numel() for m in list(model.features)[plan.conv_index:] for p in m.parameters())
    return Geometry(layers=tuple(n for n in widths if n in layers), widths=widths, linears=linears,
                    channels=plan.channels, positions=plan.positions, removable=plan.removable,
                    tail_parameters=int(tail))


__all__ = ["COARSE_PERCENTS", "IG_SCHEDULE", "PRECISIONS", "Geometry", "LayerOrders", "geometry_of", "grid_points",
           "layer_orders", "layer_sort_key", "ordered", "percent_label", "point_label", "refine_values"]
