"""Archive scale on Ray (docs/method.md §14): 2 actors give the bytes of 1 process; a dead actor is retried.

One local Ray (2 CPUs, no dashboard, no usage stats) serves the module; the use cases reuse it.
Skipped when Ray is not installed (it is an optional extra; `make test` installs it).
"""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from click.testing import CliRunner

from tests.test_archive import MAP_OPTIONS, baseline, exported, map_files, twelve  # noqa: F401  (fixtures)

ray = pytest.importorskip("ray", reason="Ray is the optional extra etdeploy[ray] (make test installs it)")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_two_workers_write_the_bytes_of_one_process(baseline, exported, trained_mini_dir, tmp_path):  # noqa: F811
    from etdeploy.archive import read_archive
    from etdeploy.cli.main import cli

    out, _ = baseline
    onnx_path, _ = exported
    result = CliRunner().invoke(cli, [
        "explain", "--onnx", str(onnx_path), "--model", str(trained_mini_dir), "--data", "bundled", "--split", "test",
        "--limit", "12", "--patch", "16", "--stride", "8", "--workers", "2", "--out", str(tmp_path / "ray"),
        "--no-progress"])
    assert result.exit_code == 0, result.output
    run = read_archive(tmp_path / "ray")
    assert run.backend["kind"] == "ray" and run.backend["workers"] == 2 and run.backend["threads_per_worker"] == 1
    assert (tmp_path / "ray" / "index.csv").read_bytes() == (out / "index.csv").read_bytes()
    assert map_files(tmp_path / "ray") == map_files(out)
    workers = {t["worker"] for t in json.loads((tmp_path / "ray" / "timing.json").read_text())["images"]}
    assert len(workers) == 2  # both actors did work


def test_a_dead_actor_is_retried_and_recorded(baseline, exported, twelve, tmp_path):  # noqa: F811
    from etdeploy.archive import explain_archive

    out, _ = baseline
    onnx_path, spec = exported
    marker = tmp_path / "died"
    run = explain_archive(onnx_path, twelve[:6], mean=spec.mean, std=spec.std, class_names=spec.class_names,
                          out=tmp_path / "faulty", workers=2, progress=False, die_once=marker, **MAP_OPTIONS)
    assert marker.exists()  # one actor did die
    assert len(run.retried) >= 1 and all(r.attempts == 2 for r in run.retried)
    assert run.computed == 6
    # nothing partial: the reference's files, no temporary file left, every record present
    reference = map_files(out)
    got = map_files(tmp_path / "faulty")
    assert len(got) == 12 and all(reference[name] == data for name, data in got.items())
    assert not [p for p in (tmp_path / "faulty").rglob(".*")]
    assert len(list((tmp_path / "faulty" / "images").iterdir())) == 6
    rows = list(csv.DictReader(io.StringIO((tmp_path / "faulty" / "index.csv").read_text())))
    reference = list(csv.DictReader(io.StringIO((out / "index.csv").read_text())))
    retried = {r.path for r in run.retried}
    assert {r["path"] for r in rows if r["attempts"] == "2"} == retried
    strip = [{k: v for k, v in r.items() if k != "attempts"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "attempts"} for r in reference[:6]]


def test_onnx_evaluation_on_two_workers_equals_one_process(exported, bundled):  # noqa: F811
    from etdeploy.archive import evaluate_archive, select_images

    onnx_path, spec = exported
    images = select_images(bundled, "test")
    options = {"mean": spec.mean, "std": spec.std, "input_size": spec.input_size, "class_names": spec.class_names,
               "batch_size": 16, "progress": False}
    one = evaluate_archive(onnx_path, images, **options)
    two = evaluate_archive(onnx_path, images, workers=2, **options)
    assert two.backend["kind"] == "ray" and one.backend["kind"] == "local"
    assert two.predictions_sha256 == one.predictions_sha256
    assert (two.accuracy, two.confusion, two.loss) == (one.accuracy, one.confusion, one.loss)
