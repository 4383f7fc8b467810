"""One error hierarchy for etdeploy.

Every error a user can act on derives from :class:`EtdeployError` (``exit_code`` 2). The CLI prints
``error: <message>`` on one line and exits with that code; anything else is an internal failure
(exit 1). Subclasses also derive from the matching builtin (``ValueError``, ``OSError``...) so that
library users can catch them idiomatically.
"""

from __future__ import annotations


class EtdeployError(Exception):
    """Base of every user-facing error: bad input, bad configuration, refused output."""

    exit_code = 2

    def __init__(self, message: str, path: object | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(str(self.message).split())
        return f"{text} ({self.path})" if self.path else text


class DataError(EtdeployError, ValueError):
    """A data set, label file or image is missing, malformed or inconsistent."""


class ImageError(DataError):
    """An image cannot be decoded, is not an allowed format, or is unsafe to decode."""


class ModelError(EtdeployError, ValueError):
    """A model directory, spec or weights file is missing, malformed or inconsistent."""


class ContractError(ModelError):
    """A model does not follow the structural contract (features + Flatten/Linear classifier)."""


class ConfigError(EtdeployError, ValueError):
    """A configuration file or option value is invalid."""


class OutputExistsError(EtdeployError, FileExistsError):
    """An output path exists and would be overwritten."""


class AttributionError(EtdeployError, ValueError):
    """Attribution cannot be computed as asked (unknown layer, bad steps, non-finite values)."""


class PruningError(EtdeployError, ValueError):
    """A mask, schedule, ranking or slicing request is invalid."""


class ExportError(EtdeployError, ValueError):
    """ONNX export, checking or simplification failed."""


class OnnxModelError(EtdeployError, ValueError):
    """An ONNX file is malformed, unsafe or cannot be loaded."""


class UnsupportedOpError(EtdeployError, ValueError):
    """A graph contains an operator that this stage does not support."""


class ParityError(EtdeployError, AssertionError):
    """Two implementations of the same model disagree beyond tolerance (lists every mismatch)."""


class TargetProfileError(EtdeployError, ValueError):
    """A flight-processor profile is missing, malformed or has a wrong unit."""


class OcclusionError(EtdeployError, ValueError):
    """An occlusion request is invalid (patch, stride, image size, class)."""


class CompressError(EtdeployError, ValueError):
    """A compress search is asked something invalid, or no candidate meets the target (names the closest)."""


class ReportError(EtdeployError, ValueError):
    """A pipeline run or report cannot be produced as asked."""
