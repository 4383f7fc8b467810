"""Downstream of an ONNX import: the deployable keeps the user's interface (NHWC input, input scaling,
names, softmax output), parity gains the original ONNX file, explain checks its ONNX file against the
model, fit reads such graphs, and a pipeline run can start from an import.

The "original" here is a small seeded CNN exported by torch.onnx the way a Keras model is called: NHWC input of raw [0, 1] pixels named ``input_1``, the normalisation done inside
the graph, a Softmax output named ``probs``. The imported model is written the way ``etdeploy import
--onnx`` writes one (spec ``meta["interface"]``, ``meta["imported"]`` with the file's SHA-256,
``original.onnx`` in the folder); the end-to-end test through the importer itself runs once it exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.errors import DataError
from etdeploy.export import export_dir, parity_from_dirs, read_export
from etdeploy.export.interface import Interface, interface_of
from etdeploy.fileio import sha256_file
from etdeploy.models import load_model, save_model

SIZE = 64
INTERFACE = {"layout": "NHWC", "input_name": "input_1", "output_name": "probs", "output": "softmax"}


class KerasLike(nn.Module):
    """``(b, S, S, 3)`` pixels on [0, 1] -> ``(b, K)`` softmax probabilities, as a Keras model is called:
    channels last, the per-channel normalisation ``(x - mean) / std`` done in the graph."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x):
        x = (x - self.mean) / self.std  # NHWC: broadcasts over the last (channel) axis
        return torch.softmax(self.model(x.permute(0, 3, 1, 2).contiguous()), dim=-1)


def write_original_onnx(model, mean, std, path: Path) -> None:
    import warnings

    wrapped = KerasLike(model, mean, std).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(1, SIZE, SIZE, 3),), str(path), input_names=["input_1"],
                          output_names=["probs"], dynamic_axes={"input_1": {0: "batch"}, "probs": {0: "batch"}},
                          opset_version=17, dynamo=False)


def hand_import(trained_dir: Path, out: Path) -> Path:
    """What ``etdeploy import --onnx`` makes of the Keras-like original of ``trained_dir``'s model: the same
    weights, ``meta["interface"]`` (NHWC, input affine ``x * (1/std) + (-mean/std)`` folded out, softmax),
    ``meta["imported"]`` (the file's SHA-256) and ``original.onnx``."""
    model = load_model(trained_dir)
    spec = model.spec
    out.mkdir(parents=True)
    scratch = out.parent / f".{out.name}.onnx"
    write_original_onnx(model, spec.mean, spec.std, scratch)
    interface = {**INTERFACE, "opset": 17,
                 "input_affine": {"scale": [1 / s for s in spec.std],
                                  "bias": [-m / s for m, s in zip(spec.mean, spec.std)]}}
    meta = {**spec.meta, "interface": interface,
            "imported": {"route": "onnx", "file": "keras_like.onnx", "sha256": sha256_file(scratch),
                         "bytes": scratch.stat().st_size}}
    model.spec = spec.replace(meta=meta)
    shutil.rmtree(out)
    save_model(model, out)
    shutil.move(scratch, out / "original.onnx")
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory, bundled) -> Path:
    """A seeded small CNN (no training: parity is about every implementation computing the same function)."""
    from etdeploy.models import build_model

    root = tmp_path_factory.mktemp("import-pipeline")
    model = build_model("sequential-cnn", 5, input_size=SIZE, seed=0, class_names=bundled.classes,
                        layers="c8k3p1-r-m2-c16k3p1-r-m4", hidden=(32, 16))
    model.spec = model.spec.replace(mean=(0.45, 0.42, 0.40), std=(0.22, 0.21, 0.2))
    save_model(model, root / "built")
    return hand_import(root / "built", root / "imported")


def _ort(path, x):
    from etdeploy.ort_session import make_session

    session = make_session(Path(path))
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_interface_maths():
    iface = Interface.from_dict({**INTERFACE, "input_affine": {"scale": [2.0, 4.0, 0.5], "bias": [-1.0, 0.0, 1.0]}})
    mean, std = iface.normalisation((0.5, 0.4, 0.3), (0.2, 0.25, 0.1))
    u = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 5)).astype(np.float32) / 255
    x = (u - np.array([0.5, 0.4, 0.3], np.float32)[:, None, None]) / np.array([0.2, 0.25, 0.1], np.float32)[:, None, None]
    original = iface.deployable_input(x)
    assert original.shape == (2, 5, 5, 3)
    assert np.allclose(original, (u.transpose(0, 2, 3, 1) - np.array(mean, np.float32)) / np.array(std, np.float32),
                       atol=1e-5)
    p = iface.output_of(np.array([[1.0, 2.0, 3.0]]))
    assert np.allclose(p, np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum()) and p.dtype == np.float32
    assert interface_of(type("S", (), {"meta": {}})()) is None


