"""Four-way parity (masked torch, sliced torch, ONNX, simplified ONNX) on the bundled images."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from etdeploy.errors import ParityError
from etdeploy.export import export_model
from etdeploy.export.parity import check_parity, compare_logits
from etdeploy.models import masks, save_model, with_masks, without_masks
from tests.test_export import hand_slice_hidden


@pytest.fixture()
def sliced_setup(trained_mini, tmp_path):
    """Masked trained alexnet-mini (flatten mask all ones, dense1 keeps 96,
    dense2 keeps 160), its slice via etdeploy.pruning, and the export of the slice."""
    from etdeploy.pruning.slicing import slice_model

    masked = with_masks(copy.deepcopy(trained_mini))
    m = masks(masked)
    m["dense1"].set_kept(range(0, 192, 2))
    m["dense2"].set_kept(range(32, 192))
    sliced, _record = slice_model(masked)
    result = export_model(sliced, tmp_path / "export")
    return masked, sliced, result


def test_four_way_parity_on_bundled_test_split(sliced_setup, bundled_splits):
    masked, sliced, result = sliced_setup
    split = bundled_splits["test"]
    spec = masked.spec
    report = check_parity({"masked-torch": masked, "sliced-torch": sliced, "onnx": result.onnx_path,
                           "onnx-sim": result.sim_path}, split.images, split.labels, spec.mean, spec.std)
    assert report.passed and report.mismatches == ()
    assert report.n == len(split.labels) > 0
    assert len(report.pairs) == 6
    for pair in report.pairs:
        assert pair.label_disagreements == 0 and pair.max_abs_logit_delta <= 1e-5
    accuracies = set(report.accuracy.values())
    assert len(accuracies) == 1
    with torch.no_grad():
        from etdeploy.data.images import normalise

        expected = float((masked(normalise(split.images, spec.mean, spec.std)).argmax(1).numpy()
                          == split.labels).mean())
    assert accuracies == {expected}
    assert set(report.reference) == {"onnx", "onnx-sim"} and report.reference_images == 2
    assert max(report.reference.values()) <= 1e-4 and report.reference_tolerance == 1e-4
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["passed"] is True and doc["names"] == ["masked-torch", "sliced-torch", "onnx", "onnx-sim"]
    assert "PASS" in report.table()


def test_parity_all_ones_masks_and_hand_slice(trained_mini, bundled_splits):
    split = bundled_splits["val"]
    spec = trained_mini.spec
    ones = with_masks(copy.deepcopy(trained_mini))
    plain = without_masks(copy.deepcopy(ones))
    masked = copy.deepcopy(ones)
    masks(masked)["dense1"].set_kept(range(50, 250))
    hand = hand_slice_hidden(masked, "dense1")
    report = check_parity({"ones": ones, "plain": plain}, split.images, split.labels, spec.mean, spec.std,
                          reference_images=0)
    assert report.pair("ones", "plain").max_abs_logit_delta == 0.0 and report.reference == {}
    report = check_parity({"masked": masked, "hand-sliced": hand}, split.images, split.labels, spec.mean, spec.std)
    assert report.pair("masked", "hand-sliced").max_abs_logit_delta <= 1e-5


def test_parity_collects_every_mismatch(trained_mini, bundled_splits):
    split = bundled_splits["test"]
    spec = trained_mini.spec
    broken = copy.deepcopy(trained_mini)
    with torch.no_grad():
        broken.classifier[-1].bias[0] += 100.0  # class 0 always wins
    nudged = copy.deepcopy(trained_mini)
    with torch.no_grad():
        nudged.classifier[-1].bias += 1e-3  # same labels, logits off by 1e-3
    with pytest.raises(ParityError) as info:
        check_parity({"good": trained_mini, "broken": broken, "nudged": nudged}, split.images, split.labels,
                     spec.mean, spec.std)
    report = info.value.report
    message = str(info.value)
    assert not report.passed
    assert "good vs broken: top-1 label differs" in message
    assert "broken vs nudged: top-1 label differs" in message
    assert "good vs nudged: |delta logit| up to 0.001" in message
    assert "good vs nudged: top-1" not in message
    logits = _logits(trained_mini, split, spec)
    n_not_class0 = int((np.argmax(logits, axis=1) != 0).sum())
    assert report.pair("good", "broken").label_disagreements == n_not_class0 > 0
    assert report.pair("good", "nudged").logit_violations == report.n
    # float32 logits: the nudge is 1e-3 up to a few ulps of the largest logit
    ulp = float(np.spacing(np.float32(np.abs(logits).max() + 1.0)))
    assert report.pair("good", "nudged").max_abs_logit_delta == pytest.approx(1e-3, abs=4 * ulp)
    # a looser tolerance accepts the nudge
    ok = check_parity({"good": trained_mini, "nudged": nudged}, split.images, split.labels, spec.mean, spec.std,
                      tol=2e-3)
    assert ok.passed


def _logits(model, split, spec):
    from etdeploy.data.images import normalise

    with torch.no_grad():
        return model(normalise(split.images, spec.mean, spec.std)).numpy()


def test_compare_logits_and_input_validation(trained_mini):
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    b = np.array([[1.0, 0.5], [0.0, 1.0 + 2e-5]], np.float32)
    delta, differ, violate = compare_logits(a, b, 1e-5)
    assert delta == pytest.approx(0.5) and differ.tolist() == [False, False] and violate.tolist() == [True, True]
    images = np.zeros((2, 3, 64, 64), np.uint8)
    spec = trained_mini.spec
    with pytest.raises(ParityError, match="at least two"):
        check_parity({"a": trained_mini}, images, np.zeros(2), spec.mean, spec.std)
    with pytest.raises(ParityError, match="uint8"):
        check_parity({"a": trained_mini, "b": trained_mini}, images.astype(np.float32), np.zeros(2), spec.mean,
                     spec.std)
    with pytest.raises(ParityError, match="labels"):
        check_parity({"a": trained_mini, "b": trained_mini}, images, np.zeros(3), spec.mean, spec.std)


def test_parity_cli(sliced_setup, tmp_path):
    from etdeploy.cli.main import main

    masked, sliced, result = sliced_setup
    save_model(masked, tmp_path / "masked")
    save_model(sliced, tmp_path / "sliced")
    out = tmp_path / "parity.json"
    code = main(["parity", "--model", str(tmp_path / "sliced"), "--export", str(result.out_dir), "--masked",
                 str(tmp_path / "masked"), "--split", "test", "--out", str(out), "--no-progress"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and doc["split"] == "test"
    assert doc["names"] == ["masked-torch", "sliced-torch", "onnx", "onnx-sim"]
    # refuses to overwrite; an export from another model is refused
    assert main(["parity", "--model", str(tmp_path / "sliced"), "--export", str(result.out_dir), "--split", "test",
                 "--out", str(out), "--no-progress"]) == 2
    assert main(["parity", "--model", str(tmp_path / "masked"), "--export", str(result.out_dir), "--split", "test",
                 "--no-progress"]) == 2


def test_reference_lrn_follows_the_onnx_spec_and_torch():
    import numpy as np
    import torch

    from etdeploy.export.parity import lrn_reference

    x = (np.random.default_rng(0).standard_normal((1, 8, 5, 5)) * 30).astype(np.float32)
    ours = lrn_reference(x, 5, 1e-4, 0.75, 2.0)
    ref = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, 1e-4, 0.75, 2.0).numpy()
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()
