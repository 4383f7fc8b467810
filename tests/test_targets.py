"""Target profiles (completeness, schema errors) and fit analysis on hand-computable graphs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from etdeploy.errors import OnnxModelError, TargetProfileError
from etdeploy.targets import (
    CONFIDENCE_LEVELS,
    analyse_graph,
    default_targets_dir,
    fit_analysis,
    get_profile,
    load_profile,
    load_profiles,
    profile_from_dict,
)

EXPECTED_TARGETS = (
    "gr740", "hpsc", "jetson-orin-nano", "jetson-tx2", "myriad2", "rad5545", "rad750", "snapdragon801",
    "stm32h7", "zynq-us-a53",
)


def tiny_conv_gemm(batch="batch"):
    """input (b,1,4,4) -> Conv(2x1x3x3, bias 2) -> Relu -> Flatten -> Gemm(3x8, transB, bias 3) -> logits (b,3).

    By hand (batch 1): Conv MACC = 2*2*2 outputs x 9 = 72; Gemm = 3 x 8 = 24; total 96.
    Weights: 18 + 2 + 24 + 3 = 47 floats = 188 bytes; int8 estimate: 18 + 5 + 2*4 + 24 + 5 + 3*4 = 72.
    Tensors: input 64 B, conv 32 B, relu 32 B, flat 32 B, logits 12 B. Live per step:
    Conv {input, conv} 96; Relu {conv, relu} 64; Flatten {relu, flat} 64; Gemm {flat, logits} 44.
    Peak with I/O 96 (step 0); without I/O: 32, 64, 64, 32 -> 64 (step 1).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Flatten", ["relu"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def tiny_long_lived(width: int = 4):
    """x (1,4) -> A = Relu(x) -> B = Neg(A) -> C = Add(A, B). A stays live until step 2.

    16 B each. With I/O: step0 {x, A} 32, step1 {A, B} 32, step2 {A, B, C} 48 -> 48.
    Without I/O (x, C excluded): 16, 32, 32 -> 32.
    """
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["A"]), helper.make_node("Neg", ["A"], ["B"]),
             helper.make_node("Add", ["A", "B"], ["C"])]
    graph = helper.make_graph(nodes, "long", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [1, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def profile_dict(target_id: str = "stm32h7") -> dict:
    path = default_targets_dir() / f"{target_id}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_every_profile_loads_and_the_set_is_complete():
    profiles = load_profiles()
    assert tuple(sorted(profiles)) == EXPECTED_TARGETS
    for target_id, p in profiles.items():
        assert p.id == target_id == Path(p.path).stem
        assert p.confidence in CONFIDENCE_LEVELS
        assert p.source.strip() and p.sustained_macs_basis.strip()
        assert 0 < p.sustained_macs_per_s <= p.peak_macs_per_s
        assert p.ram_bytes >= p.model_ram_bytes >= 1024 and p.clock_hz >= 1e6 and p.cores >= 1
        assert p.supported_ops == ("*",) if p.ort_supported else "*" not in p.supported_ops


def test_profile_key_figures_match_targets_md():
    rad750, sd801, stm = get_profile("rad750"), get_profile("snapdragon801"), get_profile("stm32h7")
    assert rad750.ram_bytes == 256 * 2**20 and rad750.clock_hz == 200e6 and not rad750.ort_supported
    assert rad750.model_ram_bytes == 128 * 2**20 and "approx" in rad750.model_ram_basis
    assert sd801.ram_bytes == 2 * 2**30 and sd801.clock_hz == 2.26e9 and sd801.cores == 4 and sd801.ort_supported
    assert stm.ram_bytes == 2**20 and stm.flash_bytes == 2 * 2**20 and stm.weights_in_ram is False
    assert get_profile("myriad2").fp32 is False


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"drop": "ram_bytes"}, "ram_bytes", "required field missing"),
        ({"drop": "source"}, "source", "required field missing"),
        ({"rename": ("ram_bytes", "ram_mb")}, "ram_mb", "use 'ram_bytes'"),
        ({"rename": ("clock_hz", "clock_mhz")}, "clock_mhz", "use 'clock_hz'"),
        ({"rename": ("clock_hz", "clock")}, "clock", "use 'clock_hz'"),
        ({"set": ("ram_bytes", "1 MB")}, "ram_bytes", "got str"),
        ({"set": ("clock_hz", 480)}, "clock_hz", "is the unit MHz"),
        ({"set": ("ram_bytes", 1)}, "ram_bytes", "is the unit MB"),
        ({"set": ("cores", True)}, "cores", "got a boolean"),
        ({"set": ("confidence", "exact")}, "confidence", "datasheet, secondary, approx"),
        ({"set": ("sustained_macs_per_s", 1e12)}, "sustained_macs_per_s", "exceeds peak"),
        ({"set": ("model_ram_bytes", 2**21)}, "model_ram_bytes", "exceeds the physical"),
        ({"drop": "model_ram_basis"}, "model_ram_basis", "required field missing"),
        ({"set": ("supported_ops", [])}, "supported_ops", "non-empty list"),
        ({"set": ("id", "other")}, "id", "differs from the file name"),
        ({"set": ("fancy", 1)}, "fancy", "unknown field"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path, change, field, words):
    data = profile_dict()
    if "drop" in change:
        data.pop(change["drop"])
    if "rename" in change:
        old, new = change["rename"]
        data[new] = data.pop(old)
    if "set" in change:
        key, value = change["set"]
        data[key] = value
    path = tmp_path / "stm32h7.toml"
    path.write_text(_to_toml(data), encoding="utf-8")
    with pytest.raises(TargetProfileError) as info:
        load_profile(path)
    assert f"field {field!r}" in str(info.value)
    assert words in str(info.value)
    assert info.value.path == str(path)


