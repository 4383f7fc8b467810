"""Incremental occlusion on branching graphs (issue 16): residual, depthwise and multi-branch CNNs.

Exact == naive on ResNet-18, MobileNetV2, SqueezeNet 1.1 and Inception-V3 with torchvision's layer geometry
(``tests/dag_models.py``: reduced width and input size for whole maps; the full-width, full-size models
on five positions each), an NHWC-input variant, random small DAGs (hypothesis), the merge
rule and R on hand-computed graphs, and refusals that name the operator while naive mode still runs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from etdeploy.errors import UnsupportedOpError
from etdeploy.occlusion import (
    MERGE_HANDLERS,
    IncrementalOcclusionExecutor,
    NaiveOcclusionExecutor,
    occlusion_map,
)
from etdeploy.occlusion.geometry import AxisGeom, GroupAxis, merge_ranges, plan_dag_axis
from etdeploy.occlusion.ops import OP_HANDLERS
from tests.dag_models import InceptionV3, MobileNetV2, ResNet18, SqueezeNet11, randomise_bn
from tests.test_occlusion import export_onnx, random_image

# (name, factory, input size): torchvision geometry at reduced width. SqueezeNet at 66 px makes its
# ceil-mode max pools produce one more row and column than floor mode would (32 -> 16 -> 8 -> 4).
MODELS = {
    "resnet18": (lambda: ResNet18(10, width=0.125), 64),
    "mobilenet_v2": (lambda: MobileNetV2(10, width=0.25, last_channel=64), 64),
    "squeezenet1_1": (lambda: SqueezeNet11(10, width=0.25), 66),
    "inception_v3_blocks": (lambda: InceptionV3(10, width=0.125, blocks="stack"), 64),
}


def _export(name: str, tmp_path, seed: int = 0) -> tuple[str, nn.Module, int]:
    factory, size = MODELS[name]
    torch.manual_seed(seed)
    model = randomise_bn(factory(), seed)
    return export_onnx(model, tmp_path / f"{name}.onnx", size), model, size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dag")
    return {name: _export(name, folder) for name in MODELS}


def _assert_exact_equals_naive(ex: IncrementalOcclusionExecutor, image: np.ndarray, target: int | None = None,
                               cheaper: bool = True):
    """Maps within 1e-5; logits within float32 rounding of ORT's fused kernels on different crop sizes (the
    same tolerance as the chain tests: measured max 1.5e-5 on logits of magnitude 4, MobileNetV2)."""
    naive = ex.run(image, mode="naive", target_class=target)
    exact = ex.run(image, mode="exact", target_class=target)
    assert exact.shape == naive.shape
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-5)
    assert float(np.ptp(naive.map("logit"))) > 1e-3  # the map really varies with the patch position
    assert (exact.macs < exact.naive_macs) if cheaper else (exact.macs == exact.naive_macs)
    return naive, exact


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("patch, stride", [(8, 7), (5, 11)])
def test_exact_equals_naive_on_torchvision_geometry(exported, name, patch, stride):
    """(8, 7) puts patches on both borders of the 64 px image (starts 0 ... 56); (5, 11): stride > patch."""
    path, _, size = exported[name]
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=8)
    if (patch, stride) == (8, 7) and size == 64:
        assert ex.plan().starts_y[-1] + patch == size
    _assert_exact_equals_naive(ex, random_image(size, 3))


def test_the_graphs_are_real_dags_with_the_ops_the_issue_names(exported):
    ops = {name: [op.op_type for op in IncrementalOcclusionExecutor(path, patch=8, stride=8).graph.ops]
           for name, (path, _, _) in exported.items()}
    assert ops["resnet18"].count("Add") == 8  # eight residual blocks
    # torchvision's 10 residual blocks, plus the first block: at width 0.25 it maps 8 channels to 8
    assert ops["mobilenet_v2"].count("Add") == 11 and ops["mobilenet_v2"].count("Clip") == 35  # ReLU6
    assert ops["squeezenet1_1"].count("Concat") == 8 and ops["squeezenet1_1"].count("MaxPool") == 3
    # blocks A-E; torch's exporter flattens InceptionE's nested concatenations into one 6-input Concat
    assert ops["inception_v3_blocks"].count("Concat") == 5 and "AveragePool" in ops["inception_v3_blocks"]
    mobile = IncrementalOcclusionExecutor(exported["mobilenet_v2"][0], patch=8, stride=8)
    depthwise = [op for op in mobile.graph.ops if op.is_conv and op.c_in > 1
                 and any(a.name == "group" and a.i == op.c_in for a in op.node.attribute)]
    assert len(depthwise) == 17 and all(op.macs_per_output == 9 for op in depthwise)
    inception = IncrementalOcclusionExecutor(exported["inception_v3_blocks"][0], patch=8, stride=8)
    assert [len(op.inputs) for op in inception.graph.ops if op.is_merge] == [4, 3, 4, 3, 6]
    kernels = {(op.gy.k, op.gx.k) for op in inception.graph.ops if op.is_conv}
    assert {(1, 7), (7, 1), (1, 3), (3, 1)} <= kernels
    squeeze = IncrementalOcclusionExecutor(exported["squeezenet1_1"][0], patch=8, stride=8)
    pools = [(op.gy, shape) for op, shape in zip(squeeze.graph.ops, squeeze.graph.op_shapes) if op.op_type == "MaxPool"]
    assert [shape[1] for _, shape in pools] == [16, 8, 4]  # ceil mode: floor mode would give 15, 7, 3
    assert all(g.pe == 1 for g, _ in pools)


def test_one_patch_covering_the_whole_image(exported):
    path, _, size = exported["resnet18"]
    ex = IncrementalOcclusionExecutor(path, patch=size, stride=1)
    exact = ex.run(random_image(size, 4), mode="exact")
    naive = ex.run(random_image(size, 4), mode="naive")
    assert exact.shape == (1, 1)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-5, rtol=1e-5)


def test_naive_matches_pytorch_on_the_dag_models(exported):
    for name, (path, model, size) in exported.items():
        ex = NaiveOcclusionExecutor(path, patch=8, stride=7)
        image = random_image(size, 5)
        logits = ex.naive_logits_at(image, np.array([0, 1]), np.array([0, 2]))
        for row, (y, x) in enumerate(((0, 0), (7, 14))):
            occluded = image.copy()
            occluded[:, y:y + 8, x:x + 8] = 0.0
            with torch.no_grad():
                ref = model(torch.from_numpy(occluded[None]))[0].numpy()
            np.testing.assert_allclose(logits[row], ref, atol=1e-4, rtol=1e-4, err_msg=name)


def test_nhwc_input_with_a_transpose_after_it(tmp_path):
    torch.manual_seed(1)
    model = randomise_bn(ResNet18(6, width=0.125, nhwc=True), 1)
    path = str(tmp_path / "nhwc.onnx")
    torch.onnx.export(model, torch.zeros(1, 48, 48, 3), path, dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    ex = IncrementalOcclusionExecutor(path, patch=6, stride=7, batch_size=8)
    assert ex.graph.layout.layout == "NHWC" and ex.input_hw == (48, 48) and ex.channels == 3
    image = random_image(48, 6)  # executor images are (C, H, W) whatever the model's layout
    naive, _ = _assert_exact_equals_naive(ex, image)
    occluded = image.copy()
    occluded[:, 7:13, 14:20] = 0.0
    with torch.no_grad():
        ref = model(torch.from_numpy(occluded.transpose(1, 2, 0)[None].copy()))[0].numpy()
    np.testing.assert_allclose(naive.logits[1, 2], ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(occlusion_map(path, image, patch=6, stride=7, mode="naive").logits, naive.logits,
                               atol=1e-6)


# ---------------------------------------------------------------------------------------------- merge rule and R
class _TwoBranch(nn.Module):
    """conv5x5 and conv1x1 branches, concatenated, then a 3x3 conv; hand-computable regions."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 5, padding=2)
        self.b = nn.Conv2d(3, 2, 1)
        self.c = nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.c(y), 1), 1))


