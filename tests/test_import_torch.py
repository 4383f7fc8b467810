"""Bring your own PyTorch model: ``etdeploy import --arch ... --weights ...``.

- torchvision layouts (written out in tests/user_models.py: AlexNet, VGG-11, a ResNet with a global-
  average-pooled head, a MobileNetV2-style head) convert to the contract exactly, slice exactly,
  round-trip through model directories and export;
- each of AlexNet (96 px), VGG-11 (64 px) and the ResNet (64 px), saved as a state dict, goes through
  import -> rank -> prune 90 % -> export -> 4-way parity on the bundled data, and the original PyTorch
  module's logits match the imported model's on real images within 1e-5;
- pickled objects are never unpickled: a whole pickled module and a payload that would create a
  marker file are refused, and the marker never appears;
- every bad input is one error line, exit 2, nothing written.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from etdeploy.cli.main import main
from etdeploy.errors import ModelError
from etdeploy.fileio import sha256_file
from etdeploy.importing import import_torch_model, read_state_dict, resolve_normalisation
from etdeploy.models import ETModel, dense_layers, load_model, masks, save_model, with_masks
from etdeploy.models.contract import OpaqueFeatures
from etdeploy.models.layouts import contract_parts
from etdeploy.pruning import slice_model
from etdeploy.pruning.masking import kept_count
from tests import user_models

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NORM = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]
TOL = 1e-5

# name -> (arch, input size, layout, training epochs on the bundled data (0: random weights), file suffix)
MODELS = {
    "alexnet": ("tests.user_models:tv_alexnet_small", 96, "features-classifier", 3, ".safetensors"),
    "vgg11": ("tests.user_models:tv_vgg11_small", 64, "features-classifier", 0, ".pth"),
    "resnet": ("tests.user_models:tv_resnet_small", 64, "resnet", 6, ".pth"),
}
# every layout with a factory: (factory, input size, layout, whether conv channels may be removed)
LAYOUTS = [
    ("tv_alexnet_small", 96, "features-classifier", True),
    ("tv_alexnet_small", 64, "features-classifier", True),
    ("tv_vgg11_small", 64, "features-classifier", True),
    ("tv_resnet_small", 64, "resnet", False),
    ("gap_mobile", 64, "features-gap", False),
    ("tiny_factory", 16, "pair", True),
]


def _logits(module, x):
    module.eval()
    with torch.no_grad():
        return module(x)


def _train(module, bundled, size, epochs, seed=0):
    """A few epochs of Adam on the bundled train split, so rankings mean something."""
    from etdeploy.data.images import load_split_images, normalise

    split = load_split_images(bundled, "train", size, progress=False)
    x, y = normalise(split.images, MEAN, STD), torch.as_tensor(split.labels)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3 if size > 64 else 3e-3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            module.train()
            order = torch.randperm(len(y), generator=gen)
            for start in range(0, len(y), 32):
                idx = order[start:start + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(module(x[idx]), y[idx]).backward()
                opt.step()
    return module.eval()


def _save_state_dict(module, path: Path) -> Path:
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory, bundled):
    """name -> (original torch module with its weights, the state-dict file it was saved to)."""
    folder = tmp_path_factory.mktemp("originals")
    out = {}
    for name, (arch, size, _, epochs, suffix) in MODELS.items():
        factory = getattr(user_models, arch.partition(":")[2])
        torch.manual_seed(1)
        module = _train(factory(5, input_size=size), bundled, size, epochs)
        out[name] = (module, _save_state_dict(module, folder / f"{name}{suffix}"))
    return out


# ------------------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("factory, size, layout, plain", LAYOUTS)
def test_layouts_convert_slice_reload_and_export_exactly(factory, size, layout, plain, tmp_path):
    import numpy as np

    from etdeploy.export.onnx_export import export_model
    from etdeploy.models import build_model
    from etdeploy.ort_session import make_session

    gen = torch.Generator().manual_seed(0)
    original = getattr(user_models, factory)(5, input_size=size)
    x = torch.randn(4, 3, size, size, generator=gen)
    features, classifier, found = contract_parts(original, input_size=size)
    assert found == layout
    assert isinstance(features, OpaqueFeatures) is (not plain)
    if not isinstance(original, tuple):  # the converted model shares the original's modules: same logits
        assert torch.equal(_logits(ETModel(features, classifier), x), _logits(original, x))

    model = with_masks(build_model(f"tests.user_models:{factory}", 5, input_size=size, seed=3)).eval()
    layers = dense_layers(model)
    for layer in layers:  # random masks; on the flatten layer, every position of channel 0 and 2 masked
        keep = torch.rand(layer.width, generator=gen) < 0.4
        keep[-1] = True
        if layer.name == "flatten":
            per = layer.width // 4 if factory == "tiny_factory" else (36 if "alexnet" in factory else 49)
            if plain:
                keep[0:per] = False
                keep[2 * per:3 * per] = False
        masks(model)[layer.name].set_mask(keep.float())
    sliced, record = slice_model(model)
    assert (_logits(sliced, x) - _logits(model, x)).abs().max().item() <= TOL
    assert record["conv"]["channel_removal_possible"] is plain
    assert record["conv"]["removed_channels"] == ([0, 2] if plain else [])
    if not plain:  # an opaque extractor is copied unchanged
        assert all(torch.equal(a, b) for a, b in zip(sliced.features.state_dict().values(),
                                                     model.features.state_dict().values()))
    for name, m in (("masked", model), ("sliced", sliced)):
        save_model(m, tmp_path / name)
        assert torch.equal(_logits(load_model(tmp_path / name), x), _logits(m, x))
    spec = json.loads((tmp_path / "sliced" / "spec.json").read_text())
    assert isinstance(spec["structure"]["features"], list) is plain
    result = export_model(load_model(tmp_path / "sliced"), tmp_path / "export")
    onnx_logits = make_session(str(result.sim_path)).run(["logits"], {"input": x.numpy()})[0]
    assert np.abs(onnx_logits - _logits(sliced, x).numpy()).max() <= TOL


def test_adaptive_pool_that_does_not_divide_exports_as_its_linear_map(tmp_path):
    """VGG's (7, 7) pool after a 2x2 map averages overlapping windows: exported as two MatMuls, exact."""
    from etdeploy.export.onnx_export import export_onnx_bytes, exportable_pools
    from etdeploy.ort_session import make_session

    pool = nn.AdaptiveAvgPool2d((7, 7))
    replaced = exportable_pools(nn.Sequential(nn.Conv2d(3, 4, 3, stride=32, padding=1), pool, nn.Flatten(),
                                              nn.Linear(196, 5)), 64)
    assert type(replaced[1]).__name__ == "FixedAdaptiveAvgPool"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 2, 2, generator=gen)
    assert (replaced[1](x) - pool(x)).abs().max().item() <= 1e-7
    data = export_onnx_bytes(replaced.eval(), 64)
    import onnx

    ops = sorted({n.op_type for n in onnx.load_from_string(data).graph.node})
    assert "MatMul" in ops and "AveragePool" not in ops
    image = torch.randn(2, 3, 64, 64, generator=gen)
    got = make_session(onnx.load_from_string(data)).run(["logits"], {"input": image.numpy()})[0]
    assert abs(got - _logits(replaced, image).numpy()).max() <= TOL
    # a pool that divides its input evenly is left to torch (AveragePool / GlobalAveragePool)
    even = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((8, 8)))
    assert exportable_pools(even, 64) is even


