"""Acceptance criteria and the overall verdict of a run (docs/method.md §12.4).

The run configuration's ``[acceptance]`` section states what the deployed model must achieve; each
criterion is checked against the stage results and gets ``pass``, ``fail`` or ``not evaluated`` (the
stage that measures it did not run, or the criterion names a target the run did not assess), with the
measured value in words. The overall verdict is ``FAIL`` when any criterion fails, ``INCOMPLETE`` when
none fails but one could not be evaluated, ``PASS`` otherwise.

The deployed model is the sliced (pruned, exported) model: the evaluate stage's ``onnx`` form (the
exported file the flight bundle is generated from) when that stage ran, else its ``sliced`` form, else the
prune stage's kept (masked, fine-tuned) model at the exported percent, which the parity stage shows agrees with
the sliced torch model and its ONNX export. The reference is the original (trained or imported) model's accuracy from the same source on the
same images.

Criteria (:class:`AcceptanceCriteria`; the pipeline's ``AcceptanceConfig`` has the same fields and
defaults, tested):

- ``max_accuracy_drop`` (default 0.05): original accuracy - deployed accuracy <= this (fractions);
- ``min_accuracy``: deployed accuracy >= this;
- ``must_fit``: the deployed model fits each of these targets (flight-processor fit stage, weights as stored);
- ``deadlines``: ``"target=seconds"``: the fit stage's latency estimate of the deployed model on that
  target <= seconds;
- ``require_parity`` (default true): every pair of implementations agrees within the parity tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etdeploy.records import Record

PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not evaluated"


def parse_deadlines(deadlines: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``("rad750=2.0", ...)`` -> ``{"rad750": 2.0}``; ``ValueError`` naming the bad entry."""
    out: dict[str, float] = {}
    for entry in deadlines:
        target, sep, seconds = str(entry).rpartition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = float("nan")
        if not sep or not target.strip() or not value > 0:
            raise ValueError(f"deadline {entry!r} is not 'target=seconds' with seconds > 0")
        out[target.strip()] = value
    return out


@dataclass(frozen=True)
class AcceptanceCriteria(Record):
    """What the deployed model must achieve (the run configuration's ``[acceptance]``)."""

    max_accuracy_drop: float | None = 0.05
    min_accuracy: float | None = None
    must_fit: tuple[str, ...] = ()
    deadlines: tuple[str, ...] = ()
    require_parity: bool = True


@dataclass(frozen=True)
class CriterionResult(Record):
    """One criterion: its key, the requirement in words, what was measured, status and why."""

    criterion: str
    requirement: str
    measured: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class AcceptanceResult(Record):
    """Every criterion's result and the overall verdict (``PASS`` | ``FAIL`` | ``INCOMPLETE`` | ``NONE``)."""

    criteria: AcceptanceCriteria
    deployed: str
    results: tuple[CriterionResult, ...]
    verdict: str

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(r for r in self.results if r.status == FAIL)


@dataclass(frozen=True)
class Accuracies:
    """Original and deployed accuracy on the same images, and where they were measured."""

    original: float
    deployed: float
    n: int
    source: str


def _ran(stages: Mapping[str, Any], name: str) -> bool:
    """Stage ``name`` ran and has its result (a stage switched off records only why: ``skipped``, a string)."""
    return name in stages and not isinstance(stages[name].get("skipped"), str)


def deployed_accuracies(stages: Mapping[str, Any]) -> Accuracies | None:
    """The original and deployed accuracy from the best stage that measured both (module docstring)."""
    if _ran(stages, "evaluate"):
        from etdeploy.assurance.forms import FormsRun

        forms = FormsRun.from_dict(stages["evaluate"], where="stage 'evaluate'")
        for name in ("onnx", "sliced"):
            if "original" in forms.forms and name in forms.forms:
                return Accuracies(forms.forms["original"].accuracy, forms.forms[name].accuracy, forms.n,
                                  f"evaluate stage, forms original vs {name} on {forms.n} {forms.split} images")
    if _ran(stages, "prune"):
        from etdeploy.pruning.prune_dirs import PruneSeries

        p = PruneSeries.from_dict(stages["prune"], where="stage 'prune'")
        for run in p.runs:
            if run.percent == p.export_percent:
                acc = run.test_accuracy
                return Accuracies(acc.original.accuracy, acc.final.accuracy, acc.final.n,
                                  f"prune stage, original vs kept model at {run.percent:g} % on the test split")
    return None


def _fit_of_deployed(stages: Mapping[str, Any]):
    if not _ran(stages, "fit"):
        return None, ""
    from etdeploy.targets import FitRun

    f = FitRun.from_dict(stages["fit"], where="stage 'fit'")
    if not f.models:
        return None, ""
    name = "sliced" if "sliced" in f.models else list(f.models)[-1]
    return f, name


