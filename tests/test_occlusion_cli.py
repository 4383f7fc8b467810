"""``etdeploy explain``: npy + png per image and class, JSON summary, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from etdeploy.cli.main import cli, main
from tests.test_occlusion import export_onnx


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory, trained_mini_dir):
    from etdeploy.models import load_model

    model = load_model(trained_mini_dir)
    return export_onnx(model, tmp_path_factory.mktemp("cli") / "mini.onnx", 64), model


def _images(bundled, n=2):
    return [str(s.path) for s in bundled.split("test")[:n]]


def test_explain_writes_maps_overlays_and_summary(tmp_path, cli_model, trained_mini_dir, bundled):
    onnx_path, model = cli_model
    images = _images(bundled)
    out = tmp_path / "maps"
    args = ["explain", "--onnx", onnx_path, "--image", images[0], "--image", images[1], "--patch", "8",
            "--stride", "4", "--mode", "exact", "--model", str(trained_mini_dir), "--class", "0", "--class", "3",
            "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "exact" and summary["patch"] == 8 and summary["stride"] == 4
    assert summary["classes"] == list(model.spec.class_names)
    assert summary["redundancy_ratio"] > 1.0
    assert len(summary["images"]) == 2
    for entry in summary["images"]:
        assert [m["class"] for m in entry["maps"]] == [0, 3]
        assert abs(sum(entry["probabilities"]) - 1.0) < 1e-5
        for item in entry["maps"]:
            values = np.load(out / item["npy"])
            assert values.shape == (15, 15)
            assert values.min() == pytest.approx(item["min"]) and values.max() == pytest.approx(item["max"])
            assert 0.0 <= values.min() <= values.max() <= 1.0
            assert (out / item["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timing = json.loads((out / "timing.json").read_text())
    assert len(timing["images"]) == 2 and all(t["seconds"] > 0 for t in timing["images"])
    assert "seconds" not in (out / "summary.json").read_text()
    # same inputs -> byte-identical summary; existing output refused without --force
    again = tmp_path / "again"
    args2 = [a if a != str(out) else str(again) for a in args]
    assert CliRunner().invoke(cli, args2).exit_code == 0
    assert (again / "summary.json").read_bytes() == (out / "summary.json").read_bytes()
    assert main(args) == 2


def test_explain_approx_tunes_and_reports_ssim(tmp_path, cli_model, trained_mini_dir, bundled):
    onnx_path, _ = cli_model
    images = _images(bundled, 3)
    out = tmp_path / "approx"
    args = ["explain", "--onnx", onnx_path, "--patch", "8", "--stride", "2", "--mode", "approx",
            "--model", str(trained_mini_dir), "--out", str(out), "--no-progress", "--check-ssim", "--map-kind",
            "logprob"]
    for image in images:
        args += ["--image", image]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    tuning = summary["tuning"]
    assert tuning["min_ssim"] >= 0.95 and tuning["margin"] == 0.05 and tuning["map_kind"] == "logprob"
    assert summary["run"]["tau"] == tuning["tau"] and summary["run"]["r_drill"] == tuning["r_drill"]
    assert summary["run"]["map_kind"] == "logprob"
    for index in tuning["used_images"]:  # tuning images are the first two --image
        assert summary["images"][index]["maps"][0]["ssim_vs_exact"] >= 0.95 - 1e-9
    assert all(entry["macs"] <= entry["naive_macs"] for entry in summary["images"])

    # fixed settings, stage 1 alone (r_drill 0): a quarter of the positions computed, no tuning
    fixed = tmp_path / "fixed"
    args = ["explain", "--onnx", onnx_path, "--patch", "8", "--stride", "2", "--mode", "approx", "--r-drill", "0",
            "--stage1-stride", "4", "--model", str(trained_mini_dir), "--out", str(fixed), "--no-progress",
            "--image", images[0]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((fixed / "summary.json").read_text())
    assert summary["tuning"] is None and summary["run"]["r_drill"] == 0.0
    entry = summary["images"][0]
    assert entry["macs"] * 3 < entry["naive_macs"]


def test_explain_errors_are_one_line(tmp_path, cli_model, bundled, capsys):
    onnx_path, _ = cli_model
    image = _images(bundled, 1)[0]
    base = ["explain", "--onnx", onnx_path, "--image", image, "--mean", "0.4,0.4,0.4", "--std", "0.2,0.2,0.2"]
    assert main(base + ["--patch", "100", "--out", str(tmp_path / "a")]) == 2
    assert "larger than the 64x64 image" in capsys.readouterr().err
    assert main(base + ["--stride", "0", "--out", str(tmp_path / "b")]) == 2
    assert "stride must be a positive integer" in capsys.readouterr().err
    assert main(["explain", "--onnx", onnx_path, "--image", image, "--out", str(tmp_path / "c")]) == 2
    assert "--model DIR" in capsys.readouterr().err
    assert main(base + ["--tau", "0.5", "--out", str(tmp_path / "d")]) == 2
    assert "--mode approx only" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_explain_approx_defaults_work_on_a_confident_model(tmp_path, bundled, capsys):
    """The README's ``--mode approx`` line on a model whose probability maps are flat (issue 16): the tuner falls
    back to logit maps and says so; one usable tuning map gives a loud warning (stderr and summary.json), and
    ``--min-tune-maps 2`` refuses it (exit 2, nothing written)."""
    import torch

    from tests.test_occlusion_approx_dag import Confident

    torch.manual_seed(0)
    onnx_path = export_onnx(Confident(), tmp_path / "confident.onnx", 16)
    images = _images(bundled, 2)
    base = ["explain", "--onnx", onnx_path, "--mean", "0.4,0.4,0.4", "--std", "0.2,0.2,0.2", "--patch", "4",
            "--stride", "2", "--mode", "approx", "--no-progress"]
    out = tmp_path / "approx"
    result = CliRunner().invoke(cli, [*base, "--image", images[0], "--image", images[1], "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: 2 of 2 'prob' tuning maps are flat (range < 0.05); tuned on 'logit' maps" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["map_kind"] == "prob" and summary["run"]["map_kind"] == "logit"
    tuning = summary["tuning"]
    assert (tuning["map_kind"], tuning["requested_map_kind"]) == ("logit", "prob") and tuning["fallback"]
    assert tuning["used_images"] == [0, 1] and tuning["min_ssim"] >= 0.95

    single = tmp_path / "single"
    assert summary["tuning"]["warning"] is None
    capsys.readouterr()
    assert main([*base, "--image", images[0], "--out", str(single), "--min-tune-maps", "2"]) == 2
    err = capsys.readouterr().err
    assert "too few usable tuning maps: 2 needed" in err and "--min-tune-maps 1" in err
    assert not single.exists()
    result = CliRunner().invoke(cli, [*base, "--image", images[0], "--out", str(single)])
    assert result.exit_code == 0, result.output
    assert "WARNING: tuned on a single usable 'logit' map: a setting tuned on a single map" in result.stderr
    tuning = json.loads((single / "summary.json").read_text())["tuning"]
    assert tuning["used_images"] == [0] and tuning["warning"].startswith("tuned on a single usable 'logit' map")
