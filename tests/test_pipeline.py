"""The end-to-end pipeline on the bundled data with tiny settings."""

import dataclasses
import json
import shutil
import subprocess

import pytest

from etdeploy.errors import OutputExistsError, ReportError
from etdeploy.pipeline import run_pipeline
from etdeploy.pipeline.config import (
    ModelConfig,
    OcclusionConfig,
    PackageConfig,
    PruneConfig,
    RankingConfig,
    RobustnessConfig,
    RunConfig,
    SweepConfig,
    load_config,
)
from etdeploy.pipeline.runner import Stage
from etdeploy.pipeline.stages import STAGES

TINY = RunConfig(
    name="tiny",
    model=ModelConfig(arch="alexnet-mini", epochs=3),
    ranking=RankingConfig(steps=4, batch_size=32, max_images=60),
    sweep=SweepConfig(points=5),
    prune=PruneConfig(percents=(50.0, 95.0), finetune_epochs=1),
    occlusion=OcclusionConfig(images_per_class=1, patch=16, stride=8),
    # every stage runs, on less: one severity on 20 images, one golden vector (their full scale: test_assurance_*,
    # test_package)
    robustness=RobustnessConfig(severities=(1,), max_images=20),
    package=PackageConfig(vectors=1),
)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for name in ("a", "b", "c"):
        report = run_pipeline(TINY, root / name, progress=False, echo=lambda line: None)
        paths.append(report.parent.parent)
    return paths


def test_pipeline_writes_every_stage_and_report(tiny_runs):
    run = tiny_runs[0]
    for stage in STAGES:
        assert (run / stage.name / "stage.json").is_file(), stage.name
    report = json.loads((run / "report" / "report.json").read_text())
    assert set(report["stages"]) == {s.name for s in STAGES if s.name != "report"}
    train_metrics = json.loads((run / "train" / "model" / "metrics.json").read_text())
    assert report["stages"]["train"]["accuracy"]["test"] == train_metrics["evaluation"]["test"]["accuracy"]
    assert report["stages"]["data"]["counts"]["test"] == [12] * 5
    html = (run / "report" / "report.html").read_text()
    assert "<img" in html and "http://" not in html and "https://" not in html
    assert report["provenance"]["artefacts"]["train/model/model.safetensors"] == \
        report["stages"]["train"]["weights_sha256"]


def test_three_runs_give_identical_json_and_csv(tiny_runs):
    a = tiny_runs[0]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".json", ".csv"))
    assert len(files_a) > 20
    for b in tiny_runs[1:]:
        files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.suffix in (".json", ".csv"))
        assert files_a == files_b
        different = [str(rel) for rel in files_a if rel.name != "timing.json"
                     and (a / rel).read_bytes() != (b / rel).read_bytes()]
        assert different == []


def test_existing_run_is_refused(tiny_runs):
    with pytest.raises(OutputExistsError):
        run_pipeline(TINY, tiny_runs[0], progress=False, echo=lambda line: None)


def test_interrupted_run_resumes_and_reuses_finished_stages(tmp_path, tiny_runs):
    class Boom(RuntimeError):
        pass

    def explode(ctx, tmp):
        (tmp / "half-written.txt").write_text("partial")
        raise Boom("simulated crash")

    crashing = STAGES[:2] + [Stage("rank", explode, lambda s: "")]
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_pipeline(TINY, out, stages=crashing, progress=False, echo=lambda line: None)
    assert not (out / "rank").exists()  # nothing partial left for the failed stage
    assert not list(out.glob(".*.partial"))
    weights = (out / "train" / "model" / "model.safetensors").read_bytes()
    lines = []
    with pytest.raises(OutputExistsError):
        run_pipeline(TINY, out, progress=False, echo=lines.append)
    run_pipeline(TINY, out, resume=True, progress=False, echo=lines.append)
    assert any("train: reused" in line for line in lines)
    assert (out / "train" / "model" / "model.safetensors").read_bytes() == weights
    ref = tiny_runs[0]
    assert (out / "report" / "report.json").read_bytes() == (ref / "report" / "report.json").read_bytes()
    other = dataclasses.replace(TINY, seed=99)
    with pytest.raises(ReportError, match="different configuration"):
        run_pipeline(other, out, resume=True, progress=False, echo=lines.append)


def test_tampered_stage_is_recomputed(tmp_path):
    cfg = dataclasses.replace(TINY, model=ModelConfig(arch="alexnet-mini", epochs=1))
    out = tmp_path / "run"
    run_pipeline(cfg, out, stages=STAGES[:1], progress=False, echo=lambda line: None)
    manifest = out / "data" / "manifest.csv"
    original = manifest.read_bytes()
    manifest.write_text("tampered")
    lines = []
    run_pipeline(cfg, out, stages=STAGES[:1], resume=True, progress=False, echo=lines.append)
    assert manifest.read_bytes() == original and "reused" not in lines[0]


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nepochs = 'many'\n")
    with pytest.raises(Exception, match="model.epochs must be an integer") as err:
        load_config(path)
    assert str(path) in str(err.value)
    path.write_text("[prune]\npercents = [50.0, 100.0]\n")
    with pytest.raises(Exception, match=r"prune.percents must be in \[0, 100\)"):
        load_config(path)


def test_approx_explain_stage_tunes_on_the_configured_map_kind(tiny_runs, tmp_path):
    import numpy as np

    from etdeploy.pipeline.runner import RunContext
    from etdeploy.pipeline.stages import run_explain_stage

    occlusion = OcclusionConfig(images_per_class=1, patch=16, stride=8, mode="approx", map_kind="logit")
    ctx = RunContext(config=dataclasses.replace(TINY, occlusion=occlusion), out=tiny_runs[0], progress=False)
    out = tmp_path / "explain"
    out.mkdir()
    summary = run_explain_stage(ctx, out)
    tuning = summary["tuning"]
    assert summary["map_kind"] == "logit" and tuning["map_kind"] == "logit" and tuning["margin"] == 0.05
    assert tuning["min_ssim"] >= 0.95
    assert len(summary["maps"]) >= 5
    for m in summary["maps"]:  # every map was a tuning map here (or flat and left out)
        values = np.load(out / m["npy"])
        assert (m["map_min"], m["map_max"]) == (float(values.min()), float(values.max()))
        if m["map_max"] - m["map_min"] >= 0.05:
            assert m["ssim_vs_exact"] >= 0.95 - 1e-9
    # logit maps are not probabilities: at least one leaves [0, 1]
    assert any(m["map_min"] < 0 or m["map_max"] > 1 for m in summary["maps"])


def test_keys_added_later_keep_old_runs_resumable():
    from etdeploy.fileio import canonical_json, sha256_bytes
    from etdeploy.pipeline.runner import config_hash

    raw = TINY.to_dict()
    del raw["occlusion"]["map_kind"], raw["occlusion"]["ssim_margin"]
    assert config_hash(TINY) == sha256_bytes(canonical_json(raw).encode())
    logit = dataclasses.replace(TINY, occlusion=dataclasses.replace(TINY.occlusion, map_kind="logit"))
    assert config_hash(logit) != config_hash(TINY)


def test_report_html_renders_in_headless_chromium(tiny_runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs the Debian package 'chromium')")
    shot = tmp_path / "shot.png"
    html = tiny_runs[0] / "report" / "report.html"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1280,1000", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        extrema = im.convert("L").getextrema()
        colours = len(im.convert("RGB").getcolors(maxcolors=1_000_000) or [])
    assert extrema[1] - extrema[0] > 100 and colours > 50  # not blank
