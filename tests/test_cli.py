import json

from etdeploy.cli.main import main


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("data", "train", "evaluate"):
        assert cmd in out


def test_data_info_counts(capsys):
    assert main(["data", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["test"] == [12] * 5


def test_train_and_evaluate_roundtrip(tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["train", "--arch", "sequential-cnn", "--input-size", "32", "--epochs", "1", "--cap", "10",
               "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--cap", "10", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["accuracy"] == metrics["evaluation"]["test"]["accuracy"]


def test_existing_output_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    rc = main(["train", "--arch", "sequential-cnn", "--input-size", "32", "--epochs", "1", "--cap", "10",
               "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: output directory exists") and str(out) in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_data_folder_one_line_error_exit_2(tmp_path, capsys):
    rc = main(["data", "info", "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err


def test_bad_model_dir_errors(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    rc = main(["evaluate", "--model", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "no spec.json" in err
