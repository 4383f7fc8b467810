"""The input normalisation of an imported model, given by the user: never guessed.

etdeploy feeds a model ``x = (u / 255 - mean) / std`` per RGB channel, ``u`` the uint8 pixel. An
import takes either

- ``mean`` and ``std``: three values each, for RGB scaled to ``[0, 1]`` (torchvision's ImageNet
  models: mean 0.485,0.456,0.406, std 0.229,0.224,0.225); or
- ``scale``: the model takes RGB values in ``[0, scale]`` with nothing subtracted: ``mean = 0`` and
  ``std = 1 / scale`` for every channel, so ``x = u * scale / 255`` (``scale = 255``: raw pixel values;
  ``scale = 1``: pixels divided by 255). ``x`` equals that up to float32 rounding (relative 1e-7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from etdeploy.errors import ConfigError
from etdeploy.records import Record

CHANNELS = 3


@dataclass(frozen=True)
class Normalisation(Record):
    """``x = (u / 255 - mean) / std`` per RGB channel; ``scale`` is set when it came from a scale."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float | None = None

    def describe(self) -> str:
        if self.scale is not None:
            return f"RGB in [0, {self.scale:g}] (mean 0, std 1/{self.scale:g})"
        return f"mean {','.join(f'{v:g}' for v in self.mean)}, std {','.join(f'{v:g}' for v in self.std)}"


def _three(values: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be {CHANNELS} numbers (one per RGB channel), got {values!r}") from None
    if len(out) != CHANNELS:
        raise ConfigError(f"{what} needs {CHANNELS} values (one per RGB channel), got {len(out)}: "
                          f"{','.join(f'{v:g}' for v in out)}")
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{what} values must be finite, got {','.join(f'{v:g}' for v in out)}")
    return out  # type: ignore[return-value]


def resolve_normalisation(mean: Any = None, std: Any = None, scale: float | None = None) -> Normalisation:
    """Check the user's normalisation: ``mean`` + ``std`` (3 values each, ``std > 0``) or ``scale > 0``."""
    if scale is not None:
        if mean is not None or std is not None:
            raise ConfigError("give either mean and std, or scale, not both")
        value = float(scale)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"scale must be a positive number, got {scale!r}")
        return Normalisation((0.0,) * CHANNELS, (1.0 / value,) * CHANNELS, value)  # type: ignore[arg-type]
    if mean is None or std is None:
        raise ConfigError("the input normalisation is not guessed: give the mean and std the model was trained "
                          "with (3 values each, for RGB in [0, 1]), or the scale of its input (255: raw pixel "
                          "values, 1: pixels / 255)")
    m, s = _three(mean, "mean"), _three(std, "std")
    if not all(v > 0 for v in s):
        raise ConfigError(f"std values must be > 0, got {','.join(f'{v:g}' for v in s)}")
    return Normalisation(m, s)
