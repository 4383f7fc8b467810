"""``etdeploy rank`` on the bundled data with the trained alexnet-mini, the ranking files, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from etdeploy.attribution import load_ranking, save_ranking
from etdeploy.attribution.result import layer_csv_columns
from etdeploy.cli.main import cli, main
from etdeploy.errors import OutputExistsError

# --cap 8: 8 images per class in the paper recipe -> 6-7 training images per class (fast); not the model's
# own split (it was trained without a cap), hence --allow-other-data
QUICK = ["--cap", "8", "--allow-other-data", "--split", "train", "--steps", "4", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def ranked(trained_mini_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rank") / "r"
    result = CliRunner().invoke(cli, ["rank", "--model", str(trained_mini_dir), *QUICK,
                                      "--layers", "flatten,dense1,dense2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_rank_cli_writes_tables_summary_and_arrays(ranked, trained_mini_dir):
    from etdeploy.data import load_dataset
    from etdeploy.models import load_model, weights_fingerprint

    out, output = ranked
    summary = json.loads((out / "summary.json").read_text())
    model = load_model(trained_mini_dir)
    k = len(model.spec.class_names)
    n_train = len(load_dataset("bundled", cap=8).split("train"))
    assert summary["classes"] == list(model.spec.class_names)
    assert sum(summary["class_counts"]) == n_train == summary["settings"]["n_images"]
    assert summary["model_fingerprint"] == weights_fingerprint(model)
    assert summary["settings"]["steps"] == 4 and summary["settings"]["method"] == "gausslegendre"
    assert summary["settings"]["split"] == "train" and summary["seed"] == 0
    widths = {"flatten": 576, "dense1": 256, "dense2": 256}
    assert set(summary["layers"]) == set(widths)
    ranking = load_ranking(out)
    for name, width in widths.items():
        info = summary["layers"][name]
        rows = _read_csv(out / f"{name}.csv")
        assert rows[0] == layer_csv_columns(k) and len(rows[0]) == 5 + k + k + k * k
        assert len(rows) == width + 1
        assert [int(r[1]) for r in rows[1:]] == list(range(width)) and {r[0] for r in rows[1:]} == {name}
        live = np.array([r[2] == "1" for r in rows[1:]])
        assert info["width"] == width and info["live"] == int(live.sum()) and info["dead"] == width - info["live"]
        assert 0 < info["live"] <= width
        la = ranking.layer(name)
        assert np.array_equal(la.live, live)
        np.testing.assert_array_equal(np.array([float(r[4]) for r in rows[1:]]), la.rank)  # repr round-trips
        np.testing.assert_array_equal(np.array([[float(c) for c in r[5 + k:5 + 2 * k]] for r in rows[1:]]), la.ea)
        assert np.all(la.rank[~live] == 0) and np.all(la.ea[~live] == 0)
        # 4 quadrature steps on a ReLU net: the mean completeness gap (a probability) stays small; single images
        # can miss by more where the path crosses many ReLU kinks (convergence in steps: test_attribution.py)
        assert 0 <= info["gap_mean"] < 0.05 and info["gap_mean"] <= info["gap_max"] < 1.0
        assert f"{name:<10} {width:>6} neurons: {info['live']:>6} live" in output


def test_rank_cli_is_byte_reproducible(ranked, trained_mini_dir, tmp_path):
    out, _ = ranked
    again = tmp_path / "again"
    assert main(["rank", "--model", str(trained_mini_dir), *QUICK, "--layers", "flatten,dense1,dense2",
                 "--out", str(again)]) == 0
    for name in ("summary.json", "flatten.csv", "dense1.csv", "dense2.csv", "attributions.safetensors"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_existing_output_is_refused_without_force(ranked, trained_mini_dir, capsys):
    out, _ = ranked
    before = (out / "summary.json").read_bytes()
    assert main(["rank", "--model", str(trained_mini_dir), *QUICK, "--layers", "dense2", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "summary.json").read_bytes() == before
    ranking = load_ranking(out)
    with pytest.raises(OutputExistsError):
        save_ranking(ranking, out)


def test_missing_class_is_written_as_empty_cells(tmp_path, ranked):
    out, _ = ranked
    ranking = load_ranking(out)
    la = ranking.layer("dense2")
    rank_class = la.rank_class.copy()
    ea_class = la.ea_class.copy()
    rank_class[1] = np.nan
    ea_class[1] = np.nan
    import dataclasses

    changed = dataclasses.replace(ranking, layers={"dense2": dataclasses.replace(la, rank_class=rank_class,
                                                                               ea_class=ea_class)},
                                  class_counts=(3, 0, 3, 3, 3))
    save_ranking(changed, tmp_path / "m")
    rows = _read_csv(tmp_path / "m" / "dense2.csv")
    header = rows[0]
    empty = {header[c] for c in range(len(header)) if all(r[c] == "" for r in rows[1:])}
    assert empty == {"rank_class_1"} | {f"ea_1_{j}" for j in range(5)}
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["missing_classes"] == [ranking.classes[1]]
    back = load_ranking(tmp_path / "m").layer("dense2")
    assert np.isnan(back.ea_class[1]).all() and np.isfinite(back.ea_class[[0, 2, 3, 4]]).all()


@pytest.mark.parametrize("args,message", [
    (["--layers", "dense1,dense9"], "unknown layer 'dense9'; valid layers: flatten, dense1, dense2"),
    (["--steps", "0"], "--steps"),
    (["--method", "simpson"], "--method"),
    (["--method", "riemann_trapezoid", "--steps", "1"], "steps must be >= 2"),
])
def test_rank_cli_bad_input(trained_mini_dir, tmp_path, capsys, args, message):
    code = main(["rank", "--model", str(trained_mini_dir), "--cap", "2", "--allow-other-data", "--no-progress", *args,
                 "--out", str(tmp_path / "o")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_rank_cli_refuses_nan_weights(trained_mini_dir, tmp_path, capsys):
    from etdeploy.models import load_model, save_model

    model = load_model(trained_mini_dir)
    with torch.no_grad():
        model.classifier[1].weight[0, 0] = float("inf")
    save_model(model, tmp_path / "broken")
    code = main(["rank", "--model", str(tmp_path / "broken"), "--cap", "2", "--no-progress", "--out",
                 str(tmp_path / "o")])
    assert code == 2
    assert "classifier.1.weight" in capsys.readouterr().err and not (tmp_path / "o").exists()
