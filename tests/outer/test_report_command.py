"""`etdeploy report` from artefact folders made by hand with the CLI (no pipeline run)."""

from __future__ import annotations

import json

from etdeploy.cli.main import main

HOSTILE = "<img src=x onerror=alert(1)>"


def _ok(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_report_from_hand_made_artefacts(trained_mini_dir, tmp_path, capsys):
    t = tmp_path
    model = str(trained_mini_dir)
    _ok(["rank", "--model", model, "--layers", "dense1,dense2", "--steps", "4", "--max-images", "40",
         "--no-progress", "--out", str(t / "rank")], capsys)
    _ok(["prune", "--model", model, "--ranking", str(t / "rank"), "--percent", "50", "--layers", "dense1,dense2",
         "--no-progress", "--out", str(t / "prune")], capsys)
    _ok(["export", "--model", str(t / "prune" / "sliced"), "--out", str(t / "export")], capsys)
    _ok(["parity", "--model", str(t / "prune" / "sliced"), "--export", str(t / "export"), "--masked",
         str(t / "prune" / "masked"), "--no-progress", "--out", str(t / "parity.json")], capsys)
    _ok(["fit", "--onnx", str(t / "export" / "model.sim.onnx"), "--target", "rad750", "--target", "stm32h7",
         "--out", str(t / "fit.json")], capsys)
    from etdeploy.data import load_dataset

    image = load_dataset("bundled").split("test")[0].path
    _ok(["explain", "--onnx", str(t / "export" / "model.sim.onnx"), "--model", str(t / "prune" / "sliced"),
         "--image", str(image), "--patch", "16", "--stride", "8", "--no-progress", "--out", str(t / "maps")], capsys)
    out = _ok(["report", "--name", HOSTILE, "--model", model, "--ranking", str(t / "rank"), "--prune",
               str(t / "prune"), "--export", str(t / "export"), "--parity", str(t / "parity.json"), "--fit",
               str(t / "fit.json"), "--maps", str(t / "maps"), "--no-progress", "--out", str(t / "report")], capsys)
    assert "sections: data, train, rank, prune, export, parity, explain, fit" in out
    doc = json.loads((t / "report" / "report.json").read_text())
    assert doc["stages"]["parity"] == json.loads((t / "parity.json").read_text())
    assert doc["stages"]["fit"] == json.loads((t / "fit.json").read_text())
    assert doc["stages"]["explain"] == json.loads((t / "maps" / "summary.json").read_text())
    metrics = json.loads((trained_mini_dir / "metrics.json").read_text())
    assert doc["stages"]["train"]["accuracy"]["test"] == metrics["evaluation"]["test"]["accuracy"]
    html = (t / "report" / "report.html").read_text()
    for section in ("id='data'", "id='training'", "id='ranking'", "id='prune'", "id='parity'", "id='explain'",
                    "id='fit'", "id='provenance'"):
        assert section in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<img alt=") >= 4  # training curve, rank histogram, EA bars, occlusion map
    # nothing is overwritten
    code = main(["report", "--model", model, "--no-data", "--out", str(t / "report")])
    assert code == 2 and "exists" in capsys.readouterr().err
