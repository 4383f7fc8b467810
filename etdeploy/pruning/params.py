"""Parameter accounting: before/after slicing, and the paper's Table 3 (docs/method.md §4).

Two counts, kept apart on purpose:

- :func:`masked_dense_cut` / :func:`params_table`: the parameters that masking makes irrelevant in
  the dense layers (rows + biases of masked hidden neurons, columns of masked inputs), from layer
  widths only. This is how the paper's Table 3 counts: **dense parameters only**; removing whole
  conv channels is not counted there.
- :func:`params_report`: what physical slicing actually removed, per layer (conv filters of removed
  channels included). Slicing removes every masked flatten column (a ``SelectFeatures`` drops the
  masked positions of channels that stay), so ``total_cut == masked_dense_cut + removed conv
  parameters``. The SelectFeatures index buffer is not a parameter and is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from torch import nn

from etdeploy.errors import PruningError

TABLE3_PERCENTS = (50, 55, 60, 65, 70, 75, 80, 85, 90, 95)


def dense_parameters(widths: Sequence[int], num_classes: int, bias: bool = True) -> int:
    """Parameters of ``Flatten(widths[0]) -> Linear -> ... -> Linear(num_classes)`` with the given widths."""
    sizes = list(widths) + [int(num_classes)]
    return sum(a * b + (b if bias else 0) for a, b in pairwise(sizes))


def masked_dense_cut(widths: Sequence[int], kept: Sequence[int], num_classes: int, bias: bool = True) -> int:
    """Dense parameters removed when layer ``j`` keeps ``kept[j]`` of ``widths[j]`` neurons.

    ``widths`` / ``kept``: ``(flatten, dense1, ...)``.
    """
    if len(widths) != len(kept):
        raise PruningError(f"{len(widths)} layer widths but {len(kept)} kept counts")
    return dense_parameters(widths, num_classes, bias) - dense_parameters(kept, num_classes, bias)


def _named_param_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Parameter-holding layers in order, named ``features.<i>`` / ``classifier.<j>``.

    Masks and feature selections are skipped (and not numbered), so a model and its slice get the
    same names.
    """
    from etdeploy.models.masks import NeuronMask
    from etdeploy.models.select import SelectFeatures

    out = []
    for part in ("features", "classifier"):
        position = 0
        for module in getattr(model, part):
            if isinstance(module, NeuronMask | SelectFeatures):
                continue
            if any(True for _ in module.parameters()):  # recursive: residual blocks hold theirs in children
                out.append((f"{part}.{position}", module))
            position += 1
    return out


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shape(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features}->{module.out_features})"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d({module.in_channels}->{module.out_channels})"
    if isinstance(module, nn.BatchNorm2d):
        return f"BatchNorm2d({module.num_features})"
    return type(module).__name__


def params_report(before: nn.Module, after: nn.Module, *, record: Mapping[str, Any] | None = None) -> dict:
    """Per-layer parameters before / after slicing, total cut and percentage.

    ``before``: the masked (or original) model; ``after``: the sliced one (same layer sequence minus
    masks). With the slicing ``record``, the flatten columns that were only zeroed are reported too,
    and ``masked_dense_cut`` gives the paper-style count (dense rows/columns of every masked neuron).
    """
    a, b = _named_param_modules(before), _named_param_modules(after)
    if [n for n, _ in a] != [n for n, _ in b]:
        raise PruningError("models do not have the same layer sequence; compare a model with its own slice")
    rows = []
    for (name, m0), (_, m1) in zip(a, b):
        p0, p1 = _count(m0), _count(m1)
        rows.append({"layer": name, "type": type(m0).__name__, "before": p0, "after": p1, "cut": p0 - p1,
                     "shape_before": _shape(m0), "shape_after": _shape(m1)})
    total0 = sum(r["before"] for r in rows)
    total1 = sum(r["after"] for r in rows)
    out = {"layers": rows, "total_before": total0, "total_after": total1, "total_cut": total0 - total1,
           "percent_cut": round(100.0 * (total0 - total1) / total0, 6) if total0 else 0.0}
    if record is not None:
        layers = record["layers"]
        names = list(layers)
        widths = [layers[n]["width"] for n in names]
        kept = [len(layers[n]["kept"]) for n in names]
        k = before.classifier[-1].out_features
        conv = record.get("conv") or {}
        cut = masked_dense_cut(widths, kept, k)
        select = record.get("select")
        out["flatten_columns_zeroed"] = int(record.get("flatten_columns_zeroed", 0))
        out["flatten_positions_selected"] = None if not select else len(select["indices"])
        out["removed_conv_channels"] = len(conv.get("removed_channels") or [])
        out["masked_dense_cut"] = cut
        out["masked_dense_percent"] = round(100.0 * cut / total0, 6) if total0 else 0.0
        out["note"] = ("total_cut counts parameters physically removed (conv channels included); "
                       "masked_dense_cut counts dense rows/columns of masked neurons as in the paper's Table 3; "
                       "masked flatten positions of channels that stay are removed by a feature selection "
                       "(Gather), so total_cut = masked_dense_cut + removed conv parameters")
    return out


def params_table(arch: str = "alexnet", num_classes: int = 5, percents: Sequence[float] = TABLE3_PERCENTS, *,
                 input_size: int | None = None, layers: Sequence[str] | None = None,
                 **model_kwargs: Any) -> list[dict]:
    """Paper Table 3: parameters cut by masking ``q`` % of each ranked layer, for each ``q``.

    Counts dense parameters only (rows/biases/columns of masked neurons; conv channel removal is
    not counted), as the paper did. Each row: ``percent``, ``kept`` per layer, ``params_cut``,
    ``percent_of_total`` (of the whole model, convs included), ``total``.
    The model is built on the meta device, so no weights are allocated.
    """
    import torch

    from etdeploy.models import build_model, count_parameters, dense_layers
    from etdeploy.pruning.masking import kept_count

    with torch.device("meta"):
        model = build_model(arch, num_classes, input_size=input_size, **model_kwargs)
    dls = dense_layers(model)
    names = [d.name for d in dls]
    chosen = names if layers is None else list(layers)
    for name in chosen:
        if name not in names:
            raise PruningError(f"unknown layer {name!r}; the model's layers are: {', '.join(names)}")
    total = count_parameters(model)
    widths = [d.width for d in dls]
    rows = []
    for q in percents:
        kept = [kept_count(w, q) if n in chosen else w for n, w in zip(names, widths)]
        for n, k in zip(names, kept):
            if k < 1:
                raise PruningError(f"masking {q} % of layer {n!r} removes every neuron")
        cut = masked_dense_cut(widths, kept, num_classes)
        rows.append({"percent": q, "kept": dict(zip(names, kept)), "params_cut": cut,
                     "percent_of_total": round(100.0 * cut / total, 6), "total": total})
    return rows
