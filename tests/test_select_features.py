"""SelectFeatures: physical removal of masked flatten positions (contract, serialisation, slicing,
export, fit analysis, occlusion, and the paper's Table 3 on alexnet-227)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.errors import ContractError, ModelError, PruningError
from etdeploy.models import (
    SelectFeatures,
    build_model,
    count_parameters,
    dense_layers,
    load_model,
    masks,
    save_model,
    split_model,
    weights_fingerprint,
    with_masks,
)
from etdeploy.pruning import apply_record, params_report, params_table, slice_model
from etdeploy.pruning.masking import kept_count
from etdeploy.pruning.params import dense_parameters

ATOL = 1e-5
SPEC = "c6k3p1-r-m2-c8k3p1-r-m2"  # 8 channels of 4x4 at input 16: flatten width 128


def small_model(seed: int = 3):
    return build_model("sequential-cnn", 3, input_size=16, seed=seed, layers=SPEC, hidden=(9, 5)).eval()


def masked_small(seed: int = 3):
    """Masks: channels 1 and 6 fully masked (removed), a scatter of positions of other channels masked."""
    model = with_masks(small_model(seed))
    keep = torch.ones(128)
    keep[16:32] = 0
    keep[96:112] = 0
    keep[torch.tensor([0, 5, 40, 41, 77, 127])] = 0
    masks(model)["flatten"].set_mask(keep)
    masks(model)["dense1"].set_kept([0, 3, 4, 8])
    masks(model)["dense2"].set_kept([1, 2, 4])
    return model


def images(n: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_select_features_forward_and_validation():
    sel = SelectFeatures([1, 4, 6], 8)
    x = torch.arange(16.0).reshape(2, 8)
    assert torch.equal(sel(x), x[:, [1, 4, 6]])
    assert (sel.in_width, sel.out_width, sel.indices.dtype) == (8, 3, torch.int64)
    assert dict(sel.named_buffers()).keys() == {"indices"} and not list(sel.parameters())
    for bad, match in (([3, 1], "strictly increasing"), ([1, 1], "strictly increasing"), ([0, 8], r"\[0, 8\)"),
                       ([-1, 2], r"\[0, 8\)"), ([], "no feature")):
        with pytest.raises(ValueError, match=match):
            SelectFeatures(bad, 8)
    with pytest.raises(ValueError, match="out_width"):
        SelectFeatures.placeholder(4, 5)


def test_slicing_drops_every_masked_position_exactly():
    model = masked_small()
    sliced, record = slice_model(model)
    assert record["conv"]["removed_channels"] == [1, 6]
    assert record["flatten_columns_zeroed"] == 0
    # 6 channels x 16 positions remain, 6 of them masked -> 90 selected (positions re-indexed after removal)
    orig = [0, 5, 40, 41, 77, 127]
    new_of = {0: 0, 2: 1, 3: 2, 4: 3, 5: 4, 7: 5}
    dropped = {new_of[q // 16] * 16 + q % 16 for q in orig}
    assert record["select"] == {"in_width": 96, "indices": [j for j in range(96) if j not in dropped]}
    sel, first = sliced.classifier[1], sliced.classifier[2]
    assert isinstance(sel, SelectFeatures) and (sel.out_width, first.in_features, first.out_features) == (90, 90, 4)
    assert dense_layers(sliced)[0].width == 90 and dense_layers(sliced)[0].select_index == 1
    x = images()
    with torch.no_grad():
        assert (sliced(x) - model(x)).abs().max().item() <= ATOL
    assert count_parameters(sliced.classifier) == dense_parameters([90, 4, 3], 3)
    report = params_report(model, sliced, record=record)
    assert report["total_cut"] == report["masked_dense_cut"] + 2 * (6 * 9 + 1)
    assert report["flatten_positions_selected"] == 90 and report["flatten_columns_zeroed"] == 0


def test_contract_with_select_masks_split_and_reslicing():
    sliced, _ = slice_model(masked_small())
    # masks go after the selection and have its width; H ends with it
    remasked = with_masks(copy.deepcopy(sliced))
    kinds = [type(m).__name__ for m in remasked.classifier][:4]
    assert kinds == ["Flatten", "SelectFeatures", "NeuronMask", "Linear"]
    assert masks(remasked)["flatten"].width == 90
    h, g = split_model(remasked, "flatten")
    x = images(2)
    with torch.no_grad():
        assert h(x).shape == (2, 90)
        assert torch.allclose(g(h(x)), sliced(x), atol=ATOL, rtol=0)
    # a second round: mask more flatten neurons (indices into the 90 selected) and slice again
    keep2 = [i for i in range(90) if i % 3 != 0]
    masks(remasked)["flatten"].set_kept(keep2)
    twice, record2 = slice_model(remasked)
    first_sel = sliced.classifier[1].indices
    assert twice.classifier[1].in_width == 96 and record2["conv"]["removed_channels"] == []
    assert twice.classifier[1].indices.tolist() == first_sel[torch.tensor(keep2)].tolist()
    with torch.no_grad():
        assert (twice(x) - remasked(x)).abs().max().item() <= ATOL
    # the selection must match the first Linear
    broken = copy.deepcopy(sliced)
    broken.classifier[1] = SelectFeatures(range(89), 96)
    with pytest.raises(ContractError, match="selects 89 features"):
        dense_layers(broken)
    # only right after the Flatten
    misplaced = copy.deepcopy(sliced)
    misplaced.classifier = nn.Sequential(*[misplaced.classifier[i] for i in (0, 2, 1)], *list(misplaced.classifier)[3:])
    with pytest.raises(ContractError):
        dense_layers(misplaced)


def test_save_load_roundtrip_and_bad_indices_are_refused(tmp_path):
    sliced, _ = slice_model(masked_small())
    save_model(sliced, tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "spec.json").read_text())
    assert doc["structure"]["classifier"][1] == {"type": "SelectFeatures", "in_width": 96, "out_width": 90}
    back = load_model(tmp_path / "m")
    assert torch.equal(back.classifier[1].indices, sliced.classifier[1].indices)
    assert weights_fingerprint(back) == weights_fingerprint(sliced)
    x = images(2)
    with torch.no_grad():
        assert torch.equal(back(x), sliced(x))
    # the fingerprint sees the indices
    other = copy.deepcopy(sliced)
    with torch.no_grad():
        other.classifier[1].indices[0] = 0  # position 0 was dropped; selecting it instead of 1
    assert weights_fingerprint(other) != weights_fingerprint(sliced)
    # a model whose indices were made invalid (out of range / unsorted) does not load
    for bad in (96, 0):
        broken = copy.deepcopy(sliced)
        with torch.no_grad():
            broken.classifier[1].indices[-1] = bad
        save_model(broken, tmp_path / f"bad{bad}")
        with pytest.raises(ModelError, match="SelectFeatures") as info:
            load_model(tmp_path / f"bad{bad}")
        assert str(info.value.path) == str(tmp_path / f"bad{bad}" / "model.safetensors")


def test_records_replay_the_selection_and_version_1_records_still_replay():
    plain = small_model()
    model = masked_small()
    sliced, record = slice_model(model)
    assert record["format_version"] == 2
    replay = apply_record(plain, record)
    assert weights_fingerprint(replay) == record["sliced_fingerprint"]
    assert torch.equal(replay.classifier[1].indices, sliced.classifier[1].indices)
    with pytest.raises(PruningError, match="other flatten positions"):
        apply_record(plain, {**record, "select": {"in_width": 96, "indices": [0, 1]}})
    with pytest.raises(PruningError, match="'select'"):
        apply_record(plain, {**record, "select": {"in_width": 96, "indices": "all"}})
    # a record written by the zeroing slicer (v1: no "select", another sliced fingerprint)
    v1 = {k: v for k, v in record.items() if k != "select"}
    v1.update(format_version=1, sliced_fingerprint="0" * 64, flatten_columns_zeroed=6)
    assert weights_fingerprint(apply_record(plain, v1)) == record["sliced_fingerprint"]


def test_export_parity_and_fit_analysis_of_a_sliced_model(tmp_path):
    import onnx

    from etdeploy.export import export_model
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session
    from etdeploy.targets.analysis import analyse_graph
    from etdeploy.targets.fit import fit_analysis
    from etdeploy.targets.profile import get_profile

    model = masked_small()
    sliced, _ = slice_model(model)
    result = export_model(sliced, tmp_path / "e")
    x = images(4, seed=5)
    with torch.no_grad():
        ref = model(x).numpy()
        mid = sliced(x).numpy()
    assert np.abs(mid - ref).max() <= ATOL
    for path in (result.onnx_path, result.sim_path):
        proto = load_onnx_checked(path)
        gathers = [n for n in proto.graph.node if n.op_type == "Gather"]
        assert len(gathers) == 1 and onnx.helper.get_attribute_value(gathers[0].attribute[0]) == 1
        index = next(t for t in proto.graph.initializer if t.name == gathers[0].input[1])
        assert index.data_type == onnx.TensorProto.INT64 and list(index.dims) == [90]
        out = make_session(proto).run(["logits"], {"input": x.numpy()})[0]
        assert np.abs(out - ref).max() <= ATOL and np.abs(out - mid).max() <= ATOL
    assert result.manifest["files"]["model.sim.onnx"]["op_histogram"]["Gather"] == 1
    a = analyse_graph(load_onnx_checked(result.sim_path))
    gather_row = next(r for r in a.layers if r.op == "Gather")
    assert (gather_row.macc, gather_row.params, gather_row.param_bytes, gather_row.output_shape) == (0, 0, 720, (1, 90))
    assert a.parameters == count_parameters(sliced) and a.index_elements == 90
    assert a.weights_bytes_fp32 == 4 * count_parameters(sliced) + 8 * 90
    assert fit_analysis(load_onnx_checked(result.sim_path), get_profile("stm32h7")).unsupported_ops == ()


def test_occlusion_exact_equals_naive_through_the_selection(tmp_path):
    from etdeploy.export import export_model
    from etdeploy.occlusion import IncrementalOcclusionExecutor

    sliced, _ = slice_model(masked_small(seed=7))
    result = export_model(sliced, tmp_path / "e")
    ex = IncrementalOcclusionExecutor(result.sim_path, patch=4, stride=3, batch_size=8)
    assert "Gather" in {n.op_type for n in ex.graph.suffix.graph.node}
    image = np.random.default_rng(1).standard_normal((3, 16, 16)).astype(np.float32)
    naive = ex.run(image, mode="naive", target_class=0)
    exact = ex.run(image, mode="exact", target_class=0)
    assert exact.map().shape == (5, 5)
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-4)
    assert float(np.ptp(naive.map())) > 0.0


@pytest.fixture(scope="module")
def alexnet_masked():
    return with_masks(build_model("alexnet", 5).eval())


@pytest.mark.parametrize("percent", [50, 95])
def test_alexnet_227_sliced_parameters_equal_table3(alexnet_masked, percent):
    """Sliced alexnet-227 = 58,301,829 - Table 3 dense cut - removed conv5 filters (384 x 3 x 3 + 1 each)."""
    model = alexnet_masked
    gen = torch.Generator().manual_seed(percent)  # a synthetic ranking: a random order per layer
    for layer in dense_layers(model):
        order = torch.randperm(layer.width, generator=gen)
        masks(model)[layer.name].set_kept(sorted(order[:kept_count(layer.width, percent)].tolist()))
    sliced, record = slice_model(model)
    (row,) = params_table("alexnet", 5, [percent])
    removed = len(record["conv"]["removed_channels"])
    assert count_parameters(model) == row["total"] == 58_301_829
    assert record["flatten_columns_zeroed"] == 0
    assert count_parameters(sliced) == 58_301_829 - row["params_cut"] - removed * (384 * 9 + 1)
    assert row["params_cut"] == {50: 40_908_800, 95: 54_416_659}[percent]
    flat_kept = kept_count(9216, percent)
    assert sliced.classifier[1].out_width == flat_kept == sliced.classifier[2].in_features
    assert sliced.classifier[1].in_width == (256 - removed) * 36
    if percent == 95:
        # ~0.95^36 of the 256 channels lose every position; this seed removes 34 of them
        assert removed == 34 and count_parameters(sliced) == 3_767_632
        x = images(2, size=227, seed=1)
        with torch.no_grad():
            assert (sliced(x) - model(x)).abs().max().item() <= ATOL
    else:
        assert removed == 0 and count_parameters(sliced) == 17_393_029
