"""Physical slicing: turn a masked model into an ordinary smaller model (docs/method.md §4).

One slicer per layer type behind a registry (``SLICERS``); a slicer takes a module and the kept
input / output indices (``None`` = all) and returns a new module. The walk in :func:`slice_model`:

- a masked hidden neuron ``i`` (after ``Linear_k -> act``): row ``i`` and bias ``i`` of ``Linear_k``,
  column ``i`` of ``Linear_{k+1}`` are removed (activations map 0 to 0, so this is exact);
- a masked flatten position: if every position of a channel of the last conv is masked, that channel
  is removed from the conv (filter + bias) and from every channel-wise layer between it and the
  Flatten (ReLU, pooling, BatchNorm2d, dropout, the classifier's adaptive average pool). A channel
  can only be removed when every layer in that stretch is channel-wise: a LocalResponseNorm mixes
  channels, so with one there, no channel is removed. A feature extractor that is not a plain chain
  (:class:`~etdeploy.models.contract.OpaqueFeatures`: residual blocks, where a channel also feeds a
  skip connection) is copied unchanged: no channel is ever removed from it. Masked positions of
  channels that stay are dropped by a :class:`SelectFeatures`
  (``x.index_select(1, kept)``, one ONNX Gather) inserted right after the Flatten, and their
  columns of the first Linear are removed, so no flatten column is left zeroed
  (``flatten_columns_zeroed`` is always 0; kept in the record for older readers). When every
  remaining position is kept, no SelectFeatures is added. A model that already has a
  SelectFeatures (a sliced model masked again) is re-sliced through it;
- masks are dropped; Dropout / activations / pooling pass through.

For every input the sliced model's logits equal the masked model's up to float summation order.
The record :func:`slice_model` returns (format :data:`RECORD_FORMAT`) is validated and replayed by
:mod:`etdeploy.pruning.replay`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from etdeploy.errors import PruningError
from etdeploy.models.masks import NeuronMask
from etdeploy.models.select import SelectFeatures

RECORD_FORMAT = "etdeploy-pruning-record"
# 2: flatten positions of kept channels are removed (SelectFeatures, record key "select") instead of
# zeroed. Version 1 records still replay (same kept indices) but to the smaller version-2 model.
RECORD_VERSION = 2
READABLE_RECORD_VERSIONS = (1, 2)


class Slicer(Protocol):
    """Builds a sliced copy of one layer. ``in_keep`` / ``out_keep``: sorted ``(p,)`` long tensors or None."""

    channel_wise: bool

    def slice(self, module: nn.Module, in_keep: torch.Tensor | None,
              out_keep: torch.Tensor | None) -> nn.Module | None: ...


def _take(t: torch.Tensor | None, dim: int, keep: torch.Tensor | None) -> torch.Tensor | None:
    if t is None or keep is None:
        return None if t is None else t.detach().clone()
    return t.detach().index_select(dim, keep).clone()


def _filled(new: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """Copy the sliced ``weight`` (and ``bias``, if the layer has one) into the freshly built ``new``."""
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


@dataclass(frozen=True)
class LinearSlicer:
    """``nn.Linear``: keep rows ``out_keep`` (and their bias), columns ``in_keep``."""

    channel_wise: bool = False

    def slice(self, module, in_keep, out_keep):
        weight = _take(_take(module.weight, 0, out_keep), 1, in_keep)
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
        return _filled(new, weight, _take(module.bias, 0, out_keep))


@dataclass(frozen=True)
class Conv2dSlicer:
    """``nn.Conv2d`` (groups == 1): keep filters ``out_keep`` (and their bias), input channels ``in_keep``."""

    channel_wise: bool = False

    def slice(self, module, in_keep, out_keep):
        if module.groups != 1 and (in_keep is not None or out_keep is not None):
            raise PruningError(f"cannot slice channels of a grouped Conv2d (groups={module.groups})")
        weight = _take(_take(module.weight, 0, out_keep), 1, in_keep)
        new = nn.Conv2d(weight.shape[1], weight.shape[0], module.kernel_size, stride=module.stride,
                        padding=module.padding, dilation=module.dilation, groups=module.groups,
                        bias=module.bias is not None, padding_mode=module.padding_mode)
        return _filled(new, weight, _take(module.bias, 0, out_keep))


@dataclass(frozen=True)
class BatchNorm2dSlicer:
    """``nn.BatchNorm2d``: keep channels ``in_keep`` (affine weight/bias and running statistics)."""

    channel_wise: bool = True

    def slice(self, module, in_keep, out_keep):
        keep = in_keep if in_keep is not None else out_keep
        if keep is None:
            return copy.deepcopy(module)
        new = nn.BatchNorm2d(int(keep.numel()), eps=module.eps, momentum=module.momentum, affine=module.affine,
                             track_running_stats=module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(_take(module.weight, 0, keep))
                new.bias.copy_(_take(module.bias, 0, keep))
            if module.track_running_stats:
                new.running_mean.copy_(_take(module.running_mean, 0, keep))
                new.running_var.copy_(_take(module.running_var, 0, keep))
                new.num_batches_tracked.copy_(module.num_batches_tracked)
        new.train(module.training)
        return new


@dataclass(frozen=True)
class PassThroughSlicer:
    """Parameter-free layers acting per channel / per neuron (activations, pooling, dropout, flatten)."""

    channel_wise: bool = True

    def slice(self, module, in_keep, out_keep):
        return copy.deepcopy(module)


@dataclass(frozen=True)
class ChannelMixingSlicer:
    """Parameter-free layers that mix channels (LocalResponseNorm): copied, but no channel may be removed."""

    channel_wise: bool = False

    def slice(self, module, in_keep, out_keep):
        if in_keep is not None:
            raise PruningError(f"{type(module).__name__} mixes channels; channels cannot be removed across it")
        return copy.deepcopy(module)


@dataclass(frozen=True)
class MaskSlicer:
    """``NeuronMask``: dropped (its effect is carried by the kept indices of the neighbouring Linears)."""

    channel_wise: bool = True

    def slice(self, module, in_keep, out_keep):
        return None


@dataclass(frozen=True)
class SelectSlicer:
    """``SelectFeatures``: dropped; :func:`slice_model` builds the new selection from the kept positions."""

    channel_wise: bool = False

    def slice(self, module, in_keep, out_keep):
        return None


_PASS = PassThroughSlicer()
SLICERS: dict[type[nn.Module], Slicer] = {
    nn.AdaptiveAvgPool2d: _PASS,
    nn.Linear: LinearSlicer(),
    nn.Conv2d: Conv2dSlicer(),
    nn.BatchNorm2d: BatchNorm2dSlicer(),
    nn.LocalResponseNorm: ChannelMixingSlicer(),
    NeuronMask: MaskSlicer(),
    SelectFeatures: SelectSlicer(),
    nn.ReLU: _PASS,
    nn.LeakyReLU: _PASS,
    nn.ReLU6: _PASS,
    nn.Hardtanh: _PASS,
    nn.Sigmoid: _PASS,
    nn.Tanh: _PASS,
    nn.ZeroPad2d: _PASS,
    nn.MaxPool2d: _PASS,
    nn.AvgPool2d: _PASS,
    nn.Dropout: _PASS,
    nn.Dropout2d: _PASS,
    nn.Identity: _PASS,
    nn.Flatten: _PASS,
}


def slicer_for(module: nn.Module) -> Slicer:
    """The registered slicer of ``module``'s exact type; an unknown type -> PruningError naming it."""
    slicer = SLICERS.get(type(module))
    if slicer is None:
        raise PruningError(f"no slicer for layer type {type(module).__name__}; supported: "
                           f"{', '.join(sorted(t.__name__ for t in SLICERS))}")
    return slicer