def test_export_keeps_the_interface(imported, tmp_path, bundled):
    from etdeploy.data.images import load_split

    run = export_dir(imported, tmp_path / "e")
    assert run.interface is not None and run.interface.layout == "NHWC"
    manifest = json.loads((tmp_path / "e" / "export.json").read_text())
    assert manifest["interface"]["output"] == "softmax"
    assert manifest["input"]["name"] == "input_1" and manifest["input"]["shape"] == ["batch", SIZE, SIZE, 3]
    assert manifest["output"] == {"name": "probs", "dtype": "float32", "shape": ["batch", 5], "kind": "softmax"}
    assert np.allclose(manifest["input"]["mean"], 0, atol=1e-6) and np.allclose(manifest["input"]["std"], 1)
    for name in ("model.onnx", "model.sim.onnx"):
        info = run.files[name]
        assert info.inputs[0]["name"] == "input_1" and info.inputs[0]["shape"] == ["batch", SIZE, SIZE, 3]
        assert info.outputs[0]["name"] == "probs" and info.inputs[0]["elem_type"] == "float"
        assert {"Transpose", "Softmax"} <= set(info.op_histogram)
    # the deployable answers the original's input exactly as the original does
    x = load_split(bundled.split("test")[:8], SIZE).images.transpose(0, 2, 3, 1).astype(np.float32) / 255
    want = _ort(imported / "original.onnx", x)
    for name in ("model.onnx", "model.sim.onnx"):
        got = _ort(tmp_path / "e" / name, x)
        assert got.shape == want.shape and np.allclose(got.sum(axis=1), 1, atol=1e-5)
        assert np.max(np.abs(got - want)) < 1e-5
    # deterministic: the same model gives the same bytes
    export_dir(imported, tmp_path / "e2")
    for name in ("model.onnx", "model.sim.onnx", "export.json"):
        assert (tmp_path / "e" / name).read_bytes() == (tmp_path / "e2" / name).read_bytes()


def test_parity_with_the_original_unpruned(imported, tmp_path, bundled):
    export_dir(imported, tmp_path / "e")
    run = parity_from_dirs(imported, tmp_path / "e", dataset=bundled, progress=False)
    assert run.names == ("original", "torch", "onnx", "onnx-sim")
    assert run.passed and run.compared.startswith("logits")
    assert len(run.pairs) == 6 and all(p.max_abs_logit_delta < 1e-5 for p in run.pairs)
    assert run.pair("original", "torch").label_disagreements == 0
    assert "logits (pre-softmax" in run.table()


def test_five_way_parity_after_pruning(imported, tmp_path, bundled):
    from etdeploy.api import prune_dirs, rank_dirs

    rank_dirs(imported, bundled, out=tmp_path / "rank", steps=4, max_images=20, progress=False)
    prune_dirs(imported, tmp_path / "rank", dataset=bundled, schedule="bottom-first", percent=90.0,
               out=tmp_path / "prune", progress=False)
    for part in ("masked", "sliced"):
        spec = load_model(tmp_path / "prune" / part).spec
        assert spec.meta["interface"] == load_model(imported).spec.meta["interface"]
        assert spec.meta["imported"]["sha256"] == sha256_file(imported / "original.onnx")
        assert not (tmp_path / "prune" / part / "original.onnx").exists()  # referenced by SHA-256, not copied
    export_dir(tmp_path / "prune" / "sliced", tmp_path / "e")
    assert read_export(tmp_path / "e").interface.layout == "NHWC"
    run = parity_from_dirs(tmp_path / "prune" / "sliced", tmp_path / "e", masked_dir=tmp_path / "prune" / "masked",
                           dataset=bundled, original=imported, progress=False)
    assert run.names == ("original", "imported", "masked-torch", "sliced-torch", "onnx", "onnx-sim")
    assert run.passed, run.mismatches
    assert (run.pairs[0].a, run.pairs[0].b) == ("original", "imported") and len(run.pairs) == 7
    assert max(p.max_abs_logit_delta for p in run.pairs) < 1e-5
    # without the import's folder the four pruned members are compared, and the report says what is missing
    run4 = parity_from_dirs(tmp_path / "prune" / "sliced", tmp_path / "e", masked_dir=tmp_path / "prune" / "masked",
                            dataset=bundled, progress=False)
    assert len(run4.names) == 4 and run4.passed and "original ONNX file is not compared" in run4.notes[0]
    # the original must be the file the import recorded
    other = tmp_path / "other"
    shutil.copytree(imported, other)
    (other / "original.onnx").write_bytes((other / "original.onnx").read_bytes() + b"\0")
    with pytest.raises(DataError, match="SHA-256"):
        parity_from_dirs(tmp_path / "prune" / "sliced", tmp_path / "e", dataset=bundled, original=other,
                         progress=False)


