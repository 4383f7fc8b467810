"""Physical slicing: exact equivalence with the masked model, conv channels, records, registry."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from etdeploy.errors import PruningError
from etdeploy.models import (
    build_model,
    count_parameters,
    dense_layers,
    has_masks,
    load_model,
    masks,
    save_model,
    weights_fingerprint,
    with_masks,
)
from etdeploy.models.contract import ACTIVATION_TYPES, LOCAL_FEATURE_TYPES, PASS_THROUGH_TYPES
from etdeploy.models.masks import NeuronMask
from etdeploy.models.select import SelectFeatures
from etdeploy.pruning import SLICERS, apply_record, load_record, params_report, save_record, slice_model
from etdeploy.pruning.params import dense_parameters
from etdeploy.pruning.replay import validate_record

ATOL = 1e-5

# (spec, whether a channel of the last conv can be removed: False when an LRN sits after it)
ARCHS = [
    ("c6k3p1-r-m2-c8k3p1-r", True),
    ("c6k3p1-b-r-m2-c8k3s2p1-b-r-m2", True),
    ("c6k3p1-r-l-m2-c8k3p1-r-l-m2", False),
    ("c4k3p1-r-a2-c8k3p1-r-m2-c6k1-r", True),
    ("c8k3p1-r-m2-c16k3s2p1-r-l-b", False),
]


def test_every_layer_type_of_the_contract_has_a_slicer():
    needed = set(LOCAL_FEATURE_TYPES) | set(ACTIVATION_TYPES) | set(PASS_THROUGH_TYPES) | {nn.Flatten, nn.Linear,
                                                                                           NeuronMask, SelectFeatures}
    assert needed <= set(SLICERS)
    assert not SLICERS[nn.LocalResponseNorm].channel_wise
    assert SLICERS[nn.BatchNorm2d].channel_wise and SLICERS[nn.MaxPool2d].channel_wise


def _randomise_batchnorm(model, gen):
    for m in model.features:
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))


def _random_masks(model, gen, drop_channels: int):
    """Random non-empty masks; the first ``drop_channels`` chosen channels lose every flatten position."""
    with_masks(model)
    layers = dense_layers(model)
    conv = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
    positions = layers[0].width // conv.out_channels
    dropped = torch.randperm(conv.out_channels, generator=gen)[:drop_channels].tolist()
    for layer in layers:
        keep = (torch.rand(layer.width, generator=gen) < 0.6).float()
        if layer.name == "flatten":
            for c in dropped:
                keep[c * positions:(c + 1) * positions] = 0
        if keep.sum() == 0:
            candidates = [i for i in range(layer.width)
                          if layer.name != "flatten" or i // positions not in dropped]
            keep[candidates[0]] = 1
        masks(model)[layer.name].set_mask(keep)
    return sorted(dropped), positions


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(ARCHS), hidden=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       drop=st.integers(0, 3), seed=st.integers(0, 10_000), dropout=st.sampled_from([0.0, 0.5]))
def test_sliced_equals_masked_on_random_models(arch, hidden, drop, seed, dropout):
    spec, channel_removal = arch
    model = build_model("sequential-cnn", 4, input_size=16, seed=seed, layers=spec, hidden=tuple(hidden),
                        dropout=dropout)
    gen = torch.Generator().manual_seed(seed)
    _randomise_batchnorm(model, gen)
    dropped, positions = _random_masks(model, gen, drop)
    model.eval()
    kept_flat = set(masks(model)["flatten"].kept)
    x = torch.randn(5, 3, 16, 16, generator=gen)
    sliced, record = slice_model(model)
    assert not has_masks(sliced)
    with torch.no_grad():
        diff = (sliced.eval()(x) - model(x)).abs().max().item()
    assert diff <= ATOL
    conv = record["conv"]
    assert conv["channel_removal_possible"] is channel_removal
    fully_masked = [c for c in range(conv["channels"])
                    if not any(c * positions + p in kept_flat for p in range(positions))]
    assert set(dropped) <= set(fully_masked)
    assert conv["removed_channels"] == (fully_masked if channel_removal else [])
    new_conv = [m for m in sliced.features if isinstance(m, nn.Conv2d)][-1]
    assert new_conv.out_channels == conv["channels"] - len(conv["removed_channels"])
    for layer in dense_layers(model)[1:]:
        assert sliced.classifier[_linear_pos(sliced, layer.name)].out_features == len(masks(model)[layer.name].kept)
    # every masked flatten position is physically gone: nothing zeroed, a selection where positions of kept
    # channels are dropped, and the classifier has exactly the dense parameters of the kept widths
    assert record["flatten_columns_zeroed"] == 0
    remaining = (conv["channels"] - len(conv["removed_channels"])) * positions
    selects = [m for m in sliced.classifier if isinstance(m, SelectFeatures)]
    if remaining > len(kept_flat):
        assert len(selects) == 1 and isinstance(sliced.classifier[1], SelectFeatures)
        assert (selects[0].in_width, selects[0].out_width) == (remaining, len(kept_flat))
        assert record["select"] == {"in_width": remaining, "indices": selects[0].indices.tolist()}
    else:
        assert selects == [] and record["select"] is None
    kept_widths = [len(masks(model)[layer.name].kept) for layer in dense_layers(model)]
    assert count_parameters(sliced.classifier) == dense_parameters(kept_widths, 4)
    last = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)][-1]
    per_channel = model.features[last].weight[0].numel() + 1 + sum(
        2 for m in list(model.features)[last + 1:] if isinstance(m, nn.BatchNorm2d))
    assert count_parameters(model.features) - count_parameters(sliced.features) \
        == per_channel * len(conv["removed_channels"])


def _linear_pos(model, name):
    return next(layer.linear_index for layer in dense_layers(model) if layer.name == name)


def test_conv_channels_removed_with_batchnorm_and_params_report(tmp_path):
    model = build_model("sequential-cnn", 3, input_size=16, seed=2, layers="c6k3p1-r-m2-c8k3p1-b-r-m2",
                        hidden=(7,))
    gen = torch.Generator().manual_seed(0)
    _randomise_batchnorm(model, gen)
    with_masks(model).eval()
    positions = 16  # 8 channels of 4x4
    keep = torch.ones(128)
    for c in (1, 5):
        keep[c * positions:(c + 1) * positions] = 0
    keep[3 * positions] = 0  # one position of channel 3: the channel stays, a selection drops the position
    masks(model)["flatten"].set_mask(keep)
    masks(model)["dense1"].set_kept([0, 2, 6])
    sliced, record = slice_model(model, context={"schedule": "manual"})
    assert record["conv"]["removed_channels"] == [1, 5]
    assert record["flatten_columns_zeroed"] == 0
    assert record["select"] == {"in_width": 96, "indices": [j for j in range(96) if j != 2 * positions]}
    assert record["context"] == {"schedule": "manual"}
    bn = next(m for m in sliced.features if isinstance(m, nn.BatchNorm2d))
    assert bn.num_features == 6
    orig_bn = next(m for m in model.features if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, orig_bn.running_mean[[0, 2, 3, 4, 6, 7]])
    select, first = sliced.classifier[1], sliced.classifier[2]
    assert isinstance(select, SelectFeatures) and (select.in_width, select.out_width) == (96, 95)
    assert (first.in_features, first.out_features) == (95, 3)
    orig_cols = [c * positions + q for c in (0, 2, 3, 4, 6, 7) for q in range(positions)
                 if (c, q) != (3, 0)]  # channel 3 is now channel 2
    orig_first = model.classifier[2]
    assert torch.equal(first.weight, orig_first.weight[[0, 2, 6]][:, orig_cols])
    x = torch.randn(4, 3, 16, 16, generator=gen)
    with torch.no_grad():
        assert (sliced(x) - model(x)).abs().max().item() <= ATOL
    report = params_report(model, sliced, record=record)
    conv_row = report["layers"][1]
    assert (conv_row["before"], conv_row["after"]) == (6 * 8 * 9 + 8, 6 * 6 * 9 + 6)
    bn_row = report["layers"][2]
    assert (bn_row["before"], bn_row["after"]) == (16, 12)
    lin = report["layers"][3]
    assert (lin["before"], lin["after"]) == (128 * 7 + 7, 95 * 3 + 3)
    assert report["total_before"] == count_parameters(model)
    assert report["total_after"] == count_parameters(sliced)
    assert report["removed_conv_channels"] == 2 and report["flatten_columns_zeroed"] == 0
    assert report["flatten_positions_selected"] == 95
    # paper-style count: flatten keeps 128-33=95, dense1 keeps 3 of 7
    assert report["masked_dense_cut"] == (128 * 7 + 7 + 7 * 3 + 3) - (95 * 3 + 3 + 3 * 3 + 3)
    # physical cut = paper-style dense cut + the removed conv filters and BatchNorm channels
    assert report["total_cut"] == report["masked_dense_cut"] + 2 * (6 * 9 + 1) + 2 * 2
    # saved sliced model reloads exactly (other widths than any zoo model)
    save_model(sliced, tmp_path / "sliced")
    back = load_model(tmp_path / "sliced")
    with torch.no_grad():
        assert torch.equal(back(x), sliced(x))
    assert back.spec.meta["sliced"]["removed_conv_channels"] == 2
    assert back.spec.meta["sliced"]["flatten_positions_selected"] == 95
    assert torch.equal(back.classifier[1].indices, select.indices) and back.classifier[1].indices.dtype == torch.int64
    assert back.spec.meta["sliced"]["schedule"] == "manual"


def test_record_replays_to_identical_weights_and_validates(tmp_path):
    model = build_model("sequential-cnn", 3, input_size=16, seed=4, layers="c6k3p1-r-m2-c8k3p1-r-m2", hidden=(9, 5))
    plain = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(4)
    _random_masks(model, gen, 2)
    sliced, record = slice_model(model, context={"percent": 50.0})
    save_record(record, tmp_path / "record.json")
    loaded = load_record(tmp_path / "record.json")
    assert loaded == record
    replay = apply_record(plain, loaded)
    assert weights_fingerprint(replay) == weights_fingerprint(sliced) == record["sliced_fingerprint"]
    # the masked model itself (masks ignored by the fingerprint) replays too
    assert weights_fingerprint(apply_record(model, loaded)) == record["sliced_fingerprint"]
    other = build_model("sequential-cnn", 3, input_size=16, seed=5, layers="c6k3p1-r-m2-c8k3p1-r-m2", hidden=(9, 5))
    with pytest.raises(PruningError, match="other weights"):
        apply_record(other, loaded)
    wider = build_model("sequential-cnn", 3, input_size=16, seed=4, layers="c6k3p1-r-m2-c8k3p1-r-m2", hidden=(9, 6))
    with pytest.raises(PruningError, match="width"):
        apply_record(wider, loaded, check_fingerprint=False)
    for bad in ({}, {**record, "format_version": 9}, {**record, "layers": {}},
                {**record, "layers": {"dense1": {"width": 9, "kept": ["a"]}}}):
        with pytest.raises(PruningError):
            validate_record(bad)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PruningError, match="not valid JSON"):
        load_record(tmp_path / "bad.json")


def test_slicing_refuses_an_empty_layer_and_leaves_model_unchanged():
    model = with_masks(build_model("sequential-cnn", 3, input_size=16, layers="c4k3p1-r-m2", hidden=(5,)))
    masks(model)["dense1"].mask.zero_()  # bypasses set_kept's checks on purpose
    before = weights_fingerprint(model)
    with pytest.raises(PruningError, match="removes every neuron"):
        slice_model(model)
    assert weights_fingerprint(model) == before and has_masks(model)


def test_unmasked_model_slices_to_an_identical_copy():
    model = build_model("sequential-cnn", 3, input_size=16, layers="c4k3p1-r-m2", hidden=(5,)).eval()
    sliced, record = slice_model(model)
    assert weights_fingerprint(sliced) == weights_fingerprint(model)
    assert record["conv"]["removed_channels"] == [] and record["flatten_columns_zeroed"] == 0
    assert record["select"] is None and not any(isinstance(m, SelectFeatures) for m in sliced.classifier)
    assert sliced is not model and sliced.features[0] is not model.features[0]
