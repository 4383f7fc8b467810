"""A model knows its data (issue 15): the spec records it, commands default to it, other splits are
refused (or allowed with a warning) with the shared images counted; model files, factory files and
mismatched feature widths get clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from etdeploy.cli.main import main
from etdeploy.data import load_dataset
from etdeploy.data.compat import OtherDataError, OtherDataWarning, check_compatible, open_model_data, recorded_data
from etdeploy.data.sources import DataIdentity
from etdeploy.errors import ContractError, DataError, ModelError

TINY_KWARGS = {"layers": "c4k3p1-r-m2", "hidden": (8,)}
REFUSED = "these are not the data this model was trained on: seed 1 (the model's: 0)"


def _paths(samples) -> set[Path]:
    return {s.path.resolve() for s in samples}


def _train_tiny(dataset, out: Path) -> Path:
    from etdeploy.training import train_model

    train_model("sequential-cnn", dataset, epochs=0, input_size=16, out=out, progress=False,
                model_kwargs=TINY_KWARGS)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """An untrained-but-saved sequential CNN whose spec records bundled data with cap 10 (seed 0)."""
    return _train_tiny(load_dataset("bundled", cap=10), tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny_artefacts(tiny, tmp_path_factory) -> Path:
    """The tiny model's ranking and export, made with the model's own data (the defaults)."""
    root = tmp_path_factory.mktemp("tiny-artefacts")
    assert main(["rank", "--model", str(tiny), "--steps", "2", "--no-progress", "--out", str(root / "rank")]) == 0
    assert main(["export", "--model", str(tiny), "--out", str(root / "export")]) == 0
    return root


# ------------------------------------------------------------------------------ 1. the spec records its data


def test_spec_records_source_root_grouping_recipe_seed_cap(trained_mini_dir, tmp_path, monkeypatch):
    spec = json.loads((trained_mini_dir / "spec.json").read_text())["spec"]
    recorded = spec["meta"]["trained_on"]
    assert {k: recorded[k] for k in ("source", "root", "name", "grouping", "recipe", "seed", "cap")} == {
        "source": "bundled", "root": None, "name": "bundled", "grouping": "paper5", "recipe": "paper", "seed": 0,
        "cap": None}
    assert recorded["counts"]["test"] == [12] * 5  # the provenance recorded before is still there
    metrics = json.loads((trained_mini_dir / "metrics.json").read_text())
    assert metrics["data"] == recorded

    # a folder given as a relative path: recorded as given, plus its absolute root
    folder = tmp_path / "work" / "shapes"
    bundled = load_dataset("bundled")
    for label in (0, 1):
        (folder / bundled.classes[label]).mkdir(parents=True)
        for sample in [s for s in bundled.split("train") if s.label == label][:10]:
            shutil.copy(sample.path, folder / bundled.classes[label] / sample.path.name)
    monkeypatch.chdir(tmp_path / "work")
    model_dir = _train_tiny(load_dataset("shapes"), tmp_path / "folder-model")
    identity = recorded_data(model_dir)
    assert identity == DataIdentity(source="shapes", root=str(folder.resolve()), name="shapes", grouping="folder",
                                    recipe="paper", seed=0, cap=None)
    # from any other folder, the model's data are found again and are the model's
    monkeypatch.chdir(tmp_path)
    data = open_model_data(model_dir)
    assert data.root.resolve() == folder.resolve() and data.identity().differences(identity) == ()
    assert _paths(data.split("test")) == _paths(load_dataset(folder).split("test"))


def test_old_specs_without_the_source_still_load_and_default_to_their_data(tiny, tmp_path, capsys):
    from etdeploy.models import load_model

    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    doc = json.loads((old / "spec.json").read_text())
    trained_on = doc["spec"]["meta"]["trained_on"]
    del trained_on["source"], trained_on["root"]
    (old / "spec.json").write_text(json.dumps(doc))
    assert load_model(old).spec.meta["trained_on"]["cap"] == 10
    assert recorded_data(old) == DataIdentity(source=None, root=None, name="bundled", grouping="paper5",
                                              recipe="paper", seed=0, cap=10)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(old), "--json", "--no-progress"]) == 0
    out = capsys.readouterr()
    metrics = json.loads((tiny / "metrics.json").read_text())
    assert json.loads(out.out)["accuracy"] == metrics["evaluation"]["test"]["accuracy"] and out.err == ""
    assert main(["evaluate", "--model", str(old), "--data-seed", "1", "--no-progress"]) == 2
    assert REFUSED in capsys.readouterr().err

    # an old spec of folder data names the folder only: without --data, say so
    trained_on["name"] = "mydata"
    (old / "spec.json").write_text(json.dumps(doc))
    assert main(["evaluate", "--model", str(old), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "names its training data 'mydata' but not the folder" in err and "--data" in err


# ------------------------------------------------------------------------- 2. commands default to that data


def test_commands_default_to_the_model_data_and_print_nothing_extra(tiny, tiny_artefacts, tmp_path, capsys):
    metrics = json.loads((tiny / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny), "--json", "--no-progress"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    # the model's test split (cap 10: one image per class), not the bundled default (12 per class)
    assert result["n"] == 5 and result["accuracy"] == metrics["evaluation"]["test"]["accuracy"] and out.err == ""
    summary = json.loads((tiny_artefacts / "rank" / "summary.json").read_text())
    assert sum(summary["class_counts"]) == len(load_dataset("bundled", cap=10).split("train")) == 40
    code = main(["sweep", "--model", str(tiny), "--ranking", str(tiny_artefacts / "rank"), "--layer", "dense1",
                 "--percents", "0,50", "--no-progress", "--out", str(tmp_path / "sweep")])
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["n_images"] == 5
    # data info has no model: the bundled defaults
    assert main(["data", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["test"] == [12] * 5


def test_a_model_without_recorded_data_gets_the_bundled_data(tmp_path):
    from etdeploy.models import build_model, load_model, save_model

    bundled = load_dataset("bundled")
    save_model(build_model("sequential-cnn", 5, input_size=16, class_names=bundled.classes, **TINY_KWARGS),
               tmp_path / "m")
    assert recorded_data(tmp_path / "m") is None
    data = open_model_data(tmp_path / "m")
    assert data.identity() == bundled.identity() and data.identity().location == "bundled"
    spec = load_model(tmp_path / "m").spec
    assert check_compatible(spec, load_dataset("bundled", seed=4)) is None  # nothing recorded, nothing to compare


# ------------------------------------------------------------------ 3. other splits: refused, counted, allowed


def test_the_issue_repro_evaluate_with_another_seed_is_refused(trained_mini_dir, capsys):
    ours = load_dataset("bundled", seed=1).split("test")
    shared = len(_paths(ours) & _paths(load_dataset("bundled").split("train")))
    assert shared > 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained_mini_dir), "--data-seed", "1", "--no-progress"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and out.err.startswith("error: ")
    assert REFUSED in out.err
    assert (f"the test split of seed 1 shares {shared} of its {len(ours)} images with the images this model was "
            "trained on, so results on it would be inflated (leakage)") in out.err
    assert "--allow-other-data" in out.err and str(trained_mini_dir) in out.err

    assert main(["evaluate", "--model", str(trained_mini_dir), "--data-seed", "1", "--allow-other-data",
                 "--json", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == len(ours)
    assert out.err.count("\n") == 1 and out.err.startswith("warning: using other data than this model was trained "
                                                           "on: seed 1 (the model's: 0)")
    assert f"shares {shared} of its {len(ours)} images" in out.err


def _refusal_argv(command: str, tiny: Path, artefacts: Path, out: Path) -> list[str]:
    model = ["--model", str(tiny)]
    return {
        "evaluate": ["evaluate", *model],
        "rank": ["rank", *model, "--steps", "2", "--out", str(out)],
        "prune": ["prune", *model, "--ranking", str(artefacts / "rank"), "--percent", "50", "--out", str(out)],
        "sweep": ["sweep", *model, "--ranking", str(artefacts / "rank"), "--layer", "dense1", "--out", str(out)],
        "parity": ["parity", *model, "--export", str(artefacts / "export"), "--out", str(out)],
        "quantize": ["quantize", "--onnx", str(artefacts / "export" / "model.sim.onnx"), *model, "--out", str(out)],
        "report": ["report", *model, "--out", str(out)],
    }[command] + ["--data-seed", "1"] + ["--no-progress"] * (command != "quantize")  # quantize draws no bars


@pytest.mark.parametrize("command", ["evaluate", "rank", "prune", "sweep", "parity", "quantize", "report"])
def test_every_command_with_data_options_refuses_other_splits_and_writes_nothing(command, tiny, tiny_artefacts,
                                                                                 tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(_refusal_argv(command, tiny, tiny_artefacts, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and REFUSED in err and "--allow-other-data" in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def bundled_spec():
    """The spec of a model trained on the whole bundled data, seed 0 (as ``train`` records it)."""
    from etdeploy.models import build_model

    bundled = load_dataset("bundled")
    spec = build_model("sequential-cnn", 5, input_size=16, class_names=bundled.classes, **TINY_KWARGS).spec
    return spec.replace(meta={"trained_on": bundled.training_record()})


def test_check_compatible_counts_shared_images_per_split(bundled_spec):
    spec = bundled_spec
    model_train = _paths(load_dataset("bundled").split("train"))
    model_heldout = _paths(load_dataset("bundled").split("val") + load_dataset("bundled").split("test"))
    assert check_compatible(spec, load_dataset("bundled")) is None
    capped = load_dataset("bundled", cap=8)
    # cap 8 of the same shuffle: its test images are all among the model's training images
    with pytest.raises(OtherDataError) as info:
        check_compatible(spec, capped, "M", split="test")
    assert info.value.shared == len(capped.split("test")) == len(_paths(capped.split("test")) & model_train) == 5
    assert info.value.differences == (("cap", "none", "8"),)
    assert "the test split of cap 8 shares 5 of its 5 images" in str(info.value) and str(info.value).endswith("(M)")
    # a train split of another seed holds images the model is validated and tested on
    other = load_dataset("bundled", seed=2)
    with pytest.raises(OtherDataError) as info:
        check_compatible(spec, other, split="train")
    expected = len(_paths(other.split("train")) & model_heldout)
    assert expected > 0 and info.value.shared == expected
    assert f"the train split of seed 2 holds {expected} images of this model's validation and test" in str(info.value)
    # allowed: the same text as a warning, and returned
    with pytest.warns(OtherDataWarning, match="using other data than this model was trained on: seed 2"):
        text = check_compatible(spec, other, split="train", allow_other_data=True)
    assert f"holds {expected} images" in text
    # the sol split does not depend on the seed
    sol_spec = spec.replace(meta={"trained_on": {**spec.meta["trained_on"], "recipe": "sol"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_compatible(sol_spec, load_dataset("bundled", recipe="sol", seed=5)) is None
    # classes are checked first, as before
    import dataclasses

    with pytest.raises(DataError, match="differ from the model's"):
        check_compatible(spec, dataclasses.replace(other, classes=tuple(reversed(other.classes))))


def test_a_copy_of_the_data_elsewhere_counts_shared_images_by_path_and_bytes(bundled_spec, tmp_path):
    from etdeploy.data import bundled_root

    spec = bundled_spec
    copy = tmp_path / "msl-copy"
    shutil.copytree(bundled_root(), copy)
    ours = load_dataset(copy, seed=1)
    relative = {s.path.relative_to(copy) for s in ours.split("test")}
    bundled = load_dataset("bundled")
    trained = {s.path.relative_to(bundled.root) for s in bundled.split("train")}
    shared = sorted(relative & trained)
    assert shared
    (copy / shared[0]).write_bytes(b"not the same image")  # same name, other bytes: not the same image
    with pytest.raises(OtherDataError) as info:
        check_compatible(spec, ours, split="test")
    assert info.value.shared == len(shared) - 1
    assert [d[0] for d in info.value.differences] == ["data", "seed"]
    assert f"data {copy.resolve()} (the model's: bundled)" in str(info.value)


def test_pipeline_refuses_a_loaded_model_trained_on_other_data(tiny, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\ncap = 10\nseed = 1\n\n[model]\nload = "{tiny}"\n')
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the data stage's line
    assert err.startswith("error: [model] load: these are not the data this model was trained on: seed 1 "
                          "(the model's: 0)")
    assert "set [data] seed to the model's" in err and str(tiny) in err
    assert not (tmp_path / "run" / "train").exists()


# ----------------------------------------------------------------------- 4. a model file for a model directory


@pytest.mark.parametrize("name, advice", [
    ("mycnn.pth", "etdeploy import --arch package.module:factory --weights FILE --out DIR"),
    ("weights.safetensors", "etdeploy import --arch package.module:factory --weights FILE --out DIR"),
    ("model.onnx", "etdeploy import --onnx FILE --out DIR"),
    ("notes.txt", "etdeploy import --onnx FILE --out DIR` or `etdeploy import --arch"),
])
def test_a_model_file_is_told_how_to_import_it(tmp_path, capsys, name, advice):
    from etdeploy.models import load_model

    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="is a file; etdeploy commands take a model directory") as info:
        load_model(path)
    assert advice in str(info.value)
    for argv in (["evaluate", "--model", str(path)], ["export", "--model", str(path), "--out", str(tmp_path / "o")]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {name} is a file") and advice in err and str(path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert main(["evaluate", "--model", str(tmp_path / "missing")]) == 2
    assert "model directory does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------- 5. factories by file and module

FACTORY = """
from torch import nn