def test_contract_still_refuses_a_pool_inside_a_plain_chain():
    bad = ETModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)), nn.Sequential(nn.Flatten(),
                                                                                            nn.Linear(4, 2)))
    with pytest.raises(ModelError, match="adaptive average pool belongs at the start of the classifier"):
        dense_layers(bad)
    fine = ETModel(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                                    nn.Dropout(), nn.Linear(4, 2)))
    assert [(la.name, la.width) for la in dense_layers(fine)] == [("flatten", 4)]


def test_opaque_features_are_rebuilt_through_their_factory_and_checked(tmp_path):
    from etdeploy.models import build_model

    model = build_model("tests.user_models:tv_resnet_small", 5, input_size=64, seed=2)
    save_model(model, tmp_path / "m")
    spec_path = tmp_path / "m" / "spec.json"
    doc = json.loads(spec_path.read_text())
    assert doc["structure"]["features"] == {"factory": "tests.user_models:tv_resnet_small"}
    doc["structure"]["features"] = {"factory": "tests.user_models:gap_mobile"}
    spec_path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="names the feature factory 'tests.user_models:gap_mobile'"):
        load_model(tmp_path / "m")
    doc["structure"]["features"] = {"factory": "tests.user_models:tv_resnet_small"}
    doc["spec"]["kwargs"] = {}
    doc["spec"]["arch"] = doc["structure"]["features"]["factory"] = "tests.user_models:gap_mobile"
    spec_path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="missing tensors"):  # the factory builds other blocks: names differ
        load_model(tmp_path / "m")