def test_explain_checks_its_onnx_file_and_fit_reads_the_deployable(imported, tmp_path, bundled):
    from etdeploy.cli.main import main
    from etdeploy.export.match import check_export_of
    from etdeploy.models import build_model
    from etdeploy.targets import fit_targets

    export_dir(imported, tmp_path / "e")
    sim = tmp_path / "e" / "model.sim.onnx"
    match = check_export_of(sim, imported)
    assert match.method == "fingerprint" and np.allclose(match.mean, 0, atol=1e-6) and np.allclose(match.std, 1)
    by_outputs = check_export_of(imported / "original.onnx", imported)  # no export.json: run both and compare
    assert by_outputs.method == "outputs" and by_outputs.max_abs_delta < 1e-5
    other = build_model("sequential-cnn", 5, input_size=SIZE, seed=1, class_names=bundled.classes,
                        layers="c8k3p1-r-m2-c16k3p1-r-m4", hidden=(32, 16))
    save_model(other, tmp_path / "other")
    image = str(bundled.split("test")[0].path)
    base = ["explain", "--onnx", str(sim), "--image", image, "--patch", "16", "--stride", "8", "--no-progress"]
    assert main([*base, "--model", str(tmp_path / "other"), "--out", str(tmp_path / "x1")]) == 2
    assert not (tmp_path / "x1").exists()
    shutil.copy(sim, tmp_path / "copy.onnx")  # no manifest beside it: the outputs decide
    assert main([*base[:2], str(tmp_path / "copy.onnx"), *base[3:], "--model", str(tmp_path / "other"),
                 "--out", str(tmp_path / "x2")]) == 2
    # the deployable (NHWC in, softmax out) explains and fits
    assert main([*base, "--model", str(imported), "--out", str(tmp_path / "maps")]) == 0
    summary = json.loads((tmp_path / "maps" / "summary.json").read_text())
    assert summary["images"][0]["maps"]
    fit = fit_targets({"deployable": sim}, ["stm32h7"]).models["deployable"]
    assert fit.verdicts["stm32h7"].unsupported_ops == ()
    assert {"Transpose", "Mul", "Add", "Softmax"} <= set(fit.analysis.ops)
    assert fit.analysis.input_bytes == SIZE * SIZE * 3 * 4 and fit.analysis.output_bytes == 5 * 4


KERAS = Path(__file__).parent / "fixtures" / "keras" / "keras_cnn.onnx"


@pytest.fixture(scope="module")
def keras_imported(tmp_path_factory, bundled) -> Path:
    """The Keras 3 Sequential CNN (NHWC input of raw pixels, Rescaling(1/255), softmax output) imported."""
    from etdeploy.importing import import_onnx_model

    out = tmp_path_factory.mktemp("keras") / "imported"
    import_onnx_model(KERAS, out, scale=255, dataset=bundled, progress=False)
    return out


