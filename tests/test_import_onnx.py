"""Bring your own ONNX classifier: ``etdeploy import --onnx FILE``.

- Real Keras 3 exports (committed fixtures, made by tests/fixtures/keras/make_fixtures.py; keras is not
  needed to run these tests): a Sequential CNN with NHWC input, ``Rescaling(1/255)``, ``same`` convs
  (one stride-2: asymmetric padding), BatchNormalization, MaxPooling, two hidden Dense layers and a
  softmax output; and a CNN with a per-channel ``Normalization`` layer, LeakyReLU, average and global
  average pooling and a tanh Dense layer;
- torch.onnx exports (NCHW, made here from a small torch CNN with BatchNorm after ReLU, LRN,
  Dropout and a LogSoftmax output; opset 17 with a dynamic batch, opset 11 with a fixed batch of 1);
- each import's own check and an independent one here: the imported model (as every command loads it)
  against the original file on ONNX Runtime, pre-softmax logits, within 1e-5;
- the Keras CNN goes through import (bundled data) -> rank -> prune 90 % -> export -> fit -> explain;
- bad input: an unsupported op (Erf, Resize), a wrong mean/std length, a class-name count mismatch,
  an existing output folder, mixed route options: one error line, exit 2, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from etdeploy.cli.main import main
from etdeploy.data.images import normalise
from etdeploy.fileio import sha256_file
from etdeploy.importing import import_onnx_model
from etdeploy.models import load_model
from tests.test_import_torch import rank_and_prune_90

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
KERAS_CNN = FIXTURES / "keras_cnn.onnx"
KERAS_GAP = FIXTURES / "keras_gap.onnx"
NAMES = ["a", "b", "c", "d", "e"]
TOL = 1e-5


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """Each test leaves torch's global random state as it found it (commands such as rank draw from it)."""
    with torch.random.fork_rng(devices=[]):
        yield


def _logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _ort_logits(path: Path, x_orig: np.ndarray) -> np.ndarray:
    """The original file's pre-softmax logits on ONNX Runtime: the input of the Softmax/LogSoftmax that
    produces the graph output is added as a graph output (independent of the importer's code)."""
    import onnxruntime as ort

    proto = onnx.load(str(path))
    final = next(n for n in proto.graph.node if proto.graph.output[0].name in n.output)
    name = final.input[0] if final.op_type in ("Softmax", "LogSoftmax") else final.output[0]
    if name != proto.graph.output[0].name:
        proto.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = [session.run([name], {proto.graph.input[0].name: x_orig[i:i + 1].astype(np.float32)})[0]
            for i in range(len(x_orig))]  # one image a run: also for a graph exported with a fixed batch of 1
    return np.concatenate(rows)


def _one_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err + captured.out, err
    return err


def test_fixtures_are_the_ones_the_script_recorded():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    assert manifest["keras_backend"] == "torch" and manifest["keras"].startswith("3.")
    for name, entry in manifest["files"].items():
        path = FIXTURES / name
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"] < 300_000
        assert entry["input"]["shape"] == ["batch", 64, 64, 3] and entry["classes"] == 5


