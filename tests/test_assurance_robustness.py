"""Robustness evidence (docs/method.md §12.2): the rover-camera perturbations (severity 0 is the image, bit for
bit; seeded; each grows monotonically with severity) and the use case on the bundled test split (severity 0
reproduces the training's test accuracy exactly; two runs give byte-identical JSON and CSV)."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest

from etdeploy.assurance.perturb import (
    MAX_SEVERITY,
    PERTURBATIONS,
    REGISTRY,
    disk_kernel,
    line_kernel,
    perturb_image,
    perturb_images,
    severity_text,
)
from etdeploy.errors import ConfigError
from etdeploy.fileio import canonical_json
from etdeploy.vocab import PERTURBATIONS as VOCAB_PERTURBATIONS

LEVELS = range(MAX_SEVERITY + 1)


@pytest.fixture(scope="module")
def test_split(bundled_splits):
    return bundled_splits["test"]


def gradient_energy(images: np.ndarray) -> float:
    """Mean squared difference of horizontally and vertically adjacent pixels (high-frequency energy)."""
    x = images.astype(np.float64)
    return float((np.diff(x, axis=-1) ** 2).mean() + (np.diff(x, axis=-2) ** 2).mean())


def test_registry_matches_the_vocabulary_and_the_config_default():
    from etdeploy.pipeline.config import RobustnessConfig

    assert tuple(REGISTRY) == PERTURBATIONS == VOCAB_PERTURBATIONS
    assert set(RobustnessConfig().perturbations) <= set(PERTURBATIONS)
    assert all(severity_text(p, 0, 64) == "clean" for p in PERTURBATIONS)
    assert severity_text("defocus", 2, 128) == "disk radius 2.5 px"  # lengths scale with the image side


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_severity_zero_is_the_image_bit_for_bit(name, test_split):
    x = test_split.images
    y = perturb_images(x, name, 0, seed=3)
    assert y.dtype == np.uint8 and y.tobytes() == x.tobytes() and y is not x
    assert perturb_image(x[0], name, 0).tobytes() == x[0].tobytes()


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_perturbations_are_seeded_per_image(name, test_split):
    x = test_split.images[:8]
    a = perturb_images(x, name, 3, seed=1)
    b = perturb_images(x, name, 3, seed=1)
    assert a.dtype == np.uint8 and a.shape == x.shape and a.tobytes() == b.tobytes()
    assert a.tobytes() != x.tobytes()
    # an image is perturbed the same whichever images come with it (its randomness is that of its index)
    part = perturb_images(x[5:8], name, 3, seed=1, indices=[5, 6, 7])
    assert part.tobytes() == a[5:8].tobytes()
    other_seed = perturb_images(x, name, 3, seed=2)
    assert (other_seed.tobytes() != a.tobytes()) == (name in ("noise", "motion_blur"))


def test_noise_grows_with_severity(test_split):
    x = test_split.images
    spread = [float((perturb_images(x, "noise", s).astype(float) - x).std()) for s in LEVELS]
    assert spread[0] == 0.0 and all(a < b for a, b in itertools.pairwise(spread)), spread
    assert abs(float(perturb_images(x, "noise", 5).astype(float).mean() - x.mean())) < 2.0  # zero-mean noise


@pytest.mark.parametrize("name", ["defocus", "motion_blur"])
def test_blur_removes_high_frequency_energy(name, test_split):
    x = test_split.images
    energy = [gradient_energy(perturb_images(x, name, s)) for s in LEVELS]
    assert all(a > b for a, b in itertools.pairwise(energy)), energy
    assert energy[-1] < 0.5 * energy[0]
    means = [float(perturb_images(x, name, s).astype(float).mean()) for s in (0, MAX_SEVERITY)]
    assert abs(means[1] - means[0]) < 1.0  # a normalised kernel keeps the brightness


def test_brightness_contrast_and_jpeg_grow_with_severity(test_split):
    x = test_split.images
    mean = [float(perturb_images(x, "brightness", s).mean()) for s in LEVELS]
    assert all(a < b for a, b in itertools.pairwise(mean)), mean
    spread = [float(perturb_images(x, "contrast", s).astype(float).std(axis=(1, 2, 3)).mean()) for s in LEVELS]
    assert all(a > b for a, b in itertools.pairwise(spread)), spread
    error = [float(((perturb_images(x, "jpeg", s).astype(float) - x) ** 2).mean()) for s in LEVELS]
    assert error[0] == 0.0 and all(a < b for a, b in itertools.pairwise(error)), error


def test_kernels():
    for r in (0.75, 1.25, 3.5):
        k = disk_kernel(r)
        assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    assert np.count_nonzero(disk_kernel(0.75)) == 5  # the centre and its four neighbours
    horizontal = line_kernel(5.0, 0.0)
    assert horizontal.sum() == pytest.approx(1.0) and horizontal.shape == (7, 7)
    assert np.count_nonzero(horizontal.sum(axis=1)) == 1 and np.count_nonzero(horizontal[3]) == 5
    vertical = line_kernel(5.0, np.pi / 2)
    assert np.count_nonzero(vertical.sum(axis=0)) == 1


def test_bad_perturbation_requests_are_refused(test_split):
    x = test_split.images[:2]
    with pytest.raises(ConfigError, match="unknown perturbation 'rain'"):
        perturb_images(x, "rain", 1)
    with pytest.raises(ConfigError, match="severity"):
        perturb_images(x, "noise", MAX_SEVERITY + 1)
    with pytest.raises(ConfigError, match="uint8"):
        perturb_images(x.astype(np.float32), "noise", 1)
    with pytest.raises(ConfigError, match="seed"):
        perturb_image(x[0], "noise", 1, seed=-1)
    with pytest.raises(ConfigError, match="indices"):
        perturb_images(x, "noise", 1, indices=[0])


# ---------------------------------------------------------------------------------------------- use case
@pytest.fixture(scope="module")
def mini_onnx(trained_mini_dir, tmp_path_factory):
    from etdeploy.export import SIM_FILE, export_dir

    out = tmp_path_factory.mktemp("robust") / "export"
    export_dir(trained_mini_dir, out)
    return out / SIM_FILE


@pytest.fixture(scope="module")
def classifiers(trained_mini_dir, mini_onnx):
    from etdeploy.assurance.robustness import onnx_classifier, torch_classifier
    from etdeploy.models import load_model

    spec = load_model(trained_mini_dir).spec
    return [torch_classifier("original", trained_mini_dir),
            onnx_classifier("onnx", mini_onnx, mean=spec.mean, std=spec.std)]


def test_severity_zero_reproduces_the_training_accuracy_exactly(classifiers, trained_mini_dir, test_split,
                                                                tmp_path):
    from etdeploy.assurance.robustness import evaluate_robustness, robustness_csv
    from etdeploy.assurance.stats import wilson_interval

    metrics = json.loads((trained_mini_dir / "metrics.json").read_text())["evaluation"]["test"]
    runs = [evaluate_robustness(classifiers, test_split.images, test_split.labels, split="test", severities=(1, 3),
                                seed=0, missing={"int8": "not quantised in this test"}) for _ in range(2)]
    run = runs[0]
    assert canonical_json(runs[0].to_dict()) == canonical_json(runs[1].to_dict())
    assert robustness_csv(runs[0]) == robustness_csv(runs[1])
    assert run.severities == (0, 1, 3) and run.n == 60 == metrics["n"]
    assert len(run.cells) == len(PERTURBATIONS) * 3 * 2
    for name in PERTURBATIONS:
        for model in ("original", "onnx"):
            clean = run.cell(name, 0, model)
            assert clean.accuracy == metrics["accuracy"], (name, model)
            assert clean.changed == 0 and clean.n == 60
            assert (clean.low, clean.high) == tuple(round(v, 6) for v in wilson_interval(clean.correct, 60))
    assert run.clean("original").correct == run.cell("jpeg", 0, "original").correct
    assert [m.to_dict() for m in run.missing] == [{"name": "int8", "reason": "not quantised in this test"}]
    # the most severe noise and blur change some predictions of a 64-pixel CNN
    assert max(run.cell(p, 3, "original").changed for p in PERTURBATIONS) > 0
    for c in run.cells:
        assert c.low <= c.accuracy <= c.high and c.accuracy == round(c.correct / c.n, 6)
    rows = robustness_csv(run).splitlines()
    assert rows[0] == "perturbation,severity,setting,model,correct,n,accuracy,ci_low,ci_high,changed"
    assert len(rows) == 1 + len(run.cells) and rows[1].startswith("noise,0,clean,original,")


def test_a_cap_keeps_a_stratified_subset_perturbed_as_in_the_full_split(test_split):
    from etdeploy.assurance.robustness import evaluate_robustness

    forms = [brightness_classifier("bright")]
    full = evaluate_robustness(forms, test_split.images, test_split.labels, perturbations=("noise",), severities=(2,))
    capped = evaluate_robustness(forms, test_split.images, test_split.labels, perturbations=("noise",),
                                 severities=(2,), max_images=20)
    assert capped.n == 20 and capped.max_images == 20 and full.n == 60
    assert capped.images_sha256 != full.images_sha256
    assert np.bincount(test_split.labels[:20]).tolist() != [4] * 5  # a plain prefix would not be stratified
    from etdeploy.attribution.rank_dirs import stratified_subset

    keep = stratified_subset(test_split.labels, 20)
    assert np.bincount(test_split.labels[keep]).tolist() == [4] * 5
    noisy = perturb_images(test_split.images, "noise", 2)[keep]  # each kept image perturbed as in the full split
    predicted = (noisy.reshape(20, -1).mean(axis=1) > 127.5).astype(np.int64)
    assert capped.cell("noise", 2, "bright").correct == int((predicted == test_split.labels[keep]).sum())


def test_bad_use_case_requests_are_refused(test_split):
    from etdeploy.assurance.robustness import evaluate_robustness

    classifiers = [constant_classifier("a", 0), constant_classifier("b", 1)]
    x, y = test_split.images, test_split.labels
    with pytest.raises(ConfigError, match="perturbations"):
        evaluate_robustness(classifiers, x, y, perturbations=("noise", "noise"))
    with pytest.raises(ConfigError, match="severities"):
        evaluate_robustness(classifiers, x, y, severities=(0,))
    with pytest.raises(ConfigError, match="own name"):
        evaluate_robustness([classifiers[0], classifiers[0]], x, y)
    with pytest.raises(ConfigError, match="one label each"):
        evaluate_robustness(classifiers, x, y[:3])


def test_config_validation_and_turned_off_stages(tmp_path):
    from etdeploy.pipeline.config import RunConfig, config_from_dict
    from etdeploy.pipeline.stages.robustness import describe_robustness, run_robustness_stage
    from etdeploy.pipeline.stages.stability import describe_stability, run_stability_stage

    assert "robustness" not in RunConfig().to_dict() and "stability" not in RunConfig().to_dict()
    for bad, message in (({"perturbations": ["rain"]}, "perturbations"), ({"severities": [6]}, "1..5"),
                         ({"seed": -1}, "seed")):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"robustness": bad})
    ctx = SimpleNamespace(config=config_from_dict({"robustness": {"enabled": False}, "stability": {"enabled": False}}))
    summary = run_robustness_stage(ctx, tmp_path)
    assert summary == {"skipped": "turned off in the configuration ([robustness] enabled = false)"}
    assert describe_robustness(summary).startswith("not evaluated: turned off")
    summary = run_stability_stage(ctx, tmp_path)
    assert summary == {"skipped": "turned off in the configuration ([stability] enabled = false)"}
    assert describe_stability(summary).startswith("not compared: turned off")
    assert list(tmp_path.iterdir()) == []


def constant_classifier(name: str, label: int):
    from etdeploy.assurance.robustness import Classifier, FormInfo

    return Classifier(FormInfo(name=name, runtime="test", file=f"{name}.bin", sha256="0" * 64),
                      lambda images: np.full(len(images), label, dtype=np.int64))


def brightness_classifier(name: str):
    """Class 1 for images brighter than mid-grey, else 0: over-exposure flips it in a known direction."""
    from etdeploy.assurance.robustness import Classifier, FormInfo

    return Classifier(FormInfo(name=name, runtime="test", file=f"{name}.bin", sha256="1" * 64),
                      lambda images: (images.reshape(len(images), -1).mean(axis=1) > 127.5).astype(np.int64))


def test_known_answer_classifiers(test_split):
    from etdeploy.assurance.robustness import evaluate_robustness

    labels = test_split.labels
    run = evaluate_robustness([constant_classifier("always0", 0), brightness_classifier("bright")],
                              test_split.images, labels, perturbations=("brightness", "contrast"),
                              severities=(1, 2, 5))
    share = round(float((labels == 0).sum()) / len(labels), 6)
    assert {c.accuracy for c in run.cells if c.model == "always0"} == {share}
    assert {c.changed for c in run.cells if c.model == "always0"} == {0}
    bright = [run.cell("brightness", s, "bright") for s in run.severities]
    mean = test_split.images.reshape(len(labels), -1).mean(axis=1)
    for s, cell in zip(run.severities, bright):
        from etdeploy.assurance.perturb import perturb_images

        predicted = perturb_images(test_split.images, "brightness", s).reshape(len(labels), -1).mean(axis=1) > 127.5
        assert cell.correct == int((predicted.astype(np.int64) == labels).sum())
        assert cell.changed == int((predicted != (mean > 127.5)).sum())
    assert bright[-1].changed > 0  # +2.5 stops turns dark images bright
    assert run.worst("always0").accuracy == share


def test_report_sections_render_the_records(test_split, tmp_path):
    from etdeploy.assurance.robustness import evaluate_robustness
    from etdeploy.report.record import Provenance, RunRecord
    from etdeploy.report.sections import robustness as robustness_section

    run = evaluate_robustness([constant_classifier("original", 0), constant_classifier("sliced<b>", 1)],
                              test_split.images[:10], test_split.labels[:10], perturbations=("jpeg", "noise"),
                              severities=(1,), missing={"int8": "no quantize stage"})
    record = RunRecord(name="t", stages={"robustness": run.to_dict()}, provenance=Provenance())
    section = robustness_section.section(record)
    body = str(section.body)
    assert section.id == "robustness" and "<img" in body and "<table>" in body
    assert "sliced&lt;b&gt;" in body and "sliced<b>" not in body  # escaped
    assert "no quantize stage" in body and "quality 40" in body
    assert "robustness" in str(robustness_section.cards(record)[0])
    off = RunRecord(name="t", stages={"robustness": {"skipped": "turned off"}}, provenance=Provenance())
    assert "Not evaluated: turned off" in str(robustness_section.section(off).body)
    assert robustness_section.cards(off) == []
    assert robustness_section.section(RunRecord(name="t", stages={}, provenance=Provenance())) is None
