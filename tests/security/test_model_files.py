"""Model directories from other teams: pickle payloads, corrupt or tampered weights, NaN weights."""

import json
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import torch

from etdeploy.cli.main import main
from etdeploy.errors import ModelError
from etdeploy.models import build_model, load_model, save_model

PACKAGE = Path(__file__).resolve().parents[2] / "etdeploy"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@pytest.fixture()
def saved(tmp_path):
    model = build_model("sequential-cnn", 3, layers="c4k3p1-r-m2", hidden=(8,))
    save_model(model, tmp_path / "m")
    return tmp_path / "m"


def test_pickle_payload_in_place_of_weights_never_runs(saved, tmp_path, capsys):
    marker = tmp_path / "marker"
    (saved / "model.safetensors").write_bytes(pickle.dumps({"weights": _Payload(str(marker))}))
    spec = json.loads((saved / "spec.json").read_text())
    spec.pop("weights_sha256")  # an attacker controls the spec too
    (saved / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="not valid safetensors"):
        load_model(saved)
    assert main(["evaluate", "--model", str(saved)]) == 2
    assert "not valid safetensors" in capsys.readouterr().err
    assert not marker.exists()


def test_torch_checkpoint_is_refused_without_unpickling(saved, tmp_path):
    marker = tmp_path / "marker2"
    torch.save({"x": _Payload(str(marker))}, saved / "model.safetensors")
    spec = json.loads((saved / "spec.json").read_text())
    spec.pop("weights_sha256")
    (saved / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError):
        load_model(saved)
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path.name}:{lineno}")
            if re.search(r"\bpickle\.loads?\(|allow_pickle=True", line):
                offenders.append(f"{path.name}:{lineno}")
    assert offenders == []


@pytest.mark.parametrize("damage", ["truncate", "bitflip_header", "bitflip_data"])
def test_corrupt_weights_are_detected(saved, damage):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "bitflip_header":
        data[10] ^= 0x20
    else:
        data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError):
        load_model(saved)


def test_nan_weights_and_missing_tensors_are_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(saved / "model.safetensors"))
    spec = json.loads((saved / "spec.json").read_text())
    spec.pop("weights_sha256")
    (saved / "spec.json").write_text(json.dumps(spec))
    bad = dict(tensors)
    key = min(k for k in bad if k.endswith("weight"))
    bad[key] = bad[key].clone()
    bad[key].view(-1)[0] = float("nan")
    save_file(bad, str(saved / "model.safetensors"))
    with pytest.raises(ModelError, match="NaN or Inf"):
        load_model(saved)
    missing = {k: v for k, v in tensors.items() if k != key}
    save_file(missing, str(saved / "model.safetensors"))
    with pytest.raises(ModelError, match="missing tensors"):
        load_model(saved)


def test_garbage_spec_is_refused(saved):
    (saved / "spec.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(saved)
    (saved / "spec.json").write_text(json.dumps({"format": "etdeploy-model", "format_version": 1,
                                                 "spec": {}, "structure": {}}))
    with pytest.raises(ModelError, match="spec is missing or has a bad field"):
        load_model(saved)


def test_cli_never_prints_a_traceback(tmp_path):
    result = subprocess.run(["etdeploy", "evaluate", "--model", str(tmp_path / "missing")],
                            capture_output=True, text=True, check=False,
                            env={"PATH": str(Path(__import__("sys").executable).parent), "CI": "true"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