def test_keras_cnn_import_rank_prune_export(bundled, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["import", "--onnx", str(KERAS_CNN), "--scale", "255", "--data", "bundled", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "interface: NHWC input 'image', output '299' (softmax), opset 20" in text and f"model: {out}" in text

    doc = json.loads((out / "spec.json").read_text())
    spec = doc["spec"]
    scale = float(np.float32(1 / 255))  # Keras's Rescaling constant, as the file stores it
    assert spec["meta"]["interface"] == {
        "layout": "NHWC", "input_name": "image", "output_name": "299", "output": "softmax",
        "input_affine": {"scale": [scale] * 3, "bias": [0.0] * 3}, "opset": 20}
    origin = spec["meta"]["imported"]
    assert (origin["route"], origin["file"], origin["sha256"], origin["bytes"]) == \
        ("onnx", KERAS_CNN.name, sha256_file(KERAS_CNN), KERAS_CNN.stat().st_size)
    assert origin["normalisation"]["scale"] == 255 and origin["check"]["images"] == 32
    assert origin["check"]["max_abs_logit_delta"] <= TOL
    assert (out / "original.onnx").read_bytes() == KERAS_CNN.read_bytes()
    assert spec["class_names"] == list(bundled.classes) and spec["input_size"] == 64
    assert spec["meta"]["evaluated_on"] == bundled.training_record()
    # the stride-2 'same' conv pads 0 before and 1 after: a ZeroPad2d before a conv without padding
    types = [layer["type"] for layer in doc["structure"]["features"]]
    assert types == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "ZeroPad2d", "Conv2d", "ReLU", "MaxPool2d"]
    assert doc["structure"]["features"][4]["padding"] == [0, 1, 0, 1]

    # independent check on every bundled test image: the imported model vs the original file on ORT
    from etdeploy.data.images import load_split_images

    test = load_split_images(bundled, "test", 64, progress=False)
    model = load_model(out)
    got = _logits(model, normalise(test.images, model.spec.mean, model.spec.std)).numpy()
    want = _ort_logits(KERAS_CNN, test.images.transpose(0, 2, 3, 1).astype(np.float32))  # raw pixels, NHWC
    delta = float(np.abs(got - want).max())
    print(f"keras_cnn: original (ORT) vs imported max |delta logit| {delta:.3g} on {len(want)} bundled test images")
    assert delta <= TOL and np.array_equal(got.argmax(1), want.argmax(1))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["test"]["accuracy"] == round(float((want.argmax(1) == test.labels).mean()), 6)

    export = tmp_path / "export"
    pruned, record = rank_and_prune_90(out, tmp_path)
    assert record["conv"]["channel_removal_possible"] is True
    assert main(["export", "--model", str(pruned / "sliced"), "--out", str(export)]) == 0
    sim = export / "model.sim.onnx"
    assert main(["fit", "--onnx", str(sim), "--target", "rad750"]) == 0
    image = str(bundled.split("test")[0].path)
    assert main(["explain", "--onnx", str(sim), "--model", str(pruned / "sliced"), "--image", image, "--patch", "16",
                 "--stride", "8", "--out", str(tmp_path / "maps"), "--no-progress"]) == 0


def test_keras_normalization_layer_folds_into_the_normalisation(tmp_path):
    """Rescaling(1/255) then Normalization(mean, variance): x = (u/255 - mean)/sqrt(var) per channel is
    folded out of the graph; the imported model gets it as its mean/std, the interface records it."""
    run = import_onnx_model(KERAS_GAP, tmp_path / "m", scale=255, class_names=NAMES, progress=False)
    mean, var = np.array([0.45, 0.5, 0.4]), np.array([0.05, 0.06, 0.04])
    affine = run.interface.input_affine
    np.testing.assert_allclose(affine.scale, 1 / 255 / np.sqrt(var), rtol=1e-6)
    np.testing.assert_allclose(affine.bias, -mean / np.sqrt(var), rtol=1e-6)
    model = load_model(tmp_path / "m")
    np.testing.assert_allclose(model.spec.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(model.spec.std, np.sqrt(var), rtol=1e-6)
    assert run.ops["ReduceMean"] == 1 and run.ops["Tanh"] == 1 and run.ops["LeakyRelu"] == 1
    assert run.layers == {"flatten": 12, "dense1": 16} and run.accuracy is None
    assert [type(m).__name__ for m in model.classifier] == ["AdaptiveAvgPool2d", "Flatten", "Linear", "Tanh", "Linear"]
    raw = np.random.default_rng(5).integers(0, 256, (6, 3, 64, 64), dtype=np.uint8)
    got = _logits(model, normalise(raw, model.spec.mean, model.spec.std)).numpy()
    want = _ort_logits(KERAS_GAP, raw.transpose(0, 2, 3, 1).astype(np.float32))
    delta = float(np.abs(got - want).max())
    print(f"keras_gap: original (ORT) vs imported max |delta logit| {delta:.3g} on 6 random images")
    assert delta <= TOL and run.origin.check.max_abs_logit_delta <= TOL
    import_onnx_model(KERAS_GAP, tmp_path / "again", scale=255, class_names=NAMES, progress=False)
    for name in ("spec.json", "model.safetensors", "original.onnx"):  # same file and options: same bytes
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "m" / name).read_bytes()


class _TorchCNN(nn.Module):
    """NCHW CNN: BatchNorm after ReLU (not foldable into the conv), LRN, a stride-2 conv, Dropout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(6), nn.MaxPool2d(2),
            nn.LocalResponseNorm(3), nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 4 * 4, 24), nn.ReLU6(),
                                  nn.Linear(24, 4), nn.LogSoftmax(dim=1))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",  # torch.onnx's legacy exporter
                            "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("opset, dynamic", [(17, True), (11, False)])
def test_torch_onnx_nchw_export_imports_exactly(opset, dynamic, tmp_path, capsys):
    torch.manual_seed(0)
    module = _TorchCNN()
    with torch.no_grad():
        bn = module.features[2]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    module.eval()
    path = tmp_path / "torch_cnn.onnx"
    torch.onnx.export(module, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "n"}} if dynamic else None, opset_version=opset, dynamo=False)
    out = tmp_path / "m"
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    assert main(["import", "--onnx", str(path), "--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std)),
                 "--class-names", "w,x,y,z", "--out", str(out), "--no-progress"]) == 0
    assert f"NCHW input 'pixels', output 'scores' (log_softmax), opset {opset}" in capsys.readouterr().out
    model = load_model(out)
    assert model.spec.meta["interface"] == {"layout": "NCHW", "input_name": "pixels", "output_name": "scores",
                                            "output": "log_softmax", "input_affine": None, "opset": opset}
    assert tuple(model.spec.mean) == mean and tuple(model.spec.std) == std
    raw = np.random.default_rng(1).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    x = normalise(raw, mean, std)
    got = _logits(model, x).numpy()
    want = _ort_logits(path, x.numpy())
    with torch.no_grad():  # the torch module before its LogSoftmax: the logits the ONNX graph computes
        torch_logits = module.head[:-1](module.features(x)).numpy()
    delta = float(np.abs(got - want).max())
    print(f"torch_cnn (opset {opset}): original (ORT) vs imported max |delta logit| {delta:.3g} on 5 random images")
    assert delta <= TOL and float(np.abs(torch_logits - want).max()) <= TOL
    assert "LocalResponseNorm" in [type(m).__name__ for m in model.features]


def _op_zoo_graph(path: Path) -> Path:
    """A hand-built NCHW graph (opset 13) with the supported ops the two exporters above do not emit (tf2onnx
    and other converters do): an explicit Pad folded into a Conv, auto_pad SAME_UPPER (stride 2: asymmetric)
    and SAME_LOWER, BatchNormalization after a ReLU, LRN, Clip, Sigmoid, Tanh, GlobalAveragePool + Flatten,
    MatMul + Add, BatchNormalization of a dense layer, Gemm with transB, Dropout, Identity."""
    rng = np.random.default_rng(3)
    init = []

    def const(name, array):
        init.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32 if np.asarray(array).dtype.kind == "f"
                                                       else np.int64), name))
        return name

    def rnd(*shape, scale=0.3):
        return rng.normal(0, scale, shape).astype(np.float32)

    n = helper.make_node
    nodes = [
        n("Pad", ["x", const("pads", [0, 0, 1, 2, 0, 0, 1, 0])], ["p"], name="pad0"),
        n("Conv", ["p", const("w1", rnd(6, 3, 3, 3)), const("b1", rnd(6))], ["c1"], name="conv1"),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("BatchNormalization", ["r1", const("g", rng.uniform(0.5, 1.5, 6)), const("be", rnd(6)),
                                 const("mu", rnd(6)), const("var", rng.uniform(0.5, 2, 6))], ["bn1"], name="bn1",
          epsilon=1e-3),
        n("Conv", ["bn1", const("w2", rnd(8, 6, 3, 3))], ["c2"], name="conv2", auto_pad="SAME_UPPER", strides=[2, 2]),
        n("Clip", ["c2", const("lo", np.float32(-1.0)), const("hi", np.float32(1.0))], ["h2"], name="clip"),
        n("LRN", ["h2"], ["l2"], name="lrn", size=3, alpha=1e-3, beta=0.75, bias=2.0),
        n("Conv", ["l2", const("w3", rnd(8, 8, 2, 2)), const("b3", rnd(8))], ["c3"], name="conv3",
          auto_pad="SAME_LOWER"),
        n("Sigmoid", ["c3"], ["s3"], name="sigmoid"),
        n("Identity", ["s3"], ["i3"], name="identity"),
        n("GlobalAveragePool", ["i3"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        n("MatMul", ["flat", const("m1", rnd(8, 10))], ["mm"], name="dense1"),
        n("Add", ["mm", const("mb", rnd(10))], ["d1"], name="dense1_bias"),
        n("BatchNormalization", ["d1", const("g2", rng.uniform(0.5, 1.5, 10)), const("be2", rnd(10)),
                                 const("mu2", rnd(10)), const("var2", rng.uniform(0.5, 2, 10))], ["dbn"], name="bn2"),
        n("Clip", ["dbn", const("lo6", np.float32(0.0)), const("hi6", np.float32(6.0))], ["a1"], name="relu6"),
        n("Dropout", ["a1"], ["dr"], name="dropout"),
        n("Gemm", ["dr", const("g3", rnd(7, 10)), const("gb", rnd(7))], ["d2"], name="dense2", transB=1),
        n("Tanh", ["d2"], ["t2"], name="tanh"),
        n("Gemm", ["t2", const("g4", rnd(7, 3)), const("gb4", rnd(3))], ["logits"], name="out", alpha=0.5, beta=2.0),
    ]
    graph = helper.make_graph(nodes, "op_zoo", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                               ["b", 3, 20, 20])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["b", 3])], init)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def test_every_supported_op_converts_exactly(tmp_path):
    path = _op_zoo_graph(tmp_path / "op_zoo.onnx")
    run = import_onnx_model(path, tmp_path / "m", mean=(0.4, 0.4, 0.4), std=(0.2, 0.3, 0.25), class_names=["p", "q", "r"],
                            progress=False)
    model = load_model(tmp_path / "m")
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["ZeroPad2d", "Conv2d", "ReLU", "BatchNorm2d", "ZeroPad2d", "Conv2d", "Hardtanh",
                     "LocalResponseNorm", "ZeroPad2d", "Conv2d", "Sigmoid"]
    assert [type(m).__name__ for m in model.classifier] == ["AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU6",
                                                            "Linear", "Tanh", "Linear"]
    assert run.interface.output == "logits" and run.interface.input_affine is None
    raw = np.random.default_rng(2).integers(0, 256, (4, 3, 20, 20), dtype=np.uint8)
    x = normalise(raw, model.spec.mean, model.spec.std)
    delta = float(np.abs(_logits(model, x).numpy() - _ort_logits(path, x.numpy())).max())
    assert delta <= TOL and run.origin.check.max_abs_logit_delta <= TOL


def test_a_pad_before_a_pool_stays_a_layer_and_a_single_linear_head_imports(tmp_path):
    """A zero Pad before a MaxPool cannot go into a conv: it stays a ZeroPad2d (exact: the pool sees the same
    zeros); a classifier of one Linear (no hidden layer) is a contract classifier too."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
            numpy_helper.from_array(rng.normal(0, 0.3, (4 * 8 * 8, 3)).astype(np.float32), "m")]
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]), n("Relu", ["c"], ["r"], name="relu"),
             n("Pad", ["r", "pads"], ["p"], name="pad"),
             n("MaxPool", ["p"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             n("Flatten", ["mp"], ["f"], name="flat"), n("MatMul", ["f", "m"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "pad_pool", [helper.make_tensor_value_info("x", 1, ["b", 3, 15, 15])],
                              [helper.make_tensor_value_info("y", 1, ["b", 3])], init)
    path = tmp_path / "pad_pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    run = import_onnx_model(path, tmp_path / "m", scale=1, class_names=["p", "q", "r"], progress=False)
    model = load_model(tmp_path / "m")
    assert [type(m).__name__ for m in model.features] == ["Conv2d", "ReLU", "ZeroPad2d", "MaxPool2d"]
    assert [type(m).__name__ for m in model.classifier] == ["Flatten", "Linear"] and run.layers == {"flatten": 256}
    assert model.classifier[1].bias is None and run.origin.check.max_abs_logit_delta <= TOL


# ------------------------------------------------------------------------------------------- bad inputs
def _with_node(tmp_path: Path, op: str) -> Path:
    """keras_gap.onnx with one ``op`` node (named ``injected_<op>``) after its first Relu."""
    proto = onnx.load(str(KERAS_GAP))
    relu = next(n for n in proto.graph.node if n.op_type == "Relu")
    inner = relu.output[0] + "_pre"
    consumers = [n for n in proto.graph.node if relu.output[0] in n.input]
    for node in consumers:
        node.input[:] = [inner if i == relu.output[0] else i for i in node.input]
    if op == "Resize":  # nearest 2x upsampling of the NHWC map (the global pool keeps the head's width)
        proto.graph.initializer.append(numpy_helper.from_array(np.array([1, 2, 2, 1], np.float32), "up_scales"))
        node = helper.make_node("Resize", [relu.output[0], "", "up_scales"], [inner], name="injected_Resize",
                                mode="nearest")
    else:
        node = helper.make_node(op, [relu.output[0]], [inner], name=f"injected_{op}")
    index = list(proto.graph.node).index(relu)
    proto.graph.node.insert(index + 1, node)
    path = tmp_path / f"with_{op.lower()}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("op", ["Erf", "Resize"])
def test_an_unsupported_op_names_op_node_and_file(op, tmp_path, capsys):
    path = _with_node(tmp_path, op)
    out = tmp_path / "out"
    code = main(["import", "--onnx", str(path), "--scale", "255", "--class-names", ",".join(NAMES), "--out", str(out)])
    err = _one_error(capsys)
    assert code == 2 and f"cannot import op {op} (node injected_{op})" in err and str(path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("args, words", [
    (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "mean needs 3 values"),
    (["--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2,0.2"], "std needs 3 values"),
    (["--scale", "255", "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"], "either mean and std, or scale"),
    ([], "the input normalisation is not guessed"),
    (["--scale", "255", "--class-names", "a,b,c"], "the model has 5 outputs for 3 class names"),
    (["--scale", "255", "--class-names", "a,b,c,d,e", "--data", "bundled"], "differ from the data set's classes"),
    (["--scale", "255", "--arch", "tests.user_models:tiny_factory"], "--onnx imports the file as it is: drop --arch"),
])
def test_bad_options_are_one_error_and_write_nothing(args, words, tmp_path, capsys):
    argv = ["import", "--onnx", str(KERAS_CNN), *args, "--out", str(tmp_path / "out"), "--no-progress"]
    if "--class-names" not in args and "--data" not in args:
        argv += ["--class-names", ",".join(NAMES)]
    code = main(argv)
    err = _one_error(capsys)
    assert code == 2 and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["import", "--onnx", str(KERAS_GAP), "--scale", "255", "--class-names", ",".join(NAMES),
                 "--out", str(out)])
    err = _one_error(capsys)
    assert code == 2 and str(out) in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_later_commands_default_to_the_data_an_import_was_evaluated_on(tmp_path, capsys):
    """An imported model has no training data; the data given at import (here seed 3) are its default."""
    from etdeploy.data.compat import check_compatible, default_data, open_model_data, recorded_data

    out = tmp_path / "model"
    assert main(["import", "--onnx", str(KERAS_CNN), "--scale", "255", "--data", "bundled", "--data-seed", "3",
                 "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert recorded_data(out) is None  # training data unknown: no leakage check applies
    assert default_data(out).seed == 3
    data = open_model_data(out)
    assert data.seed == 3 and data.identity() == default_data(out)
    assert check_compatible(load_model(out), open_model_data(out, seed=0)) is None