# ------------------------------------------------------------------------------------- import -> parity
@pytest.mark.parametrize("name", sorted(MODELS))
def test_import_rank_prune_export_parity(name, originals, bundled, tmp_path, capsys):
    from etdeploy.data.images import load_split_images, normalise

    arch, size, layout, epochs, _ = MODELS[name]
    original, weights = originals[name]
    out = tmp_path / "model"
    assert main(["import", "--arch", arch, "--weights", str(weights), "--input-size", str(size), *NORM,
                 "--data", "bundled", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"layout {layout}" in text and f"model: {out}" in text

    # the original PyTorch module and the imported model (as every command loads it) on real images
    test = load_split_images(bundled, "test", size, progress=False)
    x = normalise(test.images, MEAN, STD)
    want, got = _logits(original, x), _logits(load_model(out), x)
    delta = (want - got).abs().max().item()
    print(f"{name}: original vs imported max |delta logit| {delta:.3g} on {len(x)} bundled test images")
    assert delta <= TOL and torch.equal(want.argmax(1), got.argmax(1))
    accuracy = float((want.argmax(1).numpy() == test.labels).mean())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["test"]["accuracy"] == round(accuracy, 6)
    if epochs:
        assert accuracy > 0.4  # trained: well above chance (0.2), so the ranking below means something
    spec = json.loads((out / "spec.json").read_text())["spec"]
    origin = spec["meta"]["imported"]
    assert (origin["file"], origin["sha256"], origin["bytes"]) == (weights.name, sha256_file(weights),
                                                                   weights.stat().st_size)
    assert origin["arch"] == spec["arch"] == arch and origin["layout"] == layout
    assert origin["route"] == ("safetensors" if weights.suffix == ".safetensors" else "pytorch-state-dict")
    assert tuple(spec["mean"]) == MEAN and tuple(spec["std"]) == STD and spec["input_size"] == size
    assert origin["check"]["max_abs_logit_delta"] <= TOL and origin["check"]["images"] == 32
    assert spec["class_names"] == list(bundled.classes)

    export, parity = tmp_path / "export", tmp_path / "parity.json"
    pruned, record = rank_and_prune_90(out, tmp_path)
    assert record["conv"]["channel_removal_possible"] is (layout != "resnet")
    assert main(["export", "--model", str(pruned / "sliced"), "--out", str(export)]) == 0
    assert main(["parity", "--model", str(pruned / "sliced"), "--masked", str(pruned / "masked"), "--export",
                 str(export), "--out", str(parity), "--no-progress"]) == 0
    report = json.loads(parity.read_text())
    assert report["mismatches"] == [] and report["names"] == ["masked-torch", "sliced-torch", "onnx", "onnx-sim"]
    assert max(p["max_abs_logit_delta"] for p in report["pairs"]) <= TOL
    print(f"{name}: 4-way parity max |delta logit| {max(p['max_abs_logit_delta'] for p in report['pairs']):.3g}")


def test_import_without_data_checks_on_seeded_images_and_scale(originals, tmp_path, capsys):
    original, weights = originals["resnet"]
    out = tmp_path / "m"
    names = ["a", "b", "c", "d", "e"]
    run = import_torch_model("tests.user_models:tv_resnet_small", weights, out, scale=255, class_names=names,
                             input_size=64, progress=False)
    assert run.accuracy is None and not (out / "metrics.json").exists()
    assert run.origin.normalisation.std == (1 / 255,) * 3 and run.origin.normalisation.mean == (0.0,) * 3
    assert run.origin.check.images == 8 and "random" in run.origin.check.inputs
    assert run.layers == {"flatten": 32} and run.channels_removable is False
    model = load_model(out)
    assert model.spec.class_names == tuple(names) and model.spec.meta["imported"]["normalisation"]["scale"] == 255
    raw = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    from etdeploy.data.images import normalise

    # --scale 255: the model sees the raw pixel values (up to float32 rounding)
    assert (normalise(raw, model.spec.mean, model.spec.std) - raw.float()).abs().max().item() <= 1e-4
    assert (_logits(model, normalise(raw, model.spec.mean, model.spec.std))
            - _logits(original, normalise(raw, model.spec.mean, model.spec.std))).abs().max().item() <= TOL


# ---------------------------------------------------------------------------------- pickles are refused
class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


IMPORT = ["import", "--arch", "tests.user_models:tv_resnet_small", "--input-size", "64", "--scale", "255",
          "--class-names", "a,b,c,d,e"]


@pytest.mark.parametrize("kind", ["torch.save", "pickle-2", "pickle-5"])
def test_a_pickle_payload_is_refused_and_never_runs(kind, tmp_path, capsys):
    marker = tmp_path / "marker"
    path = tmp_path / "weights.pth"
    if kind == "torch.save":
        torch.save({"conv1.weight": _Payload(marker)}, path)
        torch.load(path, weights_only=False)  # proof that the payload is live: unpickling it runs it
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=int(kind[-1])))
        pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    code = main([*IMPORT, "--weights", str(path), "--out", str(tmp_path / "out")])
    err = _one_error(capsys)
    assert code == 2 and str(path) in err and "etdeploy never unpickles objects" in err
    if kind != "pickle-5":  # protocol 5 is refused at its first instruction, before the global is read
        assert "it needs the Python object io.open" in err  # builtins.open
    assert "torch.save(model.state_dict()" in err and "safetensors" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_pickled_whole_module_is_refused(originals, tmp_path, capsys):
    path = tmp_path / "whole.pth"
    torch.save(originals["resnet"][0], path)
    code = main([*IMPORT, "--weights", str(path), "--out", str(tmp_path / "out")])
    err = _one_error(capsys)
    assert code == 2 and str(path) in err and "tests.user_models.TVResNet" in err
    assert "torch.save(model.state_dict(), 'weights.pth')" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole.pth"]