def test_redundancy_ratio_of_a_concat_follows_the_bounding_box(tmp_path):
    """Patch 4 centred in 16 px: rows [6, 10). conv5x5 -> [4, 12) (8 rows), conv1x1 -> [6, 10) (4 rows), the
    Concat -> their bounding box [4, 12), conv3x3 -> [3, 13) (10 rows)."""
    path = export_onnx(_TwoBranch(), tmp_path / "two.onnx", 16)
    ex = IncrementalOcclusionExecutor(path, patch=4, stride=3)
    r = ex.redundancy_ratio()
    q = [75 * 4 * 256, 3 * 2 * 256, 54 * 4 * 256]
    q_inc = [75 * 4 * 64, 3 * 2 * 16, 54 * 4 * 100]
    assert [layer["changed"] for layer in r["per_layer"]] == [[8, 8], [4, 4], [10, 10]]
    assert r["Q"] == sum(q) and r["Q_inc"] == sum(q_inc)
    assert r["R"] == pytest.approx(sum(q) / sum(q_inc))
    _assert_exact_equals_naive(ex, random_image(16, 7))


def test_plan_takes_the_bounding_box_of_a_merge_and_ignores_empty_ranges():
    lo, hi = merge_ranges([(np.array([4, 5, 3]), np.array([9, 5, 6])), (np.array([2, 7, 4]), np.array([6, 9, 4]))])
    assert lo.tolist() == [2, 7, 3] and hi.tolist() == [9, 9, 6]  # [2,9); empty + [7,9); [3,6) + empty
    conv5 = AxisGeom(5, 1, 2, 2)
    steps = plan_dag_axis(np.array([0, 6, 12]), 4, [
        GroupAxis(conv5, 0, (), 16),                     # group 0: conv5x5 of the image
        GroupAxis(AxisGeom(1, 1, 0, 0), 0, (1,), 16),    # group 1: conv1x1 of the image, merged with group 0
    ])
    assert steps[0].lo.tolist() == [0, 4, 10] and steps[0].hi.tolist() == [6, 12, 16]
    assert steps[1].lo.tolist() == steps[0].lo.tolist() and steps[1].hi.tolist() == steps[0].hi.tolist()
    assert steps[1].win == 8 and steps[1].win_start.tolist() == [0, 4, 8]


