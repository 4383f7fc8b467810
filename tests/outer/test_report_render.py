"""The report renders from a hand-written run record (no pipeline run), escaping every user string."""

from __future__ import annotations

import json

from etdeploy.report import Provenance, RunRecord, render

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "</pre><script>alert(2)</script>"


def hostile_record() -> RunRecord:
    classes = ["rock", HOSTILE]
    data = {"name": "folder", "source": f"/data/{SCRIPT}", "classes": classes,
            "counts": {"train": [3, 4], "val": [1, 1], "test": [1, 2]}, "citation": f"cite {HOSTILE}",
            "warnings": [f"class {HOSTILE} has few images"], "manifest_sha256": "ab" * 32}
    train = {"arch": f"pkg.mod:{HOSTILE}", "parameters": 1234, "input_size": 32,
             "accuracy": {"train": 0.9, "val": 0.8, "test": 0.75}, "per_class_test_accuracy": [1.0, 0.5],
             "confusion_test": [[1, 0], [1, 1]], "history": [], "best_epoch": 1, "weights_sha256": "cd" * 32}
    provenance = Provenance(config={"name": HOSTILE, "data": {"source": SCRIPT}}, config_sha256="ef" * 32, seed=0,
                            torch_threads=2, versions={"etdeploy": "0.1.0"}, platform={"system": HOSTILE},
                            command=("etdeploy", "run", f"{HOSTILE}.toml"),
                            artefacts={f"data/{HOSTILE}.csv": "01" * 32})
    return RunRecord(name=f"run {HOSTILE}", stages={"data": data, "train": train}, provenance=provenance,
                     assets={"data/manifest.csv": b"split,path\n"})


def test_report_renders_from_a_hand_written_record_quickly():
    files = render(hostile_record())  # no pipeline, no run folder: a record written by hand
    assert set(files) == {"report.html", "report.json", "tables/data__manifest.csv"}
    doc = json.loads(files["report.json"])
    assert doc["stages"]["train"]["accuracy"]["test"] == 0.75 and doc["provenance"]["torch_threads"] == 2
    assert render(hostile_record()) == files  # same record, same bytes


def test_every_user_string_is_escaped():
    html = render(hostile_record())["report.html"].decode()
    assert "<img src=x" not in html and "<script>" not in html and "</pre><script" not in html
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    # class name (data table, confusion header), citation, warning, arch, title, command, platform,
    # artefact name and configuration value all appear as text
    assert html.count(escaped) >= 9
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_approx_tuning_shows_its_map_kind_fallback_and_warning_escaped():
    tuning = {"tau": 0.8, "r_drill": 0.25, "stage1_stride": 8, "target_ssim": 0.9, "margin": 0.05, "map_kind": "logit",
              "min_ssim": 0.97, "mean_ssim": 0.98, "modelled_speedup": 3.8, "used_images": [0, 1], "flat_images": [],
              "requested_map_kind": "prob", "fallback": f"every prob map is flat {HOSTILE}",
              "warning": f"tuned on a single usable 'logit' map {SCRIPT}"}
    explain = {"onnx": {"file": "model.onnx", "sha256": "ab" * 32}, "mode": "approx", "patch": 8, "stride": 2,
               "map_kind": "prob", "patch_value": 0.0, "input_size": [64, 64], "mean": [0.5] * 3, "std": [0.25] * 3,
               "classes": ["rock", "sand"], "redundancy_ratio": 2.0, "check_ssim": True,
               "run": None, "tuning": tuning, "images": []}
    record = hostile_record()
    record = RunRecord(name=record.name, stages={**record.stages, "explain": explain}, provenance=record.provenance,
                       assets=record.assets)
    html = render(record)["report.html"].decode()
    assert "Tuning maps scored on <b>logit</b> maps (every prob map is flat &lt;img src=x" in html
    assert "Warning:</span> tuned on a single usable &#x27;logit&#x27; map &lt;/pre&gt;&lt;script&gt;" in html
    assert "<script>" not in html
