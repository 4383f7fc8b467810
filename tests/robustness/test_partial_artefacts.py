"""Interrupted writes leave a complete artefact or nothing: no partial folder, no ``.partial``/``.tmp`` leftovers.

Each test makes a write fail part-way (an ``OSError`` such as a full disk, or ``KeyboardInterrupt``
for Ctrl-C) through monkeypatching, then checks the destination and every leftover name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from etdeploy import fileio
from etdeploy.errors import OutputExistsError
from etdeploy.fileio import StagedDir, atomic_write_bytes, atomic_write_json


def _all_names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _leftovers(root: Path) -> list[str]:
    return [n for n in _all_names(root) if n.endswith((".partial", ".tmp")) or ".partial/" in n]


def _fail_on_call(monkeypatch, owner, name: str, n: int, exc: BaseException):
    """Let the first ``n - 1`` calls of ``owner.name`` through, raise ``exc`` on call ``n``; returns the call log."""
    real = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args[0] if args else None)
        if len(calls) == n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


# --------------------------------------------------------------------------- fileio primitives
@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_atomic_write_interrupted_leaves_nothing(tmp_path, monkeypatch, where, exc):
    def broken(*args, **kwargs):
        raise exc

    if where == "write":
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, fd, mode):
                self.handle = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *info):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])  # half the bytes reach the temp file
                raise exc

        monkeypatch.setattr(fileio.os, "fdopen", HalfWriter)
    else:
        monkeypatch.setattr(fileio.os, where, broken)
    with pytest.raises(type(exc)):
        atomic_write_bytes(tmp_path / "out.bin", b"x" * 1000)
    assert _all_names(tmp_path) == []


def test_overwrite_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"old": 1})
    old = path.read_bytes()
    monkeypatch.setattr(fileio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        atomic_write_json(path, {"new": 2}, overwrite=True)
    assert path.read_bytes() == old and _all_names(tmp_path) == ["report.json"]
    with pytest.raises(OutputExistsError):
        atomic_write_json(path, {"new": 2})
    assert path.read_bytes() == old


@pytest.mark.parametrize("exc", [RuntimeError("stage failed"), KeyboardInterrupt()])
def test_staged_dir_interrupted_leaves_nothing(tmp_path, exc):
    final = tmp_path / "stage"
    with pytest.raises(type(exc)), StagedDir(final) as tmp:
        atomic_write_json(tmp / "a.json", {"a": 1})
        (tmp / "sub").mkdir()
        atomic_write_bytes(tmp / "sub" / "b.bin", b"b")
        raise exc
    assert _all_names(tmp_path) == []


def test_staged_dir_with_force_interrupted_keeps_the_old_folder(tmp_path):
    final = tmp_path / "stage"
    with StagedDir(final) as tmp:
        atomic_write_json(tmp / "a.json", {"version": 1})
    with pytest.raises(RuntimeError), StagedDir(final, force=True) as tmp:
        atomic_write_json(tmp / "a.json", {"version": 2})
        raise RuntimeError("interrupted")
    assert _all_names(tmp_path) == ["stage", "stage/a.json"]
    assert '"version": 1' in (final / "a.json").read_text()
    with pytest.raises(OutputExistsError), StagedDir(final):
        pass
    with StagedDir(final, force=True) as tmp:
        atomic_write_json(tmp / "a.json", {"version": 3})
    assert '"version": 3' in (final / "a.json").read_text() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- stages
def _tiny(class_names=None):
    from etdeploy.models import build_model

    return build_model("sequential-cnn", 5, input_size=16, layers="c4k3p1-r-m2", hidden=(8,),
                       class_names=class_names).eval()


def test_save_model_interrupted_after_the_weights(tmp_path, monkeypatch):
    from etdeploy.models import save_model, serialization

    calls = _fail_on_call(monkeypatch, serialization, "atomic_write_bytes", 2, OSError(28, "No space left"))
    with pytest.raises(OSError):
        save_model(_tiny(), tmp_path / "model")
    assert [Path(c).name for c in calls] == ["model.safetensors", "spec.json"]
    assert _all_names(tmp_path) == []


def test_save_ranking_interrupted_before_the_summary(tmp_path, monkeypatch):
    from etdeploy.attribution import save_ranking
    from tests.test_pruning_support import synthetic_ranking

    ranking = synthetic_ranking(_tiny())
    n_layers = len(ranking.layers)
    calls = _fail_on_call(monkeypatch, fileio, "atomic_write_text", n_layers + 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        save_ranking(ranking, tmp_path / "ranking")
    assert Path(calls[-1]).name == "summary.json" and len(calls) == n_layers + 1
    assert _all_names(tmp_path) == []


def test_export_interrupted_at_the_manifest(tmp_path, monkeypatch):
    from etdeploy.export import export_model

    calls = _fail_on_call(monkeypatch, fileio, "atomic_write_json", 1, OSError(28, "No space left"))
    with pytest.raises(OSError):
        export_model(_tiny(), tmp_path / "export")
    assert Path(calls[0]).name == "export.json"
    assert _all_names(tmp_path) == []


def test_export_cli_refused_or_failed_keeps_an_existing_export(tmp_path, monkeypatch, capsys):
    from etdeploy.cli.main import main
    from etdeploy.export import export_model
    from etdeploy.models import save_model

    save_model(_tiny(), tmp_path / "model")
    export_model(_tiny(), tmp_path / "export")
    before = {n: (tmp_path / "export" / n).read_bytes() for n in os.listdir(tmp_path / "export")}
    assert main(["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "export")]) == 2
    assert "pass --force" in capsys.readouterr().err
    _fail_on_call(monkeypatch, fileio, "atomic_write_json", 1, OSError(28, "No space left on device"))
    code = main(["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "export"), "--force"])
    assert code == 1 and "No space left on device" in capsys.readouterr().err
    after = {n: (tmp_path / "export" / n).read_bytes() for n in os.listdir(tmp_path / "export")}
    assert after == before and _leftovers(tmp_path) == []


def test_prune_interrupted_after_both_models_are_written(tmp_path, monkeypatch, bundled):
    from etdeploy.attribution import save_ranking
    from etdeploy.models import save_model
    from etdeploy.pruning import prune_dirs as prune
    from tests.test_pruning_support import synthetic_ranking

    model = _tiny(class_names=bundled.classes)
    save_model(model, tmp_path / "model")
    save_ranking(synthetic_ranking(model), tmp_path / "ranking")
    calls = _fail_on_call(monkeypatch, fileio, "atomic_write_json", 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        prune(tmp_path / "model", tmp_path / "ranking", schedule="bottom-first", percent=50, dataset=bundled,
              out=tmp_path / "out", progress=False)
    assert [Path(c).name for c in calls] == ["record.json", "params.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "ranking"] and _leftovers(tmp_path) == []
