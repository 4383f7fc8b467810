"""The rank / sweep / prune use cases (``rank_dirs``, ``sweep_dirs``, ``prune_dirs``): typed results that
equal the JSON files they write, round trips, and the report sections rendered from hand-made records."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from etdeploy.attribution import RankRun, load_ranking, rank_dirs
from etdeploy.attribution.rank_dirs import stratified_subset
from etdeploy.errors import AttributionError, DataError, PruningError
from etdeploy.fileio import canonical_json
from etdeploy.pruning import PruneRun, PruneSeries, SweepRun, prune_dirs, sweep_dirs
from etdeploy.report.record import Provenance, RunRecord

EVIL = "<img src=x onerror=alert(1)>"
LEGACY_PRUNE_KEYS = {"schedule", "percent", "seed", "layers", "kept", "ranking_sha256", "source_fingerprint",
                     "sliced_fingerprint", "test_accuracy", "finetune", "parity", "parameters"}


def _json_text(record) -> str:
    return canonical_json(record.to_dict())


@pytest.fixture(scope="module")
def small_data():
    from etdeploy.data import load_dataset

    return load_dataset("bundled", cap=8)  # 30 train, 5 val, 5 test images (not the model's split: allow_other_data)


@pytest.fixture(scope="module")
def ranked(trained_mini_dir, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rank-uc") / "ranking"
    run = rank_dirs(trained_mini_dir, small_data, split="train", steps=4, batch_size=8, max_images=20, seed=3,
                    out=out, progress=False, allow_other_data=True)
    return run, out


@pytest.fixture(scope="module")
def pruned(trained_mini_dir, ranked, small_data, tmp_path_factory):
    _, ranking_dir = ranked
    calls = []

    def split_images(split, size):
        from etdeploy.data.images import load_split_images

        calls.append((split, size))
        return load_split_images(small_data, split, size, progress=False)

    out = tmp_path_factory.mktemp("prune-uc") / "p90"
    run = prune_dirs(trained_mini_dir, ranking_dir, dataset=small_data, schedule="bottom-first", percent=90,
                     layers=["dense1", "dense2"], finetune_epochs=1, out=out, progress=False,
                     split_images=split_images, allow_other_data=True)
    return run, out, calls


# ------------------------------------------------------------------------------------------------ rank


def test_rank_dirs_writes_the_ranking_and_its_run(ranked, trained_mini_dir):
    from etdeploy.models import load_model, weights_fingerprint

    run, out = ranked
    assert isinstance(run, RankRun)
    assert sorted(p.name for p in out.iterdir()) == ["attributions.safetensors", "dense1.csv", "dense2.csv",
                                                     "flatten.csv", "rank.json", "summary.json"]
    assert (out / "rank.json").read_text() == _json_text(run)
    model = load_model(trained_mini_dir)
    ranking = load_ranking(out)
    assert run.model_fingerprint == ranking.model_fingerprint == weights_fingerprint(model)
    assert run.classes == tuple(model.spec.class_names) == ranking.classes
    # max_images=20 of 30 training images (6 per class): 4 of each of the 5 classes
    assert run.class_counts == (4, 4, 4, 4, 4) and run.n_images == 20 == ranking.settings["n_images"]
    assert ranking.settings["max_images"] == 20 and ranking.settings["seed"] == 3 == run.seed
    assert ranking.settings["data"]["name"] == run.settings["data"]["name"]
    assert (run.split, run.steps, run.method, run.dtype) == ("train", 4, "gausslegendre", "float32")
    assert run.layer_names == ("flatten", "dense1", "dense2") == tuple(ranking.settings["layers"])
    for la in run.layers:
        arrays = ranking.layer(la.name)
        assert (la.width, la.live, la.dead) == (arrays.width, arrays.n_live, arrays.width - arrays.n_live)
        assert la.gap_mean == arrays.gap_mean and la.gap_max == arrays.gap_max
        order = np.lexsort((np.arange(arrays.width), -arrays.rank))  # rank descending, index ascending
        assert [n.index for n in la.top] == order[:10].tolist()
        live_order = [int(i) for i in order[::-1] if arrays.live[i]]
        assert [n.index for n in la.bottom_live] == live_order[:10]
        for n in la.top + la.bottom_live:
            assert n.rank == arrays.rank[n.index] and n.activation_mean == arrays.activation_mean[n.index]
            assert n.ea == tuple(arrays.ea[n.index])
        assert sum(la.histogram.counts) == la.live and len(la.histogram.edges) == len(la.histogram.counts) + 1
        assert la.histogram.edges[0] == arrays.rank[arrays.live].min()
        assert la.histogram.edges[-1] == arrays.rank[arrays.live].max()
    best, worst = run.extremes
    last = ranking.layer("dense2")
    assert (best.role, best.layer, best.index) == ("best", "dense2", run.layer("dense2").top[0].index)
    assert (worst.role, worst.index) == ("worst", run.layer("dense2").bottom_live[0].index)
    np.testing.assert_array_equal(np.asarray(worst.ea_class), last.ea_class[:, worst.index, :])


def test_rank_run_round_trips_through_json(ranked):
    run, out = ranked
    back = RankRun.from_dict(json.loads((out / "rank.json").read_text()))
    assert _json_text(back) == _json_text(run)
    assert back.layer("dense1") == run.layer("dense1")
    with pytest.raises(AttributionError, match="no layer 'dense7'"):
        run.layer("dense7")


def test_rank_run_keeps_missing_classes_as_nan(ranked):
    run, _ = ranked
    c = run.extremes[0]
    rows = (tuple(float("nan") for _ in c.ea_class[0]),) + c.ea_class[1:]
    changed = dataclasses.replace(run, class_counts=(0,) + run.class_counts[1:],
                                  extremes=(dataclasses.replace(c, ea_class=rows),) + run.extremes[1:])
    text = _json_text(changed)
    back = RankRun.from_dict(json.loads(text))
    assert np.isnan(back.extremes[0].ea_class[0]).all() and _json_text(back) == text
    assert back.missing_classes == (run.classes[0],)


def test_rank_dirs_refuses_other_classes_and_bad_limits_before_writing(trained_mini_dir, tmp_path):
    from etdeploy.data import load_dataset

    other = dataclasses.replace(load_dataset("bundled", cap=2), classes=("a", "b", "c", "d", "e"))
    with pytest.raises(DataError, match="differ from the model's") as info:
        rank_dirs(trained_mini_dir, other, out=tmp_path / "o", progress=False)
    assert str(trained_mini_dir) in str(info.value)
    with pytest.raises(AttributionError, match="positive integer"):
        rank_dirs(trained_mini_dir, load_dataset("bundled", cap=2), max_images=0, out=tmp_path / "o", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stratified_subset_keeps_each_class_share():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    keep = stratified_subset(labels, 5)
    assert keep.tolist() == [0, 1, 2, 6, 7, 9]  # round(3) of class 0, round(1.5)=2 of 1, at least 1 of 2
    assert stratified_subset(labels, None).tolist() == list(range(10)) == stratified_subset(labels, 10).tolist()


def test_vocabulary_equals_the_registries():
    from etdeploy.attribution.quadrature import QUADRATURE_RULES
    from etdeploy.attribution.ranking import DTYPES
    from etdeploy.pruning.schedules import SCHEDULES
    from etdeploy.vocab import ATTRIBUTION_DTYPES, QUADRATURE_METHODS
    from etdeploy.vocab import SCHEDULES as SCHEDULE_NAMES

    assert set(QUADRATURE_METHODS) == set(QUADRATURE_RULES)
    assert set(SCHEDULE_NAMES) == set(SCHEDULES)
    assert set(ATTRIBUTION_DTYPES) == set(DTYPES)


# ----------------------------------------------------------------------------------------------- prune


def test_prune_dirs_returns_what_prune_json_holds(pruned, ranked):
    run, out, calls = pruned
    assert isinstance(run, PruneRun)
    assert sorted(p.name for p in out.iterdir()) == ["masked", "params.json", "prune.json", "record.json", "sliced"]
    doc = json.loads((out / "prune.json").read_text())
    assert (out / "prune.json").read_text() == _json_text(run)
    assert LEGACY_PRUNE_KEYS <= set(doc)
    assert run.layers == ("dense1", "dense2") and run.kept == {"dense1": 26, "dense2": 26}
    assert run.kept_text() == "dense1 26, dense2 26"
    assert (run.schedule, run.percent, run.seed, run.finetune_epochs) == ("bottom-first", 90.0, 0, 1)
    assert run.ranking_sha256 == doc["ranking_sha256"] and len(run.ranking_sha256) == 64
    acc = run.test_accuracy
    assert acc.finetuned is not None and acc.final is acc.finetuned
    assert acc.original.n == acc.masked.n == run.parity.n == 5
    assert run.parity.max_abs_logit_diff <= run.parity.tolerance == 1e-5
    assert run.finetune is not None and [h.epoch for h in run.finetune.history] == [0, 1]
    assert run.finetune.config["epochs"] == 1
    params = json.loads((out / "params.json").read_text())
    assert run.parameters.cut == params["total_cut"] and run.parameters.sliced == params["total_after"]
    assert [dataclasses.asdict(r) for r in run.layer_parameters] == [
        {k: row[k] for k in ("layer", "type", "before", "after", "cut", "shape_before", "shape_after")}
        for row in params["layers"]]
    assert sorted(set(calls)) == [("test", 64), ("train", 64), ("val", 64)]  # the images came from split_images


def test_prune_run_and_series_round_trip(pruned):
    run, out, _ = pruned
    back = PruneRun.from_dict(json.loads((out / "prune.json").read_text()))
    assert _json_text(back) == _json_text(run)
    plain = dataclasses.replace(run, percent=50.0, finetune=None, finetune_epochs=0,
                                test_accuracy=dataclasses.replace(run.test_accuracy, finetuned=None))
    series = PruneSeries(export_percent=90.0, runs=(plain, run))
    again = PruneSeries.from_dict(json.loads(_json_text(series)))
    assert _json_text(again) == _json_text(series)
    assert again.export_run.percent == 90.0 and again.schedule == "bottom-first"
    assert again.layers == ("dense1", "dense2") and again.runs[0].test_accuracy.final == run.test_accuracy.masked
    assert PruneSeries(export_percent=95.0, runs=(plain,)).export_run is None


def test_prune_dirs_refuses_bad_input_before_writing(trained_mini_dir, ranked, small_data, tmp_path):
    _, ranking_dir = ranked
    with pytest.raises(PruningError, match="fine-tuning epochs must be >= 0"):
        prune_dirs(trained_mini_dir, ranking_dir, dataset=small_data, schedule="bottom-first", percent=50,
                   finetune_epochs=-1, out=tmp_path / "o", progress=False)
    other = dataclasses.replace(small_data, classes=tuple(reversed(small_data.classes)))
    with pytest.raises(DataError, match="differ from the model's"):
        prune_dirs(trained_mini_dir, ranking_dir, dataset=other, schedule="bottom-first", percent=50,
                   out=tmp_path / "o", progress=False)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- sweep


def test_sweep_dirs_returns_what_sweep_json_holds(trained_mini_dir, ranked, small_data, tmp_path):
    _, ranking_dir = ranked
    schedules = ["top-first", "bottom-first", "class-ea:1"]
    run = sweep_dirs(trained_mini_dir, ranking_dir, dataset=small_data, schedules=schedules, layer="dense2",
                     split="val", percents=[0, 50, 90], out=tmp_path / "s", progress=False, allow_other_data=True)
    assert isinstance(run, SweepRun)
    assert (tmp_path / "s" / "sweep.json").read_text() == _json_text(run)
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert doc["split"] == "val" and doc["n_images"] == 5 and len(doc["ranking_sha256"]) == 64
    assert run.schedules == tuple(schedules)  # the order asked for, which sorted JSON keys would lose
    assert run.main_schedules == ("top-first", "bottom-first") and run.class_schedules == ("class-ea:1",)
    assert run.curves["bottom-first"].counts == (0, 128, 230)
    assert run.curves["bottom-first"].fractions == (0.0, 0.5, round(230 / 256, 9))
    assert run.width == 256 and run.n_live == run.settings["n_live"]
    assert len({c.accuracy[0] for c in run.curves.values()}) == 1
    rows = (tmp_path / "s" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 3
    back = SweepRun.from_dict(doc)
    assert _json_text(back) == _json_text(run)


# -------------------------------------------------------------------------------------- report sections


def _record(**stages) -> RunRecord:
    return RunRecord(name="t", stages={k: v.to_dict() for k, v in stages.items()}, provenance=Provenance())


def _evil_classes(classes):
    return (EVIL,) + tuple(classes[1:])


def test_sections_render_typed_records_without_assets_and_escape_names(ranked, pruned):
    from etdeploy.pruning.sweep_dirs import SweepCurveRun
    from etdeploy.report.sections import prune as prune_section
    from etdeploy.report.sections import rank as rank_section
    from etdeploy.report.sections import sweep as sweep_section

    run, _ = ranked
    rank = dataclasses.replace(run, classes=_evil_classes(run.classes), split=EVIL)
    prune_run, _, _ = pruned
    series = PruneSeries(export_percent=90.0, runs=(dataclasses.replace(prune_run, schedule=EVIL),))
    curve = SweepCurveRun(counts=(0, 5), fractions=(0.0, 0.5), accuracy=(0.8, 0.4),
                          per_class_accuracy=((1.0, None), (0.5, None)), auc=0.6, auc_per_class=(0.75, None))
    sweep = SweepRun(layer=EVIL, width=10, split="test", n_images=4, classes=(EVIL, "b"),
                     schedules=("bottom-first", "class-ea:0"), curves={"bottom-first": curve, "class-ea:0": curve},
                     ranking_sha256="0" * 64)
    record = _record(rank=rank, prune=series, sweep=sweep)
    assert record.assets == {}
    bodies = {m.__name__: m.section(record) for m in (rank_section, prune_section, sweep_section)}
    for name, sec in bodies.items():
        assert sec is not None, name
        assert EVIL not in sec.body and "&lt;img src=x onerror=alert(1)&gt;" in sec.body, name
    assert bodies[rank_section.__name__].body.count("<img alt=") == 3  # histograms + best + worst
    assert bodies[sweep_section.__name__].body.count("<img alt=") == 2  # curves + one class-ea
    assert "dense1 26, dense2 26" in bodies[prune_section.__name__].body
    cards = prune_section.cards(record)
    assert len(cards) == 2 and f"{prune_run.parameters.sliced:,}" in cards[1]
    empty = _record()
    assert all(m.section(empty) is None for m in (rank_section, prune_section, sweep_section))
    assert prune_section.cards(empty) == []


# ----------------------------------------------------------------------- readers of hand-made artefact folders


def test_readers_rebuild_the_results_from_folders(ranked, pruned, tmp_path):
    import shutil

    from etdeploy.attribution.rank_dirs import read_rank_run
    from etdeploy.pruning.prune_dirs import read_prune_run, read_prune_series

    run, ranking_dir = ranked
    assert _json_text(read_rank_run(ranking_dir)) == _json_text(run)
    bare = tmp_path / "bare"
    shutil.copytree(ranking_dir, bare)
    (bare / "rank.json").unlink()  # a ranking written by save_ranking alone: computed from the arrays
    assert _json_text(read_rank_run(bare)) == _json_text(run)

    prune_run, prune_dir, _ = pruned
    assert read_prune_run(prune_dir) == PruneRun.from_dict(json.loads(_json_text(prune_run)))
    series = read_prune_series(prune_dir.parent)  # the folder of p<percent> folders
    assert [r.percent for r in series.runs] == [90.0] and series.export_run is not None
    assert read_prune_series(prune_dir, export_percent=50).export_run is None

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "prune.json").write_text('{"schedule": "bottom-first"}')
    with pytest.raises(PruningError, match="not a pruning result: prune.json lacks the field") as info:
        read_prune_run(tmp_path / "broken")
    assert str(tmp_path / "broken" / "prune.json") in str(info.value)
    with pytest.raises(PruningError, match="no prune.json"):
        read_prune_series(tmp_path / "bare")


def test_read_sweep_run_and_damaged_files(tmp_path):
    from etdeploy.pruning.sweep_dirs import SweepCurveRun, read_sweep_run

    curve = SweepCurveRun(counts=(0, 5), fractions=(0.0, 0.5), accuracy=(0.8, 0.4),
                          per_class_accuracy=((1.0, None), (0.5, None)), auc=0.6, auc_per_class=(0.75, None))
    run = SweepRun(layer="dense2", width=10, split="test", n_images=4, classes=("a", "b"),
                   schedules=("random", "bottom-first"), curves={"bottom-first": curve, "random": curve},
                   ranking_sha256="0" * 64, settings={"n_live": 9})
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(_json_text(run))
    back = read_sweep_run(tmp_path / "s")
    assert back == run and back.auc == {"random": 0.6, "bottom-first": 0.6} and back.n_live == 9
    (tmp_path / "s" / "sweep.json").write_text("{not json")
    with pytest.raises(PruningError, match="sweep result is not valid JSON"):
        read_sweep_run(tmp_path / "s")
