"""``explain_images`` (the use case behind ``etdeploy explain`` and the explain stage) and the report's explain section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etdeploy.errors import OcclusionError, OutputExistsError
from etdeploy.occlusion.explain import (
    ApproxSettings,
    ClassMap,
    ExplainedImage,
    ExplainInput,
    ExplainRun,
    OnnxFile,
    Tuning,
    TuningCandidate,
    explain_images,
    pick_explain_images,
    read_explain,
)

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_mini_dir):
    from etdeploy.export import export_model
    from etdeploy.models import load_model

    model = load_model(trained_mini_dir)
    result = export_model(model, tmp_path_factory.mktemp("explain") / "export")
    return result.sim_path, model.spec


@pytest.fixture(scope="module")
def test_images(bundled):
    from etdeploy.data.images import load_split

    return load_split(bundled.split("test")[:3], 64)


def _inputs(split, n=2):
    from etdeploy.fileio import sha256_file

    return [ExplainInput(name=split.paths[i].name, sha256=sha256_file(split.paths[i]), image=split.images[i],
                         true_class=int(split.labels[i]), kind="correct") for i in range(n)]


def _explain(onnx_path, spec, images, out, **kwargs):
    names = list(spec.class_names)
    names[0], names[1] = HOSTILE, "a $\\alpha$ b$"  # folder names reach titles and captions as text
    return explain_images(onnx_path, images, mean=spec.mean, std=spec.std, class_names=names, patch=8, stride=4,
                          out=out, progress=False, **kwargs)


def test_naive_and_exact_maps_are_equal_and_summary_round_trips(tmp_path, exported, test_images):
    onnx_path, spec = exported
    images = _inputs(test_images)
    exact = _explain(onnx_path, spec, images, tmp_path / "exact", mode="exact", classes=(0, 1))
    naive = _explain(onnx_path, spec, images, tmp_path / "naive", mode="naive", classes=(0, 1))

    assert [m.class_ for image in exact.images for m in image.maps] == [0, 1, 0, 1]
    assert exact.classes[0] == HOSTILE and exact.run is None and exact.tuning is None
    for (ie, me), (i_n, mn) in zip(exact.all_maps(), naive.all_maps()):
        a, b = np.load(tmp_path / "exact" / me.npy), np.load(tmp_path / "naive" / mn.npy)
        assert a.shape == (15, 15) and np.allclose(a, b, atol=1e-5)
        assert (me.min, me.max) == (float(a.min()), float(a.max()))
        assert me.flat == (a.max() - a.min() < 0.05)
        assert (tmp_path / "exact" / me.png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ie.predicted == i_n.predicted and ie.probabilities == pytest.approx(i_n.probabilities, abs=1e-5)
        assert ie.macs < ie.naive_macs == i_n.macs and ie.modelled_speedup == pytest.approx(ie.naive_macs / ie.macs)
    # typed round trip; summary.json is to_dict(), flat view included; timings only in timing.json
    assert ExplainRun.from_dict(exact.to_dict()) == exact
    summary = json.loads((tmp_path / "exact" / "summary.json").read_text())
    assert ExplainRun.from_dict(summary) == exact
    assert [(m["image"], m["class"], m["map_min"]) for m in summary["maps"]] == \
        [(i, m.class_, m.min) for i, image in enumerate(exact.images) for m in image.maps]
    assert summary["images"][0]["maps"][1]["class"] == 1 and "class_" not in json.dumps(summary)
    timing = json.loads((tmp_path / "exact" / "timing.json").read_text())
    assert [t["file"] for t in timing["images"]] == [i.name for i in images]
    # an existing output folder is refused before any work
    with pytest.raises(OutputExistsError):
        _explain(onnx_path, spec, images, tmp_path / "exact", mode="exact")


def test_approx_with_ssim_check_into_an_existing_stage_folder(tmp_path, exported, test_images):
    onnx_path, spec = exported
    images = _inputs(test_images, 3)
    folder = tmp_path / "stage"
    folder.mkdir()
    run = _explain(onnx_path, spec, images, folder, mode="approx", map_kind="logprob", tune_images=images,
                   check_ssim=True, staged=False, timing=False)
    assert run.tuning is not None and run.tuning.images == tuple(i.name for i in images)
    assert run.run == ApproxSettings(tau=run.tuning.tau, r_drill=run.tuning.r_drill,
                                     stage1_stride=run.tuning.stage1_stride, map_kind="logprob")
    for index in run.tuning.used_images:  # tuned on these very images: each reaches the bar
        assert run.images[index].maps[0].ssim_vs_exact >= run.tuning.required_ssim - 1e-9
    assert not (folder / "timing.json").exists() and (folder / "summary.json").is_file()
    assert read_explain(folder) == run == read_explain(folder / "summary.json")


def test_requests_are_checked_before_any_output(tmp_path, exported, test_images):
    onnx_path, spec = exported
    images = _inputs(test_images, 1)
    with pytest.raises(OcclusionError, match="approx mode only"):
        _explain(onnx_path, spec, images, tmp_path / "a", mode="exact", tau=0.5)
    with pytest.raises(OcclusionError, match="class 9 is out of range"):
        _explain(onnx_path, spec, images, tmp_path / "b", classes=(9,))
    with pytest.raises(OcclusionError, match="uint8 \\(3, 64, 64\\)"):
        _explain(onnx_path, spec, [ExplainInput("x.png", "0" * 64, image=np.zeros((3, 32, 32), np.uint8))],
                 tmp_path / "c")
    with pytest.raises(OcclusionError, match="map kind"):
        _explain(onnx_path, spec, images, tmp_path / "d", map_kind="heat")
    assert not any((tmp_path / d).exists() for d in "abcd")


def test_pick_explain_images_takes_correct_then_one_misclassified_per_class():
    labels = [0, 0, 0, 1, 1, 2]
    predictions = [0, 1, 0, 1, 1, 0]
    assert pick_explain_images(labels, predictions, 1) == [(0, "correct"), (1, "misclassified"), (3, "correct"),
                                                           (5, "misclassified")]


# ------------------------------------------------------------------------------- report section (no model)
def _hand_made_run() -> ExplainRun:
    maps = (ClassMap(class_=0, name=HOSTILE, npy="img00_a_c0.npy", png="img00_a_c0.png", min=-2.5, max=1.5,
                     flat=False, ssim_vs_exact=0.97),)
    image = ExplainedImage(file="a<b>.png", sha256="0" * 64, true_class=1, kind="misclassified", predicted=0,
                           probabilities=(0.75, 0.25), map_shape=(15, 15), macs=100, naive_macs=400,
                           modelled_speedup=4.0, maps=maps)
    tuning = Tuning(tau=0.8, r_drill=0.25, stage1_stride=8, target_ssim=0.9, margin=0.05, map_kind="logit",
                    min_ssim=0.96, mean_ssim=0.98, modelled_speedup=4.0, used_images=(0,), flat_images=((1, 0.01),),
                    images=("a<b>.png",), candidates=(TuningCandidate(0.8, 0.25, 8, 100, 4.0, (0.96,)),))
    return ExplainRun(onnx=OnnxFile("model.sim.onnx", "1" * 64), mode="approx", patch=16, stride=8, map_kind="logit",
                      patch_value=0.0, input_size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
                      classes=(HOSTILE, "rock & soil"), redundancy_ratio=3.0, check_ssim=True,
                      run=ApproxSettings(0.8, 0.25, 8, "logit"), tuning=tuning, images=(image,))


def test_hand_made_run_round_trips_through_json(tmp_path):
    from etdeploy.errors import ReportError
    from etdeploy.fileio import atomic_write_json

    run = _hand_made_run()
    assert ExplainRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    assert run.to_dict()["maps"][0]["class"] == 0 and run.to_dict()["maps"][0]["map_min"] == -2.5
    assert run.to_dict()["format"] == "etdeploy-explain"
    atomic_write_json(tmp_path / "summary.json", run.to_dict())
    assert read_explain(tmp_path) == run
    broken = run.to_dict()
    del broken["images"][0]["maps"][0]["class"]
    atomic_write_json(tmp_path / "broken.json", broken)
    with pytest.raises(ReportError, match="maps\\[0\\] lacks the field 'class'"):
        read_explain(tmp_path / "broken.json")
    broken["images"][0]["maps"][0]["class"] = "rock"
    atomic_write_json(tmp_path / "broken.json", broken, overwrite=True)
    with pytest.raises(ReportError, match="maps\\[0\\].class must be an integer"):
        read_explain(tmp_path / "broken.json")
    atomic_write_json(tmp_path / "other.json", {"format": "etdeploy-fit", "format_version": 1})
    with pytest.raises(ReportError, match="not an etdeploy explanation summary"):
        read_explain(tmp_path / "other.json")


def test_report_section_escapes_class_and_file_names():
    from etdeploy.report.record import Provenance, RunRecord
    from etdeploy.report.sections import explain as explain_section

    run = _hand_made_run()
    record = RunRecord(name="t", stages={"explain": run.to_dict()}, provenance=Provenance(),
                       assets={"explain/img00_a_c0.png": b"\x89PNG\r\n\x1a\n"})
    html = explain_section.section(record).body
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert "a&lt;b&gt;.png" in html and "rock &amp; soil" in html  # true class and file name escaped too
    assert "misclassified" in html and "SSIM vs exact 0.970" in html and "[-2.500, 1.500]" in html
    assert "τ = 0.8, r_drill = 0.25" in html and "(tuning maps asked for 0.95)" in html
    assert explain_section.section(RunRecord(name="t", stages={}, provenance=Provenance())) is None
