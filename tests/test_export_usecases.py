"""Use cases of the export slice on real artefacts: export_dir, parity_from_dirs, quantize_model, fit_targets.

Each returns a typed record: the numbers and structure are checked, and so is the round trip
``X.from_dict(json(x.to_dict())) == x`` that lets ``etdeploy report`` rebuild a report from artefact folders.
The report sections are rendered from records built here (escaping included).
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from etdeploy.errors import DataError, ExportError, OutputExistsError, ParityError, ReportError, TargetProfileError
from etdeploy.export import (
    ExportRun,
    ExportSet,
    ParityRun,
    QuantizeRun,
    export_dir,
    export_model,
    parity_from_dirs,
    quantize_model,
    read_export,
    read_parity,
)
from etdeploy.fileio import canonical_json, sha256_file
from etdeploy.models import load_model, masks, save_model, weights_fingerprint, with_masks
from etdeploy.targets import FitRun, fit_onnx_file, fit_targets, get_profile, read_fit
from tests.test_export import ALEXNET_MINI_OPS
from tests.test_targets import EXPECTED_TARGETS, tiny_conv_gemm


def via_json(record) -> dict:
    """``record.to_dict()`` as it comes back from a JSON file (canonical_json: what stage.json holds)."""
    return json.loads(canonical_json(record.to_dict()))


@pytest.fixture(scope="module")
def exported(trained_mini_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("usecases") / "export"
    return export_dir(trained_mini_dir, out), out


@pytest.fixture(scope="module")
def pruned_dirs(trained_mini_dir, tmp_path_factory):
    """Masked (dense1 keeps 96, dense2 keeps 160) and sliced trained alexnet-mini, saved, and the slice's export."""
    from etdeploy.pruning.slicing import slice_model

    root = tmp_path_factory.mktemp("pruned")
    masked = with_masks(load_model(trained_mini_dir))
    m = masks(masked)
    m["dense1"].set_kept(range(0, 192, 2))
    m["dense2"].set_kept(range(32, 192))
    sliced, _record = slice_model(masked)
    save_model(masked, root / "masked")
    save_model(sliced, root / "sliced")
    export_model(sliced, root / "export")
    return root


# ----------------------------------------------------------------------------------------------- export


def test_export_dir_returns_the_manifest_it_writes(exported, trained_mini_dir):
    run, out = exported
    assert isinstance(run, ExportRun)
    assert json.loads((out / "export.json").read_text()) == via_json(run)
    assert read_export(out) == run
    assert ExportRun.from_dict(via_json(run)) == run
    for name, info in run.files.items():
        assert info.op_histogram == ALEXNET_MINI_OPS and info.parameters == 462_277
        assert info.sha256 == sha256_file(out / name) and info.bytes == (out / name).stat().st_size
    assert run.sim is run.files["model.sim.onnx"] and run.onnx is run.files["model.onnx"]
    model = load_model(trained_mini_dir)
    assert run.model.weights_fingerprint == weights_fingerprint(model)
    assert run.model.class_names == tuple(model.spec.class_names) and run.model.input_size == 64
    assert run.model.masks_policy == "refuse" and run.model.had_masks is False
    assert run.simplification_check.max_abs_logit_delta <= run.simplification_check.tolerance == 1e-5
    assert (run.format, run.format_version, run.opset) == ("etdeploy-export", 1, 17)
    pair = ExportSet({"original": run, "sliced": run})
    assert ExportSet.from_dict(via_json(pair)) == pair


def test_export_refusals_speak_the_interfaces_words(trained_mini, tmp_path):
    masked = with_masks(copy.deepcopy(trained_mini))
    masks(masked)["dense2"].set_kept(range(10))
    save_model(masked, tmp_path / "masked")
    with pytest.raises(ExportError) as info:
        export_dir(tmp_path / "masked", tmp_path / "out")
    message = str(info.value)
    assert "dense2=246" in message and "sliced/" in message and "keep" in message
    assert "etdeploy." not in message and "masks=" not in message and "NeuronMask" not in message
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "export.json").write_text('{"format": "etdeploy-export", "format_version": 1, '
                                                     '"files": {}}')
    with pytest.raises(ExportError, match="missing model.onnx"):
        read_export(tmp_path / "broken")


def test_incomplete_manifest_is_an_export_error_naming_the_file(exported, tmp_path):
    import shutil

    _, out = exported
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    doc = json.loads((copy_dir / "export.json").read_text())
    del doc["model"]["weights_fingerprint"]
    (copy_dir / "export.json").write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="weights_fingerprint") as info:
        read_export(copy_dir)
    assert info.value.path == str(copy_dir / "export.json")


# ----------------------------------------------------------------------------------------------- parity


