"""Incremental occlusion executor: exact == naive, approximate modes, tuner, errors, op registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from etdeploy.errors import ContractError, OcclusionError, UnsupportedOpError
from etdeploy.models import build_model
from etdeploy.occlusion import (
    OP_HANDLERS,
    IncrementalOcclusionExecutor,
    grid_starts,
    map_ssim,
    map_values,
    occlusion_map,
    tune_approx,
)
from etdeploy.occlusion.drilldown import coincident_mask, drill_selection, interp_grid
from etdeploy.occlusion.graph import fold_lrn, load_onnx


def export_onnx(model: nn.Module, path, size: int, channels: int = 3) -> str:
    """The export recipe the issue prescribes (independent of etdeploy.export)."""
    x = torch.zeros(1, channels, size, size)
    torch.onnx.export(model.eval(), x, str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return str(path)


def random_image(size: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((channels, size, size)).astype(np.float32)


def all_positions(ex: IncrementalOcclusionExecutor, stride: int | None = None):
    plan = ex.plan(stride)
    ny, nx = plan.grid_shape
    return np.divmod(np.arange(ny * nx), nx)


@pytest.fixture(scope="module")
def mini_onnx(tmp_path_factory, trained_mini_dir):
    from etdeploy.models import load_model

    model = load_model(trained_mini_dir)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "mini.onnx", model.spec.input_size)
    return path, model


def test_grid_positions_follow_the_fit_rule():
    assert grid_starts(64, 16, 4).tolist() == list(range(0, 49, 4))
    assert len(grid_starts(227, 16, 4)) == (227 - 16) // 4 + 1 == 53
    assert grid_starts(10, 10, 3).tolist() == [0]
    assert grid_starts(20, 4, 7).tolist() == [0, 7, 14]


def test_lrn_decomposition_is_folded_into_one_node(mini_onnx):
    path, _ = mini_onnx
    raw = load_onnx(path)
    folded = fold_lrn(raw)
    ops = [n.op_type for n in folded.graph.node]
    assert ops.count("LRN") == 2
    assert "If" in [n.op_type for n in raw.graph.node] and "If" not in ops and "Pow" not in ops
    import onnxruntime as ort

    x = np.stack([random_image(64, s) for s in range(3)])
    a = ort.InferenceSession(raw.SerializeToString()).run(None, {"input": x})[0]
    b = ort.InferenceSession(folded.SerializeToString()).run(None, {"input": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_exact_equals_naive_on_trained_alexnet_mini(mini_onnx):
    path, model = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=4, batch_size=16)
    assert [op.op_type for op in ex.graph.ops].count("LRN") == 2
    image = random_image(64, 1)
    naive = ex.run(image, mode="naive")
    exact = ex.run(image, mode="exact")
    assert exact.shape == naive.shape == (15, 15)
    for kind in ("prob", "drop", "logprob"):
        np.testing.assert_allclose(exact.map(kind), naive.map(kind), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-5)
    # the map is a real function of the patch position, not a constant
    assert float(np.ptp(naive.map("logit"))) > 1e-3
    # and naive matches PyTorch on one occluded image (top-left and bottom-right corners)
    for iy, ix in ((0, 0), (14, 14)):
        x = image.copy()
        x[:, iy * 4:iy * 4 + 8, ix * 4:ix * 4 + 8] = 0.0
        with torch.no_grad():
            ref = model.eval()(torch.from_numpy(x[None]))[0].numpy()
        np.testing.assert_allclose(naive.logits[iy, ix], ref, atol=1e-4, rtol=1e-4)


def test_exact_equals_naive_on_vgg_style_model_with_stride_larger_than_patch(tmp_path):
    model = build_model("sequential-cnn", 4, input_size=40, seed=3,
                        layers="c8k3p1-r-c8k3p1-r-m2-c16k3p1-b-r-c16k3p1-r-m2-a3s1p1", hidden=(16,))
    path = export_onnx(model, tmp_path / "vgg.onnx", 40)
    image = random_image(40, 2)
    for patch, stride in ((6, 3), (4, 7), (40, 1)):
        ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=5)
        naive = ex.run(image, mode="naive", target_class=1)
        exact = ex.run(image, mode="exact", target_class=1)
        np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-5)
        assert exact.target == 1
    # (torch.onnx folds eval-mode BatchNorm into the preceding Conv, so no BatchNormalization node is left)
    assert {op.op_type for op in ex.graph.ops} >= {"Conv", "Relu", "MaxPool", "AveragePool"}


_LAYER = st.one_of(
    st.tuples(st.just("c"), st.integers(2, 6), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2)),
    st.tuples(st.just("m"), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1)),
    st.tuples(st.just("a"), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1)),
    st.tuples(st.sampled_from(["r", "l"])),
)


def _spec(layers) -> str:
    tokens = []
    for layer in layers:
        if layer[0] == "c":
            _, c, k, s, p = layer
            tokens.append(f"c{c}k{k}s{s}p{min(p, k - 1)}")
        elif layer[0] in "ma":
            kind, k, s, p = layer
            tokens.append(f"{kind}{k}s{s}p{min(p, k // 2)}")
        else:
            tokens.append(layer[0])
    return "-".join(tokens)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(_LAYER, min_size=1, max_size=5), size=st.integers(12, 36), patch=st.integers(1, 12),
       stride=st.integers(1, 9), seed=st.integers(0, 1000))
def test_exact_equals_naive_on_random_small_cnns(tmp_path, layers, size, patch, stride, seed):
    assume(patch <= size)
    spec = "c4k3s1p1-" + _spec(layers)
    try:
        model = build_model("sequential-cnn", 3, input_size=size, seed=seed, layers=spec, hidden=(8,))
    except (ContractError, RuntimeError):
        assume(False)
    path = export_onnx(model, tmp_path / f"cnn{seed}.onnx", size)
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=7)
    image = random_image(size, seed)
    naive = ex.run(image, mode="naive", target_class=0)
    exact = ex.run(image, mode="exact", target_class=0)
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-4)


def test_approx_with_tau_1_and_r_drill_1_equals_exact(mini_onnx):
    path, _ = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=4)
    image = random_image(64, 5)
    exact = ex.run(image, mode="exact")
    approx = ex.run(image, mode="approx", tau=1.0, r_drill=1.0, stage1_stride=8)
    np.testing.assert_array_equal(approx.logits, exact.logits)
    assert approx.macs == exact.macs < exact.naive_macs


def test_tau_shrinks_windows_and_cost(mini_onnx):
    path, _ = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2)
    full, clipped = ex.plan(2, 1.0), ex.plan(2, 0.4)
    assert all(c.win <= f.win for c, f in zip(clipped.steps_y, full.steps_y))
    assert any(c.win < f.win for c, f in zip(clipped.steps_y, full.steps_y))
    assert clipped.macs_per_position < full.macs_per_position
    image = random_image(64, 6)
    exact = ex.run(image, mode="exact")
    approx = ex.run(image, mode="approx", tau=0.4)
    assert approx.logits.shape == exact.logits.shape
    assert 0 < np.abs(approx.logits - exact.logits).max()


def test_drill_down_recomputes_the_requested_fraction(mini_onnx):
    path, _ = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2)
    image = random_image(64, 7)
    exact = ex.run(image, mode="exact")
    approx = ex.run(image, mode="approx", r_drill=0.25, stage1_stride=4)
    ny, nx = exact.shape
    coarse = grid_starts(64, 8, 4)
    coincident = coincident_mask(coarse, coarse, exact.starts_y, exact.starts_x)
    n_candidates = ny * nx - int(coincident.sum())
    assert int(approx.exact_mask.sum()) == int(coincident.sum()) + int(np.ceil(0.25 * n_candidates))
    # every computed position is exact; the rest are interpolated
    np.testing.assert_allclose(approx.logits[approx.exact_mask], exact.logits[approx.exact_mask], atol=1e-5)
    assert approx.macs < exact.macs


def test_stage_one_alone_interpolates_every_other_position(mini_onnx):
    path, _ = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2)
    image = random_image(64, 8)
    exact = ex.run(image, mode="exact")
    approx = ex.run(image, mode="approx", r_drill=0.0, stage1_stride=4)
    coarse = grid_starts(64, 8, 4)
    coincident = coincident_mask(coarse, coarse, exact.starts_y, exact.starts_x)
    assert approx.exact_mask.tolist() == coincident.tolist()
    np.testing.assert_allclose(approx.logits[coincident], exact.logits[coincident], atol=1e-5)
    # a fine position half-way between two coarse ones on a coarse row is their mean
    np.testing.assert_allclose(approx.logits[0, 1], (exact.logits[0, 0] + exact.logits[0, 2]) / 2, atol=1e-5)
    assert approx.macs == len(coarse) ** 2 * ex.plan(4, 1.0).macs_per_position
    with pytest.raises(OcclusionError, match=r"r_drill must be in \[0, 1\]"):
        ex.run(image, mode="approx", r_drill=-0.1)
    with pytest.raises(OcclusionError, match="unknown map kind"):
        ex.run(image, mode="approx", r_drill=0.5, map_kind="odds")


def test_drill_selection_follows_the_tuned_map_kind():
    # position (0, 1) moves the logit of class 0 most; (1, 0) moves its probability most (class 1 collapses)
    logits = np.zeros((2, 2, 2))
    logits[0, 1] = [-6.0, -9.0]
    logits[1, 0] = [-1.0, 3.0]
    none = np.zeros((2, 2), dtype=bool)
    by_logit = drill_selection(logits, np.zeros(2), 0, none, 0.25, "logit")
    by_prob = drill_selection(logits, np.zeros(2), 0, none, 0.25, "prob")
    assert by_logit.tolist() == [[False, True], [False, False]]
    assert by_prob.tolist() == [[False, False], [True, False]]


def test_interpolation_and_selection_are_consistent():
    coarse = np.arange(3 * 3 * 2, dtype=np.float64).reshape(3, 3, 2)
    cy = np.array([0, 4, 8])
    fine = interp_grid(coarse, cy, cy, np.arange(0, 11, 2), np.arange(0, 11, 2))
    assert fine.shape == (6, 6, 2)
    np.testing.assert_allclose(fine[::2, ::2][:3, :3], coarse)
    np.testing.assert_allclose(fine[1, 0], (coarse[0, 0] + coarse[1, 0]) / 2)
    np.testing.assert_allclose(fine[5, 5], coarse[2, 2])  # beyond the last coarse start: edge value
    logits = np.zeros((2, 2, 2))
    logits[1, 1, 0] = 3.0
    mask = drill_selection(logits, np.zeros(2), 0, np.zeros((2, 2), dtype=bool), 0.25)
    assert mask.tolist() == [[False, False], [False, True]]


def test_tuner_reaches_the_target_and_matches_the_real_run(mini_onnx, bundled_splits):
    from etdeploy.data.images import normalise

    path, model = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2, batch_size=32)
    test = bundled_splits["test"]
    images = normalise(test.images[:3], model.spec.mean, model.spec.std).numpy()
    tune = tune_approx(ex, list(images), target_ssim=0.9, map_kind="prob", taus=(1.0, 0.6),
                       r_drills=(0.5, 0.25, 0.1), stage1_factors=(2, 3))
    assert tune.min_ssim >= 0.9 + tune.margin and tune.margin == 0.05
    assert tune.modelled_speedup >= ex.naive_macs_per_position / ex.plan(2, 1.0).macs_per_position
    assert len(tune.used_images) + len(tune.flat) == 3
    assert all(rng < 0.05 for _, rng in tune.flat)
    assert len(tune.candidates) == 2 * (1 + 2 * 3)
    # the SSIM the tuner predicts is the SSIM of the real approximate run
    for position, index in enumerate(tune.used_images):
        exact = ex.run(images[index], mode="exact")
        approx = ex.run(images[index], **tune.run_kwargs())
        chosen = next(c for c in tune.candidates
                      if (c.tau, c.r_drill, c.stage1_stride) == (tune.tau, tune.r_drill, tune.stage1_stride))
        assert map_ssim(exact.map("prob"), approx.map("prob")) == pytest.approx(chosen.ssim[position], abs=1e-6)
        assert map_ssim(exact.map("prob"), approx.map("prob")) >= 0.9


def test_tuning_margin_trades_cost_for_headroom(mini_onnx, bundled_splits):
    from etdeploy.data.images import normalise

    path, model = mini_onnx
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2, batch_size=32)
    images = list(normalise(bundled_splits["test"].images[3:6], model.spec.mean, model.spec.std).numpy())
    grid = {"taus": (1.0,), "r_drills": (0.5, 0.25, 0.1, 0.0), "stage1_factors": (2, 3), "map_kind": "logit"}
    bare = tune_approx(ex, images, target_ssim=0.85, margin=0.0, **grid)
    guarded = tune_approx(ex, images, target_ssim=0.85, margin=0.1, **grid)
    assert bare.min_ssim >= 0.85 and guarded.min_ssim >= 0.95
    assert bare.modelled_speedup >= guarded.modelled_speedup
    # the bare choice is the cheapest candidate that reaches the bar: every cheaper one misses it
    assert all(c.min_ssim < 0.85 for c in bare.candidates if c.macs < min(
        c2.macs for c2 in bare.candidates if c2.min_ssim >= 0.85))
    assert guarded.run_kwargs()["map_kind"] == "logit"
    with pytest.raises(OcclusionError, match="margin"):
        tune_approx(ex, images, margin=1.0, **grid)


def test_map_kinds_are_consistent():
    logits = np.random.default_rng(0).standard_normal((4, 5, 3))
    base = np.array([1.0, 0.0, -1.0])
    p = map_values(logits, base, 0, "prob")
    np.testing.assert_allclose(np.log(p), map_values(logits, base, 0, "logprob"))
    np.testing.assert_allclose(map_values(logits, base, 0, "drop"), np.exp(1) / (np.exp(1) + 1 + np.exp(-1)) - p)
    np.testing.assert_allclose(map_values(logits, base, 2, "logit"), logits[..., 2])
    with pytest.raises(OcclusionError, match="out of range"):
        map_values(logits, base, 3, "prob")


def test_ssim_flags_flat_maps_and_every_flat_tuning_set_is_an_error(tmp_path):
    model = build_model("sequential-cnn", 3, input_size=16, layers="c4k3p1-r", hidden=(4,))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-4)  # outputs barely move with the patch: a flat map
    path = export_onnx(model, tmp_path / "flat.onnx", 16)
    ex = IncrementalOcclusionExecutor(path, patch=4, stride=2)
    with pytest.raises(OcclusionError, match="flat"):
        tune_approx(ex, [random_image(16, 0)], taus=(1.0,), r_drills=(0.5,), stage1_factors=(2,))
    with pytest.raises(OcclusionError, match="constant"):
        map_ssim(np.ones((5, 5)), np.ones((5, 5)))


def test_invalid_requests_raise_clear_errors(mini_onnx, tmp_path):
    path, _ = mini_onnx
    with pytest.raises(OcclusionError, match="larger than the 64x64 image"):
        IncrementalOcclusionExecutor(path, patch=65, stride=4)
    with pytest.raises(OcclusionError, match="stride must be a positive integer"):
        IncrementalOcclusionExecutor(path, patch=8, stride=0)
    with pytest.raises(OcclusionError, match="stride must be a positive integer"):
        occlusion_map(path, random_image(64), patch=8, stride=0)
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=4)
    with pytest.raises(OcclusionError, match="image shape"):
        ex.run(random_image(32))
    with pytest.raises(OcclusionError, match="out of range"):
        ex.run(random_image(64), target_class=9)
    with pytest.raises(OcclusionError, match="tau must be in"):
        ex.run(random_image(64), mode="approx", tau=0.0)
    with pytest.raises(OcclusionError, match="stage-1 stride"):
        ex.run(random_image(64), mode="approx", r_drill=0.5, stage1_stride=4)
    with pytest.raises(OcclusionError, match="unknown occlusion mode"):
        ex.run(random_image(64), mode="fast")
    from etdeploy.errors import OnnxModelError

    with pytest.raises(OnnxModelError, match="does not exist"):
        IncrementalOcclusionExecutor(tmp_path / "missing.onnx")


class _EluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ELU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 14 * 14, 2))

    def forward(self, x):
        return self.classifier(self.features(x))


class _ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(torch.flatten(y + self.conv(y), 1))


def test_unsupported_ops_are_refused_by_name(tmp_path):
    path = export_onnx(_EluNet(), tmp_path / "elu.onnx", 16)
    with pytest.raises(UnsupportedOpError, match="operator Elu"):
        IncrementalOcclusionExecutor(path, patch=4, stride=2)
    # residual graphs are supported since issue 16 (refusal by name of other ops: tests/test_occlusion_dag.py)
    path = export_onnx(_ResidualNet(), tmp_path / "res.onnx", 16)
    ex = IncrementalOcclusionExecutor(path, patch=4, stride=2)
    image = random_image(16, 0)
    np.testing.assert_allclose(ex.run(image, mode="exact").map(), ex.run(image, mode="naive").map(), atol=1e-5)


def test_every_registered_op_is_exercised_or_parsed():
    """Registry completeness: each handler parses a node of its type (no handler is dead code)."""
    import onnx

    consts = {"w": np.ones((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32), "c": np.ones((1, 3, 1, 1)),
              "s": np.ones(3, np.float32), "lo": np.array(0.0), "hi": np.array(6.0)}
    nodes = {
        "Conv": onnx.helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        "MaxPool": onnx.helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
        "AveragePool": onnx.helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                             count_include_pad=1),
        "BatchNormalization": onnx.helper.make_node("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"]),
        "Clip": onnx.helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
        "LRN": onnx.helper.make_node("LRN", ["x"], ["y"], size=5),
    }
    for name in ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Identity"):
        nodes[name] = onnx.helper.make_node(name, ["x"], ["y"])
    for name in ("Add", "Sub", "Mul", "Div"):
        nodes[name] = onnx.helper.make_node(name, ["x", "c"], ["y"])
    assert set(nodes) == set(OP_HANDLERS)
    for name, node in nodes.items():
        op = OP_HANDLERS[name].parse(node, consts, (3, 8, 8))
        assert op.op_type == name
        assert (op.gy.out_len(8), op.gx.out_len(8)) == {"MaxPool": (4, 4)}.get(name, (8, 8))
    conv = OP_HANDLERS["Conv"].parse(nodes["Conv"], consts, (3, 8, 8))
    assert conv.macs_per_output == 27 and conv.is_conv and conv.padded
    assert [a.ints for a in conv.node.attribute if a.name == "pads"] == [[0, 0, 0, 0]]
    with pytest.raises(UnsupportedOpError, match="varies over space"):
        OP_HANDLERS["Add"].parse(onnx.helper.make_node("Add", ["x", "v"], ["y"]), {"v": np.ones((1, 3, 8, 8))},
                                 (3, 8, 8))
    with pytest.raises(UnsupportedOpError, match="count_include_pad"):
        OP_HANDLERS["AveragePool"].parse(onnx.helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                                               pads=[1, 1, 1, 1]), consts, (3, 8, 8))
