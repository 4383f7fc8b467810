"""The export manifest (``export.json``) as a typed record, and its one reader.

:class:`ExportRun` is what :func:`~etdeploy.export.export_model` writes next to ``model.onnx`` and
``model.sim.onnx``, what ``etdeploy export`` prints from, and what the pipeline's export stage records
for each exported variant (:class:`ExportSet`). :func:`load_export_manifest` (a dict) and
:func:`read_export` (the record) both verify the SHA-256 of the two ONNX files against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import ExportError
from etdeploy.export.interface import Interface
from etdeploy.fileio import read_json_artefact
from etdeploy.records import Record, RecordError

ONNX_FILE = "model.onnx"
SIM_FILE = "model.sim.onnx"
MANIFEST_FILE = "export.json"
EXPORT_FORMAT = "etdeploy-export"
EXPORT_FORMAT_VERSION = 1

__all__ = ["EXPORT_FORMAT", "MANIFEST_FILE", "ONNX_FILE", "SIM_FILE", "ExportRun", "ExportSet", "ExportedModel",
           "OnnxFileInfo", "SimplificationCheck", "load_export_manifest", "read_export"]


@dataclass(frozen=True)
class ExportedModel(Record):
    """The torch model an export was made from: architecture, classes, input, normalisation, identity."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torch_parameters: int
    weights_fingerprint: str
    masks_policy: str
    had_masks: bool


@dataclass(frozen=True)
class OnnxFileInfo(Record):
    """One exported file: size, SHA-256 and its graph summary (:func:`etdeploy.export.onnx_summary`)."""

    bytes: int
    sha256: str
    op_histogram: dict[str, int]
    nodes: int
    parameters: int
    opset: int
    ir_version: int
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SimplificationCheck(Record):
    """Max |delta logit| between ``model.onnx`` and ``model.sim.onnx`` on seeded random inputs."""

    max_abs_logit_delta: float
    tolerance: float
    batch: int
    seed: int
    inputs: str
    runtime: str


@dataclass(frozen=True)
class ExportRun(Record):
    """``export.json``: the source model, the graph contract, both files, the simplification check (and,
    for an imported model, the original's interface the graph keeps)."""

    model: ExportedModel
    input: dict[str, Any]
    output: dict[str, Any]
    opset: int
    files: dict[str, OnnxFileInfo]
    simplification_check: SimplificationCheck
    versions: dict[str, str]
    format: str = EXPORT_FORMAT
    format_version: int = EXPORT_FORMAT_VERSION
    interface: Interface | None = None

    def to_dict(self) -> dict[str, Any]:
        """``export.json``; ``interface`` (how the graph is called, :mod:`etdeploy.export.interface`) only
        for a model imported with one, so every other export's manifest is as it always was."""
        out = super().to_dict()
        if self.interface is None:
            del out["interface"]
        return out

    @property
    def onnx(self) -> OnnxFileInfo:
        """``model.onnx`` as exported."""
        return self.files[ONNX_FILE]

    @property
    def sim(self) -> OnnxFileInfo:
        """``model.sim.onnx`` (onnxsim): the file parity, explain and fit use."""
        return self.files[SIM_FILE]


@dataclass(frozen=True)
class ExportSet(Record):
    """Exports of several variants of one model, by variant name (the pipeline exports ``original``, the
    trained model, and ``sliced``, the pruned one): each entry is that folder's ``export.json``."""

    exports: dict[str, ExportRun]


def load_export_manifest(export_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``export.json`` and verify the SHA-256 of both ONNX files against it."""
    from etdeploy.fileio import sha256_file

    export_dir = Path(export_dir)
    path = export_dir / MANIFEST_FILE
    if not path.is_file():
        raise ExportError(f"export directory has no {MANIFEST_FILE}", export_dir)
    manifest = read_json_artefact(path, what="export manifest", format=EXPORT_FORMAT,
                                  versions=(EXPORT_FORMAT_VERSION,), error=ExportError)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ExportError("export manifest has no 'files' table", path)
    for name in (ONNX_FILE, SIM_FILE):
        entry = files.get(name)
        target = export_dir / name
        if not isinstance(entry, dict) or not target.is_file():
            raise ExportError(f"export is missing {name}", export_dir)
        if sha256_file(target) != entry.get("sha256"):
            raise ExportError(f"{name} does not match the SHA-256 recorded in {MANIFEST_FILE} (file changed?)",
                              target)
    return manifest


def read_export(export_dir: str | os.PathLike) -> ExportRun:
    """:func:`load_export_manifest` as an :class:`ExportRun` (an incomplete manifest is an :class:`ExportError`)."""
    manifest = load_export_manifest(export_dir)
    try:
        return ExportRun.from_dict(manifest, where="export manifest")
    except RecordError as exc:
        raise ExportError(str(exc), Path(export_dir) / MANIFEST_FILE) from exc