def kept_indices(model) -> dict[str, list[int]]:
    """Kept neuron indices of every ranked layer (all of them where the layer has no mask)."""
    from etdeploy.models import dense_layers, masks

    mods = masks(model)
    return {layer.name: (mods[layer.name].kept if layer.name in mods else list(range(layer.width)))
            for layer in dense_layers(model)}


@dataclass(frozen=True)
class ChannelPlan:
    """Which channels of the last conv survive. ``positions`` = flattened positions per channel."""

    conv_index: int | None
    channels: int
    positions: int
    kept_channels: tuple[int, ...]
    removable: bool
    reason: str


OPAQUE_REASON = "the feature extractor is made of blocks etdeploy does not look inside (e.g. residual)"


def plan_channels(features: nn.Module, flat_width: int, flat_kept: list[int],
                  before_flatten: tuple[nn.Module, ...] = ()) -> ChannelPlan:
    """Decide which channels of the last conv can go (all their flattened positions masked).

    ``before_flatten``: the classifier's layers before its Flatten (an adaptive pool), which sit in
    the stretch between the last conv and the Flatten too. Features that are not a plain chain never
    lose a channel.
    """
    from etdeploy.models.contract import is_plain_chain

    if not is_plain_chain(features):
        return ChannelPlan(None, 0, 0, (), False, OPAQUE_REASON)
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    if not convs:
        return ChannelPlan(None, 0, 0, (), False, "the model has no Conv2d")
    lc = convs[-1]
    conv = features[lc]
    channels = int(conv.out_channels)
    if flat_width % channels:
        raise PruningError(f"flatten width {flat_width} is not a multiple of the last conv's {channels} channels")
    positions = flat_width // channels
    kept_set = sorted({i // positions for i in flat_kept})
    blocker = None
    if conv.groups != 1:
        blocker = f"the last Conv2d is grouped (groups={conv.groups})"
    for module in [*list(features)[lc + 1:], *before_flatten]:
        if not slicer_for(module).channel_wise:
            blocker = f"{type(module).__name__} between the last conv and the flatten mixes channels"
            break
    removable = blocker is None
    if not removable:
        kept_set = list(range(channels))
    return ChannelPlan(lc, channels, positions, tuple(kept_set), removable, blocker or "")


def slice_model(masked_model, *, context: dict[str, Any] | None = None):
    """Physically remove masked neurons -> ``(sliced ETModel without masks, record dict)``.

    The input model is not changed. ``context`` (schedule, percent, ranking hash...) is copied into the
    record. The record lists the kept indices of every ranked layer and the removed conv channels;
    :func:`etdeploy.pruning.replay.apply_record` replays it on the same weights.
    """
    from etdeploy.models import dense_layers, weights_fingerprint
    from etdeploy.models.contract import flatten_index
    from etdeploy.models.zoo import ETModel

    layers = dense_layers(masked_model)
    kept = kept_indices(masked_model)
    for layer in layers:
        if not kept[layer.name]:
            raise PruningError(f"the mask of layer {layer.name!r} removes every neuron and disconnects the output")
    flat = layers[0]
    old_select = None if flat.select_index is None else masked_model.classifier[flat.select_index]
    # kept flatten neurons as positions of the full Flatten output (through an existing selection)
    full_width = old_select.in_width if old_select is not None else flat.width
    base = old_select.indices.tolist() if old_select is not None else range(flat.width)
    flat_positions = [int(base[i]) for i in kept["flatten"]]
    pre_flatten = tuple(masked_model.classifier)[:flatten_index(masked_model.classifier)]
    plan = plan_channels(masked_model.features, full_width, flat_positions, pre_flatten)
    kept_channels = torch.tensor(plan.kept_channels, dtype=torch.long)
    channel_sel = kept_channels if plan.removable and len(plan.kept_channels) < plan.channels else None

    features = []
    for i, module in enumerate(masked_model.features if plan.conv_index is not None else ()):
        slicer = slicer_for(module)
        if i < plan.conv_index or channel_sel is None:
            features.append(slicer.slice(module, None, None))
        elif i == plan.conv_index:
            features.append(slicer.slice(module, None, channel_sel))
        else:
            features.append(slicer.slice(module, channel_sel, channel_sel))
    # no conv to plan for (none, or an opaque extractor): the features are copied as they are
    new_features = nn.Sequential(*features) if plan.conv_index is not None else copy.deepcopy(masked_model.features)

    # Positions of the new (channel-reduced) Flatten output that stay, in order.
    if channel_sel is not None:
        p = plan.positions
        new_channel = {c: j for j, c in enumerate(plan.kept_channels)}
        new_width = len(plan.kept_channels) * p
        new_positions = [new_channel[q // p] * p + q % p for q in flat_positions]
    else:
        new_width = full_width
        new_positions = flat_positions
    select = SelectFeatures(new_positions, new_width) if len(new_positions) < new_width else None
    # First Linear: its columns are the (old) flatten neurons, so keep exactly the kept ones.
    first_in = None if len(kept["flatten"]) == flat.width else torch.tensor(kept["flatten"], dtype=torch.long)

    out_keep_of_linear = {layer.linear_index: torch.tensor(kept[layer.name], dtype=torch.long)
                          for layer in layers[1:]}
    classifier = []
    cur_in = first_in
    for i, module in enumerate(masked_model.classifier):
        slicer = slicer_for(module)
        if isinstance(module, nn.Linear):
            out_keep = out_keep_of_linear.get(i)
            if out_keep is not None and out_keep.numel() == module.out_features:
                out_keep = None
            classifier.append(slicer.slice(module, cur_in, out_keep))
            cur_in = out_keep
        else:
            new = slicer.slice(module, None, None)
            if new is not None:
                classifier.append(new)
            if isinstance(module, nn.Flatten) and select is not None:
                classifier.append(select)
    select_record = None if select is None else {"in_width": new_width, "indices": list(new_positions)}

    spec = getattr(masked_model, "spec", None)
    layer_record = {layer.name: {"width": layer.width, "kept": list(kept[layer.name]),
                                 "masked": layer.width - len(kept[layer.name])} for layer in layers}
    removed = [c for c in range(plan.channels) if c not in set(plan.kept_channels)] if plan.conv_index is not None \
        else []
    conv_record = None if plan.conv_index is None else {
        "features_index": plan.conv_index, "channels": plan.channels, "positions_per_channel": plan.positions,
        "removed_channels": removed, "channel_removal_possible": plan.removable, "blocked_by": plan.reason}
    if plan.reason == OPAQUE_REASON:
        conv_record = {"features_index": None, "channels": None, "positions_per_channel": None,
                       "removed_channels": [], "channel_removal_possible": False, "blocked_by": plan.reason}
    sliced_spec = None
    if spec is not None:
        meta = dict(spec.meta)
        meta["sliced"] = {"from_fingerprint": weights_fingerprint(masked_model),
                          "kept": {name: len(v) for name, v in kept.items()},
                          "removed_conv_channels": len(removed),
                          "flatten_columns_zeroed": 0,
                          "flatten_positions_selected": None if select is None else len(new_positions),
                          **({k: context[k] for k in ("schedule", "percent", "ranking_sha256") if k in context}
                             if context else {})}
        sliced_spec = spec.replace(meta=meta)
    sliced = ETModel(new_features, nn.Sequential(*classifier), sliced_spec)
    dense_layers(sliced)
    sliced.train(masked_model.training)
    record = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
              "source_fingerprint": weights_fingerprint(masked_model),
              "sliced_fingerprint": weights_fingerprint(sliced),
              "layers": layer_record, "conv": conv_record, "select": select_record,
              "flatten_columns_zeroed": 0}
    if context:
        record["context"] = dict(context)
    return sliced, record