def test_a_checkpoint_dict_names_the_entry_that_holds_the_weights(originals, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": originals["resnet"][0].state_dict()}, path)
    with pytest.raises(ModelError, match="entries state_dict, epoch are not tensors; its entry 'state_dict' may"):
        read_state_dict(path)
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown weights file type '.npz'"):
        read_state_dict(tmp_path / "w.npz")


# ------------------------------------------------------------------------------------------- bad inputs
def test_every_key_and_shape_problem_is_listed_in_one_error(originals, tmp_path, capsys):
    _, weights = originals["alexnet"]
    state = read_state_dict(weights)
    expected = user_models.tv_resnet_small(5).state_dict()
    code = main([*IMPORT, "--weights", str(weights), "--out", str(tmp_path / "out")])
    err = _one_error(capsys)
    assert code == 2 and f"{len(expected)} missing" in err and f"{len(state)} unexpected" in err
    assert all(key in err for key in [*expected, *state])
    # a shape problem: weights for 5 classes, 4 class names
    _, res_weights = originals["resnet"]
    code = main([*IMPORT[:-1], "a,b,c,d", "--weights", str(res_weights), "--out", str(tmp_path / "out")])
    err = _one_error(capsys)
    assert code == 2 and "2 with another shape" in err and "missing" not in err
    assert "fc.weight is (5, 32) in the file, the model needs (4, 32)" in err
    assert "fc.bias is (5,) in the file, the model needs (4,)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, words", [
    (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "mean needs 3 values (one per RGB channel), got 2"),
    (["--mean", "0.5,0.5,0.5", "--std", "0.2,0,0.2"], "std values must be > 0"),
    (["--mean", "0.5,0.5,0.5"], "the input normalisation is not guessed"),
    ([], "the input normalisation is not guessed"),
    (["--scale", "255", "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"], "either mean and std, or scale"),
    (["--scale", "0"], "scale must be a positive number"),
])
def test_normalisation_is_never_guessed(extra, words, originals, tmp_path, capsys):
    _, weights = originals["resnet"]
    argv = ["import", "--arch", "tests.user_models:tv_resnet_small", "--input-size", "64", "--class-names",
            "a,b,c,d,e", "--weights", str(weights), "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2 and words in _one_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, words", [
    ([], "give the class names"),
    (["--class-names", "a,b,c,d,e", "--data", "bundled"], "differ from the data set's classes"),
    (["--class-names", "a,a,b,c,d"], "distinct"),
])
def test_class_names_come_from_the_user_or_the_data(extra, words, originals, tmp_path, capsys):
    _, weights = originals["resnet"]
    argv = ["import", "--arch", "tests.user_models:tv_resnet_small", "--input-size", "64", "--scale", "255",
            "--weights", str(weights), "--out", str(tmp_path / "out"), "--no-progress", *extra]
    assert main(argv) == 2 and words in _one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_layout_that_does_not_describe_forward_is_refused(tmp_path, capsys):
    """MaxPoolHead looks like MobileNetV2 (features, classifier, no avgpool) but pools with max."""
    module = user_models.max_pool_head(5)
    weights = _save_state_dict(module, tmp_path / "w.safetensors")
    code = main(["import", "--arch", "tests.user_models:max_pool_head", "--input-size", "32", "--scale", "1",
                 "--class-names", "a,b,c,d,e", "--weights", str(weights), "--out", str(tmp_path / "out")])
    err = _one_error(capsys)
    assert code == 2 and "features-gap layout does not describe what this model's forward computes" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_a_factory_that_returns_no_model_is_refused(tmp_path, capsys):
    weights = _save_state_dict(nn.Linear(2, 2), tmp_path / "w.pth")
    code = main(["import", "--arch", "tests.user_models:not_a_model", "--scale", "1", "--class-names", "a,b",
                 "--weights", str(weights), "--out", str(tmp_path / "out")])
    assert code == 2 and "returned a str" in _one_error(capsys)


