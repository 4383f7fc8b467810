"""Fit verdict of an ONNX model against a target profile (after ST Edge AI's ``analyze``).

The graph facts (MACC, parameters, weights bytes, activation peak) come from
:func:`etdeploy.targets.analysis.analyse_graph`; this module turns them into a verdict:

- **Latency**: ``MACC / sustained_macs_per_s`` (the estimate) and ``MACC / peak_macs_per_s`` (a lower
  bound), both with the profile's ``sustained_macs_basis``. MAC counts miss memory traffic and data
  movement, so the latency is a bound under stated assumptions, not a prediction.
- **Verdict** per resource with the margin: RAM against the profile's ``model_ram_bytes`` budget
  (activations + I/O, plus the weights when the target loads them into RAM), non-volatile memory
  (weights), ops, precision, and latency when a deadline is given; once with the fp32 weights as
  stored and once with the int8 estimate.
- **int8 (QDQ) models** (``analysis.precision == "int8"``, e.g. ``etdeploy quantize``'s output): the
  weights as stored are already int8, so both verdicts use them and the labels say so;
  QuantizeLinear/DequantizeLinear are the quantisation's representation, not ops a target lacks; the
  precision check asks for an int8 path or fp32 (a target without an int8 path runs the graph
  dequantised in fp32: int8 then saves memory, not time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etdeploy.errors import OnnxModelError
from etdeploy.records import Record
from etdeploy.targets.analysis import QDQ_OPS, GraphAnalysis, analyse_graph
from etdeploy.targets.profile import TargetProfile, profile_to_dict
from etdeploy.targets.text import format_bytes

__all__ = ["FitReport", "ResourceCheck", "fit_analysis", "fit_onnx_file", "fit_report", "latency_assumptions"]


@dataclass(frozen=True)
class ResourceCheck(Record):
    """One resource of one model on one target: ``need`` against ``available`` (``unit``), the
    ``status`` and a sentence (``detail``); ``margin`` = available - need (serialised too)."""

    resource: str
    need: float
    available: float
    unit: str
    status: str  # "fits" | "does not fit" | "n/a"
    detail: str

    @property
    def margin(self) -> float:
        return self.available - self.need

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "margin": self.margin}


@dataclass(frozen=True)
class FitReport:
    target: TargetProfile
    analysis: GraphAnalysis
    latency_s: float
    latency_lower_bound_s: float
    unsupported_ops: tuple[str, ...]
    checks: tuple[ResourceCheck, ...]
    int8_checks: tuple[ResourceCheck, ...]
    model_file: dict[str, Any]
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)  # per ISA, from a flight bundle

    @property
    def fits(self) -> bool:
        return all(c.status != "does not fit" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": profile_to_dict(self.target),
            "model_file": dict(self.model_file),
            "analysis": self.analysis.to_dict(),
            "latency_s": self.latency_s,
            "latency_lower_bound_s": self.latency_lower_bound_s,
            "latency_assumptions": latency_assumptions(self.target),
            "unsupported_ops": list(self.unsupported_ops),
            "checks": [c.to_dict() for c in self.checks],
            "int8_checks": [c.to_dict() for c in self.int8_checks],
            "fits": self.fits,
            **({"measured": dict(self.measured)} if self.measured else {}),
        }

    def text(self, *, max_rows: int = 60) -> str:
        """The STM32Cube.AI-style text of :func:`etdeploy.targets.text.format_fit_report`."""
        from etdeploy.targets.text import format_fit_report

        return format_fit_report(self, max_rows=max_rows)


def latency_assumptions(target: TargetProfile) -> str:
    """How the latency figures of ``target`` are derived, in one sentence."""
    return (f"MACC / sustained_macs_per_s ({target.sustained_macs_per_s:.4g}/s); lower bound MACC / "
            f"peak_macs_per_s; basis: {target.sustained_macs_basis}; memory traffic and non-MAC ops ignored")


def _check(resource: str, need: float, available: float, unit: str, what: str, of: str) -> ResourceCheck:
    if available <= 0:
        return ResourceCheck(resource, need, available, unit, "n/a", f"{what}; {of}")
    status = "fits" if need <= available else "does not fit"
    share = 100.0 * need / available
    sign = "margin" if need <= available else "short by"
    return ResourceCheck(resource, need, available, unit, status,
                         f"{what} of {format_bytes(available)} {of} ({share:.3g} %): {status}, "
                         f"{sign} {format_bytes(abs(available - need))}")


def _memory_checks(a: GraphAnalysis, t: TargetProfile, weights_bytes: int, label: str) -> list[ResourceCheck]:
    checks = []
    if t.weights_in_ram:
        need = a.peak_ram_bytes + weights_bytes
        what = (f"weights {format_bytes(weights_bytes)} ({label}) + activations/IO {format_bytes(a.peak_ram_bytes)}"
                f" = {format_bytes(need)}")
    else:
        need = a.peak_ram_bytes
        what = f"activations/IO {format_bytes(need)} (weights stay in flash)"
    checks.append(_check("ram", need, t.model_ram_bytes, "bytes", what,
                         f"model RAM budget ({format_bytes(t.ram_bytes)} physical)"))
    if t.flash_bytes > 0:
        checks.append(_check("flash", weights_bytes, t.flash_bytes, "bytes",
                             f"weights {format_bytes(weights_bytes)} ({label})", "non-volatile memory"))
    else:
        checks.append(ResourceCheck("flash", weights_bytes, 0, "bytes", "n/a",
                                    "no on-device model storage in the profile: a host loads the weights"))
    return checks


def fit_analysis(model, target: TargetProfile, *, deadline_s: float | None = None,
                 model_file: dict[str, Any] | None = None) -> FitReport:
    """Analyse ``model`` (a checked ``onnx.ModelProto``) against ``target``."""
    return fit_report(analyse_graph(model), target, deadline_s=deadline_s, model_file=model_file)


def fit_report(a: GraphAnalysis, target: TargetProfile, *, deadline_s: float | None = None,
               model_file: dict[str, Any] | None = None) -> FitReport:
    """The verdict of a graph (its :func:`~etdeploy.targets.analysis.analyse_graph`) on ``target``. Pure."""
    latency = a.total_macc / target.sustained_macs_per_s
    lower = a.total_macc / target.peak_macs_per_s
    int8 = a.precision == "int8"
    unsupported = tuple(op for op in a.ops if op != "Constant" and not (int8 and op in QDQ_OPS)
                        and not target.supports_op(op))
    checks = _memory_checks(a, target, a.weights_bytes_fp32, "int8 as stored" if int8 else "fp32")
    checks.append(ResourceCheck("ops", float(len(unsupported)), 0.0, "ops",
                                "fits" if not unsupported else "does not fit",
                                "all ops supported" if not unsupported else
                                f"ops not in the target's list: {', '.join(unsupported)}"))
    if int8:
        checks.append(ResourceCheck("precision", 0.0, 0.0, "", "fits" if target.int8 or target.fp32 else "does not fit",
                                    "int8 (QDQ) model: the target has an int8 path" if target.int8 else
                                    "int8 (QDQ) model, no int8 path: runs dequantised in fp32 (saves memory, not time)"
                                    if target.fp32 else "target has neither an int8 nor an fp32 path"))
    else:
        checks.append(ResourceCheck("precision", 0.0, 0.0, "", "fits" if target.fp32 else "does not fit",
                                    "fp32 runs on the target" if target.fp32 else
                                    "target has no fp32 path: convert to fp16" + (" or int8" if target.int8 else "")))
    if deadline_s is not None:
        checks.append(ResourceCheck("latency", latency, float(deadline_s), "s",
                                    "fits" if latency <= deadline_s else "does not fit",
                                    f"estimated {latency:.3g} s (bound {lower:.3g} s) vs deadline {deadline_s:g} s"))
    int8_checks = tuple(_memory_checks(a, target, a.weights_bytes_int8, "int8 as stored" if int8 else "int8 estimate"))
    return FitReport(target=target, analysis=a, latency_s=latency, latency_lower_bound_s=lower,
                     unsupported_ops=unsupported, checks=tuple(checks), int8_checks=int8_checks,
                     model_file=dict(model_file or {}))


def fit_onnx_file(path: str | os.PathLike, target: TargetProfile, *, deadline_s: float | None = None) -> FitReport:
    """Load ``path`` safely (checker first), then :func:`fit_analysis`."""
    from etdeploy.fileio import sha256_file
    from etdeploy.onnx_safety import load_onnx_checked

    path = Path(path)
    model = load_onnx_checked(path)
    try:
        return fit_analysis(model, target, deadline_s=deadline_s,
                            model_file={"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    except OnnxModelError as exc:
        raise OnnxModelError(exc.message, path) from exc
