"""ORT-format model and reduced-operator configuration for targets that run ONNX Runtime (docs/method.md §10).

``onnxruntime.tools.convert_onnx_models_to_ort`` (ONNX Runtime's own tool, run in a subprocess) with
the ``Fixed`` optimisation style and ``--target_platform arm`` (every ORT target profile is ARM or
RISC-V; this keeps x86-only layout transforms out) writes ``model.ort`` and
``model.required_operators.config``, the operator list for a minimal build
(``build.sh --minimal_build --include_ops_by_config model.required_operators.config``). The config's
comment lines name the converted file by its absolute path; they are rewritten to the bundle's file name.

The ORT-format file is verified, not trusted: the golden vectors run through it on this machine's
ONNX Runtime and must match the expected logits within the tolerance, with the same labels.
ONNX Runtime's flatbuffer writer orders some tables by memory address (two plain conversions of one
file differ in ~300 bytes), so the conversion runs with address-space randomisation off
(``setarch -R``, Linux) and a fixed minimal environment, which makes it byte-identical run to run on
one machine; where ``setarch`` is missing or not permitted it runs plainly and the bytes may differ.
Either way ``package.json`` records the file's check, not its hash; ``MANIFEST.sha256`` lists it.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etdeploy.errors import ExportError
from etdeploy.records import Record

ORT_DIR = "ort"
ORT_MODEL = "model.ort"
ORT_CONFIG = "model.required_operators.config"


@dataclass(frozen=True)
class OrtFormatCheck(Record):
    """The ORT-format model's check: operators of the minimal build (``domain;opset;ops`` lines), the
    ONNX Runtime version that converted and ran it, and its agreement with the golden vectors."""

    status: str
    onnxruntime: str
    operators: tuple[str, ...]
    vectors: int
    max_abs_logit_delta: float
    label_mismatches: int


def convert_to_ort(onnx_bytes: bytes, out_dir: Path) -> None:
    """Write ``model.ort`` and ``model.required_operators.config`` of ``onnx_bytes`` into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="etdeploy-ort-") as tmp:
        tmp = Path(tmp)
        (tmp / "model.onnx").write_bytes(onnx_bytes)
        command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(tmp / "model.onnx"),
                   "--output_dir", str(tmp / "out"), "--optimization_style", "Fixed", "--target_platform", "arm"]
        setarch = shutil.which("setarch")
        proc = None
        if setarch is not None:  # no address randomisation, fixed environment: deterministic table order
            proc = subprocess.run([setarch, platform.machine(), "-R", *command], capture_output=True, text=True,
                                  timeout=900, check=False, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": "/"})
        if proc is None or proc.returncode != 0:
            shutil.rmtree(tmp / "out", ignore_errors=True)
            proc = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        model = tmp / "out" / ORT_MODEL
        configs = sorted((tmp / "out").glob("*.config")) if (tmp / "out").is_dir() else []
        if proc.returncode != 0 or not model.is_file() or not configs:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
            raise ExportError(f"ONNX Runtime's ORT-format conversion failed: {tail}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, out_dir / ORT_MODEL)
        lines = [f"# - {ORT_MODEL}" if line.startswith("# - ") else line
                 for line in configs[0].read_text().splitlines()]
        (out_dir / ORT_CONFIG).write_text("\n".join(lines) + "\n")


def check_ort_model(ort_dir: Path, inputs: np.ndarray, expected: np.ndarray, tolerance: float) -> OrtFormatCheck:
    """Run ``inputs`` (batch 1 each) through ``ort_dir/model.ort`` and compare with ``expected``."""
    import onnxruntime as ort

    from etdeploy.ort_session import session_options

    session = ort.InferenceSession(str(ort_dir / ORT_MODEL), session_options(threads=1, opt_level="disable"),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([np.asarray(session.run(None, {name: x[None]})[0], np.float32) for x in inputs])
    delta = float(np.abs(logits.astype(np.float64) - expected.astype(np.float64)).max())
    mismatches = int((logits.argmax(1) != expected.argmax(1)).sum())
    operators = tuple(line for line in (ort_dir / ORT_CONFIG).read_text().splitlines()
                      if line and not line.startswith("#"))
    return OrtFormatCheck(status="passed" if delta <= tolerance and mismatches == 0 else "failed",
                          onnxruntime=ort.__version__, operators=operators, vectors=len(inputs),
                          max_abs_logit_delta=delta, label_mismatches=mismatches)
