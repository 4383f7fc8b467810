"""Problem reports: every warning, refusal, skipped check, flat map, leakage warning, parity near-miss and
failed acceptance criterion of a run, gathered from its stage results into one list (docs/method.md §12.4).

Each :class:`Problem` has a ``severity`` (``fail``: a check failed; ``warning``: the evidence is weaker
than it looks; ``note``: something was not done, and why), the stage it comes from, a ``kind`` and the
message in words. A parity *near-miss* is a pair (or a ReferenceEvaluator check, or the slicing check)
whose max |Δ logit| passed but exceeded :data:`NEAR_MISS_FRACTION` of its tolerance: not a failure, but
the margin a reviewer should know about. Nothing here reads files: the input is the serialised stage
results, as in the run record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etdeploy.records import Record

NEAR_MISS_FRACTION = 0.1
SEVERITIES = ("fail", "warning", "note")


@dataclass(frozen=True)
class Problem(Record):
    severity: str
    stage: str
    kind: str
    message: str


def _data(s: dict[str, Any]) -> list[Problem]:
    return [Problem("warning", "data", "leakage" if "leakage" in str(w) else "data warning", str(w))
            for w in s.get("warnings") or ()]


def _train(s: dict[str, Any]) -> list[Problem]:
    if s.get("imported") is not None and s.get("accuracy") is None:
        return [Problem("note", "train", "no training data", "the model was imported without data: its training "
                        "data are unknown, so data-set independence (leakage) cannot be checked")]
    return []


def _prune(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.pruning.prune_dirs import PruneSeries

    out = []
    for run in PruneSeries.from_dict(s, where="stage 'prune'").runs:
        p = run.parity
        if p.max_abs_logit_diff > p.tolerance:
            out.append(Problem("fail", "prune", "slicing parity", f"{run.percent:g} %: sliced vs masked max |Δ logit| "
                               f"{p.max_abs_logit_diff:.3g} > tolerance {p.tolerance:g}"))
        elif p.max_abs_logit_diff > NEAR_MISS_FRACTION * p.tolerance:
            out.append(Problem("warning", "prune", "parity near-miss", f"{run.percent:g} %: sliced vs masked max "
                               f"|Δ logit| {p.max_abs_logit_diff:.3g} is {p.max_abs_logit_diff / p.tolerance:.0%} "
                               f"of the tolerance {p.tolerance:g}"))
    return out


def _parity(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.export import ParityRun

    q = ParityRun.from_dict(s, where="stage 'parity'")
    out = [Problem("fail", "parity", "parity mismatch", m) for m in q.mismatches]
    out += [Problem("note", "parity", "note", n) for n in q.notes]
    for p in q.pairs:
        if p.label_disagreements == 0 and NEAR_MISS_FRACTION * q.tolerance < p.max_abs_logit_delta <= q.tolerance:
            out.append(Problem("warning", "parity", "parity near-miss",
                               f"{p.a} vs {p.b}: max |Δ logit| {p.max_abs_logit_delta:.3g} is "
                               f"{p.max_abs_logit_delta / q.tolerance:.0%} of the tolerance {q.tolerance:g}"))
    for name, delta in q.reference.items():
        if NEAR_MISS_FRACTION * q.reference_tolerance < delta <= q.reference_tolerance:
            out.append(Problem("warning", "parity", "parity near-miss",
                               f"{name}: ReferenceEvaluator vs ONNX Runtime max |Δ logit| {delta:.3g} is "
                               f"{delta / q.reference_tolerance:.0%} of the tolerance {q.reference_tolerance:g}"))
    return out


def _explain(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.occlusion.explain import ExplainRun

    run = ExplainRun.from_dict(s, where="stage 'explain'")
    out = [Problem("warning", "explain", "flat map", f"{image.file}: the map of {m.name} is flat (range "
                   f"{m.max - m.min:.3g}): it shows no region the prediction depends on")
           for image, m in run.all_maps() if m.flat]
    if run.tuning is not None:
        if run.tuning.warning:
            out.append(Problem("warning", "explain", "tuning warning", run.tuning.warning))
        if run.tuning.fallback:
            out.append(Problem("note", "explain", "tuning fallback", run.tuning.fallback))
    return out


def _fit(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.targets import FitRun

    f = FitRun.from_dict(s, where="stage 'fit'")
    if not f.models:
        return []
    name = "sliced" if "sliced" in f.models else list(f.models)[-1]
    out = []
    for tid, v in f.models[name].verdicts.items():
        if v.unsupported_ops:
            out.append(Problem("warning", "fit", "unsupported ops", f"{name} on {tid}: the target lacks "
                               f"{', '.join(v.unsupported_ops)}"))
    return out


def _package(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.packaging import PackageRun

    run = PackageRun.from_dict(s, where="stage 'package'")
    out = []
    for isa, c in run.checks.items():
        if c.status == "failed":
            out.append(Problem("fail", "package", "golden-vector check", f"{isa}: {c.detail}"))
        elif c.status != "passed":
            out.append(Problem("note", "package", "check not run", f"{isa} ({c.title}): {c.detail}"))
    return out


def _quantize(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.export import QuantizeRun

    q = QuantizeRun.from_dict(s, where="stage 'quantize'")
    if q.top1_agreement < 1:
        return [Problem("warning", "quantize", "int8 disagreement", f"int8 and fp32 top-1 agree on "
                        f"{q.top1_agreement:.1%} of {q.n} {q.split} images (max |Δ logit| {q.max_abs_logit_delta:.3g})")]
    return []


def _evaluate(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.assurance.forms import FormsRun

    run = FormsRun.from_dict(s, where="stage 'evaluate'")
    return [Problem("note", "evaluate", "form not evaluated", f"{name}: {why}") for name, why in run.skipped.items()]


def _robustness(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.assurance.robustness import RobustnessRun

    run = RobustnessRun.from_dict(s, where="stage 'robustness'")
    return [Problem("note", "robustness", "form not evaluated", f"{m.name}: {m.reason}") for m in run.missing]


def _stability(s: dict[str, Any]) -> list[Problem]:
    from etdeploy.assurance.stability import StabilityRun

    run = StabilityRun.from_dict(s, where="stage 'stability'")
    out = []
    for im in run.images:
        if im.flat:
            out.append(Problem("warning", "stability", "flat map", f"{im.file}: a map of {im.name} is flat: its SSIM "
                               "says nothing about what the model looks at"))
        if im.note:
            out.append(Problem("note", "stability", "note", f"{im.file}: {im.note}"))
    return out


GATHERERS = {"data": _data, "train": _train, "prune": _prune, "parity": _parity, "quantize": _quantize,
             "evaluate": _evaluate, "explain": _explain, "stability": _stability, "robustness": _robustness,
             "fit": _fit, "package": _package}


def gather_problems(stages: Mapping[str, Any], acceptance=None) -> tuple[Problem, ...]:
    """Every problem of the run, stage by stage in run order, then each failed or unevaluated acceptance
    criterion (``acceptance``: an :class:`~etdeploy.assurance.acceptance.AcceptanceResult`)."""
    out: list[Problem] = []
    for name, summary in stages.items():
        if not isinstance(summary, dict):
            continue
        if isinstance(summary.get("skipped"), str):  # a stage switched off or unable to run says why
            out.append(Problem("note", name, "stage skipped", summary["skipped"]))
        elif name in GATHERERS:
            out += GATHERERS[name](summary)
    if acceptance is not None:
        for r in acceptance.results:
            if r.status == "fail":
                out.append(Problem("fail", "acceptance", r.criterion, f"{r.requirement}: measured {r.measured}"
                                   + (f" ({r.reason})" if r.reason else "")))
            elif r.status == "not evaluated":
                out.append(Problem("note", "acceptance", r.criterion, f"{r.requirement}: not evaluated ({r.reason})"))
    return tuple(out)


__all__ = ["GATHERERS", "NEAR_MISS_FRACTION", "Problem", "gather_problems"]
