import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from etdeploy.errors import ContractError, ModelError, OutputExistsError
from etdeploy.models import (
    build_model,
    count_parameters,
    dense_layers,
    layer_names,
    load_model,
    masks,
    save_model,
    split_model,
    with_masks,
    without_masks,
)


def test_alexnet_paper_geometry_has_exact_parameter_count():
    model = build_model("alexnet", 5)
    assert count_parameters(model) == 58_301_829
    assert [(layer.name, layer.width) for layer in dense_layers(model)] == [
        ("flatten", 9216), ("dense1", 4096), ("dense2", 4096)]
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 227, 227)).shape == (1, 5)


def test_vgg16_and_mini_shapes():
    vgg = build_model("vgg16", 5)
    assert dense_layers(vgg)[0].width == 512 * 7 * 7
    mini = build_model("alexnet-mini", 5, input_size=96)
    with torch.no_grad():
        assert mini.eval()(torch.zeros(2, 3, 96, 96)).shape == (2, 5)


def test_same_seed_same_init_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("alexnet-mini", 5, seed=7)
    after = torch.rand(1)
    b = build_model("alexnet-mini", 5, seed=7)
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@settings(max_examples=15, deadline=None)
@given(layer=st.sampled_from(["flatten", "dense1", "dense2"]), masked=st.booleans(), seed=st.integers(0, 100))
def test_split_composes_to_the_model(layer, masked, seed):
    model = build_model("alexnet-mini", 4, seed=seed).eval()
    if masked:
        with_masks(model)
        g = torch.Generator().manual_seed(seed)
        for mask in masks(model).values():
            mask.set_mask((torch.rand(mask.width, generator=g) > 0.3).float())
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    h, g_part = split_model(model, layer)
    with torch.no_grad():
        assert torch.equal(g_part(h(x)), model(x))


def test_masks_insert_toggle_and_remove():
    model = build_model("alexnet-mini", 3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with_masks(model)
        assert set(masks(model)) == {"flatten", "dense1", "dense2"}
        assert torch.equal(model(x), ref)
        masks(model)["dense2"].set_kept([])
        zeroed = model(x)
        bias = model.classifier[-1].bias
        assert torch.allclose(zeroed, bias.expand_as(zeroed))
        masks(model)["dense2"].reset()
        without_masks(model)
        assert torch.equal(model(x), ref)
    assert layer_names(model) == ["flatten", "dense1", "dense2"]


def test_unknown_layer_lists_valid_ones():
    model = build_model("alexnet-mini", 3)
    with pytest.raises(ContractError, match="valid layers: flatten, dense1, dense2"):
        split_model(model, "dense7")


def test_contract_rejects_unsupported_models():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

    with pytest.raises(ContractError, match="AdaptiveAvgPool2d"):
        dense_layers(Bad())


def test_save_load_roundtrip_with_masks(tmp_path):
    model = with_masks(build_model("sequential-cnn", 3, layers="c4k3p1-r-m2-c8k3p1-b-r-l", hidden=(16, 8)))
    masks(model)["dense1"].set_kept([0, 3, 5])
    model.eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert masks(loaded)["dense1"].kept == [0, 3, 5]
    with pytest.raises(OutputExistsError):
        save_model(model, tmp_path / "m")


def test_load_rejects_missing_spec_and_wrong_shapes(tmp_path):
    model = build_model("alexnet-mini", 3)
    save_model(model, tmp_path / "a")
    (tmp_path / "a" / "spec.json").unlink()
    with pytest.raises(ModelError, match="no spec.json"):
        load_model(tmp_path / "a")
    other = build_model("alexnet-mini", 4)
    save_model(model, tmp_path / "b")
    save_model(other, tmp_path / "c")
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "c" / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        load_model(tmp_path / "b")
    spec = json.loads((tmp_path / "b" / "spec.json").read_text())
    del spec["weights_sha256"]  # a spec edited by hand: shapes are still checked
    (tmp_path / "b" / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="shape"):
        load_model(tmp_path / "b")


def test_user_factory_by_import_path():
    model = build_model("tests.user_models:tiny_factory", 2, input_size=16)
    assert layer_names(model) == ["flatten", "dense1"]
    with pytest.raises(ModelError, match="cannot import"):
        build_model("no_such_pkg.mod:factory", 2)