from helpers import flat_width  # a sibling module: the file's folder is searchable


def build(num_classes, input_size=32):
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    return features, nn.Sequential(nn.Flatten(), nn.Linear(flat_width(input_size), 8), nn.ReLU(),
                                   nn.Linear(8, num_classes))
"""


def _factory_folder(root: Path) -> Path:
    nets = root / "nets"
    nets.mkdir(parents=True)
    (nets / "mycnn.py").write_text(FACTORY)
    (nets / "helpers.py").write_text("def flat_width(size):\n    return 4 * (size // 2) ** 2\n")
    return nets


def test_train_takes_a_factory_file_and_the_spec_records_its_path(tmp_path, monkeypatch, capsys):
    from etdeploy.models import build_model, load_model

    nets = _factory_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--arch", "nets/mycnn.py:build", "--input-size", "16", "--epochs", "0", "--cap", "10",
                 "--no-progress", "--out", "m"]) == 0
    spec = load_model(tmp_path / "m").spec
    assert spec.arch == f"{(nets / 'mycnn.py').resolve()}:build" and spec.input_size == 16
    monkeypatch.chdir(nets.parent.parent)  # rebuilt from anywhere
    assert build_model(spec.arch, 5, input_size=16).classifier[1].in_features == 4 * 8 * 8
    (nets / "mycnn.py").rename(nets / "gone.py")
    with pytest.raises(ModelError, match="model factory file does not exist") as info:
        build_model(spec.arch, 5, input_size=16)
    assert str(nets.resolve() / "mycnn.py") in str(info.value)
    capsys.readouterr()
    assert main(["train", "--arch", "nets/missing.py:build", "--epochs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "model factory file does not exist" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_package_factory_needs_no_pythonpath(tmp_path):
    package = tmp_path / "userpkg_i15"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(FACTORY.replace("from helpers import flat_width", "from .helpers import flat_width"))
    (package / "helpers.py").write_text("def flat_width(size):\n    return 4 * (size // 2) ** 2\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = Path(sys.executable).with_name("etdeploy")
    done = subprocess.run([str(cli), "train", "--arch", "userpkg_i15.nets:build", "--input-size", "16", "--epochs",
                           "0", "--cap", "10", "--no-progress", "--out", "m"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "m" / "spec.json").read_text())["spec"]
    assert spec["arch"] == "userpkg_i15.nets:build"


# ----------------------------------------------------------------------- 6. features wider than the Linear

MISMATCHED = """
from torch import nn


