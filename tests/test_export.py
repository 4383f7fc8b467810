"""Export -> checker -> onnxsim on alexnet-mini (trained), a sliced alexnet-mini and a vgg-style CNN."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.errors import ExportError, OutputExistsError
from etdeploy.export import ExportConfig, export_model, load_export_manifest, op_histogram
from etdeploy.fileio import sha256_file
from etdeploy.models import build_model, count_parameters, masks, with_masks, without_masks
from etdeploy.onnx_safety import load_onnx_checked, ort_max_ir_version
from etdeploy.ort_session import make_session

ALEXNET_MINI_OPS = {"Conv": 5, "Flatten": 1, "Gemm": 3, "LRN": 2, "MaxPool": 3, "Relu": 7}


def hand_slice_hidden(masked, name: str):
    """Reference slicer for one hidden layer: drop rows of its Linear and columns of the next one."""
    from etdeploy.models import get_dense_layer

    layer = get_dense_layer(masked, name)
    keep = torch.tensor(masks(masked)[name].kept, dtype=torch.long)
    sliced = without_masks(copy.deepcopy(masked))
    linears = [i for i, m in enumerate(sliced.classifier) if isinstance(m, nn.Linear)]
    k = int(name.removeprefix("dense"))
    first, second = sliced.classifier[linears[k - 1]], sliced.classifier[linears[k]]
    new1 = nn.Linear(first.in_features, len(keep))
    new2 = nn.Linear(len(keep), second.out_features)
    with torch.no_grad():
        new1.weight.copy_(first.weight[keep]), new1.bias.copy_(first.bias[keep])
        new2.weight.copy_(second.weight[:, keep]), new2.bias.copy_(second.bias)
    sliced.classifier[linears[k - 1]], sliced.classifier[linears[k]] = new1, new2
    assert layer.width == first.out_features
    return sliced.eval()


def ort_logits(path, x: np.ndarray) -> np.ndarray:
    return make_session(load_onnx_checked(path)).run(["logits"], {"input": x})[0]


def gemm_weight_shapes(path) -> list[tuple[int, ...]]:
    model = load_onnx_checked(path)
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type == "Gemm"]


def test_export_trained_alexnet_mini(trained_mini, tmp_path):
    result = export_model(trained_mini, tmp_path / "e1")
    manifest = json.loads((tmp_path / "e1" / "export.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    for name in ("model.onnx", "model.sim.onnx"):
        info = manifest["files"][name]
        assert info["op_histogram"] == ALEXNET_MINI_OPS
        assert info["sha256"] == sha256_file(tmp_path / "e1" / name)
        assert info["bytes"] == (tmp_path / "e1" / name).stat().st_size
        assert info["parameters"] == count_parameters(trained_mini) == 462_277
        assert info["opset"] == 17 and 8 <= info["ir_version"] <= ort_max_ir_version()
        assert info["inputs"] == [{"name": "input", "elem_type": "float", "shape": ["batch", 3, 64, 64]}]
        assert info["outputs"] == [{"name": "logits", "elem_type": "float", "shape": ["batch", 5]}]
    assert manifest["simplification_check"]["max_abs_logit_delta"] <= 1e-5
    assert manifest["model"]["mean"] == list(trained_mini.spec.mean)

    # dynamic batch: 3 images through both files equal torch within 1e-5
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = trained_mini(x).numpy()
    for path in (result.onnx_path, result.sim_path):
        assert np.abs(ort_logits(path, x.numpy()) - ref).max() < 1e-5

    # deterministic: same model -> byte-identical files and manifest
    export_model(trained_mini, tmp_path / "e2")
    for name in ("model.onnx", "model.sim.onnx", "export.json"):
        assert (tmp_path / "e1" / name).read_bytes() == (tmp_path / "e2" / name).read_bytes()
    assert load_export_manifest(tmp_path / "e1")["files"] == manifest["files"]

    # never overwrite without force; with force it replaces
    with pytest.raises(OutputExistsError):
        export_model(trained_mini, tmp_path / "e1")
    export_model(trained_mini, tmp_path / "e1", force=True)


def test_export_manifest_detects_tampering(trained_mini, tmp_path):
    model = build_model("sequential-cnn", 3, layers="c4k3p1-r-m2", hidden=(8,))
    export_model(model, tmp_path / "e")
    assert load_export_manifest(tmp_path / "e")["model"]["arch"] == "sequential-cnn"
    data = bytearray((tmp_path / "e" / "model.onnx").read_bytes())
    data[-1] ^= 1
    (tmp_path / "e" / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="SHA-256"):
        load_export_manifest(tmp_path / "e")


def test_export_sliced_alexnet_mini(trained_mini, tmp_path):
    from etdeploy.pruning.slicing import slice_model

    masked = with_masks(copy.deepcopy(trained_mini))
    m = masks(masked)
    m["dense1"].set_kept(range(0, 256, 2))      # keep 128 of 256
    m["dense2"].set_kept(range(64))          # keep 64 of 256
    sliced, _record = slice_model(masked)
    result = export_model(sliced, tmp_path / "e")
    assert gemm_weight_shapes(result.sim_path) == [(128, 576), (64, 128), (5, 64)]
    info = result.manifest["files"]["model.sim.onnx"]
    assert info["op_histogram"] == ALEXNET_MINI_OPS
    # dense part 576*128+128 + 128*64+64 + 64*5+5 = 82,437 instead of 214,789
    assert info["parameters"] == count_parameters(sliced) == 462_277 - 214_789 + 82_437
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = masked(x).numpy()
    assert np.abs(ort_logits(result.sim_path, x.numpy()) - ref).max() < 1e-5

    hand = hand_slice_hidden(_only(masked, "dense1"), "dense1")
    result = export_model(hand, tmp_path / "hand")
    assert gemm_weight_shapes(result.onnx_path) == [(128, 576), (256, 128), (5, 256)]


def _only(masked, name):
    out = copy.deepcopy(masked)
    for other, mask in masks(out).items():
        if other != name:
            mask.reset()
    return out


def test_export_vgg_style_random_model(tmp_path):
    model = build_model("sequential-cnn", 4, input_size=32, seed=3,
                        layers="c8k3p1-r-c8k3p1-r-m2-c16k3p1-r-c16k3p1-r-m2", hidden=(32, 16))
    result = export_model(model, tmp_path / "e")
    expected = {"Conv": 4, "Relu": 6, "MaxPool": 2, "Flatten": 1, "Gemm": 3}
    assert result.manifest["files"]["model.onnx"]["op_histogram"] == expected
    assert op_histogram(load_onnx_checked(result.sim_path)) == expected
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(ort_logits(result.sim_path, x) - ref).max() < 1e-5


def test_mask_policies(tmp_path):
    model = build_model("alexnet-mini", 5, seed=1)
    masked = with_masks(copy.deepcopy(model))
    masks(masked)["dense1"].set_kept(range(100))

    with pytest.raises(ExportError, match="slice it first") as info:
        export_model(masked, tmp_path / "refused")
    assert "dense1=156" in str(info.value)
    assert not (tmp_path / "refused").exists()

    with pytest.raises(ExportError, match="all-ones"):
        export_model(masked, tmp_path / "dropped", config=ExportConfig(masks="drop"))
    assert not (tmp_path / "dropped").exists()

    kept = export_model(masked, tmp_path / "kept", config=ExportConfig(masks="keep"))
    # one Mul by a constant 0/1 vector per mask (flatten, dense1, dense2); onnxsim then removes the
    # two all-ones multiplications and keeps dense1's
    assert kept.manifest["files"]["model.onnx"]["op_histogram"].get("Mul") == 3
    assert kept.manifest["files"]["model.sim.onnx"]["op_histogram"].get("Mul") == 1
    assert gemm_weight_shapes(kept.sim_path) == [(256, 576), (256, 256), (5, 256)]  # full widths kept
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = masked.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(ort_logits(kept.sim_path, x) - ref).max() < 1e-5

    ones = with_masks(copy.deepcopy(model))
    dropped = export_model(ones, tmp_path / "ones", config=ExportConfig(masks="drop"))
    assert "Mul" not in dropped.manifest["files"]["model.onnx"]["op_histogram"]
    assert dropped.manifest["files"]["model.onnx"]["sha256"] == \
        export_model(model, tmp_path / "plain").manifest["files"]["model.onnx"]["sha256"]


def test_export_config_validation():
    with pytest.raises(ExportError, match="opset"):
        ExportConfig(opset=13)
    with pytest.raises(ExportError, match="masks policy"):
        ExportConfig(masks="ignore")


def test_export_cli(trained_mini_dir, tmp_path):
    from etdeploy.cli.main import main

    assert main(["export", "--model", str(trained_mini_dir), "--out", str(tmp_path / "e")]) == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["export.json", "model.onnx", "model.sim.onnx"]
    assert main(["export", "--model", str(trained_mini_dir), "--out", str(tmp_path / "e")]) == 2
    assert main(["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_int8_quantisation_reports_deltas(trained_mini, bundled_splits, tmp_path):
    from etdeploy.export.quantize import compare_int8, quantize_int8

    spec = trained_mini.spec
    result = export_model(trained_mini, tmp_path / "e")
    out = quantize_int8(result.sim_path, tmp_path / "q" / "model.int8.onnx", bundled_splits["train"].images[:64],
                        spec.mean, spec.std)
    hist = op_histogram(load_onnx_checked(out))
    assert hist["QuantizeLinear"] > 0 and hist["DequantizeLinear"] > 0 and hist["Conv"] == 5 and hist["Gemm"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.int8.onnx"]  # no temp files left
    with pytest.raises(OutputExistsError):
        quantize_int8(result.sim_path, out, bundled_splits["train"].images[:8], spec.mean, spec.std)
    test = bundled_splits["test"]
    cmp = compare_int8(result.sim_path, out, test.images, test.labels, spec.mean, spec.std)
    assert cmp.n == len(test.labels)
    assert cmp.bytes_int8 < cmp.bytes_fp32 / 3
    assert 0 < cmp.mean_abs_logit_delta <= cmp.max_abs_logit_delta and cmp.top1_agreement >= 0.8
    assert abs(cmp.accuracy_int8 - cmp.accuracy_fp32) <= 0.15


def test_quantize_cli_writes_int8_and_compares(trained_mini_dir, tmp_path, capsys):
    import json

    from etdeploy.cli.main import main

    assert main(["export", "--model", str(trained_mini_dir), "--out", str(tmp_path / "e")]) == 0
    capsys.readouterr()
    args = ["quantize", "--onnx", str(tmp_path / "e" / "model.sim.onnx"), "--model", str(trained_mini_dir),
            "--calibration-images", "40", "--out", str(tmp_path / "model.int8.onnx"), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration_images"] == 40 and report["split"] == "test" and report["n"] == 60
    assert report["bytes_int8"] < report["bytes_fp32"] / 3 and report["top1_agreement"] >= 0.8
    hist = op_histogram(load_onnx_checked(tmp_path / "model.int8.onnx"))
    assert hist["QuantizeLinear"] > 0 and hist["DequantizeLinear"] > 0
    before = (tmp_path / "model.int8.onnx").read_bytes()
    assert main(args) == 2  # refuses to overwrite
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "model.int8.onnx").read_bytes() == before
    assert main(args[:2] + [str(tmp_path / "missing.onnx")] + args[3:-3] + ["--out", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()
