"""Pickle payloads and non-JSON in every artefact etdeploy reads back (rankings, records, export manifests).

Each payload would create a marker file if anything unpickled it; the tests check the typed error and
that the marker never appears. (Model directories: see test_model_files.py.)
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from etdeploy.cli.main import main
from etdeploy.errors import AttributionError, ExportError, PruningError
from etdeploy.models import build_model, save_model
from tests.test_pruning_support import synthetic_ranking


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _payload(marker: Path) -> bytes:
    return pickle.dumps({"weights": _Payload(str(marker))})


@pytest.fixture()
def model_and_ranking(tmp_path):
    from etdeploy.attribution import save_ranking

    model = build_model("sequential-cnn", 5, input_size=16, layers="c4k3p1-r-m2", hidden=(8,))
    save_model(model, tmp_path / "model")
    save_ranking(synthetic_ranking(model), tmp_path / "ranking")
    return tmp_path / "model", tmp_path / "ranking"


def test_pickled_ranking_arrays_are_refused_without_unpickling(model_and_ranking, tmp_path, capsys):
    from etdeploy.attribution import load_ranking

    model_dir, ranking_dir = model_and_ranking
    assert load_ranking(ranking_dir).layer("dense1").width == 8  # the untouched ranking loads
    marker = tmp_path / "marker"
    (ranking_dir / "attributions.safetensors").write_bytes(_payload(marker))
    with pytest.raises(AttributionError, match="not valid safetensors") as info:
        load_ranking(ranking_dir)
    assert info.value.path == str(ranking_dir / "attributions.safetensors")
    code = main(["prune", "--model", str(model_dir), "--ranking", str(ranking_dir), "--percent", "50",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ranking arrays are not valid safetensors") and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_pickled_ranking_summary_is_refused(model_and_ranking, tmp_path):
    from etdeploy.attribution import load_ranking

    _, ranking_dir = model_and_ranking
    marker = tmp_path / "marker"
    (ranking_dir / "summary.json").write_bytes(_payload(marker))
    with pytest.raises(AttributionError, match="summary is not valid"):
        load_ranking(ranking_dir)
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    ("pickle", "not valid JSON"),
    (b"{truncated", "not valid JSON"),
    (b"[1, 2, 3]", "not an etdeploy pruning record"),
    (b'{"format": "etdeploy-pruning-record", "format_version": 99}', "unsupported pruning record version 99"),
])
def test_record_json_that_is_not_a_record(tmp_path, content, words):
    from etdeploy.pruning.record import load_record

    marker = tmp_path / "marker"
    path = tmp_path / "record.json"
    path.write_bytes(_payload(marker) if content == "pickle" else content)
    with pytest.raises(PruningError, match=words) as info:
        load_record(path)
    assert info.value.path == str(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [("pickle", "not valid JSON"), (b'{"format": "other"}', "not an etdeploy")])
def test_export_manifest_payload_is_refused(model_and_ranking, tmp_path, capsys, content, words):
    from etdeploy.export import load_export_manifest

    model_dir, _ = model_and_ranking
    marker = tmp_path / "marker"
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "export.json").write_bytes(_payload(marker) if content == "pickle" else content)
    with pytest.raises(ExportError, match=words):
        load_export_manifest(export_dir)
    code = main(["parity", "--model", str(model_dir), "--export", str(export_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1
    assert not marker.exists()


def test_pickle_payload_named_onnx_is_refused_by_fit(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = tmp_path / "model.onnx"
    path.write_bytes(_payload(marker))
    code = main(["fit", "--onnx", str(path), "--target", "rad750"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(path) in err
    assert not marker.exists()


def test_the_export_manifest_is_json_and_names_no_pickle(model_and_ranking, tmp_path):
    """Sanity: the files etdeploy itself writes are plain JSON/safetensors (nothing to unpickle)."""
    from etdeploy.export import ExportConfig, export_model
    from etdeploy.models import load_model

    model_dir, ranking_dir = model_and_ranking
    export_model(load_model(model_dir), tmp_path / "export", config=ExportConfig())
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["format"] == "etdeploy-export"
    written = sorted(p.name for d in (model_dir, ranking_dir, tmp_path / "export") for p in d.iterdir())
    assert all(name.endswith((".json", ".safetensors", ".csv", ".onnx")) for name in written), written
