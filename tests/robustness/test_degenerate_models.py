"""Models that are well-formed but degenerate: a mask that disconnects the output, activations that overflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etdeploy.cli.main import main
from etdeploy.errors import AttributionError, PruningError
from etdeploy.models import build_model, dense_layers, masks, save_model, weights_fingerprint, with_masks
from tests.test_pruning_support import synthetic_ranking

LAYERS = "c4k3p1-r-m2"  # 16 px input -> flatten width 4 * 8 * 8 = 256


def _tiny(class_names=None, seed=0):
    return build_model("sequential-cnn", 5, input_size=16, seed=seed, layers=LAYERS, hidden=(8, 6),
                       class_names=class_names).eval()


def _mask_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith("mask")}


@pytest.mark.parametrize("layer", ["flatten", "dense1", "dense2"])
def test_emptying_any_layer_is_refused_and_changes_nothing(layer):
    from etdeploy.pruning.masking import apply_count, set_layer_masks

    model = with_masks(_tiny())
    ranking = synthetic_ranking(model)
    before = _mask_state(model)
    width = {d.name: d.width for d in dense_layers(model)}[layer]
    with pytest.raises(PruningError, match="removes every neuron"):
        set_layer_masks(model, {layer: []})
    with pytest.raises(PruningError):
        apply_count(model, ranking, "bottom-first", layer, width)
    after = _mask_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("layer", ["flatten", "dense1", "dense2"])
def test_a_saved_model_with_an_empty_layer_cannot_be_sliced(layer, tmp_path):
    """A masked checkpoint from elsewhere (mask buffer zeroed by hand) still never becomes a sliced model."""
    from etdeploy.models import load_model
    from etdeploy.pruning.slicing import slice_model

    model = with_masks(_tiny())
    masks(model)[layer].mask.zero_()
    save_model(model, tmp_path / "masked")
    loaded = load_model(tmp_path / "masked")
    assert masks(loaded)[layer].kept == []
    before = weights_fingerprint(loaded)
    with pytest.raises(PruningError, match="removes every neuron"):
        slice_model(loaded)
    assert weights_fingerprint(loaded) == before


@pytest.fixture()
def tiny_on_bundled(tmp_path, bundled):
    from etdeploy.attribution import save_ranking

    model = _tiny(class_names=bundled.classes)
    save_model(model, tmp_path / "model")
    save_ranking(synthetic_ranking(model), tmp_path / "ranking")
    return tmp_path / "model", tmp_path / "ranking"


@pytest.mark.parametrize("layer, percent", [("flatten", "99.9"), ("dense1", "95"), ("dense2", "92")])
def test_prune_cli_refuses_to_disconnect_the_output(tiny_on_bundled, tmp_path, capsys, layer, percent):
    model_dir, ranking_dir = tiny_on_bundled
    out = tmp_path / "out"
    code = main(["prune", "--model", str(model_dir), "--ranking", str(ranking_dir), "--layers", layer,
                 "--percent", percent, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and "removes every neuron" in err and layer in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "ranking"]


def _overflowing(model):
    """Finite weights whose activations overflow float32 to Inf in the classifier."""
    with torch.no_grad():
        model.features[0].weight.mul_(1e30)
        model.classifier[1].weight.mul_(1e30)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return model


def test_activations_that_overflow_to_inf_are_an_attribution_error():
    from etdeploy.attribution.ranking import rank_model

    model = _overflowing(_tiny())
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    with pytest.raises(AttributionError, match="not finite"):
        rank_model(model, images, np.array([0, 1, 2, 3, 4, 0]), progress=False)


def test_rank_cli_refuses_overflowing_activations(tmp_path, bundled, capsys):
    save_model(_overflowing(_tiny(class_names=bundled.classes)), tmp_path / "model")
    out = tmp_path / "rank"
    code = main(["rank", "--model", str(tmp_path / "model"), "--cap", "2", "--steps", "2", "--no-progress",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "not finite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
