"""Pruning on the trained alexnet-mini with its real integrated-gradients ranking (bundled data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from etdeploy.cli.main import cli, main
from etdeploy.errors import PruningError
from etdeploy.models import dense_layers, load_model, masks, weights_fingerprint
from etdeploy.pruning import apply_percent, apply_record, finetune_masked, load_record, slice_model, sweep
from etdeploy.training import TrainConfig, predict_logits
from tests.test_pruning_support import synthetic_ranking

RANK_STEPS = 8


@pytest.fixture(scope="module")
def mini_ranking_dir(trained_mini_dir, bundled_splits, tmp_path_factory):
    """The real ranking of the trained alexnet-mini (train split, 8 Gauss-Legendre steps), saved."""
    from etdeploy.attribution import rank_model, save_ranking

    model = load_model(trained_mini_dir)
    train = bundled_splits["train"]
    ranking = rank_model(model, train.images, train.labels, steps=RANK_STEPS, batch_size=64, progress=False,
                         split="train")
    out = tmp_path_factory.mktemp("ranking") / "rank"
    save_ranking(ranking, out)
    return out


@pytest.fixture(scope="module")
def mini_ranking(mini_ranking_dir):
    from etdeploy.attribution import load_ranking

    return load_ranking(mini_ranking_dir)


@pytest.fixture(scope="module")
def heldout(bundled_splits):
    """Validation + test images of the bundled data: ``(N, 3, 64, 64)`` uint8 and labels."""
    v, t = bundled_splits["val"], bundled_splits["test"]
    return np.concatenate([v.images, t.images]), np.concatenate([v.labels, t.labels])


@pytest.mark.parametrize("percent", [50, 95])
def test_sliced_equals_masked_on_bundled_images(trained_mini, mini_ranking, heldout, percent):
    kept = apply_percent(trained_mini, mini_ranking, "bottom-first", percent)
    assert {k: len(v) for k, v in kept.items()} == (
        {"flatten": 288, "dense1": 128, "dense2": 128} if percent == 50 else {"flatten": 29, "dense1": 13, "dense2": 13})
    sliced, record = slice_model(trained_mini)
    images, _ = heldout
    spec = trained_mini.spec
    a = predict_logits(trained_mini, images, spec.mean, spec.std)
    b = predict_logits(sliced, images, spec.mean, spec.std)
    assert float((a - b).abs().max()) <= 1e-5
    assert torch.equal(a.argmax(1), b.argmax(1))
    widths = [layer.width for layer in dense_layers(sliced)]
    assert widths[1:] == [len(kept["dense1"]), len(kept["dense2"])]
    if percent == 95:  # 29 kept flatten positions fall in at most 29 of the 64 channels: the rest go
        removed = record["conv"]["removed_channels"]
        assert len(removed) >= 64 - 29
        assert widths[0] == 29 and sliced.classifier[1].in_width == (64 - len(removed)) * 9


def test_bottom_first_curve_above_top_first(trained_mini, mini_ranking, heldout):
    images, labels = heldout
    calls = {"features": 0}
    trained_mini.features.register_forward_hook(lambda *_: calls.__setitem__("features", calls["features"] + 1))
    areas = {}
    for layer in ("flatten", "dense1", "dense2"):
        res = sweep(trained_mini, mini_ranking, images, labels, layer=layer,
                    schedules=["bottom-first", "top-first", "random"], seed=0)
        areas[layer] = {name: c.auc for name, c in res.curves.items()}
        curves = res.curves
        assert curves["bottom-first"].counts == curves["top-first"].counts
        assert len(curves["bottom-first"].counts) == 21
        # unmasked point: every schedule starts at the model's own accuracy
        assert len({c.accuracy[0] for c in curves.values()}) == 1
        assert areas[layer]["bottom-first"] > areas[layer]["top-first"], areas
    assert calls["features"] == 3  # H(x) once per layer (one batch), never per grid point


def test_class_ea_schedule_destroys_its_own_class(trained_mini, mini_ranking, heldout):
    """Paper Fig. 11: masking the top-E^k_kk neurons of dense2 hurts class k most, and more than random."""
    images, labels = heldout
    schedules = [f"class-ea:{k}" for k in range(5)] + ["random"]
    res = sweep(trained_mini, mini_ranking, images, labels, layer="dense2", schedules=schedules,
                percents=[0, 10, 20, 30, 40, 50])
    for k in range(5):
        own = res.curves[f"class-ea:{k}"].auc_per_class[k]
        others = [res.curves[s].auc_per_class[k] for s in schedules if s != f"class-ea:{k}"]
        assert own < min(others), (k, own, others)


def test_finetune_holds_masked_neurons(trained_mini, mini_ranking, bundled_splits):
    apply_percent(trained_mini, mini_ranking, "bottom-first", 75, layers=["flatten", "dense1", "dense2"])
    layers = {layer.name: layer for layer in dense_layers(trained_mini)}
    held = {}
    for name, mask in masks(trained_mini).items():
        idx = torch.nonzero(mask.mask == 0).reshape(-1)
        layer = layers[name]
        nxt = trained_mini.classifier[layer.next_linear_index]
        held[(name, "next.cols")] = (nxt.weight, 1, idx, nxt.weight.detach()[:, idx].clone())
        if layer.linear_index is not None:
            lin = trained_mini.classifier[layer.linear_index]
            held[(name, "rows")] = (lin.weight, 0, idx, lin.weight.detach()[idx].clone())
            held[(name, "bias")] = (lin.bias, 0, idx, lin.bias.detach()[idx].clone())
    kept_d2 = masks(trained_mini)["dense2"].kept
    free_before = trained_mini.classifier[layers["dense2"].next_linear_index].weight.detach()[:, kept_d2].clone()
    train = bundled_splits["train"]
    split_type = type(train)
    sub = split_type(images=train.images[::5], labels=train.labels[::5], paths=train.paths[::5])  # all classes
    no_val = split_type(images=train.images[:0], labels=train.labels[:0], paths=())  # keep the last epoch
    result = finetune_masked(trained_mini, sub, no_val, TrainConfig(epochs=2, lr=1e-4, seed=0), progress=False)
    assert result.best_epoch == 2
    for key, (param, dim, idx, old) in held.items():
        assert torch.equal(param.detach().index_select(dim, idx), old), key
    free_after = trained_mini.classifier[layers["dense2"].next_linear_index].weight.detach()[:, kept_d2]
    assert not torch.equal(free_after, free_before)  # the kept weights did train
    outputs = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: outputs.__setitem__(n, (inp[0], out)))
             for n, m in masks(trained_mini).items()]
    spec = trained_mini.spec
    predict_logits(trained_mini, bundled_splits["test"].images, spec.mean, spec.std)
    for h in hooks:
        h.remove()
    for name, mask in masks(trained_mini).items():
        before_mask, after_mask = outputs[name]
        masked = mask.mask == 0
        assert torch.equal(after_mask[:, masked], torch.zeros_like(after_mask[:, masked]))
        assert bool((before_mask[:, masked] != 0).any())  # the mask, not dead neurons, zeroes them
    with pytest.raises(PruningError, match="weight_decay"):
        finetune_masked(trained_mini, sub, bundled_splits["val"], TrainConfig(epochs=1, weight_decay=1e-4),
                        progress=False)


def test_prune_cli_end_to_end_and_record_replay(trained_mini_dir, mini_ranking_dir, tmp_path):
    out = tmp_path / "p95"
    res = CliRunner().invoke(cli, ["prune", "--model", str(trained_mini_dir), "--ranking", str(mini_ranking_dir),
                                   "--schedule", "bottom-first", "--percent", "95", "--layers", "dense1,dense2",
                                   "--finetune-epochs", "1", "--cap", "30", "--allow-other-data", "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["masked", "params.json", "prune.json", "record.json", "sliced"]
    summary = json.loads((out / "prune.json").read_text())
    assert summary["kept"] == {"dense1": 13, "dense2": 13}
    assert set(summary["test_accuracy"]) == {"original", "masked", "finetuned"}
    assert 0.0 <= summary["test_accuracy"]["masked"]["accuracy"] <= 1.0
    assert summary["parity"]["max_abs_logit_diff"] <= 1e-5
    masked = load_model(out / "masked")
    sliced = load_model(out / "sliced")
    record = load_record(out / "record.json")
    assert record["context"]["schedule"] == "bottom-first" and record["context"]["percent"] == 95.0
    assert len(record["context"]["ranking_sha256"]) == 64
    assert weights_fingerprint(apply_record(masked, record)) == weights_fingerprint(sliced)
    params = json.loads((out / "params.json").read_text())
    assert params["total_after"] == sum(p.numel() for p in sliced.parameters())
    # dense1: 256 -> 13 rows (+ bias) and dense2 13x13 + output 13 columns; flatten untouched
    assert [r["shape_after"] for r in params["layers"] if r["type"] == "Linear"] == [
        "Linear(576->13)", "Linear(13->13)", "Linear(13->5)"]
    assert summary["parameters"]["cut"] == params["total_cut"] == (576 * 256 + 256 + 256 * 256 + 256 + 256 * 5) - (
        576 * 13 + 13 + 13 * 13 + 13 + 13 * 5)


def test_sweep_cli_is_byte_reproducible(trained_mini_dir, mini_ranking_dir, tmp_path):
    args = ["sweep", "--model", str(trained_mini_dir), "--ranking", str(mini_ranking_dir), "--schedules",
            "bottom-first,top-first,random,class-ea:0", "--layer", "dense2", "--percents", "0,50,90,95", "--split",
            "test", "--no-progress", "--out"]
    runner = CliRunner()
    r1 = runner.invoke(cli, args + [str(tmp_path / "a")])
    r2 = runner.invoke(cli, args + [str(tmp_path / "b")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    for name in ("sweep.csv", "sweep.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rows = (tmp_path / "a" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 4
    assert rows[0].startswith("schedule,layer,count,fraction,accuracy,acc_close-up rock")
    doc = json.loads((tmp_path / "a" / "sweep.json").read_text())
    assert doc["curves"]["bottom-first"]["counts"] == [0, 128, 230, 243]
    assert doc["n_images"] == 60 and doc["split"] == "test"
    assert all(0.0 <= c["auc"] <= 1.0 for c in doc["curves"].values())


EXPECTED_MESSAGE = {"percent-100": "percent must be in [0, 100)", "percent-negative": "percent must be in [0, 100)",
                    "bad-schedule": "unknown schedule 'sideways'", "other-model": "computed on another model",
                    "bad-layer": "unknown layer 'dense7'", "empty-layer": "removes every neuron",
                    "out-exists": "not empty"}


@pytest.mark.parametrize("case", ["percent-100", "percent-negative", "bad-schedule", "other-model", "bad-layer",
                                  "empty-layer", "out-exists"])
def test_prune_cli_bad_input_writes_nothing(trained_mini_dir, mini_ranking_dir, tmp_path, case, capsys):
    from etdeploy.attribution import save_ranking
    from etdeploy.models import build_model

    ranking_dir = mini_ranking_dir
    percent, schedule, layers = "50", "bottom-first", "dense2"
    out = tmp_path / "out"
    if case == "percent-100":
        percent = "100"
    elif case == "percent-negative":
        percent = "-5"
    elif case == "bad-schedule":
        schedule = "sideways"
    elif case == "other-model":
        ranking_dir = tmp_path / "other-rank"
        save_ranking(synthetic_ranking(build_model("alexnet-mini", 5, seed=9)), ranking_dir)
    elif case == "bad-layer":
        layers = "dense7"
    elif case == "empty-layer":
        percent = "99.9"  # 256 * 0.001 = 0.256 -> 0 kept
    else:
        out.mkdir()
        (out / "keep.txt").write_text("x")
    code = main(["prune", "--model", str(trained_mini_dir), "--ranking", str(ranking_dir), "--schedule", schedule,
                 "--percent", percent, "--layers", layers, "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert EXPECTED_MESSAGE[case] in err
    if case == "out-exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out"] * (case == "out-exists") + ["other-rank"] * (case == "other-model"))


@pytest.mark.parametrize("extra, message", [
    (["--schedules", "bottom-first,sideways"], "unknown schedule 'sideways'"),
    (["--counts", "0,256"], "sweep counts must be in [0, 256)"),
    (["--layer", "dense9"], "unknown layer 'dense9'"),
    (["--percents", "50,100"], "percent must be in [0, 100)"),
])
def test_sweep_cli_bad_input_writes_nothing(trained_mini_dir, mini_ranking_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", str(trained_mini_dir), "--ranking", str(mini_ranking_dir), "--no-progress",
                 "--out", str(out)] + extra)
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
