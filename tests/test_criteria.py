"""Importance criteria as schedules, sweeps that can tell them apart (grids, splits, seeds, all layers, CIs).

Known answers: hand-computed statistics of a one-Linear tail, hand-set weights for the magnitude
norms, hand-checked orders for every criterion; Wilson intervals against textbook values.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from etdeploy.attribution import layer_attributions, load_ranking
from etdeploy.attribution.neuron_stats import weight_norms
from etdeploy.cli.main import cli
from etdeploy.errors import PruningError
from etdeploy.pruning import pruning_order
from etdeploy.pruning.criteria import CRITERIA, class_balanced_keep_order
from etdeploy.pruning.sweep import percent_grid, sweep_grid, wilson_interval
from tests.test_pruning_support import synthetic_layer

# ------------------------------------------------------------------------------- statistics, known answers


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_taylor_apoz_activation_of_a_one_linear_tail():
    """G = Linear(3 -> 2), W = [[1, 0, 1], [0, 0, 0]], no bias: only neurons 0 and 2 reach the logits.

    Image 0: h = (1, 0, 2), y = 0: z = (3, 0), dL/dz = (p0 - 1, 1 - p0), dL/dh = (p0 - 1, 0, p0 - 1).
    Image 1: h = (3, 0, 0), y = 1: z = (3, 0), dL/dz = (p0, -p0),       dL/dh = (p0, 0, p0).
    """
    g = nn.Sequential(nn.Linear(3, 2, bias=False)).eval()
    with torch.no_grad():
        g[0].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    h = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    la = layer_attributions(h, g.double(), np.array([0, 1]), steps=8)
    p0 = _sigmoid(3.0)
    taylor = [(1 * (1 - p0) + 3 * p0) / 2, 0.0, (2 * (1 - p0) + 0.0) / 2]
    np.testing.assert_allclose(la.criteria["taylor"], taylor, rtol=1e-12)
    np.testing.assert_array_equal(la.criteria["apoz"], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(la.activation_mean, [2.0, 0.0, 1.0])
    assert la.live.tolist() == [True, False, True]
    # neuron 1 is dead -> first; then the criteria disagree on 0 vs 2
    assert pruning_order(la, "taylor").tolist() == [1, 2, 0]  # 0.2689... < 1.5633...
    assert pruning_order(la, "apoz").tolist() == [1, 2, 0]  # 0.5 zeros before 0.0
    assert pruning_order(la, "activation").tolist() == [1, 2, 0]  # 1.0 before 2.0
    # ig-vote: the expected attribution to the true class's probability, from the ranking's own E^k
    vote = 0.5 * la.ea_class[0, :, 0] + 0.5 * la.ea_class[1, :, 1]
    np.testing.assert_allclose(la.criteria["ig_vote"], vote, rtol=0, atol=1e-15)


def test_magnitude_norms_of_hand_set_weights():
    from etdeploy.models import build_model

    model = build_model("sequential-cnn", 2, input_size=8, layers="c1k3p1-r-m2", hidden=(3,))
    producer, consumer = model.classifier[1], model.classifier[3]  # Flatten, Linear(16->3), ReLU, Linear(3->2)
    assert (producer.in_features, producer.out_features, consumer.in_features) == (16, 3, 3)
    with torch.no_grad():
        producer.weight.zero_()
        producer.weight[0, :2] = torch.tensor([3.0, -4.0])  # neuron 0: row (3, -4), bias 0, column (0, 0)
        producer.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))  # neuron 1: bias 2, column (1, 1)
        consumer.weight.copy_(torch.tensor([[0.0, 1.0, -1.0], [0.0, 1.0, 0.5]]))  # neuron 2: column (-1, 0.5)
    norms = weight_norms(model, "dense1")
    np.testing.assert_allclose(norms["weight_l1"], [7.0, 4.0, 1.5])
    np.testing.assert_allclose(norms["weight_l2"], [5.0, math.sqrt(6.0), math.sqrt(1.25)])
    flat = weight_norms(model, "flatten")  # no producing Linear: the consuming columns only
    np.testing.assert_allclose(flat["weight_l2"][:2], [3.0, 4.0])
    la = replace(synthetic_layer("dense1", 3, 2), live=np.ones(3, dtype=bool), criteria=norms)
    assert pruning_order(la, "magnitude").tolist() == [2, 1, 0]
    assert pruning_order(la, "magnitude-l1").tolist() == [2, 1, 0]


# One hand-checked order per criterion (completeness: every registered criterion is listed).
LAYER = replace(
    synthetic_layer("dense1", 5, 2),
    live=np.array([True, True, False, True, True]),
    activation_mean=np.array([0.3, 0.1, 0.0, 0.2, 0.4]),
    rank_class=np.array([[5.0, 4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.5]]),
    criteria={"weight_l2": np.array([1.0, 3.0, 9.0, 2.0, 0.5]), "weight_l1": np.array([4.0, 1.0, 0.0, 3.0, 2.0]),
              "taylor": np.array([0.2, 0.2, 0.0, 0.1, 0.3]), "apoz": np.array([0.1, 0.9, 1.0, 0.5, 0.5]),
              "ig_vote": np.array([-1.0, 2.0, 0.0, 0.5, 1.0])})
EXPECTED = {
    "magnitude": [2, 4, 0, 3, 1],
    "magnitude-l1": [2, 1, 4, 3, 0],
    "taylor": [2, 3, 0, 1, 4],  # tie 0/1 by index
    "activation": [2, 1, 3, 0, 4],
    "apoz": [2, 1, 3, 4, 0],  # tie 3/4 by index
    "ig-vote": [2, 0, 3, 4, 1],
    # round robin keeps 0 (class 0), 3 (class 1), 1 (class 0), 4 (class 1): pruned in reverse
    "class-balanced": [2, 4, 1, 3, 0],
}


def test_every_criterion_has_a_hand_checked_case():
    from etdeploy.vocab import CRITERIA as NAMES

    assert set(EXPECTED) == set(CRITERIA) == set(NAMES)


@pytest.mark.parametrize("criterion", sorted(EXPECTED))
def test_criterion_orders(criterion):
    assert pruning_order(LAYER, criterion).tolist() == EXPECTED[criterion]


def test_class_balanced_keeps_a_neuron_for_every_class_where_bottom_first_does_not():
    """Two neurons serve class 0 strongly, two class 1 weakly: the mean rank keeps both class-0 neurons."""
    la = replace(LAYER, live=np.ones(5, dtype=bool), rank=LAYER.rank_class.mean(axis=0))
    keep2 = set(pruning_order(la, "bottom-first")[-2:].tolist())
    assert keep2 == {0, 1}  # both serve class 0 only
    assert set(pruning_order(la, "class-balanced")[-2:].tolist()) == {0, 3}
    assert class_balanced_keep_order(la.rank_class, np.arange(5)).tolist() == [0, 3, 1, 4, 2]


def test_criteria_need_their_statistics():
    old = replace(LAYER, criteria={})
    with pytest.raises(PruningError, match="rank the model again"):
        pruning_order(old, "taylor")
    with pytest.raises(PruningError, match="unknown schedule 'tayl'"):
        pruning_order(LAYER, "tayl")
    with pytest.raises(PruningError, match="takes no argument"):
        pruning_order(LAYER, "taylor:1")


# ------------------------------------------------------------------------------------------- grids and CIs


@pytest.mark.parametrize("accuracy, n, expected", [
    (0.8, 10, (0.490162, 0.943318)),  # 8/10
    (0.5, 100, (0.403832, 0.596168)),
    (1.0, 60, (60 / (60 + 1.959964 ** 2), 1.0)),  # all right: still an interval, n / (n + z^2)
    (0.0, 20, (0.0, 1.959964 ** 2 / (20 + 1.959964 ** 2))),
])
def test_wilson_interval_known_values(accuracy, n, expected):
    lo, hi = wilson_interval(accuracy, n)
    assert lo == pytest.approx(expected[0], abs=2e-6) and hi == pytest.approx(expected[1], abs=2e-6)


def test_dense_tail_grid_concentrates_points_past_80_percent():
    uniform = sweep_grid(256, points=41)
    tail = sweep_grid(256, points=41, grid="dense-tail")
    assert uniform[0] == tail[0] == 0 and uniform[-1] == tail[-1] == 255
    assert sum(c >= 0.8 * 256 for c in tail) >= 30 > sum(c >= 0.8 * 256 for c in uniform)
    assert percent_grid([9216, 4096, 4096], points=9, grid="dense-tail")[-1] == round(100 * (1 - 1 / 4096), 6)
    with pytest.raises(PruningError, match="unknown sweep grid"):
        sweep_grid(256, grid="sideways")


# ------------------------------------------------------------------------------- on the bundled data (CLI)


@pytest.fixture(scope="module")
def ranking_dir(trained_mini_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("criteria") / "rank"
    result = CliRunner().invoke(cli, ["rank", "--model", str(trained_mini_dir), "--split", "val", "--steps", "4",
                                      "--allow-other-data", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_rank_stores_the_criteria_statistics(ranking_dir, trained_mini_dir):
    from etdeploy.models import load_model

    ranking = load_ranking(ranking_dir)
    model = load_model(trained_mini_dir)
    for name, la in ranking.layers.items():
        assert sorted(la.criteria) == ["apoz", "ig_vote", "taylor", "weight_l1", "weight_l2"]
        for key, values in la.criteria.items():
            assert values.shape == (la.width,) and np.all(np.isfinite(values)), key
        np.testing.assert_array_equal(la.criteria["apoz"] == 1.0, ~la.live)  # dead = zero on every image
        np.testing.assert_array_equal(la.criteria["weight_l2"], weight_norms(model, name)["weight_l2"])
    assert "taylor" in ranking.settings["statistics"] and ranking.settings["split"] == "val"


def _sweep(trained_mini_dir, ranking_dir, out, *extra):
    args = ["sweep", "--model", str(trained_mini_dir), "--ranking", str(ranking_dir), "--no-progress",
            "--out", str(out), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "sweep.json").read_text()), result.output


def test_sweep_all_criteria_random_band_dense_tail_val_test(trained_mini_dir, ranking_dir, tmp_path):
    schedules = "bottom-first,random,magnitude,magnitude-l1,taylor,activation,apoz,ig-vote,class-balanced"
    extra = ["--schedules", schedules, "--layer", "dense2", "--splits", "val,test", "--points", "12", "--grid",
             "dense-tail", "--random-seeds", "4", "--seed", "3"]
    doc, output = _sweep(trained_mini_dir, ranking_dir, tmp_path / "a", *extra)
    again, _ = _sweep(trained_mini_dir, ranking_dir, tmp_path / "b", *extra)
    assert (tmp_path / "a" / "sweep.json").read_bytes() == (tmp_path / "b" / "sweep.json").read_bytes()
    assert doc == again
    assert doc["n_images"] == 120 and doc["split"] == "val+test"  # 60 val + 60 test
    assert list(doc["curves"]) == sorted(schedules.split(","))
    n = doc["n_images"]
    band = doc["curves"]["random"]["band"]
    assert band["seeds"] == [3, 4, 5, 6] and len(band["auc_seeds"]) == 4
    assert band["auc_min"] == min(band["auc_seeds"]) and band["auc_max"] == max(band["auc_seeds"])
    assert min(band["auc_seeds"]) <= doc["curves"]["random"]["auc"] <= max(band["auc_seeds"])
    acc = np.array(doc["curves"]["random"]["accuracy"])
    assert np.all(np.array(band["accuracy_min"]) <= acc + 1e-9) and np.all(acc <= np.array(band["accuracy_max"]) + 1e-9)
    for name, curve in doc["curves"].items():
        lo, hi = curve["auc_ci95"]
        assert lo <= curve["auc"] <= hi, name
        for a, (alo, ahi) in zip(curve["accuracy"], curve["accuracy_ci95"]):
            assert (alo, ahi) == wilson_interval(a, n)
        assert (curve["band"] is None) == (name != "random")
    counts = doc["curves"]["taylor"]["counts"]
    assert sum(c >= 0.8 * 256 for c in counts) > len(counts) / 2  # dense tail
    assert "random" in output and "4 seeds" in output


def test_sweep_of_all_layers_at_a_shared_percent(trained_mini_dir, ranking_dir, tmp_path):
    from etdeploy.models import load_model
    from etdeploy.pruning import apply_percent
    from etdeploy.training import evaluate

    doc, _ = _sweep(trained_mini_dir, ranking_dir, tmp_path / "s", "--schedules", "taylor,bottom-first",
                    "--layer", "flatten,dense1,dense2", "--percents", "0,50,90", "--split", "val",
                    "--allow-other-data")
    widths = {"flatten": 576, "dense1": 256, "dense2": 256}
    assert doc["layer"] == "flatten+dense1+dense2" and doc["width"] == sum(widths.values())
    assert doc["settings"]["counts_by_layer"]["dense1"] == [0, 128, 230]
    assert doc["curves"]["taylor"]["counts"] == [0, 288 + 128 + 128, 518 + 230 + 230]
    # the point at 90 % equals masking the model the way `prune` does
    from etdeploy.data import load_dataset
    from etdeploy.data.images import load_split_images

    model = load_model(trained_mini_dir)
    apply_percent(model, load_ranking(ranking_dir), "taylor", 90)
    val = load_split_images(load_dataset("bundled"), "val", 64, progress=False)
    assert evaluate(model, val, model.spec.mean, model.spec.std).accuracy == doc["curves"]["taylor"]["accuracy"][2]
    with pytest.raises(PruningError, match="percents"):
        from etdeploy.pruning import sweep

        sweep(model, load_ranking(ranking_dir), val.images, val.labels, layer=["dense1", "dense2"], counts=[1],
              check_fingerprint=False)


def test_prune_with_a_criterion(trained_mini_dir, ranking_dir, tmp_path):
    out = tmp_path / "p"
    result = CliRunner().invoke(cli, ["prune", "--model", str(trained_mini_dir), "--ranking", str(ranking_dir),
                                      "--schedule", "taylor", "--percent", "90", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "prune.json").read_text())
    assert run["schedule"] == "taylor" and run["kept"] == {"flatten": 58, "dense1": 26, "dense2": 26}
    ranking = load_ranking(ranking_dir)
    record = json.loads((out / "record.json").read_text())
    order = pruning_order(ranking.layer("dense2"), "taylor")
    assert record["layers"]["dense2"]["kept"] == sorted(order[-26:].tolist())


def test_report_names_the_winner_and_whether_the_intervals_separate_it():
    from etdeploy.pruning.sweep_dirs import RandomBandRun, SweepCurveRun, SweepRun
    from etdeploy.report.sections.sweep import winner_text

    def curve(auc, ci, band=None):
        return SweepCurveRun(counts=(0, 5), fractions=(0.0, 0.5), accuracy=(0.9, 0.5), per_class_accuracy=((0.9,), (0.5,)),
                             auc=auc, auc_per_class=(auc,), accuracy_ci95=((0.8, 0.95), (0.4, 0.6)), auc_ci95=ci,
                             band=band)

    band = RandomBandRun(seeds=(0, 1), accuracy_min=(0.9, 0.4), accuracy_max=(0.9, 0.6), auc_seeds=(0.6, 0.7),
                         auc_min=0.6, auc_max=0.7)
    run = SweepRun(layer="dense2", width=10, split="val+test", n_images=100, classes=("a",),
                   schedules=("taylor", "random", "top-first"),
                   curves={"taylor": curve(0.8, (0.75, 0.85)), "random": curve(0.65, (0.6, 0.7), band),
                           "top-first": curve(0.3, (0.2, 0.4))}, ranking_sha256="0" * 64)
    text = str(winner_text(run, list(run.main_schedules)))
    assert "<b>taylor</b>" in text and "+0.1500" in text and "do not overlap" in text and "2 seeds" in text
    close = SweepRun.from_dict({**run.to_dict(), "curves": {**run.to_dict()["curves"],
                                                            "taylor": curve(0.66, (0.61, 0.71)).to_dict()}})
    assert "intervals overlap" in str(winner_text(close, list(close.main_schedules)))
