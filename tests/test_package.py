"""``etdeploy package``: the flight bundle of a sliced alexnet-mini (trained on the bundled data), its C
checked against ONNX Runtime on real test images on the host and, under qemu-user, on PowerPC 750 and
ARMv7-A; reproducibility, refusals, and the harness's ability to fail (docs/method.md §10)."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from etdeploy.cli.main import main
from etdeploy.packaging import PackageRun, package_export, read_measured, read_package
from etdeploy.packaging.csource import ISA_KEYS, ISAS, isa
from etdeploy.packaging.toolchains import missing_tools, ulp_distance
from etdeploy.vocab import PACKAGE_ISAS

pytest.importorskip("emx_onnx_cgen", reason="the 'package' extra (emx-onnx-cgen) is not installed")
VECTORS = 2  # each vector costs ~3 s under qemu-ppc; the host check in the benchmark uses 16
TARGETS = ["stm32h7", "rad750", "gr740", "zynq-us-a53"]
CROSS = [k for k in ("ppc", "arm") if not missing_tools(isa(k))]


@pytest.fixture(scope="module")
def sliced_dirs(trained_mini_dir, tmp_path_factory) -> Path:
    """The trained alexnet-mini with dense1 keeping 96 and dense2 160 neurons, sliced (``sliced/``) and
    exported (``export/``)."""
    from etdeploy.export import export_model
    from etdeploy.models import load_model, masks, save_model, with_masks
    from etdeploy.pruning.slicing import slice_model

    masked = with_masks(load_model(trained_mini_dir))
    m = masks(masked)
    m["dense1"].set_kept(range(0, 192, 2))
    m["dense2"].set_kept(range(32, 192))
    sliced, _ = slice_model(masked)
    root = tmp_path_factory.mktemp("package")
    save_model(sliced, root / "sliced")
    export_model(sliced, root / "export")
    return root


@pytest.fixture(scope="module")
def sliced_export(sliced_dirs) -> Path:
    return sliced_dirs / "export"


@pytest.fixture(scope="module")
def int8_onnx(sliced_dirs, bundled) -> Path:
    """``etdeploy quantize``'s QDQ int8 copy of the sliced export (8 calibration images)."""
    from etdeploy.export import quantize_model

    out = sliced_dirs / "int8.onnx"
    quantize_model(sliced_dirs / "export" / "model.sim.onnx", sliced_dirs / "sliced", dataset=bundled, out=out,
                   calibration_images=8)
    return out


@pytest.fixture(scope="module")
def bundle(sliced_export, bundled, tmp_path_factory) -> tuple[PackageRun, Path]:
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    run = package_export(sliced_export, dataset=bundled, out=out, target_ids=TARGETS, vectors=VECTORS, isas=CROSS)
    return run, out


def test_bundle_layout_and_record(bundle, sliced_export):
    run, out = bundle
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["MANIFEST.sha256", "README.md", "c/Makefile", "c/etd_check.c", "c/etd_model.c", "c/etd_model.h",
                     "c/etd_model_data.c", "measured.json", "model.onnx", "ort/model.ort",
                     "ort/model.required_operators.config", "package.json", "vectors/expected.csv",
                     "vectors/expected_labels.i32", "vectors/expected_logits.f32", "vectors/inputs.f32",
                     "vectors/tolerance.txt"]
    assert json.loads((out / "package.json").read_text()) == json.loads(json.dumps(run.to_dict()))
    assert read_package(out) == run
    assert (out / "model.onnx").read_bytes() == (sliced_export / "model.sim.onnx").read_bytes()
    assert run.interface.input_shape == (1, 3, 64, 64) and run.interface.output_shape == (1, 5)
    assert run.vectors.count == VECTORS and run.vectors.tolerance == 1e-4
    source = (out / "c" / "etd_model.c").read_text()
    assert "malloc" not in source and "static float tmp0_" in source
    assert run.generator["static_activation_buffers"] == source.count("    static float tmp")
    readme = (out / "README.md").read_text()
    for words in ("## Interface", "`input`", "NCHW", "close-up rock", "etd_model(", "## Fit verdict per target",
                  "rad750", "MACs per inference"):
        assert words in readme
    assert str(out) not in readme and str(sliced_export) not in (out / "package.json").read_text()