def evaluate_acceptance(criteria: AcceptanceCriteria, stages: Mapping[str, Any]) -> AcceptanceResult:
    """Check ``criteria`` against the serialised stage results ``stages`` (by stage name)."""
    results: list[CriterionResult] = []
    acc = deployed_accuracies(stages)
    no_acc = "no stage measured the original and the deployed model's accuracy (evaluate, parity or prune)"
    if criteria.max_accuracy_drop is not None:
        need = f"accuracy drop of the deployed model <= {criteria.max_accuracy_drop:.3f}"
        if acc is None:
            results.append(CriterionResult("max_accuracy_drop", need, "n/a", NOT_EVALUATED, no_acc))
        else:
            drop = acc.original - acc.deployed
            ok = drop <= criteria.max_accuracy_drop + 1e-12
            results.append(CriterionResult(
                "max_accuracy_drop", need, f"{acc.original:.3f} -> {acc.deployed:.3f}: drop {drop:.3f}",
                PASS if ok else FAIL,
                acc.source + ("" if ok else f"; the drop exceeds the limit by {drop - criteria.max_accuracy_drop:.3f}")))
    if criteria.min_accuracy is not None:
        need = f"deployed model's accuracy >= {criteria.min_accuracy:.3f}"
        if acc is None:
            results.append(CriterionResult("min_accuracy", need, "n/a", NOT_EVALUATED, no_acc))
        else:
            ok = acc.deployed >= criteria.min_accuracy - 1e-12
            results.append(CriterionResult("min_accuracy", need, f"{acc.deployed:.3f}", PASS if ok else FAIL,
                                           acc.source))
    fit, deployed = _fit_of_deployed(stages)
    for target in criteria.must_fit:
        need = f"the deployed model fits {target}"
        if fit is None:
            results.append(CriterionResult(f"must_fit {target}", need, "n/a", NOT_EVALUATED,
                                           "the flight-processor fit stage did not run"))
        elif target not in fit.targets:
            results.append(CriterionResult(f"must_fit {target}", need, "n/a", NOT_EVALUATED,
                                           f"target {target!r} was not assessed (add it to [targets] ids)"))
        else:
            v = fit.models[deployed].verdicts[target]
            why = "; ".join(c.detail for c in v.checks if c.status == "does not fit")
            results.append(CriterionResult(f"must_fit {target}", need, "fits" if v.fits else "does not fit",
                                           PASS if v.fits else FAIL, why))
    try:
        deadlines = parse_deadlines(criteria.deadlines)
    except ValueError as exc:
        deadlines = {}
        results.append(CriterionResult("deadlines", "latency bounds per target", "n/a", NOT_EVALUATED, str(exc)))
    for target, seconds in deadlines.items():
        need = f"latency on {target} <= {seconds:g} s per image"
        key = f"deadline {target}"
        if fit is None:
            results.append(CriterionResult(key, need, "n/a", NOT_EVALUATED, "the flight-processor fit stage did not run"))
        elif target not in fit.targets:
            results.append(CriterionResult(key, need, "n/a", NOT_EVALUATED,
                                           f"target {target!r} was not assessed (add it to [targets] ids)"))
        else:
            latency = fit.models[deployed].verdicts[target].latency_s
            ok = latency <= seconds
            results.append(CriterionResult(key, need, f"{latency:.3g} s (estimate: MACC / sustained MAC/s)",
                                           PASS if ok else FAIL, ""))
    if criteria.require_parity:
        need = "every implementation pair agrees (top-1 and |Δ logit| within the parity tolerance)"
        if not _ran(stages, "parity"):
            results.append(CriterionResult("require_parity", need, "n/a", NOT_EVALUATED, "the parity stage did not run"))
        else:
            from etdeploy.export import ParityRun

            q = ParityRun.from_dict(stages["parity"], where="stage 'parity'")
            worst = max((p.max_abs_logit_delta for p in q.pairs), default=0.0)
            results.append(CriterionResult("require_parity", need, f"max |Δ logit| {worst:.2e} (tolerance {q.tolerance:g})",
                                           PASS if q.passed else FAIL, "; ".join(q.mismatches)))
    statuses = {r.status for r in results}
    verdict = ("NONE" if not results else "FAIL" if FAIL in statuses
               else "INCOMPLETE" if NOT_EVALUATED in statuses else "PASS")
    return AcceptanceResult(criteria=criteria, deployed=acc.source if acc else "", results=tuple(results),
                            verdict=verdict)


__all__ = ["FAIL", "NOT_EVALUATED", "PASS", "AcceptanceCriteria", "AcceptanceResult", "Accuracies",
           "CriterionResult", "deployed_accuracies", "evaluate_acceptance", "parse_deadlines"]
