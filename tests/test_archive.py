"""Archive scale in one process (etdeploy.archive, docs/method.md §14): selection, index, resume, refusals,
``data info --files`` and the ONNX evaluation. The Ray runs are in tests/test_archive_ray.py."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from etdeploy.archive import evaluate_archive, explain_archive, read_archive, select_images
from etdeploy.errors import ConfigError, DataError, OutputExistsError
from etdeploy.fileio import sha256_file

MAP_OPTIONS = {"patch": 16, "stride": 8}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_mini_dir):
    from etdeploy.export import export_model
    from etdeploy.models import load_model

    model = load_model(trained_mini_dir)
    return export_model(model, tmp_path_factory.mktemp("archive") / "export").sim_path, model.spec


@pytest.fixture(scope="module")
def twelve(bundled):
    return select_images(bundled, "test", limit=12)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, exported, twelve):
    """12 bundled test images explained in this process (the reference of every other run)."""
    onnx_path, spec = exported
    out = tmp_path_factory.mktemp("archive") / "one"
    run = explain_archive(onnx_path, twelve, mean=spec.mean, std=spec.std, class_names=spec.class_names, out=out,
                          progress=False, **MAP_OPTIONS)
    return out, run


def map_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "maps").iterdir())}


def test_selection_keeps_split_order_classes_and_limit(bundled):
    test = bundled.split("test")
    chosen = select_images(bundled, "test", limit=5, classes=[bundled.classes[2]])
    want = [s for s in test if s.label == 2][:5]
    assert [c.file for c in chosen] == [s.path for s in want] and {c.label for c in chosen} == {2}
    assert chosen[0].sha256 == sha256_file(want[0].path)
    assert chosen[0].path == want[0].path.relative_to(bundled.root).as_posix()
    with pytest.raises(DataError, match="unknown class"):
        select_images(bundled, "test", classes=["no such class"])


def test_index_and_files_match_the_single_image_explanation(baseline, exported, twelve, tmp_path):
    from etdeploy.occlusion import ExplainInput, explain_images

    out, run = baseline
    onnx_path, spec = exported
    assert (run.images, run.maps, run.computed, run.reused, run.retried) == (12, 12, 12, 0, ())
    assert run.backend["kind"] == "local" and run.backend["workers"] == 1 and read_archive(out) == run
    rows = list(csv.DictReader(io.StringIO((out / "index.csv").read_text())))
    assert [int(r["image"]) for r in rows] == list(range(12))
    assert [r["sha256"] for r in rows] == [i.sha256 for i in twelve]
    assert all(r["attempts"] == "1" for r in rows)
    # the archive's maps are the bytes `etdeploy explain --image` writes for the same image (same code path)
    third = twelve[2]
    single = explain_images(onnx_path, [ExplainInput.from_file(third.file)], mean=spec.mean, std=spec.std,
                            class_names=spec.class_names, out=tmp_path / "single", threads=1, progress=False,
                            **MAP_OPTIONS)
    row = rows[2]
    got = np.load(out / row["npy"])
    want = np.load(tmp_path / "single" / single.images[0].maps[0].npy)
    assert np.array_equal(got, want)
    assert int(row["predicted"]) == single.images[0].predicted
    assert float(row["probability"]) == pytest.approx(single.images[0].probability, abs=1e-9)
    assert float(row["map_mean"]) == pytest.approx(float(got.mean()), abs=1e-9)
    assert float(row["map_min"]) == pytest.approx(float(got.min()), abs=1e-9)
    # every index row names files that exist; the index's digest is recorded
    assert all((out / r["npy"]).is_file() and (out / r["png"]).is_file() for r in rows)
    assert run.index_sha256 == sha256_file(out / "index.csv")
    if "index.parquet" in run.index_files:
        import pyarrow.parquet as pq

        table = pq.read_table(out / "index.parquet")
        assert table.column("sha256").to_pylist() == [r["sha256"] for r in rows]


def test_resume_recomputes_only_missing_or_damaged_images(baseline, exported, twelve, tmp_path):
    out, _ = baseline
    onnx_path, spec = exported
    work = tmp_path / "interrupted"
    shutil.copytree(out, work)
    for name in ("index.csv", "index.parquet", "archive.json", "timing.json"):  # an interrupted run writes none
        (work / name).unlink(missing_ok=True)
    records = sorted((work / "images").iterdir())
    records[3].unlink()                                   # image 3: never finished
    records[7].unlink()                                   # image 7: files written, record not
    npy = min((work / "maps").glob("img05_*.npy"))
    npy.write_bytes(npy.read_bytes()[:-8] + b"\0" * 8)  # image 5: a damaged map
    (work / "maps" / ".img09_x.npy.123.tmp").write_bytes(b"partial")  # a dead writer's temporary file
    resumed = explain_archive(onnx_path, twelve, mean=spec.mean, std=spec.std, class_names=spec.class_names,
                              out=work, resume=True, progress=False, **MAP_OPTIONS)
    assert (resumed.computed, resumed.reused) == (3, 9)
    timing = json.loads((work / "timing.json").read_text())
    assert sorted(t["image"] for t in timing["images"]) == [3, 5, 7]
    assert (work / "index.csv").read_bytes() == (out / "index.csv").read_bytes()
    assert map_files(work) == map_files(out)  # the dead writer's temporary file is gone too
    # a finished folder resumes with nothing to do; other settings are refused
    again = explain_archive(onnx_path, twelve, mean=spec.mean, std=spec.std, class_names=spec.class_names,
                            out=work, resume=True, progress=False, **MAP_OPTIONS)
    assert (again.computed, again.reused) == (0, 12)
    with pytest.raises(ConfigError, match="other settings"):
        explain_archive(onnx_path, twelve, mean=spec.mean, std=spec.std, class_names=spec.class_names, out=work,
                        resume=True, progress=False, patch=8, stride=8)
    with pytest.raises(OutputExistsError):
        explain_archive(onnx_path, twelve, mean=spec.mean, std=spec.std, class_names=spec.class_names, out=work,
                        progress=False, **MAP_OPTIONS)


def test_more_workers_without_ray_says_how_to_install_it(exported, twelve, tmp_path, monkeypatch,
                                                         trained_mini_dir, capsys):
    from etdeploy.cli.main import main

    onnx_path, spec = exported
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'etdeploy\[ray\]'"):
        explain_archive(onnx_path, twelve[:2], mean=spec.mean, std=spec.std, out=tmp_path / "x", workers=2,
                        progress=False, **MAP_OPTIONS)
    assert not (tmp_path / "x").exists()  # refused before any work
    code = main(["explain", "--onnx", str(onnx_path), "--model", str(trained_mini_dir), "--data", "bundled",
                 "--limit", "2", "--workers", "2", "--out", str(tmp_path / "y")])
    assert code == 2 and "etdeploy[ray]" in capsys.readouterr().err
    code = main(["explain", "--onnx", str(onnx_path), "--model", str(trained_mini_dir), "--image",
                 str(twelve[0].file), "--workers", "2", "--out", str(tmp_path / "z")])
    assert code == 2 and "--workers apply to --data only" in capsys.readouterr().err
    code = main(["evaluate", "--model", str(trained_mini_dir), "--workers", "2"])
    assert code == 2 and "--workers apply to --onnx only" in capsys.readouterr().err


def test_cli_archive_form_writes_the_same_index(baseline, exported, trained_mini_dir, tmp_path):
    from etdeploy.cli.main import cli

    out, _ = baseline
    onnx_path, _ = exported
    args = ["explain", "--onnx", str(onnx_path), "--model", str(trained_mini_dir), "--data", "bundled", "--split",
            "test", "--limit", "3", "--patch", "16", "--stride", "8", "--out", str(tmp_path / "cli"), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "3 image(s), 3 map(s): 3 computed" in result.output
    index = (tmp_path / "cli" / "index.csv").read_text().splitlines()
    assert index == (out / "index.csv").read_text().splitlines()[:4]  # header + the first 3 images' rows
    reference = map_files(out)
    assert all(reference[name] == data for name, data in map_files(tmp_path / "cli").items())


def test_data_info_files_lists_every_image_with_its_digest(bundled):
    from etdeploy.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "info", "--files"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == sum(len(bundled.split(s)) for s in ("train", "val", "test"))
    test = [r for r in rows if r["split"] == "test"]
    first = bundled.split("test")[0]
    assert len(test) == len(bundled.split("test"))
    assert test[0]["path"] == first.path.relative_to(bundled.root).as_posix()
    assert test[0]["sha256"] == sha256_file(first.path) and int(test[0]["label"]) == first.label
    assert test[0]["class"] == bundled.classes[first.label]
    as_json = json.loads(CliRunner().invoke(cli, ["data", "info", "--files", "--json"]).output)
    assert as_json[0]["sha256"] == rows[0]["sha256"] and as_json[0]["label"] == int(rows[0]["label"])


def test_onnx_evaluation_agrees_with_the_pytorch_model(exported, trained_mini_dir, bundled, tmp_path):
    from etdeploy.models import load_model
    from etdeploy.training import evaluate_model

    onnx_path, spec = exported
    want = evaluate_model(load_model(trained_mini_dir), bundled, "test", progress=False)
    images = select_images(bundled, "test")
    run = evaluate_archive(onnx_path, images, mean=spec.mean, std=spec.std, input_size=spec.input_size,
                           class_names=spec.class_names, batch_size=16, out=tmp_path / "ev", progress=False)
    assert run.n == want["n"] == 60
    assert run.accuracy == pytest.approx(want["accuracy"], abs=1 / 60 + 1e-9)  # ORT vs torch: at most a tie flips
    assert run.loss == pytest.approx(want["loss"], abs=1e-3)
    assert sum(map(sum, run.confusion)) == 60
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ev" / "predictions.csv").read_text())))
    assert [r["sha256"] for r in rows] == [i.sha256 for i in images]
    assert sum(r["true_class"] == r["predicted"] for r in rows) == round(run.accuracy * 60)