def build(num_classes, input_size=224):
    features = nn.Sequential(nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    return features, nn.Sequential(nn.Flatten(), nn.Linear({width}, 96), nn.ReLU(), nn.Linear(96, num_classes))
"""


def test_a_width_mismatch_names_both_widths_and_an_input_size_that_fits(tmp_path, capsys):
    from etdeploy.models import build_model

    (tmp_path / "bad.py").write_text(MISMATCHED.format(width=1280))
    arch = f"{tmp_path / 'bad.py'}:build"
    with pytest.raises(ContractError) as info:
        build_model(arch, 5)
    # 20 channels x 112 x 112 at 224 px; 20 x 8 x 8 = 1280 at 16 (or 17) px
    assert str(info.value) == ("the feature extractor gives 250880 values per image at input size 224, but the first "
                               "Linear layer (classifier.1) takes 1280: input size 16 would fit (--input-size 16)")
    assert build_model(arch, 5, input_size=16).classifier[1].in_features == 1280
    capsys.readouterr()
    assert main(["train", "--arch", arch, "--epochs", "0", "--cap", "10", "--no-progress", "--out",
                 str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "250880" in err and "1280" in err and "--input-size 16" in err
    assert "internal error" not in err and not (tmp_path / "m").exists()

    (tmp_path / "odd.py").write_text(MISMATCHED.format(width=1281))
    with pytest.raises(ContractError, match="no input size from 8 to 512 gives 1281; make the first Linear take "
                                            "250880 values"):
        build_model(f"{tmp_path / 'odd.py'}:build", 5)