def test_parity_from_dirs_four_way(pruned_dirs, bundled, tmp_path):
    from etdeploy.fileio import atomic_write_json

    run = parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", masked_dir=pruned_dirs / "masked",
                           dataset=bundled, split="val", progress=False)
    assert isinstance(run, ParityRun) and run.passed and run.split == "val"
    assert run.names == ("masked-torch", "sliced-torch", "onnx", "onnx-sim")
    assert run.kinds == {"masked-torch": "torch", "sliced-torch": "torch", "onnx": "onnx", "onnx-sim": "onnx"}
    assert run.n == len(bundled.split("val")) and len(run.pairs) == 6
    assert all(p.label_disagreements == 0 and p.max_abs_logit_delta <= 1e-5 for p in run.pairs)
    assert len(set(run.accuracy.values())) == 1
    doc = via_json(run)
    assert doc["passed"] is True and doc["split"] == "val" and doc["names"] == list(run.names)
    assert ParityRun.from_dict(doc) == run and doc["format"] == "etdeploy-parity"
    atomic_write_json(tmp_path / "parity.json", run.to_dict())
    assert read_parity(tmp_path / "parity.json") == run
    # without the masked model: three implementations, the torch one named "torch"
    three = parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", dataset=bundled, split="val",
                             reference_images=0, progress=False)
    assert three.names == ("torch", "onnx", "onnx-sim") and three.reference == {}


def test_parity_from_dirs_mismatch_and_preflight(pruned_dirs, bundled, trained_mini_dir):
    from etdeploy.data.images import load_split_images

    images = load_split_images(bundled, "test", 64, progress=False)
    # a tolerance no float32 runtime meets: the run comes back failed, or raises with the run attached
    run = parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", dataset=bundled, tol=1e-12,
                           reference_images=0, images=images, raise_on_mismatch=False)
    assert not run.passed and run.mismatches and run.n == len(images.labels)
    with pytest.raises(ParityError, match="parity mismatch") as info:
        parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", dataset=bundled, tol=1e-12,
                         reference_images=0, images=images)
    assert info.value.report == run
    # preflight: export of another model, data with other classes, images of another size
    with pytest.raises(DataError, match="weights fingerprint"):
        parity_from_dirs(trained_mini_dir, pruned_dirs / "export", dataset=bundled, images=images)
    with pytest.raises(DataError, match="differ from the model's"):
        parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", dataset=SimpleNamespace(classes=("a",)))
    small = SimpleNamespace(images=images.images[:, :, :32, :32], labels=images.labels)
    with pytest.raises(DataError, match="32 pixels"):
        parity_from_dirs(pruned_dirs / "sliced", pruned_dirs / "export", dataset=bundled, images=small)


# --------------------------------------------------------------------------------------------- quantize


