"""Read a state dict without unpickling objects: ``.safetensors``, or ``.pt``/``.pth``/``.bin`` through
``torch.load(weights_only=True)``.

``weights_only=True`` makes torch's unpickler refuse every global except tensors, storages and plain
containers, so a pickled whole ``nn.Module`` (which needs its class) or a crafted payload (which needs
``os.system``, ``builtins.open``...) is refused before any of it runs. The result must be a flat
mapping of names to dense tensors; anything else is refused with the safe way to save weights.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

from etdeploy.errors import ModelError

WEIGHTS_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin")
MAX_WEIGHTS_BYTES = 4 * 1024**3
SAFE_SAVE = ("save the weights alone: torch.save(model.state_dict(), 'weights.pth'), or "
             "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")


def _refused_global(exc: BaseException) -> str:
    """The global torch's restricted unpickler refused (``'posix.system'``), or '' if it says none."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else ""


def _load_pickle_state_dict(path: Path):
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        what = f"it needs the Python object {refused}" if refused else \
            "it holds more than tensors (pickle instructions the safe loader refuses)"
        raise ModelError(f"not a plain state dict: {what}, and etdeploy never unpickles objects (a pickled "
                         f"whole model or arbitrary code is refused); {SAFE_SAVE}", path) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read the weights file as a PyTorch state dict ({first}); {SAFE_SAVE}",
                         path) from None


def _load_safetensors(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"weights file is not valid safetensors: {exc}", path) from None


def read_state_dict(path: str | os.PathLike) -> dict:
    """``{name: tensor}`` from a weights file; :class:`ModelError` naming the file for anything else."""
    import torch

    path = Path(path)
    if not path.exists():
        raise ModelError("weights file does not exist", path)
    if not path.is_file():
        raise ModelError("weights path is not a file", path)
    suffix = path.suffix.lower()
    if suffix not in WEIGHTS_SUFFIXES:
        raise ModelError(f"unknown weights file type {suffix or '(no extension)'!r}; give a "
                         f"{', '.join(WEIGHTS_SUFFIXES)} file", path)
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ModelError("weights file is larger than the 4 GiB limit", path)
    data = _load_safetensors(path) if suffix == ".safetensors" else _load_pickle_state_dict(path)
    if isinstance(data, torch.Tensor) or not isinstance(data, dict):
        raise ModelError(f"the file holds a {type(data).__name__}, not a state dict (a mapping of names to "
                         f"tensors); {SAFE_SAVE}", path)
    nested = sorted(str(k) for k, v in data.items() if isinstance(v, dict))
    others = sorted(str(k) for k, v in data.items() if not isinstance(v, (dict, torch.Tensor)))
    if nested or others:
        hint = f"; its entry {nested[0]!r} may hold the weights: save that entry alone" if nested else ""
        raise ModelError(f"the file holds a checkpoint, not a state dict: entries {', '.join(nested + others)} are not "
                         f"tensors{hint}; {SAFE_SAVE}", path)
    if not all(isinstance(k, str) for k in data):
        raise ModelError("the state dict has keys that are not strings", path)
    if not data:
        raise ModelError("the state dict is empty", path)
    for key, value in data.items():
        if value.layout != torch.strided or value.is_quantized:
            raise ModelError(f"tensor {key} is sparse or quantised; save dense float weights", path)
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"tensor {key} contains NaN or Inf", path)
    return dict(data)
