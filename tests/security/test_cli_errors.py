"""The CLI's error contract: one line ``error: ...`` and exit 2 for user errors, ``internal error: ...``
and exit 1 for bugs, a traceback only with ``--debug``, no output folder left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etdeploy.cli.main import COMMANDS, main

# commands that read no input file; each still has a user-error case below
NO_INPUT_FILE = {"params", "demo", "config"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A valid tiny model directory, its ONNX export and a PNG: so each case has exactly one missing file."""
    from PIL import Image

    from etdeploy.export import export_onnx_bytes
    from etdeploy.models import build_model, save_model

    folder = tmp_path_factory.mktemp("cli-inputs")
    model = build_model("sequential-cnn", 5, input_size=16, layers="c4k3p1-r-m2", hidden=(8,))
    save_model(model, folder / "model")
    (folder / "model.onnx").write_bytes(export_onnx_bytes(model.eval(), 16))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "image.png")
    return folder


NORM = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
# case -> (argv with {M} = the missing path, {I} = the inputs folder, {O} = output; text the error must contain)
MISSING_FILE_CASES = {
    "data-info": (["data", "info", "--data", "{M}"], "data set folder does not exist"),
    "train": (["train", "--data", "{M}", "--epochs", "0", "--out", "{O}"], "data set folder does not exist"),
    "import": (["import", "--arch", "tests.user_models:tiny_factory", "--weights", "{M}.pth", "--scale", "255",
                "--class-names", "a,b", "--out", "{O}"], "weights file does not exist"),
    "import-onnx": (["import", "--onnx", "{M}.onnx", "--scale", "255", "--class-names", "a,b", "--out", "{O}"],
                    "ONNX file does not exist"),
    "evaluate": (["evaluate", "--model", "{M}"], "model directory does not exist"),
    "rank": (["rank", "--model", "{M}", "--out", "{O}"], "model directory does not exist"),
    "prune-model": (["prune", "--model", "{M}", "--ranking", "{M}", "--percent", "50", "--out", "{O}"],
                    "model directory does not exist"),
    "prune-ranking": (["prune", "--model", "{I}/model", "--ranking", "{M}", "--percent", "50", "--out", "{O}"],
                      "ranking directory has no summary.json"),
    "sweep-model": (["sweep", "--model", "{M}", "--ranking", "{M}", "--out", "{O}"], "model directory does not exist"),
    "sweep-ranking": (["sweep", "--model", "{I}/model", "--ranking", "{M}", "--out", "{O}"],
                      "ranking directory has no summary.json"),
    "export": (["export", "--model", "{M}", "--out", "{O}"], "model directory does not exist"),
    "parity-model": (["parity", "--model", "{M}", "--export", "{M}"], "model directory does not exist"),
    "parity-export": (["parity", "--model", "{I}/model", "--export", "{M}"], "export directory has no export.json"),
    "parity-original": (["parity", "--model", "{I}/model", "--export", "{I}", "--original", "{M}"],
                        "given as the original does not exist"),
    "quantize-onnx": (["quantize", "--onnx", "{M}", "--model", "{I}/model", "--out", "{O}.onnx"], "does not exist"),
    "quantize-model": (["quantize", "--onnx", "{I}/model.onnx", "--model", "{M}", "--out", "{O}.onnx"],
                       "model directory does not exist"),
    "explain-onnx": (["explain", "--onnx", "{M}", "--image", "{I}/image.png", *NORM, "--out", "{O}"],
                     "does not exist"),
    "explain-image": (["explain", "--onnx", "{I}/model.onnx", "--image", "{M}.png", *NORM, "--out", "{O}"],
                      "does not exist"),
    "targets-list": (["targets", "list", "--targets-dir", "{M}"], "targets folder not found"),
    "targets-show": (["targets", "show", "rad750", "--targets-dir", "{M}"], "unknown target 'rad750'"),
    "fit-onnx": (["fit", "--onnx", "{M}", "--target", "rad750"], "ONNX file does not exist"),
    "fit-target": (["fit", "--onnx", "{I}/model.onnx", "--target", "{M}.toml"], "target profile file does not exist"),
    "compress-model": (["compress", "--model", "{M}", "--ranking", "{M}", "--target", "rad750", "--out", "{O}"],
                       "model directory does not exist"),
    "compress-ranking": (["compress", "--model", "{I}/model", "--ranking", "{M}", "--target", "rad750", "--out", "{O}"],
                         "ranking directory has no summary.json"),
    "package": (["package", "--export", "{M}", "--target", "rad750", "--out", "{O}"],
                "export directory has no export.json"),
    "run": (["run", "{M}.toml", "--out", "{O}"], "configuration file does not exist"),
    "report": (["report", "--model", "{M}", "--no-data", "--out", "{O}"], ("model directory (etdeploy train) does not "
               "exist")),
}


