"""Use case: size one or more ONNX models against flight-processor profiles (``etdeploy fit``, the
pipeline's fit stage).

:func:`fit_targets` loads each model once (checker first), analyses its graph once
(:func:`~etdeploy.targets.analysis.analyse_graph`) and gives the verdict on every target
(:func:`~etdeploy.targets.fit.fit_report`). Its :class:`FitRun` holds each profile once and each
model's analysis once; :meth:`FitRun.report` rebuilds the per-(model, target)
:class:`~etdeploy.targets.fit.FitReport` for text output.

Measured beside estimated: when the ONNX file is a flight bundle's ``model.onnx`` (``etdeploy
package``; its folder has ``measured.json`` and a ``package.json`` whose source SHA-256 is the file's),
:func:`measured_figures` adds the bundle's per-ISA sizes and stack to the model's result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import OnnxModelError
from etdeploy.records import Record
from etdeploy.targets.analysis import GraphAnalysis
from etdeploy.targets.fit import FitReport, ResourceCheck, fit_report
from etdeploy.targets.profile import TargetProfile, resolve_targets

__all__ = ["FIT_FORMAT", "FitRun", "ModelFit", "TargetVerdict", "fit_targets", "measured_figures", "read_fit"]

FIT_FORMAT = "etdeploy-fit"


def _fits(checks: tuple[ResourceCheck, ...]) -> bool:
    return all(c.status != "does not fit" for c in checks)


@dataclass(frozen=True)
class TargetVerdict(Record):
    """One model on one target: latency estimate and bound (s), ops the target lacks, the resource
    checks with the weights as stored (fp32) and with the int8 estimate. ``fits``/``int8_fits`` are
    derived from the checks (and serialised with them)."""

    latency_s: float
    latency_lower_bound_s: float
    unsupported_ops: tuple[str, ...]
    checks: tuple[ResourceCheck, ...]
    int8_checks: tuple[ResourceCheck, ...]

    @property
    def fits(self) -> bool:
        return _fits(self.checks)

    @property
    def int8_fits(self) -> bool:
        return _fits(self.int8_checks)

    def check(self, resource: str) -> ResourceCheck | None:
        """The check of ``resource`` (``ram``, ``flash``, ``ops``, ``precision``, ``latency``), if made."""
        return next((c for c in self.checks if c.resource == resource), None)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "fits": self.fits, "int8_fits": self.int8_fits}


@dataclass(frozen=True)
class ModelFit(Record):
    """One ONNX file (``model_file``: name, bytes, sha256), its graph analysis at batch 1 and its
    verdict on each target, by target id."""

    model_file: dict[str, Any]
    analysis: GraphAnalysis
    verdicts: dict[str, TargetVerdict]
    measured: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class FitRun(Record):
    """Models (by name: the pipeline's ``original`` and ``sliced``, or the file name) against targets
    (profiles by id); ``deadline_s``: the latency deadline checked, if any."""

    targets: dict[str, TargetProfile]
    models: dict[str, ModelFit]
    deadline_s: float | None = None
    format: str = FIT_FORMAT
    format_version: int = 1

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def fit_count(self, model: str) -> int:
        """On how many targets ``model`` fits (weights as stored)."""
        return sum(1 for v in self.models[model].verdicts.values() if v.fits)

    def report(self, model: str, target_id: str) -> FitReport:
        """The :class:`FitReport` of ``model`` on ``target_id`` (for :meth:`FitReport.text`)."""
        m = self.models[model]
        v = m.verdicts[target_id]
        return FitReport(target=self.targets[target_id], analysis=m.analysis, latency_s=v.latency_s,
                         latency_lower_bound_s=v.latency_lower_bound_s, unsupported_ops=v.unsupported_ops,
                         checks=v.checks, int8_checks=v.int8_checks, model_file=dict(m.model_file),
                         measured=dict(m.measured or {}))


def fit_targets(onnx: str | os.PathLike | Mapping[str, str | os.PathLike], target_ids: Sequence[str], *,
                targets_dir: str | os.PathLike | None = None, deadline_s: float | None = None) -> FitRun:
    """Size ONNX models against target profiles.

    ``onnx``: one file (named by its file name in the result) or ``{name: file}``; ``target_ids``:
    profile ids of ``targets_dir`` (default: the profiles shipped with etdeploy), paths of ``.toml``
    profiles, or ``all``. Unknown ids raise one :class:`~etdeploy.errors.TargetProfileError` listing
    the known ones; an unreadable or unsafe ONNX file an :class:`~etdeploy.errors.OnnxModelError`
    naming it. ``deadline_s`` adds a latency check.
    """
    from etdeploy.fileio import sha256_file
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.targets.analysis import analyse_graph

    profiles = resolve_targets(target_ids, targets_dir)
    paths = {Path(onnx).name: Path(onnx)} if isinstance(onnx, (str, os.PathLike)) else \
        {str(name): Path(p) for name, p in onnx.items()}
    models = {}
    for name, path in paths.items():
        proto = load_onnx_checked(path)
        try:
            analysis = analyse_graph(proto)
        except OnnxModelError as exc:
            raise OnnxModelError(exc.message, path) from exc
        verdicts = {}
        for target_id, profile in profiles.items():
            r = fit_report(analysis, profile, deadline_s=deadline_s)
            verdicts[target_id] = TargetVerdict(latency_s=r.latency_s, latency_lower_bound_s=r.latency_lower_bound_s,
                                                unsupported_ops=r.unsupported_ops, checks=r.checks,
                                                int8_checks=r.int8_checks)
        digest = sha256_file(path)
        models[name] = ModelFit(model_file={"name": path.name, "bytes": path.stat().st_size, "sha256": digest},
                                analysis=analysis, verdicts=verdicts, measured=measured_figures(path, digest))
    return FitRun(targets=profiles, models=models, deadline_s=None if deadline_s is None else float(deadline_s))


def measured_figures(onnx_path: Path, sha256: str) -> dict[str, dict[str, Any]] | None:
    """Per-ISA measured figures of the flight bundle ``onnx_path`` belongs to (``None`` when it is not a
    bundle's ``model.onnx``, or the bundle was made from another file): ``{isa: {status, text, rodata,
    data, bss, rom, ram, stack_bytes}}`` for every ISA whose check ran."""
    from etdeploy.fileio import read_json_artefact

    folder = onnx_path.parent
    if onnx_path.name != "model.onnx" or not (folder / "measured.json").is_file() \
            or not (folder / "package.json").is_file():
        return None
    package = read_json_artefact(folder / "package.json", what="package record", format="etdeploy-package",
                                 error=OnnxModelError)
    if not isinstance(package.get("source"), dict) or package["source"].get("sha256") != sha256:
        return None
    doc = read_json_artefact(folder / "measured.json", what="measured figures", format="etdeploy-measured",
                             error=OnnxModelError)
    figures = {}
    for isa, check in sorted((doc.get("checks") or {}).items()):
        sizes = check.get("sizes") if isinstance(check, dict) else None
        if isinstance(sizes, dict):
            figures[isa] = {"status": check.get("status"), "stack_bytes": check.get("stack_bytes"),
                            **{k: sizes.get(k) for k in ("text", "rodata", "data", "bss", "rom", "ram")}}
    return figures


def read_fit(path: str | os.PathLike) -> FitRun:
    """``fit.json`` (written by ``etdeploy fit --out`` or the fit stage) as a :class:`FitRun`."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    return read_record(path, FitRun, what="fit report", format=FIT_FORMAT, error=ReportError)