def test_each_merge_joins_the_group_of_its_widest_input(tmp_path):
    path = export_onnx(_TwoBranch(), tmp_path / "two.onnx", 16)
    ex = IncrementalOcclusionExecutor(path, patch=4, stride=3)
    concat = next(g for g in ex.graph.groups if any(op.op_type == "Concat" for op in g.ops))
    assert [op.op_type for op in concat.ops] == ["Conv", "Relu", "Concat"]
    assert concat.gy.k == 5 and len(concat.side_inputs) == 1  # the 5x5 branch carries the merge


# ---------------------------------------------------------------------------------------------- edge cases
class _EdgeDag(nn.Module):
    """The image itself as a merge input, a merge of a tensor with itself, a BatchNorm after a merge (not folded
    into a conv), HardSwish / HardSigmoid gating, and two split tensors read by the suffix."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.b = nn.Conv2d(3, 5, 3, stride=2, padding=1, groups=1)
        self.gate = nn.Conv2d(5, 5, 1)
        self.dw = nn.Conv2d(5, 5, 3, padding=1, groups=5)
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        y = self.bn(self.a(x) + x)           # Add(conv(image), image), then a real BatchNormalization
        y = y * y - y                         # Mul(y, y) then Sub(., y)
        z = nn.functional.hardswish(self.b(y))
        z = z * nn.functional.hardsigmoid(self.gate(z))
        w = torch.relu(self.dw(z))
        pooled = [nn.functional.adaptive_avg_pool2d(t, 1) for t in (z, w)]  # two tensors enter the suffix
        return self.fc(torch.flatten(torch.cat(pooled, 1), 1))


def test_edge_cases_of_merges_and_several_split_tensors(tmp_path):
    model = randomise_bn(_EdgeDag(), 3)
    path = export_onnx(model, tmp_path / "edge.onnx", 20)
    ex = IncrementalOcclusionExecutor(path, patch=3, stride=2, batch_size=6)
    types = [op.op_type for op in ex.graph.ops]
    assert {"BatchNormalization", "HardSwish", "HardSigmoid", "Sub"} <= set(types) and types.count("Mul") == 2
    assert len(ex.graph.splits) == 2
    assert ex.graph.local_input in {t for g in ex.graph.groups for t in (g.input_name, *g.side_inputs)}
    for seed in (0, 1):
        _assert_exact_equals_naive(ex, random_image(20, seed), target=1)


def test_a_classifier_without_a_convolutional_part(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    path = export_onnx(model, tmp_path / "mlp.onnx", 8)
    ex = IncrementalOcclusionExecutor(path, patch=3, stride=2)
    assert ex.graph.groups == [] and ex.graph.splits == (ex.graph.local_input,)
    _assert_exact_equals_naive(ex, random_image(8, 2), cheaper=False)


# ---------------------------------------------------------------------------------------------- refusals
class _Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = nn.functional.interpolate(torch.relu(self.a(x)), scale_factor=2, mode="nearest")
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class _SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.se = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = torch.relu(self.a(x))
        s = torch.sigmoid(self.se(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)))
        y = y * s[:, :, None, None]
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("module, message", [(_Upsampling, "operator Resize"),
                                             (_SqueezeExcite, "depends on the whole image")])
def test_unsupported_local_ops_are_refused_by_name_and_naive_still_works(tmp_path, module, message):
    torch.manual_seed(0)
    model = module().eval()
    path = export_onnx(model, tmp_path / "m.onnx", 12)
    with pytest.raises(UnsupportedOpError, match=message):
        IncrementalOcclusionExecutor(path, patch=4, stride=4)
    with pytest.raises(UnsupportedOpError, match=message):
        occlusion_map(path, random_image(12, 0), patch=4, stride=4, mode="exact")
    image = random_image(12, 1)
    result = occlusion_map(path, image, patch=4, stride=4, mode="naive")
    assert result.shape == (3, 3) and result.macs == result.naive_macs > 0
    occluded = image.copy()
    occluded[:, 4:8, 8:12] = 0.0
    with torch.no_grad():
        ref = model(torch.from_numpy(occluded[None]))[0].numpy()
    np.testing.assert_allclose(result.logits[1, 2], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="needs the incremental executor"):
        NaiveOcclusionExecutor(path, patch=4, stride=4).run(image, mode="exact")


def test_explain_in_naive_mode_runs_a_graph_the_incremental_executor_refuses(tmp_path):
    from etdeploy.occlusion import ExplainInput, explain_images, read_explain

    torch.manual_seed(0)
    path = export_onnx(_Upsampling().eval(), tmp_path / "up.onnx", 12)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 12, 12), dtype=np.uint8)
    item = ExplainInput(name="a.png", sha256="0" * 64, image=pixels)
    kwargs = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "patch": 4, "stride": 4, "progress": False}
    with pytest.raises(UnsupportedOpError, match="operator Resize"):
        explain_images(path, [item], out=tmp_path / "exact", mode="exact", **kwargs)
    assert not (tmp_path / "exact").exists()
    run = explain_images(path, [item], out=tmp_path / "naive", mode="naive", **kwargs)
    assert run.redundancy_ratio is None and run.images[0].map_shape == (3, 3)
    assert read_explain(tmp_path / "naive") == run
    values = np.load(tmp_path / "naive" / run.images[0].maps[0].npy)
    image = (pixels.astype(np.float32) / 255 - 0.5) / 0.25
    expected = NaiveOcclusionExecutor(path, patch=4, stride=4).run(image).map("prob")
    np.testing.assert_allclose(values, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------- op registry
def test_merge_registry_parses_each_merge_and_refuses_what_it_cannot_run():
    nodes = {
        "Add": helper.make_node("Add", ["a", "b"], ["y"]),
        "Sub": helper.make_node("Sub", ["a", "b"], ["y"]),
        "Mul": helper.make_node("Mul", ["a", "b"], ["y"]),
        "Concat": helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
    }
    assert set(nodes) == set(MERGE_HANDLERS)
    for name, node in nodes.items():
        op = MERGE_HANDLERS[name].parse(node, {}, [(3, 8, 8), (3, 8, 8)])
        assert op.is_merge and op.pointwise and op.c_out == (6 if name == "Concat" else 3)
    with pytest.raises(UnsupportedOpError, match="axis"):
        MERGE_HANDLERS["Concat"].parse(helper.make_node("Concat", ["a", "b"], ["y"], axis=2), {},
                                       [(3, 8, 8), (3, 8, 8)])
    with pytest.raises(UnsupportedOpError, match="spatial size"):
        MERGE_HANDLERS["Concat"].parse(nodes["Concat"], {}, [(3, 8, 8), (3, 4, 4)])
    with pytest.raises(UnsupportedOpError, match="broadcasts"):
        MERGE_HANDLERS["Add"].parse(nodes["Add"], {}, [(3, 8, 8), (1, 8, 8)])
    for name in ("HardSwish", "HardSigmoid"):
        op = OP_HANDLERS[name].parse(helper.make_node(name, ["x"], ["y"]), {}, (3, 8, 8))
        assert op.pointwise and not op.is_merge


@pytest.mark.parametrize("n, k, s, p", [(5, 2, 2, 1), (6, 3, 2, 1), (16, 3, 2, 0), (32, 3, 2, 0), (7, 2, 2, 0),
                                        (9, 3, 3, 1), (10, 3, 3, 0), (12, 2, 3, 0)])
def test_ceil_mode_max_pool_sizes_follow_onnx_runtime(n, k, s, p):
    import onnxruntime as ort

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=1)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((1, 2, n, n)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    op = OP_HANDLERS["MaxPool"].parse(node, {}, (2, n, n))
    assert (op.gy.out_len(n), op.gx.out_len(n)) == y.shape[2:]
    padded = np.pad(x[0], ((0, 0), (op.gy.pb, op.gy.pe), (op.gx.pb, op.gx.pe)), constant_values=-np.inf)
    stripped = helper.make_model(helper.make_graph(
        [op.node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    np.testing.assert_array_equal(ort.InferenceSession(stripped.SerializeToString()).run(None, {"x": padded[None]})[0], y)


def test_same_upper_auto_pad_graph(tmp_path):
    """A hand-built graph with ``auto_pad=SAME_UPPER`` convolution and max pool (as tf2onnx writes them)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 4, 4)).astype(np.float32) * 0.2, "w2")
    fw = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fw")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER"),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[4, 4], auto_pad="SAME_LOWER"),
             helper.make_node("Add", ["c2", "p1"], ["a"]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fw"], ["logits"])]
    graph = helper.make_graph(nodes, "same", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 15, 15])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              initializer=[w1, w2, fw])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / "same.onnx"
    onnx.save(model, str(path))
    ex = IncrementalOcclusionExecutor(str(path), patch=3, stride=2)
    assert ex.graph.op_shapes[0] == (4, 8, 8)  # ceil(15 / 2)
    _assert_exact_equals_naive(ex, random_image(15, 1))


