"""``etdeploy compress`` (docs/method.md §13) on a trained alexnet-mini against synthetic target profiles.

The search's choice is checked against an exhaustive search of the same small grid done another way:
every point masked on the whole model (``training.evaluate``, no cached features), sliced, exported
and sized with ``fit_targets`` on the ONNX file.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from etdeploy.compress.front import dominates, objectives, pareto_front
from etdeploy.compress.space import refine_values

CRITERIA = ("bottom-first", "magnitude")
GRID = (0.0, 90.0, 98.0)
LAYERS = ("flatten", "dense1")  # dense2 stays whole: a grid of 9 points per criterion keeps the test short


def profile_toml(tmp_path, target_id: str, flash_bytes: int):
    """The STM32H7 profile with another id and flash budget, as a .toml file (targets take .toml paths)."""
    from etdeploy.targets import default_targets_dir

    text = (default_targets_dir() / "stm32h7.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^id = "stm32h7"', f'id = "{target_id}"', text)
    text = re.sub(r"(?m)^flash_bytes = [0-9_]+", f"flash_bytes = {flash_bytes}", text)
    path = tmp_path / f"{target_id}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ranked(trained_mini_dir, bundled, tmp_path_factory):
    from etdeploy.attribution.rank_dirs import rank_dirs

    root = tmp_path_factory.mktemp("compress")
    rank_dirs(trained_mini_dir, bundled, out=root / "rank", steps=4, max_images=40, progress=False)
    return trained_mini_dir, root / "rank"


@pytest.fixture(scope="module")
def budget(ranked):
    """A flash budget the unpruned model misses by far: every weight but 85 % of the first Linear's (the
    flatten -> dense1 matrix, most of the dense weights)."""
    import onnx

    from etdeploy.export import export_onnx_bytes, prepare_for_export
    from etdeploy.models import load_model
    from etdeploy.targets.analysis import analyse_graph

    model = load_model(ranked[0])
    a = analyse_graph(onnx.load_from_string(export_onnx_bytes(prepare_for_export(model), model.spec.input_size)))
    first = next(r.param_bytes for r in a.layers if r.op == "Gemm")
    return int(a.weights_bytes_fp32 - 0.85 * first)


def exhaustive(model_dir, ranking_dir, split, toml, tmp_path):
    """Every (criterion, per-layer percent) of the grid: accuracy of the masked model, fit of its export."""
    from etdeploy.attribution.result import load_ranking
    from etdeploy.export import export_onnx_bytes, prepare_for_export
    from etdeploy.models import load_model
    from etdeploy.pruning import slice_model
    from etdeploy.pruning.masking import plan_percent, set_layer_masks
    from etdeploy.targets import fit_targets
    from etdeploy.training import evaluate

    ranking = load_ranking(ranking_dir)
    fits_by_shape: dict[tuple, bool] = {}
    rows = []
    for crit, combo in itertools.product(CRITERIA, itertools.product(GRID, repeat=len(LAYERS))):
        model = load_model(model_dir)
        plan = {name: plan_percent(model, ranking, crit, p, [name])[name] for name, p in zip(LAYERS, combo)}
        set_layer_masks(model, plan)
        acc = evaluate(model, split, model.spec.mean, model.spec.std).accuracy
        sliced, _ = slice_model(model)
        shape = tuple(tuple(p.shape) for p in sliced.state_dict().values())
        if shape not in fits_by_shape:
            path = tmp_path / f"m{len(fits_by_shape)}.onnx"
            path.write_bytes(export_onnx_bytes(prepare_for_export(sliced), sliced.spec.input_size))
            run = fit_targets(path, [str(toml)])
            fits_by_shape[shape] = next(iter(run.models[path.name].verdicts.values())).fits
        rows.append((crit, combo, acc, fits_by_shape[shape]))
    return rows


def test_compress_chooses_the_most_accurate_model_that_fits(ranked, budget, bundled, tmp_path):
    from etdeploy.compress import compress_dirs, read_compress
    from etdeploy.data.images import load_split_images
    from etdeploy.targets import fit_targets

    model_dir, ranking_dir = ranked
    toml = profile_toml(tmp_path, "tiny-flash", budget)
    out = tmp_path / "out"
    run = compress_dirs(model_dir, ranking_dir, dataset=bundled, target=str(toml), out=out, criteria=CRITERIA,
                        precisions=("fp32",), percents=GRID, layers=LAYERS, refine_rounds=0, progress=False)
    val = load_split_images(bundled, "val", 64, progress=False)
    rows = exhaustive(model_dir, ranking_dir, val, toml, tmp_path)
    fitting = [r for r in rows if r[3]]
    assert fitting and len(fitting) < len(rows)
    assert not next(r for r in rows if r[1] == (0.0, 0.0))[3]  # the unpruned model does not fit
    assert all(max(r[1]) >= 90 for r in fitting)  # only heavily pruned models fit
    best = max(r[2] for r in fitting)
    chosen = run.chosen
    assert chosen.cost.fits and chosen.accuracy == pytest.approx(best)
    mine = next(r for r in rows if r[0] == chosen.criterion and r[1] == chosen.percent_values)
    assert mine[3] and mine[2] == pytest.approx(chosen.accuracy)
    # every exhaustive point the search costed agrees on fit and accuracy
    costed = {(c.criterion, c.percent_values): c for c in run.candidates if c.cost is not None}
    for crit, combo, acc, fits in rows:
        if (crit, combo) in costed:
            assert costed[(crit, combo)].cost.fits == fits
            assert costed[(crit, combo)].accuracy == pytest.approx(acc)
    # the exported model fits, independently sized; outputs complete and consistent
    exported = fit_targets(out / "export" / "model.sim.onnx", [str(toml)])
    assert next(iter(exported.models["model.sim.onnx"].verdicts.values())).fits
    assert run.fits_exported and run.parity_passed and run.parity_max_abs_logit_delta <= 1e-4
    assert read_compress(out) == run
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    front = (out / "front.csv").read_text(encoding="utf-8").splitlines()
    assert len(front) == len(run.front) + 1
    assert all(not dominates(objectives(b), objectives(a)) for a in run.front for b in run.front)
    assert chosen.label in {c.label for c in run.front}
    assert (out / "sliced" / "spec.json").is_file() and (out / "masked" / "spec.json").is_file()
    doc = json.loads((out / "compress.json").read_text(encoding="utf-8"))
    assert doc["format"] == "etdeploy-compress" and doc["chosen"]["cost"]["fits"] is True
    assert run.original.cost is not None and not run.original.cost.fits
    assert run.evaluated == len(CRITERIA) * len(GRID) ** len(LAYERS) and run.costed <= run.evaluated
    # the cost bound is a lower bound of the chosen structure's exact cost
    import onnx
    from torch import nn

    from etdeploy.compress.cost import cost_bound
    from etdeploy.compress.space import geometry_of
    from etdeploy.export import export_onnx_bytes, prepare_for_export
    from etdeploy.models import load_model, with_masks
    from etdeploy.targets.analysis import analyse_graph

    unpruned = load_model(model_dir)
    geometry = geometry_of(with_masks(load_model(model_dir)), list(LAYERS))
    assert geometry.dense_counts((geometry.widths["flatten"], geometry.widths["dense1"], geometry.channels))[0] == \
        sum(i * o + o for i, o in geometry.linears)
    graph = analyse_graph(onnx.load_from_string(export_onnx_bytes(prepare_for_export(unpruned), 64)))
    channels = [m for m in load_model(out / "sliced").features if isinstance(m, nn.Conv2d)][-1].out_channels
    bound = cost_bound(geometry, graph, (chosen.kept["flatten"], chosen.kept["dense1"], channels))
    assert 0 < bound.weights_bytes_fp32 <= chosen.cost.flash_bytes and 0 < bound.macc <= chosen.cost.macc


def test_impossible_constraints_exit_2_with_the_closest_candidate_and_nothing_written(ranked, tmp_path, capsys):
    from etdeploy.cli.main import main

    model_dir, ranking_dir = ranked
    toml = profile_toml(tmp_path, "no-flash", 20_000)
    out = tmp_path / "runs" / "out"
    rc = main(["compress", "--model", str(model_dir), "--ranking", str(ranking_dir), "--target", str(toml),
               "--criteria", "bottom-first", "--precisions", "fp32,int8", "--percents", "0,90,98",
               "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no candidate meets target 'no-flash'" in err and "closest: bottom-first 98 %" in err
    assert "flash" in err and not out.exists()
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_min_accuracy_above_every_candidate_names_the_best_fitting_one(ranked, bundled, tmp_path):
    from etdeploy.compress import compress_dirs
    from etdeploy.errors import CompressError

    model_dir, ranking_dir = ranked
    with pytest.raises(CompressError, match=r"min accuracy 1.*closest: .* fits but reaches accuracy"):
        compress_dirs(model_dir, ranking_dir, dataset=bundled, target="rad750", out=tmp_path / "o",
                      criteria=("bottom-first",), precisions=("fp32",), percents=(0.0, 90.0), refine_rounds=0,
                      min_accuracy=1.0, progress=False)
    assert not (tmp_path / "o").exists()


def test_pareto_front_and_refinement_are_what_they_say():
    from types import SimpleNamespace as NS

    def cand(acc, flash, ram=1, macc=1):
        return NS(accuracy=acc, cost=NS(flash_bytes=flash, ram_bytes=ram, macc=macc))

    a, b, c, d = cand(0.9, 100), cand(0.8, 50), cand(0.8, 60), cand(0.95, 100, macc=2)
    front = pareto_front([a, b, c, d, NS(accuracy=1.0, cost=None)])
    assert front == [d, a, b]  # c is dominated by b; most accurate first
    assert refine_values([0, 50, 90, 98], 90) == [70.0, 90.0, 94.0]
    assert refine_values([0, 50], 0) == [0.0, 25.0]


def test_stage_is_skipped_without_a_target_and_pruned_dir_follows_compress(tmp_path):
    from dataclasses import replace

    from etdeploy.pipeline.config import CompressConfig, RunConfig
    from etdeploy.pipeline.context import RunContext
    from etdeploy.pipeline.stages.compress import run_compress_stage

    ctx = RunContext(RunConfig(), tmp_path)
    assert "skipped" in run_compress_stage(ctx, tmp_path)
    assert ctx.pruned_dir() == tmp_path / "prune" / "p95"
    ctx = RunContext(replace(RunConfig(), compress=CompressConfig(target="stm32h7")), tmp_path)
    assert ctx.pruned_dir() == tmp_path / "compress" / "model"
    assert RunConfig().to_dict().get("compress") is None  # default section stays out of the hash
