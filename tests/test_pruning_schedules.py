"""Schedules, masking percentages, ranking checks, Table 3 and the `params` CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from etdeploy.cli.main import cli
from etdeploy.errors import PruningError
from etdeploy.models import build_model, masks
from etdeploy.pruning import (
    SCHEDULES,
    apply_count,
    apply_percent,
    kept_count,
    masked_dense_cut,
    params_table,
    pruning_order,
    schedule_names,
    set_layer_masks,
)
from tests.test_pruning_support import synthetic_layer, synthetic_ranking

# Paper Table 3 (docs/method.md §4): masking % -> (parameters cut, % of total).
TABLE3 = {50: (40_908_800, 70.2), 55: (43_500_216, 74.6), 60: (45_819_003, 78.6), 65: (47_865_160, 82.1),
          70: (49_638_687, 85.1), 75: (51_139_584, 87.7), 80: (52_367_852, 89.8), 85: (53_323_489, 91.5),
          90: (54_006_497, 92.6), 95: (54_416_876, 93.3)}
ALEXNET_TOTAL = 58_301_829

# One hand-checked example per registered schedule (completeness: every registered schedule is listed).
LAYER = replace(synthetic_layer("dense1", 6, 2),
                live=np.array([True, False, True, True, True, False]),
                rank=np.array([0.5, 0.0, -1.0, 2.0, 0.5, 0.0]),
                ea_class=np.stack([np.zeros((6, 2)), np.array([[0, 0.1], [0, 0], [0, 0.9], [0, -3], [0, 0.2], [0, 0]])]))
EXPECTED_ORDERS = {
    "bottom-first": [1, 5, 2, 0, 4, 3],  # dead (1, 5) first; rank ties 0 and 4 broken by index
    "top-first": [1, 5, 3, 0, 4, 2],
    "class-ea:1": [1, 5, 2, 4, 0, 3],
    "class-ea:b": [1, 5, 2, 4, 0, 3],  # class by name
}


def test_every_registered_schedule_has_a_hand_checked_case():
    covered = {s.partition(":")[0] for s in EXPECTED_ORDERS} | {"random"}
    assert covered == set(SCHEDULES)
    assert schedule_names() == ["bottom-first", "top-first", "random", "class-ea:<k>"]


@pytest.mark.parametrize("schedule", sorted(EXPECTED_ORDERS))
def test_schedule_orders(schedule):
    order = pruning_order(LAYER, schedule, seed=0, classes=("a", "b"))
    assert order.dtype == np.int64
    assert order.tolist() == EXPECTED_ORDERS[schedule]


def test_random_schedule_is_seeded_and_keeps_dead_first():
    layer = synthetic_layer("dense2", 50, 3, seed=1, dead=(7, 3, 40))
    a = pruning_order(layer, "random", seed=5)
    b = pruning_order(layer, "random", seed=5)
    c = pruning_order(layer, "random", seed=6)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert a[:3].tolist() == [3, 7, 40]
    assert sorted(a.tolist()) == list(range(50))


@pytest.mark.parametrize("bad", ["middle-first", "class-ea", "class-ea:7", "class-ea:zzz", "top-first:1", ""])
def test_bad_schedules_raise(bad):
    with pytest.raises(PruningError):
        pruning_order(LAYER, bad, classes=("a", "b"))


@pytest.mark.parametrize("width, percent, kept", [
    (9216, 50, 4608), (4096, 55, 1843), (9216, 55, 4147), (4096, 95, 205), (9216, 95, 461),
    (10, 25, 8),   # 7.5 -> 8: half up (Python's round(7.5) == 8 too)
    (10, 35, 7),   # 6.5 -> 7: half up, where banker's rounding gives 6
    (10, 45, 6),   # 5.5 -> 6
    (2, 75, 1),    # 0.5 -> 1, banker's would give 0
    (256, 0, 256), (3, 99.9, 0)])
def test_kept_count_rounds_half_up(width, percent, kept):
    assert kept_count(width, percent) == kept


@pytest.mark.parametrize("percent", [-1, 100, 100.5, float("nan"), "x"])
def test_percent_outside_range_is_refused(percent):
    with pytest.raises(PruningError, match="percent"):
        kept_count(10, percent)


def test_table3_all_ten_rows():
    rows = params_table("alexnet", 5, sorted(TABLE3))
    assert [r["percent"] for r in rows] == sorted(TABLE3)
    for row in rows:
        paper_cut, paper_pct = TABLE3[row["percent"]]
        assert row["total"] == ALEXNET_TOTAL
        if row["percent"] in (50, 75):
            assert row["params_cut"] == paper_cut
        assert abs(row["params_cut"] - paper_cut) <= 0.0001 * ALEXNET_TOTAL  # within 0.01 % of the total
        assert round(row["percent_of_total"], 1) == paper_pct
    assert rows[0]["kept"] == {"flatten": 4608, "dense1": 2048, "dense2": 2048}
    assert max(abs(r["params_cut"] - TABLE3[r["percent"]][0]) for r in rows) == 3443  # docs/method.md §4


def test_masked_dense_cut_by_hand():
    # 4 -> 3 -> 2 classes, keep 2 of 4 inputs and 1 of 3 hidden: (4*3+3 + 3*2+2) - (2*1+1 + 1*2+2) = 23 - 7.
    assert masked_dense_cut([4, 3], [2, 1], 2) == 16
    with pytest.raises(PruningError):
        masked_dense_cut([4, 3], [2], 2)


def test_params_cli_prints_table3_and_json():
    runner = CliRunner()
    res = runner.invoke(cli, ["params", "--arch", "alexnet", "--num-classes", "5", "--percent", "50,75", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["params_cut"] for r in rows] == [40_908_800, 51_139_584]
    res = runner.invoke(cli, ["params", "--percent", "50,95"])
    assert res.exit_code == 0, res.output
    assert "40,908,800" in res.output and "70.2" in res.output and "93.3" in res.output
    res = runner.invoke(cli, ["params", "--percent", "100"])
    assert res.exit_code != 0


def _small_model(seed=0):
    return build_model("sequential-cnn", 3, input_size=16, seed=seed, layers="c4k3p1-r-m2", hidden=(10, 8))


def test_apply_percent_masks_bottom_ranked_neurons():
    model = _small_model()
    ranking = synthetic_ranking(model, seed=1, dead={"dense1": (4,)})
    kept = apply_percent(model, ranking, "bottom-first", 50, layers=["dense1", "dense2"])
    assert set(kept) == {"dense1", "dense2"}
    assert len(kept["dense1"]) == 5 and len(kept["dense2"]) == 4
    rank = ranking.layer("dense1").rank
    masked = sorted(set(range(10)) - set(kept["dense1"]))
    assert 4 in masked  # dead first
    live_masked = [i for i in masked if i != 4]
    assert max(rank[live_masked]) <= min(rank[kept["dense1"]])
    m = masks(model)
    assert m["dense1"].kept == kept["dense1"] and m["flatten"].kept == list(range(256))


def test_apply_count_and_default_layers():
    model = _small_model()
    ranking = synthetic_ranking(model)
    kept = apply_count(model, ranking, "top-first", "dense2", 3)
    assert len(kept) == 5
    assert set(np.argsort(-ranking.layer("dense2").rank)[:3].tolist()).isdisjoint(kept)
    plan = apply_percent(model, ranking, "random", 20)
    assert list(plan) == ["flatten", "dense1", "dense2"]
    assert [len(v) for v in plan.values()] == [205, 8, 6]  # 204.8 -> 205, 8, 6.4 -> 6


def _mask_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith("mask")}


@pytest.mark.parametrize("case", ["other-weights", "other-width", "all-removed", "unknown-layer", "bad-schedule",
                                  "bad-percent", "count-all"])
def test_bad_requests_leave_the_model_untouched(case):
    model = _small_model()
    ranking = synthetic_ranking(model)
    apply_percent(model, ranking, "bottom-first", 10, layers=["dense1"])
    before = _mask_state(model)
    with pytest.raises(PruningError):
        if case == "other-weights":
            apply_percent(model, synthetic_ranking(_small_model(seed=1)), "bottom-first", 50)
        elif case == "other-width":
            other = build_model("sequential-cnn", 3, input_size=16, layers="c4k3p1-r-m2", hidden=(12, 8))
            apply_percent(model, replace(synthetic_ranking(other), model_fingerprint=ranking.model_fingerprint),
                          "bottom-first", 50)
        elif case == "all-removed":
            apply_percent(model, ranking, "bottom-first", 95, layers=["dense1", "dense2"])  # 0.5 / 0.4 kept
        elif case == "unknown-layer":
            apply_percent(model, ranking, "bottom-first", 50, layers=["dense9"])
        elif case == "bad-schedule":
            apply_percent(model, ranking, "class-ea:9", 50)
        elif case == "bad-percent":
            apply_percent(model, ranking, "bottom-first", 100)
        else:
            apply_count(model, ranking, "bottom-first", "dense2", 8)
    after = _mask_state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_set_layer_masks_refuses_empty_duplicate_and_out_of_range():
    model = _small_model()
    for kept in ({"dense1": []}, {"dense1": [1, 1]}, {"dense1": [10]}, {"dense1": [-1]}):
        with pytest.raises(PruningError):
            set_layer_masks(model, kept)
    set_layer_masks(model, {"dense1": [3, 1]})
    assert masks(model)["dense1"].kept == [1, 3]