def test_resolve_normalisation_scale_definition():
    norm = resolve_normalisation(scale=255)
    assert norm.mean == (0.0, 0.0, 0.0) and norm.std == (1 / 255,) * 3 and norm.scale == 255
    assert resolve_normalisation(MEAN, STD).scale is None
    assert copy.deepcopy(norm).to_dict() == {"mean": [0.0] * 3, "std": [1 / 255] * 3, "scale": 255.0}


@pytest.mark.slow
def test_full_width_torchvision_alexnet(bundled, tmp_path):
    """torchvision's AlexNet at its own widths (61 M parameters) at 128 px: import, export, parity."""
    from etdeploy.data.images import load_split_images, normalise
    from etdeploy.export import export_dir, parity_from_dirs

    torch.manual_seed(0)
    original = user_models.tv_alexnet(5).eval()
    weights = _save_state_dict(original, tmp_path / "alexnet.safetensors")
    run = import_torch_model("tests.user_models:tv_alexnet", weights, tmp_path / "model", mean=MEAN, std=STD,
                             dataset=bundled, input_size=128, progress=False)
    assert run.layers == {"flatten": 9216, "dense1": 4096, "dense2": 4096}
    x = normalise(load_split_images(bundled, "test", 128, progress=False).images, MEAN, STD)
    delta = (_logits(original, x) - _logits(load_model(tmp_path / "model"), x)).abs().max().item()
    export_dir(tmp_path / "model", tmp_path / "export")
    report = parity_from_dirs(tmp_path / "model", tmp_path / "export", dataset=bundled, progress=False)
    print(f"full AlexNet 128 px: original vs imported {delta:.3g}, parity "
          f"{max(p.max_abs_logit_delta for p in report.pairs):.3g}")
    assert delta <= TOL and report.passed


def test_a_factory_file_inside_the_model_directory_never_runs(tmp_path):
    from etdeploy.models import build_model

    save_model(build_model("tests.user_models:tv_resnet_small", 5, input_size=64), tmp_path / "m")
    marker = tmp_path / "marker"
    evil = tmp_path / "m" / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w')\ndef f(num_classes, input_size=64):\n    raise SystemExit\n")
    spec_path = tmp_path / "m" / "spec.json"
    doc = json.loads(spec_path.read_text())
    doc["spec"]["arch"] = doc["structure"]["features"]["factory"] = f"{evil}:f"
    spec_path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="never runs code from a model directory"):
        load_model(tmp_path / "m")
    assert not marker.exists()


def rank_and_prune_90(model_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    """``etdeploy rank`` (8 steps, 40 images) then ``prune --percent 90`` of an imported model, through the
    CLI as a user runs them; checks every ranked layer kept its share. Returns the prune folder and its
    ``record.json``."""
    rank, pruned = tmp_path / "rank", tmp_path / "pruned"
    assert main(["rank", "--model", str(model_dir), "--steps", "8", "--max-images", "40", "--out", str(rank),
                 "--no-progress"]) == 0
    assert main(["prune", "--model", str(model_dir), "--ranking", str(rank), "--percent", "90", "--out", str(pruned),
                 "--no-progress"]) == 0
    record = json.loads((pruned / "record.json").read_text())
    assert {k: len(v["kept"]) for k, v in record["layers"].items()} == \
        {k: kept_count(v["width"], 90) for k, v in record["layers"].items()}
    return pruned, record