def test_keras_cnn_import_rank_prune_export_parity_explain_fit(keras_imported, tmp_path, bundled, capsys):
    """The issue's goal: import -> rank -> prune 90 % -> export -> five-way parity -> explain -> fit, the
    deployable taking the Keras model's NHWC input and giving its probabilities."""
    from etdeploy.api import prune_dirs, rank_dirs
    from etdeploy.cli.main import main
    from etdeploy.targets import fit_targets

    interface = load_model(keras_imported).spec.meta["interface"]
    assert interface["layout"] == "NHWC" and interface["output"] == "softmax"
    rank_dirs(keras_imported, bundled, out=tmp_path / "rank", steps=4, max_images=20, progress=False)
    prune_dirs(keras_imported, tmp_path / "rank", dataset=bundled, schedule="bottom-first", percent=90.0,
               out=tmp_path / "prune", progress=False)
    sliced, masked = tmp_path / "prune" / "sliced", tmp_path / "prune" / "masked"
    assert main(["export", "--model", str(sliced), "--out", str(tmp_path / "e")]) == 0
    assert "interface kept: input 'image' NHWC" in capsys.readouterr().out
    run = read_export(tmp_path / "e")
    assert run.sim.inputs[0]["name"] == interface["input_name"] and run.sim.inputs[0]["shape"] == ["batch", 64, 64, 3]
    assert run.sim.outputs[0]["name"] == interface["output_name"] and "Softmax" in run.sim.op_histogram
    # the deployable of the unpruned import answers the user's own input as the original does
    export_dir(keras_imported, tmp_path / "e0")
    x = bundled.split("test")[:4]
    from etdeploy.data.images import load_split

    raw = load_split(x, 64).images.transpose(0, 2, 3, 1).astype(np.float32)  # raw pixels, NHWC, as Keras takes
    assert np.max(np.abs(_ort(tmp_path / "e0" / "model.sim.onnx", raw) - _ort(KERAS, raw))) < 1e-5
    # five-way parity through the CLI
    out = tmp_path / "parity.json"
    assert main(["parity", "--model", str(sliced), "--export", str(tmp_path / "e"), "--masked", str(masked),
                 "--original", str(keras_imported), "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "original vs imported" in table and "logits (pre-softmax" in table
    parity = json.loads(out.read_text())
    assert parity["names"] == ["original", "imported", "masked-torch", "sliced-torch", "onnx", "onnx-sim"]
    assert parity["passed"] and all(p["max_abs_logit_delta"] < 1e-5 for p in parity["pairs"])
    # explain checks its file against the model and reads the NHWC deployable; fit sizes it
    image = str(bundled.split("test")[0].path)
    assert main(["explain", "--onnx", str(tmp_path / "e" / "model.sim.onnx"), "--model", str(sliced), "--image",
                 image, "--patch", "16", "--stride", "8", "--out", str(tmp_path / "maps"), "--no-progress"]) == 0
    assert main(["explain", "--onnx", str(tmp_path / "e" / "model.sim.onnx"), "--model", str(keras_imported),
                 "--image", image, "--out", str(tmp_path / "maps2"), "--no-progress"]) == 2
    assert "is not an export of the model" in capsys.readouterr().err
    fit = fit_targets({"sliced": tmp_path / "e" / "model.sim.onnx"}, ["stm32h7"]).models["sliced"]
    assert fit.verdicts["stm32h7"].unsupported_ops == () and fit.analysis.input_bytes == 64 * 64 * 3 * 4


def test_pipeline_run_from_an_onnx_import(tmp_path):
    """``[model] import``: the train stage imports instead of training; every later stage works unchanged,
    parity includes the original file, and the report shows the origin."""
    from etdeploy.pipeline import run_pipeline
    from etdeploy.pipeline.config import load_config

    config_file = tmp_path / "run.toml"
    config_file.write_text(f'''name = "imported"
[model]
import = "{KERAS}"
scale = 255.0
[ranking]
steps = 4
max_images = 20
[sweep]
points = 3
schedules = ["bottom-first"]
class_ea = false
[prune]
percents = [90.0]
export_percent = 90.0
finetune_epochs = 0
[occlusion]
images_per_class = 1
patch = 16
stride = 16
[targets]
ids = ["stm32h7"]
''')
    config = load_config(config_file)
    assert config.model.import_ == str(KERAS) and config.to_dict()["model"]["import"] == str(KERAS)
    html = run_pipeline(config, tmp_path / "run", progress=False, echo=lambda line: None)
    report = json.loads((html.parent / "report.json").read_text())
    train = report["stages"]["train"]
    assert train["imported"]["route"] == "onnx" and train["imported"]["sha256"] == sha256_file(KERAS)
    assert train["interface"]["layout"] == "NHWC" and train["accuracy"] is not None
    parity = report["stages"]["parity"]
    assert parity["names"][:2] == ["original", "imported"] and parity["passed"]
    assert report["stages"]["export"]["exports"]["sliced"]["interface"]["output"] == "softmax"
    text = html.read_text()
    assert "Imported model" in text and sha256_file(KERAS) in text and "original vs imported" in text


def test_config_import_keys():
    from etdeploy.errors import ConfigError
    from etdeploy.pipeline.config import RunConfig, config_from_dict

    assert "import" not in RunConfig().to_dict()["model"] and "mean" not in RunConfig().to_dict()["model"]
    config = config_from_dict({"model": {"import": "m.onnx", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}})
    assert config.model.import_ == "m.onnx" and config.to_dict()["model"]["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="exclude each other"):
        config_from_dict({"model": {"import": "m.onnx", "load": "d"}})
    with pytest.raises(ConfigError, match="set model.import"):
        config_from_dict({"model": {"scale": 255.0}})
    with pytest.raises(ConfigError, match="model.import must be a string"):
        config_from_dict({"model": {"import": 3}})


def test_int8_of_a_deployable_with_an_interface(imported, tmp_path, bundled):
    from etdeploy.export import quantize_model

    export_dir(imported, tmp_path / "e")
    run = quantize_model(tmp_path / "e" / "model.sim.onnx", imported, dataset=bundled, out=tmp_path / "int8.onnx",
                         calibration_images=8)
    assert run.compared == "softmax" and run.to_dict()["compared"] == "softmax"
    assert run.max_abs_logit_delta <= 1.0 and 0 <= run.top1_agreement <= 1
    assert _ort(tmp_path / "int8.onnx", np.zeros((1, SIZE, SIZE, 3), np.float32)).shape == (1, 5)


def test_report_of_an_import_without_data(tmp_path, bundled):
    """``training_summary`` of a model imported without data (no metrics.json): the report shows its origin."""
    from etdeploy.cli.main import main
    from etdeploy.importing import import_onnx_model
    from etdeploy.training import training_summary

    import_onnx_model(KERAS, tmp_path / "imp", scale=255, class_names=bundled.classes, progress=False)
    assert not (tmp_path / "imp" / "metrics.json").exists()
    summary = training_summary(tmp_path / "imp")
    assert summary["accuracy"] is None and summary["imported"]["file"] == "keras_cnn.onnx"
    assert summary["interface"]["layout"] == "NHWC"
    assert main(["report", "--model", str(tmp_path / "imp"), "--no-data", "--out", str(tmp_path / "r")]) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Imported model" in html and sha256_file(KERAS) in html and "Original vs imported" in html


def test_parity_with_the_original_pytorch_module(tmp_path, bundled):
    """A PyTorch import: the original module, rebuilt through its factory and weights file, is the fifth member
    (the pairs after pruning are those of the ONNX route, tested above)."""
    from safetensors.torch import save_file

    from etdeploy.importing import import_torch_model

    features, classifier = __import__("tests.user_models", fromlist=["x"]).tiny_factory(5, input_size=32)
    original = nn.Module()
    original.features, original.classifier = features, classifier
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, tmp_path / "tiny.safetensors")
    import_torch_model("tests.user_models:tiny_factory", tmp_path / "tiny.safetensors", tmp_path / "imp",
                       scale=1, class_names=bundled.classes, input_size=32, progress=False)
    export_dir(tmp_path / "imp", tmp_path / "e")
    run = parity_from_dirs(tmp_path / "imp", tmp_path / "e", dataset=bundled, original=tmp_path / "tiny.safetensors",
                           progress=False)
    assert run.names == ("original", "torch", "onnx", "onnx-sim") and run.kinds["original"] == "torch"
    assert run.passed and len(run.pairs) == 6 and run.pair("original", "torch").max_abs_logit_delta < 1e-5
    (tmp_path / "other.safetensors").write_bytes((tmp_path / "tiny.safetensors").read_bytes()[:-4] + b"    ")
    with pytest.raises(DataError, match="SHA-256"):
        parity_from_dirs(tmp_path / "imp", tmp_path / "e", dataset=bundled, original=tmp_path / "other.safetensors",
                         progress=False)


def test_a_run_does_not_resume_on_a_changed_import_file(tmp_path):
    """The configuration names the imported file by path; its content is recorded and checked on resume."""
    import shutil

    from etdeploy.errors import ReportError
    from etdeploy.pipeline import run_pipeline
    from etdeploy.pipeline.config import load_config
    from etdeploy.pipeline.stages import STAGES

    original = tmp_path / "model.onnx"
    shutil.copyfile(KERAS, original)
    config_file = tmp_path / "run.toml"
    config_file.write_text(f'name = "imported"\n[model]\nimport = "{original}"\nscale = 255.0\n')
    config = load_config(config_file)
    data_only = [s for s in STAGES if s.name == "data"]
    out = tmp_path / "run"
    run_pipeline(config, out, stages=data_only, progress=False, echo=lambda line: None)
    assert json.loads((out / "run.json").read_text())["import_sha256"] == sha256_file(KERAS)
    run_pipeline(config, out, stages=data_only, resume=True, progress=False, echo=lambda line: None)  # same file
    shutil.copyfile(KERAS.parent / "keras_gap.onnx", original)  # another model under the same name
    with pytest.raises(ReportError, match=r"\[model\] import .* not the one the run started with"):
        run_pipeline(config, out, stages=data_only, resume=True, progress=False, echo=lambda line: None)