def _argv(template, inputs: Path, tmp_path: Path) -> tuple[list[str], Path]:
    missing = tmp_path / "missing"
    out = tmp_path / "out"
    subst = {"{M}": str(missing), "{I}": str(inputs), "{O}": str(out)}
    argv = []
    for arg in template:
        for key, value in subst.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return argv, missing


def _one_error_line(captured) -> str:
    err = captured.err
    assert "Traceback" not in err + captured.out
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err


def test_every_command_has_a_missing_file_case():
    covered = {args[0] for args, _ in MISSING_FILE_CASES.values()}
    assert covered | NO_INPUT_FILE == set(COMMANDS)
    assert covered.isdisjoint(NO_INPUT_FILE)


@pytest.mark.parametrize("case", sorted(MISSING_FILE_CASES))
def test_missing_file_is_one_error_line_and_exit_2(case, inputs, tmp_path, capsys):
    template, words = MISSING_FILE_CASES[case]
    argv, missing = _argv(template, inputs, tmp_path)
    code = main(argv)
    err = _one_error_line(capsys.readouterr())
    assert code == 2
    assert words in err and str(missing) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no temp leftovers


@pytest.mark.parametrize("argv, words", [
    (["config", "init", "{I}/model/spec.json"], "refusing to overwrite"),
    (["params", "--arch", "no-such-arch"], "no-such-arch"),
    (["params", "--percent", "50,abc"], "abc"),
    (["fit"], "Missing option '--onnx'"),
    (["prune", "--model", "{I}/model", "--ranking", "{I}", "--percent", "x", "--out", "{O}"], "'x'"),
    (["no-such-command"], "No such command"),
])
def test_other_user_errors_are_one_line_too(argv, words, inputs, tmp_path, capsys):
    argv, _ = _argv(argv, inputs, tmp_path)
    code = main(argv)
    err = _one_error_line(capsys.readouterr())
    assert code == 2 and words in err
    assert not (tmp_path / "out").exists()


def test_demo_refuses_an_existing_run_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    code = main(["demo", "--out", str(tmp_path / "run"), "--no-progress"])
    err = _one_error_line(capsys.readouterr())
    assert code == 2 and str(tmp_path / "run") in err
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_debug_shows_the_traceback_then_the_error_line(tmp_path, capsys):
    code = main(["--debug", "evaluate", "--model", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("Traceback (most recent call last):") and "ModelError" in err
    assert err.strip().splitlines()[-1] == f"error: model directory does not exist ({tmp_path / 'missing'})"


def _boom(*args, **kwargs):
    raise RuntimeError("boom from a test double")


def test_internal_error_is_exit_1_with_one_line(inputs, monkeypatch, capsys):
    import etdeploy.models

    monkeypatch.setattr(etdeploy.models, "load_model", _boom)
    code = main(["evaluate", "--model", str(inputs / "model")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == ("internal error: RuntimeError: boom from a test double "
                            "(run with --debug for the traceback)\n")
    assert "Traceback" not in captured.out
    code = main(["--debug", "evaluate", "--model", str(inputs / "model")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Traceback") and "_boom" in err
    assert err.strip().splitlines()[-1].startswith("internal error: RuntimeError: boom")


def test_interrupt_exits_130_and_leaves_no_output(inputs, tmp_path, monkeypatch, capsys):
    from etdeploy.export import onnx_export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_export, "simplify_onnx_bytes", interrupted)
    code = main(["export", "--model", str(inputs / "model"), "--out", str(tmp_path / "out")])
    assert code == 130 and capsys.readouterr().err.strip() == "error: interrupted"  # after click's newline
    assert list(tmp_path.iterdir()) == []


def test_installed_entry_point_never_prints_a_traceback(tmp_path):
    exe = Path(sys.executable).parent / "etdeploy"
    result = subprocess.run([str(exe), "fit", "--onnx", str(tmp_path / "x.onnx"), "--target", "rad750"],
                            capture_output=True, text=True, timeout=120, env={"CI": "true"}, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: ONNX file does not exist ({tmp_path / 'x.onnx'})\n"
