"""Bad ONNX input: truncated/garbage files, unsafe external data, IR version too new."""

from __future__ import annotations

import os

import numpy as np
import pytest

from etdeploy.errors import OnnxModelError
from etdeploy.onnx_safety import (
    load_onnx_checked,
    ort_max_ir_version,
    probe_ort_load_in_subprocess,
    supported_ir_version,
)
from etdeploy.ort_session import make_session
from tests.test_targets import tiny_conv_gemm


def _save_with_external(folder, location="w.bin"):
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_conv_gemm()
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=location, size_threshold=0)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path))
    return path


def _relocate(path, new_location):
    """Rewrite every external-data location in ``path`` to ``new_location`` (without touching data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = new_location
    path.write_bytes(model.SerializeToString())


def test_valid_model_loads_and_runs(tmp_path):
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_conv_gemm(), str(path))
    model = load_onnx_checked(path)
    x = np.ones((2, 1, 4, 4), np.float32)
    y = make_session(model).run(None, {"input": x})[0]
    assert y.shape == (2, 3)
    probe_ort_load_in_subprocess(path)
    assert supported_ir_version() == min(onnx.IR_VERSION, ort_max_ir_version()) >= 8


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"this is not a protobuf at all \x00\xff\xfe" * 10, "not a valid ONNX"),
    ("truncate", "not a valid ONNX"),
])
def test_garbage_and_truncated_files(tmp_path, content, words):
    path = tmp_path / "bad.onnx"
    if content == "truncate":
        data = tiny_conv_gemm().SerializeToString()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(OnnxModelError, match=words) as info:
        load_onnx_checked(path)
    assert info.value.path == str(path)


def test_size_limit_and_missing(tmp_path):
    import onnx

    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_conv_gemm(), str(path))
    with pytest.raises(OnnxModelError, match="above the 100-byte limit"):
        load_onnx_checked(path, max_bytes=100)
    with pytest.raises(OnnxModelError, match="does not exist"):
        load_onnx_checked(tmp_path / "nope.onnx")
    with pytest.raises(OnnxModelError, match="not a regular file"):
        load_onnx_checked(tmp_path)


def test_external_data_inside_folder_is_accepted(tmp_path):
    path = _save_with_external(tmp_path / "m")
    model = load_onnx_checked(path)
    y = make_session(model).run(None, {"input": np.ones((1, 1, 4, 4), np.float32)})[0]
    assert y.shape == (1, 3)


@pytest.mark.parametrize("location, words", [
    ("../w.bin", "contains '..'"),
    ("sub/../../w.bin", "contains '..'"),
    ("/etc/passwd", "absolute path"),
    ("missing.bin", "does not exist"),
])
def test_external_data_outside_folder_is_refused(tmp_path, location, words):
    path = _save_with_external(tmp_path / "m")
    (tmp_path / "w.bin").write_bytes((tmp_path / "m" / "w.bin").read_bytes())
    _relocate(path, location)
    with pytest.raises(OnnxModelError, match=words):
        load_onnx_checked(path)


def test_external_data_through_symlink_is_refused(tmp_path):
    path = _save_with_external(tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.replace(tmp_path / "m" / "w.bin", outside / "w.bin")
    os.symlink(outside / "w.bin", tmp_path / "m" / "w.bin")
    with pytest.raises(OnnxModelError, match="symlink"):
        load_onnx_checked(path)
    # a symlinked directory on the way is refused as well
    os.unlink(tmp_path / "m" / "w.bin")
    os.symlink(outside, tmp_path / "m" / "data")
    _relocate(path, "data/w.bin")
    with pytest.raises(OnnxModelError, match="symlink"):
        load_onnx_checked(path)


def test_ir_version_too_new(tmp_path):
    model = tiny_conv_gemm()
    model.ir_version = ort_max_ir_version() + 1
    path = tmp_path / "new.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(OnnxModelError, match="newer than the installed onnxruntime"):
        load_onnx_checked(path)
    with pytest.raises(OnnxModelError):
        probe_ort_load_in_subprocess(path)


def test_checker_failure_is_reported(tmp_path):
    from onnx import helper

    model = tiny_conv_gemm()
    model.graph.node.append(helper.make_node("Relu", ["does_not_exist"], ["z"]))
    path = tmp_path / "broken.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(OnnxModelError, match="checker|checking"):
        load_onnx_checked(path)