def test_profile_folder_errors(tmp_path):
    with pytest.raises(TargetProfileError, match="holds no"):
        load_profiles(tmp_path)
    (tmp_path / "bad.toml").write_text("id = [unterminated", encoding="utf-8")
    with pytest.raises(TargetProfileError, match="not valid TOML"):
        load_profiles(tmp_path)
    with pytest.raises(TargetProfileError, match="unknown target 'nope'"):
        get_profile("nope")


def _to_toml(data: dict) -> str:
    lines = []
    for key, value in data.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def test_fit_tiny_model_by_hand():
    a = analyse_graph(tiny_conv_gemm())
    assert [(r.op, r.macc, r.params, r.output_shape) for r in a.layers] == [
        ("Conv", 72, 20, (1, 2, 2, 2)), ("Relu", 0, 0, (1, 2, 2, 2)), ("Flatten", 0, 0, (1, 8)),
        ("Gemm", 24, 27, (1, 3)),
    ]
    assert a.total_macc == 96
    assert a.parameters == 47 and a.weights_bytes_fp32 == 188 and a.weights_bytes_int8 == 72
    assert (a.input_bytes, a.output_bytes) == (64, 12)
    assert (a.peak_ram_bytes, a.peak_ram_step) == (96, 0)
    assert (a.peak_activation_bytes, a.peak_activation_step) == (64, 1)
    assert a.ops == ("Conv", "Flatten", "Gemm", "Relu")


def test_liveness_keeps_a_tensor_until_its_last_consumer():
    a = analyse_graph(tiny_long_lived())
    assert a.peak_ram_bytes == 48 and a.peak_ram_step == 2
    assert a.peak_activation_bytes == 32
    assert a.total_macc == 0 and a.weights_bytes_fp32 == 0


def test_fit_verdicts_and_margins():
    model = tiny_conv_gemm()
    ok = fit_analysis(model, get_profile("stm32h7"))
    assert ok.fits
    ram = {c.resource: c for c in ok.checks}["ram"]
    assert ram.need == 96 and ram.available == 2**19 and ram.margin == 2**19 - 96  # weights stay in flash
    flash = {c.resource: c for c in ok.checks}["flash"]
    assert flash.need == 188 and flash.status == "fits"
    assert ok.latency_s == pytest.approx(96 / 120e6) and ok.latency_lower_bound_s == pytest.approx(96 / 480e6)

    data = profile_dict("rad750")
    data.update(ram_bytes=2048, model_ram_bytes=2048, supported_ops=["Conv", "Gemm"])
    small = profile_from_dict(data)
    report = fit_analysis(model, small, deadline_s=1e-9)
    checks = {c.resource: c for c in report.checks}
    assert not report.fits
    assert checks["ram"].status == "fits" and checks["ram"].need == 96 + 188  # weights loaded into RAM
    assert report.unsupported_ops == ("Flatten", "Relu") and checks["ops"].status == "does not fit"
    assert checks["latency"].status == "does not fit"
    data.update(flash_bytes=100)
    tight = fit_analysis(model, profile_from_dict(data))
    flash = {c.resource: c for c in tight.checks}["flash"]
    assert flash.status == "does not fit" and flash.margin == 100 - 188 and "short by" in flash.detail

    data.update(ram_bytes=8192, model_ram_bytes=4096)
    big = fit_analysis(tiny_long_lived(512), profile_from_dict(data))  # 3 live tensors of 2048 B
    ram = {c.resource: c for c in big.checks}["ram"]
    assert ram.need == 3 * 2048 and ram.status == "does not fit" and ram.margin == 4096 - 6144

    myriad = fit_analysis(model, get_profile("myriad2"))
    checks = {c.resource: c for c in myriad.checks}
    assert checks["precision"].status == "does not fit" and checks["flash"].status == "n/a"
    assert not myriad.fits
    text = ok.text()
    assert "id | op" in text and "% MACC" in text and "overall: FITS on stm32h7" in text
    doc = ok.to_dict()
    assert doc["analysis"]["total_macc"] == 96 and doc["fits"] is True


def test_fit_cli_json_and_text(tmp_path):
    import onnx

    from etdeploy.cli.main import main

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_conv_gemm(), str(path))
    out = tmp_path / "out.txt"
    from click.testing import CliRunner

    from etdeploy.cli.main import cli

    result = CliRunner().invoke(cli, ["fit", "--onnx", str(path), "--target", "rad750", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["analysis"]["total_macc"] == 96 and doc["target"]["id"] == "rad750"
    assert doc["latency_s"] == pytest.approx(96 / 50e6)
    result = CliRunner().invoke(cli, ["fit", "--onnx", str(path), "--target", "rad750", "--target", "snapdragon801"])
    assert result.exit_code == 0
    assert "target: rad750" in result.output and "target: snapdragon801" in result.output
    result = CliRunner().invoke(cli, ["targets", "list"])
    assert result.exit_code == 0 and all(t in result.output for t in EXPECTED_TARGETS)
    assert main(["fit", "--onnx", str(tmp_path / "missing.onnx"), "--target", "rad750"]) == 2
    assert main(["fit", "--onnx", str(path), "--target", "nope"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"] and not out.exists()


def test_fit_refuses_unknown_shapes(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "m"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxModelError, match="static shape"):
        analyse_graph(model)
