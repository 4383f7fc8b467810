"""Where etdeploy expects a model directory, and what to say when it gets something else."""

from __future__ import annotations

import os
from pathlib import Path

from etdeploy.errors import ModelError

#: Suffixes of trained-weight files and what importing each takes.
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
IMPORT_ONNX = "etdeploy import --onnx FILE --out DIR"
IMPORT_WEIGHTS = "etdeploy import --arch package.module:factory --weights FILE --out DIR"


def import_advice(path: str | os.PathLike) -> str:
    """How to turn the model file ``path`` into a model directory, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return f"import it with `{IMPORT_ONNX}`"
    if suffix in WEIGHT_SUFFIXES:
        return f"import it with `{IMPORT_WEIGHTS}`"
    return f"import a model file with `{IMPORT_ONNX}` or `{IMPORT_WEIGHTS}`"


def require_model_dir(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` if it is a directory; :class:`ModelError` naming it otherwise.

    A file (``mycnn.pth``, ``model.onnx``...) gets the ``etdeploy import`` command that makes a
    model directory of it; a missing path is "model directory does not exist".
    """
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"{path.name} is a file; etdeploy commands take a model directory (spec.json + "
                         f"model.safetensors): {import_advice(path)}", path)
    raise ModelError("model directory does not exist", path)