# ---------------------------------------------------------------------------------------------- random DAGs
_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "sigmoid": nn.Sigmoid,
         "leaky": lambda: nn.LeakyReLU(0.1)}


class _Residual(nn.Module):
    def __init__(self, c: int, kh: int, kw: int, stride: int, dk: int, act: str, merge: str):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(c, c, (kh, kw), stride, (kh // 2, kw // 2)), nn.BatchNorm2d(c),
                                  _ACTS[act](), nn.Conv2d(c, c, dk, 1, dk // 2, groups=c))  # depthwise
        self.short = nn.Identity() if stride == 1 else nn.Conv2d(c, c, 1, stride)
        self.merge = merge
        self.post = nn.BatchNorm2d(c)

    def forward(self, x):
        a, b = self.main(x), self.short(x)
        y = a + b if self.merge == "add" else (a - b if self.merge == "sub" else a * torch.sigmoid(b))
        return self.post(y)


class _Branches(nn.Module):
    def __init__(self, c: int, k: int, stride: int, pool: bool):
        super().__init__()
        self.b1 = nn.Conv2d(c, 2, 1, stride)
        self.b2 = nn.Sequential(nn.Conv2d(c, 3, k, stride, k // 2), nn.ReLU())
        self.b3 = nn.MaxPool2d(3, stride, 1) if pool else nn.Conv2d(c, c, (1, k), stride, (0, k // 2))
        self.out = 5 + c

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)


class _RandomDag(nn.Module):
    def __init__(self, blocks, c: int = 4):
        super().__init__()
        layers = [nn.Conv2d(3, c, 3, 1, 1), nn.ReLU()]
        for block in blocks:
            kind = block[0]
            if kind == "res":
                layers.append(_Residual(c, *block[1:]))
            elif kind == "cat":
                layers.append(_Branches(c, *block[1:]))
                c = layers[-1].out
            elif kind == "conv":
                _, k, s, p = block
                layers += [nn.Conv2d(c, c, k, s, min(p, k - 1)), nn.ReLU()]
            else:
                _, k, s, p, ceil = block
                layers.append(nn.MaxPool2d(k, s, min(p, k // 2), ceil_mode=ceil) if kind == "max"
                              else nn.AvgPool2d(k, s, min(p, k // 2)))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


_ODD = st.sampled_from([1, 3, 5])
_BLOCK = st.one_of(
    st.tuples(st.just("res"), _ODD, _ODD, st.integers(1, 3), _ODD, st.sampled_from(sorted(_ACTS)),
              st.sampled_from(["add", "sub", "mul"])),
    st.tuples(st.just("cat"), _ODD, st.integers(1, 2), st.booleans()),
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2)),
    st.tuples(st.sampled_from(["max", "avg"]), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1),
              st.booleans()),
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(_BLOCK, min_size=1, max_size=4), size=st.integers(12, 36), patch=st.integers(1, 10),
       stride=st.integers(1, 9), seed=st.integers(0, 1000))
def test_exact_equals_naive_on_random_small_dags(tmp_path, blocks, size, patch, stride, seed):
    assume(patch <= size)
    blocks = [b if b[0] != "avg" else (*b[:4], False) for b in blocks]  # avg pool: ceil mode is refused
    torch.manual_seed(seed)
    model = randomise_bn(_RandomDag(blocks), seed)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError:
        assume(False)  # the input shrank below a kernel
    path = export_onnx(model, tmp_path / f"dag{seed}.onnx", size)
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=7)
    image = random_image(size, seed)
    naive = ex.run(image, mode="naive", target_class=0)
    exact = ex.run(image, mode="exact", target_class=0)
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- full size
@pytest.mark.parametrize("name, factory, size", [
    ("resnet18", lambda: ResNet18(10), 224), ("mobilenet_v2", lambda: MobileNetV2(10), 224),
    ("squeezenet1_1", lambda: SqueezeNet11(10), 224), ("inception_v3", lambda: InceptionV3(10), 299)])
def test_exact_equals_naive_at_full_width_and_size(tmp_path, name, factory, size):
    """torchvision's widths and input sizes, patch 16, five positions (corners and centre) of the stride-4 grid
    (about 8 s for the four models on two cores)."""
    torch.manual_seed(0)
    path = export_onnx(randomise_bn(factory()), tmp_path / f"{name}.onnx", size)
    ex = IncrementalOcclusionExecutor(path, patch=16, stride=4, batch_size=4)
    ny, nx = ex.plan().grid_shape
    iy = np.array([0, 0, ny - 1, ny - 1, ny // 2])
    ix = np.array([0, nx - 1, 0, nx - 1, nx // 2])
    image = random_image(size, 9)
    exact = ex.logits_at(ex.base(image), iy, ix)
    naive = ex.naive_logits_at(image, iy, ix)
    np.testing.assert_allclose(exact, naive, atol=1e-5, rtol=1e-5)
    assert ex.redundancy_ratio()["R"] > 1.5
