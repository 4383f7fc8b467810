"""Explanation stability (docs/method.md §12.3): occlusion maps of two ONNX models on the same images and their
SSIM, on small CNNs with known answers (the same model twice: SSIM exactly 1; one weight changed: below 1;
a constant model: SSIM undefined) and real bundled test images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.assurance.stability import (
    StabilityRun,
    explanation_stability,
    read_stability,
    stability_inputs,
)
from etdeploy.errors import OcclusionError
from etdeploy.fileio import canonical_json
from etdeploy.occlusion import ExplainInput, explain_images
from tests.test_occlusion import export_onnx

SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 5, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * 7 * 7, 5)).eval()


@pytest.fixture(scope="module")
def test_images(bundled):
    from etdeploy.data.images import load_split

    split = load_split(bundled.split("test")[:4], SIZE)
    return split, [ExplainInput(name=p.name, sha256=str(i) * 64, image=split.images[i],
                                true_class=int(split.labels[i])) for i, p in enumerate(split.paths)]


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("stability")
    model = small_cnn()
    original = export_onnx(model, root / "original.onnx", SIZE)
    with torch.no_grad():
        model[0].weight[0, 0, 2, 2] += 0.5  # one weight of the first convolution changed
    changed = export_onnx(model, root / "changed.onnx", SIZE)
    return root, original, changed


def run(original, pruned, items, out=None, **kwargs) -> StabilityRun:
    return explanation_stability(original, pruned, items, mean=MEAN, std=STD, patch=6, stride=2,
                                 map_kind="logit", out=out, **kwargs)


def test_identical_models_give_ssim_exactly_one(onnx_pair, test_images, tmp_path):
    _root, original, _ = onnx_pair
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(original, copy)
    result = run(original, copy, test_images[1])
    assert [image.ssim for image in result.images] == [1.0] * 4
    assert result.min_ssim == 1.0 and result.median_ssim == 1.0
    assert all(i.original_range == i.pruned_range and not i.flat for i in result.images)
    assert result.mode == "exact" and result.original.sha256 == result.pruned.sha256


def test_a_changed_weight_gives_ssim_below_one(onnx_pair, test_images):
    _, original, changed = onnx_pair
    result = run(original, changed, test_images[1])
    scores = [image.ssim for image in result.images]
    assert all(s is not None and s < 1.0 for s in scores), scores
    assert result.min_ssim == min(scores) and result.median_ssim == float(np.median(scores))
    assert result.min_ssim > -1.0


def test_maps_are_the_executor_maps_of_the_mapped_class(onnx_pair, test_images, tmp_path):
    from etdeploy.data.images import normalise
    from etdeploy.occlusion import IncrementalOcclusionExecutor

    _, original, changed = onnx_pair
    classes = [3, 1, 0, 4]
    result = run(original, changed, test_images[1], out=tmp_path, classes=classes)
    assert [i.class_ for i in result.images] == classes
    ex = IncrementalOcclusionExecutor(changed, patch=6, stride=2, threads=1)
    for item, image, c in zip(test_images[1], result.images, classes):
        want = ex.run(normalise(item.image[None], MEAN, STD).numpy()[0], mode="exact").map("logit", c)
        got = np.load(tmp_path / image.pruned_npy)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert image.pruned_range == (float(got.min()), float(got.max()))
    assert (tmp_path / "stability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "stability.json").read_text()) == json.loads(canonical_json(result.to_dict()))
    assert read_stability(tmp_path) == result


def test_two_runs_write_identical_json(onnx_pair, test_images, tmp_path):
    _, original, changed = onnx_pair
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = run(original, changed, test_images[1], out=tmp_path / "a")
    b = run(original, changed, test_images[1], out=tmp_path / "b")
    assert canonical_json(a.to_dict()) == canonical_json(b.to_dict())
    assert (tmp_path / "a" / "stability.json").read_bytes() == (tmp_path / "b" / "stability.json").read_bytes()


def test_a_constant_original_map_has_no_ssim(onnx_pair, test_images, tmp_path):
    model = small_cnn()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()  # logits = the last layer's bias, whatever the image
    constant = export_onnx(model, tmp_path / "constant.onnx", SIZE)
    result = run(constant, onnx_pair[1], test_images[1][:2])
    assert [i.ssim for i in result.images] == [None, None]
    assert all("constant" in i.note and i.flat for i in result.images)
    assert result.min_ssim is None and result.median_ssim is None


def test_bad_inputs_are_refused(onnx_pair, test_images, tmp_path):
    _, original, changed = onnx_pair
    with pytest.raises(OcclusionError, match="map kind"):
        explanation_stability(original, changed, test_images[1], mean=MEAN, std=STD, map_kind="heat")
    with pytest.raises(OcclusionError, match="2 classes for 4 images"):
        run(original, changed, test_images[1], classes=[0, 1])
    with pytest.raises(OcclusionError, match="out of range"):
        run(original, changed, test_images[1][:1], classes=[7])
    other = export_onnx(small_cnn(), tmp_path / "other.onnx", SIZE)
    bigger = nn.Sequential(nn.Conv2d(3, 6, 5, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                           nn.Linear(6 * 15 * 15, 5)).eval()
    with pytest.raises(OcclusionError, match="square image size"):
        run(other, export_onnx(bigger, tmp_path / "bigger.onnx", 64), test_images[1][:1])
    with pytest.raises(OcclusionError, match="does not exist"):
        run(original, changed, test_images[1][:1], out=tmp_path / "missing")


def test_stability_inputs_finds_the_explained_images(onnx_pair, bundled, tmp_path):
    from etdeploy.data.images import load_split
    from etdeploy.fileio import sha256_file

    split = load_split(bundled.split("test")[:6], SIZE)
    picked = [ExplainInput(name=split.paths[i].name, sha256=sha256_file(split.paths[i]), image=split.images[i],
                           true_class=int(split.labels[i]), kind="correct") for i in (4, 1)]
    explained = explain_images(onnx_pair[1], picked, mean=MEAN, std=STD, patch=6, stride=2, out=tmp_path / "maps",
                               progress=False, timing=False)
    items, classes = stability_inputs(explained, split)
    assert [i.name for i in items] == [split.paths[4].name, split.paths[1].name]
    assert all(np.array_equal(i.image, split.images[k]) for i, k in zip(items, (4, 1)))
    assert classes == [image.maps[0].class_ for image in explained.images]
    from etdeploy.errors import ReportError

    with pytest.raises(ReportError, match="not in the split"):
        stability_inputs(explained, load_split(bundled.split("test")[6:8], SIZE))


def test_report_section_renders_the_record(onnx_pair, test_images, tmp_path):
    from etdeploy.report.record import Provenance, RunRecord
    from etdeploy.report.sections import stability as stability_section

    _, original, changed = onnx_pair
    result = run(original, changed, test_images[1][:2], out=tmp_path)
    record = RunRecord(name="t", stages={"stability": result.to_dict()}, provenance=Provenance(),
                       assets={"stability/stability.png": (tmp_path / "stability.png").read_bytes()})
    section = stability_section.section(record)
    body = str(section.body)
    assert section.id == "stability" and body.count("<img") == 1 and "<table>" in body
    assert f"{result.min_ssim:.3f}" in body and test_images[1][0].name in body
    assert "explanation SSIM" in str(stability_section.cards(record)[0])
    off = RunRecord(name="t", stages={"stability": {"skipped": "turned off"}}, provenance=Provenance())
    assert "Not compared: turned off" in str(stability_section.section(off).body)


def test_a_map_too_small_for_ssim_is_recorded_not_refused(onnx_pair, test_images):
    _, original, changed = onnx_pair
    result = explanation_stability(original, changed, test_images[1][:1], mean=MEAN, std=STD, patch=16, stride=16)
    image = result.images[0]
    assert image.ssim is None and "too few for SSIM" in image.note and result.min_ssim is None