def test_quantize_model_calibrates_on_spread_training_images(exported, trained_mini_dir, bundled, tmp_path):
    from etdeploy.export.quantize import calibration_samples

    picks = calibration_samples(bundled, 20)
    assert len(picks) == 20 and {s.label for s in picks} == set(range(len(bundled.classes)))
    _, out = exported
    run = quantize_model(out / "model.sim.onnx", trained_mini_dir, dataset=bundled, out=tmp_path / "q.onnx",
                         calibration_images=20, split="val")
    assert isinstance(run, QuantizeRun)
    assert (run.split, run.calibration_images, run.n) == ("val", 20, len(bundled.split("val")))
    assert run.int8 == str(tmp_path / "q.onnx") and run.bytes_int8 == (tmp_path / "q.onnx").stat().st_size
    assert run.bytes_int8 < run.bytes_fp32 / 3 and run.top1_agreement >= 0.8
    assert 0 < run.mean_abs_logit_delta <= run.max_abs_logit_delta
    assert QuantizeRun.from_dict(via_json(run)) == run
    before = (tmp_path / "q.onnx").read_bytes()
    with pytest.raises(OutputExistsError, match="refusing to overwrite"):
        quantize_model(out / "model.sim.onnx", trained_mini_dir, dataset=None, out=tmp_path / "q.onnx")
    assert (tmp_path / "q.onnx").read_bytes() == before
    with pytest.raises(DataError, match="differ from the model's"):
        quantize_model(out / "model.sim.onnx", trained_mini_dir, dataset=SimpleNamespace(classes=("a",)),
                       out=tmp_path / "other.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]


# -------------------------------------------------------------------------------------------------- fit


def test_fit_targets_one_file_many_targets(tmp_path):
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_conv_gemm(), str(path))
    run = fit_targets(path, ["rad750", "stm32h7"], deadline_s=1.0)
    assert isinstance(run, FitRun) and run.ids == ("rad750", "stm32h7") and list(run.models) == ["tiny.onnx"]
    model = run.models["tiny.onnx"]
    assert model.analysis.total_macc == 96 and model.analysis.weights_bytes_fp32 == 188
    assert model.model_file == {"name": "tiny.onnx", "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    rad = model.verdicts["rad750"]
    assert rad.latency_s == pytest.approx(96 / 50e6) and rad.fits and rad.int8_fits
    assert rad.check("latency").status == "fits" and rad.check("latency").available == 1.0
    # the per-(model, target) report is the one fit_onnx_file gives
    for target_id in run.ids:
        expected = fit_onnx_file(path, get_profile(target_id), deadline_s=1.0)
        assert run.report("tiny.onnx", target_id).to_dict() == expected.to_dict()
    doc = via_json(run)
    assert doc["models"]["tiny.onnx"]["verdicts"]["rad750"]["fits"] is True
    assert doc["targets"]["rad750"]["id"] == "rad750" and "path" not in doc["targets"]["rad750"]
    assert FitRun.from_dict(doc) == run


def test_fit_cli_writes_fit_json(tmp_path, capsys):
    import onnx

    from etdeploy.cli.main import main

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_conv_gemm(), str(path))
    out = tmp_path / "fit.json"
    assert main(["fit", "--onnx", str(path), "--target", "rad750", "--target", "stm32h7", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "target: rad750" in text and "target: stm32h7" in text and text.endswith(f"fit: {out}\n")
    assert read_fit(out) == fit_targets(path, ["rad750", "stm32h7"])
    before = out.read_bytes()
    assert main(["fit", "--onnx", str(path), "--target", "rad750", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and out.read_bytes() == before
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ReportError, match="not an etdeploy fit report"):
        read_fit(tmp_path / "other.json")


def test_fit_targets_variants_all_and_unknown_ids(tmp_path):
    import onnx

    onnx.save(tiny_conv_gemm(), str(tmp_path / "a.onnx"))
    onnx.save(tiny_conv_gemm(batch=1), str(tmp_path / "b.onnx"))
    run = fit_targets({"original": tmp_path / "a.onnx", "sliced": tmp_path / "b.onnx"}, ["all"])
    assert run.ids == EXPECTED_TARGETS and list(run.models) == ["original", "sliced"]
    assert run.fit_count("sliced") == run.fit_count("original") == sum(
        fit_onnx_file(tmp_path / "a.onnx", get_profile(t)).fits for t in EXPECTED_TARGETS)
    assert FitRun.from_dict(via_json(run)) == run
    with pytest.raises(TargetProfileError, match=r"unknown targets 'nope', 'zz'; known: gr740, hpsc"):
        fit_targets(tmp_path / "a.onnx", ["nope", "rad750", "zz"])
    with pytest.raises(TargetProfileError, match="unknown target 'nope'; known:"):
        fit_targets(tmp_path / "a.onnx", ["nope"])
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(Exception) as info:
        fit_targets(tmp_path / "bad.onnx", ["rad750"])
    assert getattr(info.value, "path", None) == str(tmp_path / "bad.onnx")


# ------------------------------------------------------------------------------------------ report views


def test_parity_and_fit_sections_render_typed_records_escaped(exported, tmp_path):
    import dataclasses

    import onnx

    from etdeploy.report.record import Provenance, RunRecord
    from etdeploy.report.sections import fit as fit_section
    from etdeploy.report.sections import parity as parity_section

    export, _ = exported
    onnx.save(tiny_conv_gemm(), str(tmp_path / "a.onnx"))
    fit = fit_targets({"original": tmp_path / "a.onnx", "<b>sliced</b>": tmp_path / "a.onnx"}, ["rad750"])
    from etdeploy.export.parity import PairResult

    parity = ParityRun(names=("torch", "<img src=x>"), kinds={"torch": "torch", "<img src=x>": "onnx"}, n=3,
                       tolerance=1e-5, accuracy={"torch": 1.0, "<img src=x>": 1.0},
                       pairs=(PairResult("torch", "<img src=x>", 2e-6, 0, 0, ()),), reference={"<img src=x>": 1e-6},
                       reference_images=2, reference_tolerance=1e-4, mismatches=(), split="test")
    sneaky = dataclasses.replace(export, files={k: dataclasses.replace(v, sha256="<script>" + v.sha256)
                                                for k, v in export.files.items()})
    record = RunRecord(name="r", stages={"export": ExportSet({"<i>v</i>": sneaky}).to_dict(),
                                         "parity": via_json(parity), "fit": via_json(fit)}, provenance=Provenance())
    body = parity_section.section(record).body
    assert "&lt;img src=x&gt;" in body and "<img src=x>" not in body
    assert "&lt;i&gt;v&lt;/i&gt;" in body and "&lt;script&gt;" in body and "<script>" not in body
    assert f"{export.sim.bytes:,}" in body and "Conv×5" in body
    assert "PASS" in "".join(parity_section.cards(record))
    body = fit_section.section(record).body
    assert "&lt;b&gt;sliced&lt;/b&gt;" in body and "<b>sliced</b>" not in body and "RAD750" in body
    assert "1/1" in "".join(fit_section.cards(record))
    empty = RunRecord(name="r", stages={}, provenance=Provenance())
    assert parity_section.section(empty) is None and fit_section.section(empty) is None
