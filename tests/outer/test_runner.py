"""The pipeline runner on synthetic stages (milliseconds): inputs, invalidation, damaged run files."""

from __future__ import annotations

import json

import pytest

from etdeploy.cli.main import main
from etdeploy.errors import ReportError
from etdeploy.pipeline import run_pipeline
from etdeploy.pipeline.config import RunConfig
from etdeploy.pipeline.runner import RUN_FILE, Stage, read_run_file

CFG = RunConfig(name="synthetic")


def _stages(calls: list[str], a_text: str = "a1") -> list[Stage]:
    def run_a(ctx, tmp):
        calls.append("a")
        (tmp / "a.txt").write_text(a_text)
        return {"text": a_text}

    def run_b(ctx, tmp):
        calls.append("b")
        (tmp / "b.txt").write_text((ctx.stage_dir("a") / "a.txt").read_text() + "+b")
        return {}

    def run_c(ctx, tmp):
        calls.append("c")
        (tmp / "c.txt").write_text((ctx.stage_dir("b") / "b.txt").read_text() + "+c")
        return {}

    def run_d(ctx, tmp):  # independent of a, b, c
        calls.append("d")
        (tmp / "d.txt").write_text("d")
        return {}

    return [Stage("a", run_a, lambda s: ""), Stage("b", run_b, lambda s: "", inputs=("a",)),
            Stage("c", run_c, lambda s: "", inputs=("b",)), Stage("d", run_d, lambda s: "")]


def _run(out, calls, **kw):
    run_pipeline(CFG, out, stages=_stages(calls, **kw), resume=True, progress=False, echo=lambda line: None)


def test_stage_manifest_records_input_digests(tmp_path):
    calls: list[str] = []
    _run(tmp_path / "run", calls)
    assert calls == ["a", "b", "c", "d"]
    b = json.loads((tmp_path / "run" / "b" / "stage.json").read_text())
    import hashlib

    assert b["inputs"] == {"a": hashlib.sha256((tmp_path / "run" / "a" / "stage.json").read_bytes()).hexdigest()}
    assert b["format"] == "etdeploy-stage" and b["artefacts"].keys() == {"b.txt"}


def test_upstream_change_recomputes_everything_downstream(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    _run(out, calls)
    calls.clear()
    _run(out, calls)
    assert calls == []  # everything verified and reused
    # an upstream stage recomputed with different artefacts: every stage downstream of it is recomputed,
    # the independent stage is reused
    (out / "a" / "a.txt").write_text("tampered")
    _run(out, calls, a_text="a2")
    assert calls == ["a", "b", "c"]
    assert (out / "c" / "c.txt").read_text() == "a2+b+c"


def test_downstream_is_recomputed_when_upstream_manifest_changed_but_verifies(tmp_path):
    """Someone replaced an upstream stage folder wholesale (consistent hashes): downstream is stale."""
    out = tmp_path / "run"
    calls: list[str] = []
    _run(out, calls)
    other = tmp_path / "other"
    _run(other, [], a_text="a-other")
    import shutil

    shutil.rmtree(out / "a")
    shutil.copytree(other / "a", out / "a")
    calls.clear()
    _run(out, calls)
    assert calls == ["b", "c"]
    assert (out / "c" / "c.txt").read_text() == "a-other+b+c"


@pytest.mark.parametrize("content, words", [
    (b"{not json", "run record is not valid JSON"),
    (b"[]", "not an etdeploy run record"),
    (b'{"format": "etdeploy-run", "format_version": 7}', "unsupported run record format_version 7"),
    (b'{"format": "etdeploy-run", "format_version": 1}', "lacks config_sha256"),
])
def test_damaged_run_file_is_a_typed_error(tmp_path, content, words):
    out = tmp_path / "run"
    _run(out, [])
    (out / RUN_FILE).write_bytes(content)
    with pytest.raises(ReportError, match=words):
        read_run_file(out)
    with pytest.raises(ReportError, match=words):
        _run(out, [])


def test_damaged_run_file_exits_2_from_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out, [])
    (out / RUN_FILE).write_text("{oops")
    config = tmp_path / "c.toml"
    config.write_text('name = "synthetic"\n')
    code = main(["run", str(config), "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: run record is not valid JSON") and str(out / RUN_FILE) in err
    assert err.count("\n") == 1


def test_damaged_stage_manifest_means_recompute_not_crash(tmp_path):
    out = tmp_path / "run"
    calls: list[str] = []
    _run(out, calls)
    (out / "b" / "stage.json").write_text("{broken")
    calls.clear()
    _run(out, calls)
    # b is recomputed; its new manifest is byte-identical to the one c was computed from (same inputs,
    # deterministic stage), so c is still valid: invalidation is by content, as in Make/DVC
    assert calls == ["b"]


def test_resume_with_other_thread_count_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _run(out, [])
    doc = json.loads((out / RUN_FILE).read_text())
    doc["torch_threads"] += 1
    (out / RUN_FILE).write_text(json.dumps(doc))
    with pytest.raises(ReportError, match="torch threads"):
        _run(out, [])