def test_ort_format_model_for_the_ort_target(bundle):
    run, out = bundle
    assert run.targets["zynq-us-a53"].ort_supported and not run.targets["rad750"].ort_supported
    assert run.ort.status == "passed" and run.ort.vectors == VECTORS and run.ort.label_mismatches == 0
    assert run.ort.max_abs_logit_delta <= 1e-4
    config = (out / "ort" / "model.required_operators.config").read_text()
    assert "LRN" in config and "# - model.ort" in config and str(out) not in config  # no absolute path left
    assert tuple(line for line in config.splitlines() if not line.startswith("#")) == run.ort.operators
    assert "ort/model.ort" not in run.files and "ort/model.required_operators.config" in run.files
    assert "ort/model.ort" in (out / "MANIFEST.sha256").read_text()


def test_host_make_check_matches_ort(bundle, tmp_path):
    run, out = bundle
    host = run.checks["host"]
    assert host.status == "passed" and host.label_mismatches == 0 and host.max_abs_logit_delta <= 1e-4
    # the shipped Makefile, run as a user would; the harness's own logits agree with the vectors
    proc = subprocess.run(["make", "-s", "-C", str(out / "c"), f"BUILD={tmp_path}", "check"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"vectors {VECTORS} " in proc.stdout and proc.stdout.strip().endswith("PASS")
    c_logits = np.fromfile(tmp_path / "host" / "logits.f32", "<f4").reshape(VECTORS, 5)
    expected = np.fromfile(out / "vectors" / "expected_logits.f32", "<f4").reshape(VECTORS, 5)
    assert np.abs(c_logits - expected).max() <= 1e-4
    assert (c_logits.argmax(1) == np.fromfile(out / "vectors" / "expected_labels.i32", "<i4")).all()
    # and it can fail: one expected logit moved by 1e-3 is a violation, exit 1
    bad = tmp_path / "bad-vectors"
    shutil.copytree(out / "vectors", bad)
    logits = expected.copy()
    logits[1, 2] += 1e-3
    logits.astype("<f4").tofile(bad / "expected_logits.f32")
    proc = subprocess.run([str(tmp_path / "host" / "etd_check"), str(bad)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1 and "FAIL" in proc.stdout and "vector 1:" in proc.stderr


def test_manifest_verifies_with_sha256sum(bundle):
    _, out = bundle
    proc = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=out, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "MANIFEST.sha256").read_text().splitlines()}
    assert listed == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}


@pytest.mark.parametrize("key", ["ppc", "arm"])
def test_cross_check_under_qemu(bundle, key):
    if key not in CROSS:
        pytest.skip(f"{isa(key).cc} or {isa(key).runner} not installed (.ci/run installs them)")
    run, out = bundle
    check = run.checks[key]
    assert check.status == "passed", check.detail
    assert check.vectors == VECTORS and check.label_mismatches == 0 and check.max_abs_logit_delta <= 1e-4
    assert check.sizes.rodata >= 4 * run.parameters  # the fp32 weights are in .rodata
    assert check.sizes.bss > 0 and 0 < check.stack_bytes < 4096  # activations static, small stack
    assert read_measured(out).checks[key] == check


def test_bundles_are_byte_reproducible(sliced_export, bundled, tmp_path):
    outs = [tmp_path / name for name in ("a", "b")]
    for out in outs:
        package_export(sliced_export, dataset=bundled, out=out, target_ids=["rad750"], vectors=1, isas=())
    compare = filecmp.dircmp(*outs)
    files = sorted(p.relative_to(outs[0]).as_posix() for p in outs[0].rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(*outs, files, shallow=False)
    assert not mismatch and not errors and not compare.left_only and not compare.right_only
    assert len(match) == 15


def _op_model(path: Path) -> None:
    """(1, 3, 64, 64) -> Conv -> GlobalLpPool -> Flatten -> (1, 5): ORT runs it, the C generator cannot."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((5, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalLpPool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["logits"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_op_the_generator_cannot_emit_is_exit_2_naming_it(trained_mini_dir, tmp_path, capsys):
    _op_model(tmp_path / "lp.onnx")
    code = main(["package", "--onnx", str(tmp_path / "lp.onnx"), "--model", str(trained_mini_dir),
                 "--target", "rad750", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "GlobalLpPool" in err and "cannot emit" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lp.onnx"]


def test_existing_out_is_never_overwritten(sliced_export, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = main(["package", "--export", str(sliced_export), "--target", "rad750", "--out", str(tmp_path / "out")])
    assert code == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []
    code = main(["package", "--export", str(sliced_export), "--onnx", "x.onnx", "--target", "rad750",
                 "--out", str(tmp_path / "new")])
    assert code == 2 and "either --export" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_ulp_distance_counts_representable_floats():
    one = np.float32(1.0)
    assert ulp_distance(np.array([one]), np.array([np.nextafter(one, np.float32(2))])) == 1
    assert ulp_distance(np.array([-0.0], np.float32), np.array([0.0], np.float32)) == 0
    tiny = np.float32(1e-45)
    assert ulp_distance(np.array([-tiny]), np.array([tiny])) == 2


def test_isa_table_is_the_vocabulary():
    assert ISA_KEYS == PACKAGE_ISAS and ISAS[0].key == "host"


def test_fit_judges_the_int8_model_as_the_fp32_models_int8_estimate(sliced_export, int8_onnx):
    from etdeploy.targets import fit_targets

    run = fit_targets({"fp32": sliced_export / "model.sim.onnx", "int8": int8_onnx}, ["stm32h7", "rad750"])
    fp32, int8 = run.models["fp32"], run.models["int8"]
    assert (fp32.analysis.precision, int8.analysis.precision) == ("fp32", "int8")
    assert int8.analysis.parameters == fp32.analysis.parameters
    assert int8.analysis.total_macc == fp32.analysis.total_macc
    # LRN stays float in the QDQ graph, so the peak (two fp32 LRN-sized tensors) is the fp32 model's
    assert int8.analysis.peak_activation_bytes == fp32.analysis.peak_activation_bytes
    assert int8.analysis.weights_bytes_fp32 < 0.3 * fp32.analysis.weights_bytes_fp32  # stored int8
    # stored int8 has per-channel scales, the estimate one per tensor: a few kB apart
    weights_gap = int8.analysis.weights_bytes_fp32 - fp32.analysis.weights_bytes_int8
    assert 0 <= weights_gap < 0.03 * fp32.analysis.weights_bytes_int8
    for target in ("stm32h7", "rad750"):  # weights in flash / weights in RAM
        v8, v32 = int8.verdicts[target], fp32.verdicts[target]
        assert v8.unsupported_ops == () and v8.fits == v32.int8_fits and v8.int8_fits == v32.int8_fits
        gap = weights_gap if run.targets[target].weights_in_ram else 0
        assert v8.check("ram").need - v32.int8_checks[0].need == gap
    assert "runs dequantised in fp32" in int8.verdicts["rad750"].check("precision").detail


def test_int8_bundle_matches_int8_onnx_on_ort(int8_onnx, sliced_dirs, bundled, tmp_path):
    from etdeploy.packaging import package_onnx

    run = package_onnx(int8_onnx, sliced_dirs / "sliced", dataset=bundled, out=tmp_path / "b", target_ids=["stm32h7"],
                       vectors=VECTORS, isas=())
    host = run.checks["host"]
    assert run.interface.precision == "int8" and host.status == "passed"
    assert host.max_abs_logit_delta <= 1e-4 and host.label_mismatches == 0
    assert host.sizes.rodata < 0.3 * 4 * run.parameters  # weights stored as int8 in the C too
    assert (tmp_path / "b" / "model.onnx").read_bytes() == int8_onnx.read_bytes()


def test_fit_shows_the_bundles_measured_figures_beside_its_estimates(bundle, sliced_export):
    from etdeploy.targets import fit_targets

    run, out = bundle
    fit = fit_targets(out / "model.onnx", ["stm32h7"])
    measured = fit.models["model.onnx"].measured
    host = run.checks["host"].sizes
    assert measured["host"] == {"status": "passed", "stack_bytes": run.checks["host"].stack_bytes, **host.to_dict()}
    assert set(measured) == {k for k, c in run.checks.items() if c.sizes is not None}
    text = fit.report("model.onnx", "stm32h7").text()
    assert "measured in the flight bundle" in text and "host   ROM" in text
    # the same file outside a bundle (or a bundle of another file) has no measured figures
    assert fit_targets(sliced_export / "model.sim.onnx", ["stm32h7"]).models["model.sim.onnx"].measured is None


def test_report_section_renders_the_bundle_escaped(bundle):
    import dataclasses

    from etdeploy.report.record import Provenance, RunRecord
    from etdeploy.report.sections import package as package_section

    run, _ = bundle
    sneaky = dataclasses.replace(run, files={"<script>x</script>": "ab" * 32, **run.files})
    record = RunRecord(name="r", stages={"package": json.loads(json.dumps(sneaky.to_dict()))}, provenance=Provenance())
    body = package_section.section(record).body
    assert "&lt;script&gt;" in body and "<script>" not in body
    assert "PowerPC 750" in body or "ppc" not in run.checks
    assert run.files["c/etd_model.c"] in body and "ULP" in body
    assert f"{len(run.passed)}/{len(run.passed)}" in "".join(package_section.cards(record))
    skipped = RunRecord(name="r", stages={"package": {"skipped": "no <generator>"}}, provenance=Provenance())
    assert "no &lt;generator&gt;" in package_section.section(skipped).body
    assert package_section.section(RunRecord(name="r", stages={}, provenance=Provenance())) is None


def test_imported_keras_model_keeps_its_nhwc_softmax_interface(bundled, tmp_path):
    """An imported Keras CNN (raw-pixel NHWC input, softmax output): the bundle is called as the original."""
    from etdeploy.export import export_dir
    from etdeploy.importing import import_onnx_model

    keras = Path(__file__).parent / "fixtures" / "keras" / "keras_cnn.onnx"
    import_onnx_model(keras, tmp_path / "imported", scale=255, dataset=bundled, progress=False)
    export_dir(tmp_path / "imported", tmp_path / "export")
    run = package_export(tmp_path / "export", dataset=bundled, out=tmp_path / "b", target_ids=["rad750"],
                         vectors=VECTORS, isas=())
    i = run.interface
    assert (i.layout, i.output_kind, i.input_shape) == ("NHWC", "softmax", (1, 64, 64, 3))
    assert i.std == pytest.approx((1 / 255,) * 3) and i.mean == (0.0, 0.0, 0.0)  # raw pixels, as Keras took them
    host = run.checks["host"]
    assert host.status == "passed" and host.max_abs_logit_delta <= 1e-4 and host.label_mismatches == 0
    header = (tmp_path / "b" / "c" / "etd_model.h").read_text()
    assert "[restrict 1][64][64][3]" in header and "one probability per class" in (tmp_path / "b" / "README.md").read_text()
    inputs = np.fromfile(tmp_path / "b" / "vectors" / "inputs.f32", "<f4").reshape(VECTORS, 64, 64, 3)
    assert inputs.max() > 1.5 and np.abs(inputs - np.round(inputs)).max() < 1e-3  # pixel values 0..255, NHWC


def test_report_command_takes_a_bundle_folder(bundle, tmp_path, capsys):
    run, folder = bundle
    out = tmp_path / "report"
    assert main(["report", "--package", str(folder), "--no-data", "--out", str(out), "--no-progress"]) == 0
    assert "sections: package" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert doc["stages"]["package"] == json.loads(json.dumps(read_package(folder).to_dict()))
    assert doc["stages"]["package"]["files"] == run.files
    assert "Flight bundle" in (out / "report.html").read_text()
    assert main(["report", "--package", str(tmp_path / "nothing"), "--no-data", "--out", str(tmp_path / "r2")]) == 2
    assert "flight bundle (etdeploy package) does not exist" in capsys.readouterr().err
