"""User model factories named by ``arch``, and the check that a built model's parts fit together.

``arch`` names a factory as ``path/to/file.py:factory`` (the file is loaded by path; its folder is
searchable while it runs, so it may import its sibling modules) or ``package.module:factory``
(imported as usual; when the package is not importable, the current folder is searched too, so no
``PYTHONPATH`` is needed). A spec records a file factory by its absolute path
(:func:`canonical_arch`), so the model can be rebuilt from any folder; a file that has gone is
refused with its path.

:func:`check_head_width` runs the feature extractor on a shape-only (``meta``) input and compares its
width with what the first ``nn.Linear`` takes: a mismatch is a :class:`ContractError` naming both
widths and an input size that would fit, instead of a matrix-multiply failure at the first batch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from etdeploy.errors import ContractError, ModelError

#: Input sizes searched for one that fits the first Linear layer.
FIT_SIZES = (8, 512)


def is_file_arch(arch: str) -> bool:
    """``path/to/file.py:factory`` (as opposed to ``package.module:factory`` or a zoo name)."""
    target, sep, _ = arch.rpartition(":")
    return bool(sep) and target.lower().endswith(".py")


def _split(arch: str) -> tuple[str, str]:
    target, _, attr = arch.rpartition(":")
    if not target or not attr.isidentifier():
        raise ModelError(f"a model factory is named 'path/to/file.py:function' or 'package.module:function', "
                         f"got {arch!r}")
    return target, attr


def canonical_arch(arch: str) -> str:
    """``arch`` with a factory file's path made absolute (what a spec records); other names unchanged."""
    if not is_file_arch(arch):
        return arch
    target, attr = _split(arch)
    return f"{Path(target).expanduser().resolve()}:{attr}"


def load_factory(arch: str) -> Callable[..., Any]:
    """The callable ``arch`` names (``path/to/file.py:factory`` or ``package.module:factory``)."""
    target, attr = _split(arch)
    if is_file_arch(arch):
        path = Path(target).expanduser()
        module = _load_file(path)
        where: object = path
    else:
        module = _import_module(target, arch)
        where = None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError(f"cannot import user model factory {arch!r}: {target} defines no {attr!r}", where)
    if not callable(factory):
        raise ModelError(f"user model factory {arch!r} is not callable", where)
    return factory


@contextmanager
def _searching(folder: Path) -> Iterator[None]:
    """``folder`` at the front of ``sys.path`` while importing (removed afterwards)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


def _load_file(path: Path):
    if not path.is_file():
        raise ModelError("model factory file does not exist" if not path.exists() else
                         "model factory path is not a file", path)
    resolved = path.resolve()
    name = "etdeploy_user_factory_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError("cannot load the model factory file as Python", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _searching(resolved.parent):
            spec.loader.exec_module(module)
    except Exception as exc:  # user code: any failure is "cannot load"
        del sys.modules[name]
        raise ModelError(f"cannot load the model factory file: {type(exc).__name__}: {exc}", path) from exc
    return module


def _import_module(name: str, arch: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        here = Path.cwd()
        in_here = (here / top).is_dir() or (here / f"{top}.py").is_file()
        if (exc.name or "").split(".")[0] != top or str(here) in sys.path or not in_here:
            raise ModelError(f"cannot import user model factory {arch!r}: {exc}") from exc
        try:
            with _searching(here):
                return importlib.import_module(name)
        except ImportError as again:
            raise ModelError(f"cannot import user model factory {arch!r}: {again}") from again
    except ImportError as exc:
        raise ModelError(f"cannot import user model factory {arch!r}: {exc}") from exc
    except Exception as exc:  # user code runs on import
        raise ModelError(f"cannot import user model factory {arch!r}: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------ widths
def _first_linear(classifier: nn.Module) -> tuple[int, nn.Linear] | None:
    for index, module in enumerate(classifier):
        if isinstance(module, nn.Linear):
            return index, module
    return None


def _width_on_meta(part: nn.Module, size: int) -> int:
    """Values per image after ``part`` for a ``size`` x ``size`` input, shapes only (no arithmetic done)."""
    from torch.func import functional_call

    tensors = {name: torch.empty_like(t, device="meta")
               for name, t in list(part.named_parameters()) + list(part.named_buffers())}
    out = functional_call(part, tensors, (torch.zeros(2, 3, size, size, device="meta"),))
    return int(out[0].numel())


def _width_on_zeros(part: nn.Module, size: int) -> int:
    """As :func:`_width_on_meta`, computed on a zero image (for modules that cannot run shapes only)."""
    training = part.training
    part.eval()
    try:
        with torch.no_grad():
            device = next((t.device for t in part.parameters()), torch.device("cpu"))
            return int(part(torch.zeros(1, 3, size, size, device=device))[0].numel())
    finally:
        part.train(training)


def check_head_width(model: nn.Module, input_size: int) -> None:
    """:class:`ContractError` unless ``features`` (and the classifier layers before the first Linear)
    give, for an ``input_size`` image, as many values as the first ``nn.Linear`` takes.

    The message names both widths and the smallest input size in :data:`FIT_SIZES` that fits, if any.
    """
    first = _first_linear(model.classifier)
    if first is None:
        return
    index, linear = first
    part = nn.Sequential(model.features, *list(model.classifier)[:index])
    width_of = _width_on_meta
    try:
        width = width_of(part, input_size)
    except Exception:  # noqa: BLE001 - an op without a shape-only kernel: run it
        width_of = _width_on_zeros
        try:
            width = width_of(part, input_size)
        except Exception as exc:  # user layers: any failure means "does not run at this size"
            raise ContractError(f"the model does not run on a {input_size}x{input_size} input: "
                                f"{type(exc).__name__}: {exc}") from exc
    if width == linear.in_features:
        return
    fit = _fitting_size(part, linear.in_features, width_of)
    advice = (f"input size {fit} would fit (--input-size {fit})" if fit is not None else
              f"no input size from {FIT_SIZES[0]} to {FIT_SIZES[1]} gives {linear.in_features}; make the first "
              f"Linear take {width} values or change the feature extractor")
    raise ContractError(f"the feature extractor gives {width} values per image at input size {input_size}, but the "
                        f"first Linear layer (classifier.{index}) takes {linear.in_features}: {advice}")


def _fitting_size(part: nn.Module, wanted: int, width_of: Callable[[nn.Module, int], int]) -> int | None:
    """Smallest size in :data:`FIT_SIZES` whose width is ``wanted`` (widths grow with the input size)."""
    def width(size: int) -> int:
        try:
            return width_of(part, size)
        except Exception:  # noqa: BLE001 - too small for the extractor
            return 0

    lo, hi = FIT_SIZES
    if width(hi) < wanted:
        return None
    while lo < hi:  # smallest size with width >= wanted
        mid = (lo + hi) // 2
        if width(mid) >= wanted:
            hi = mid
        else:
            lo = mid + 1
    return lo if width(lo) == wanted else None
