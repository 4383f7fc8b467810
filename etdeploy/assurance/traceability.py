"""Traceability matrix: objective -> what etdeploy did -> evidence -> verdict (docs/method.md §12.4).

One row per objective of :data:`etdeploy.assurance.objectives.OBJECTIVES`, in catalogue order. The row
is computed from the run's stage results (serialised, by stage name) and the SHA-256 of its artefacts
(``"<stage>/<path>"`` -> digest, the run record's ``provenance.artefacts``):

- ``done``: what etdeploy did toward the objective in this run, in words;
- ``evidence``: the stage, the artefact file and its SHA-256, and the figure it shows;
- ``verdict``: ``met`` (the run holds the evidence the objective asks for), ``partly`` (some of it, or
  evidence an applicant must complete: the reason says what is missing) or ``not addressed`` (the stage
  that would give it did not run, or etdeploy cannot address it: the reason says which).

A verdict is about the *evidence*, not the result: LM-06 is met when the impact of pruning is measured and
documented even if the impact is too large; whether the result is acceptable is the acceptance verdict's
job (:mod:`etdeploy.assurance.acceptance`). The exception is IMP-06, whose objective *is* a result (the
properties were not altered): it is only partly met when the accuracy criteria fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from etdeploy.assurance.objectives import OBJECTIVES, REFERENCES, Reference
from etdeploy.records import Record

MET, PARTLY, NOT_ADDRESSED = "met", "partly", "not addressed"
VERDICTS = (MET, PARTLY, NOT_ADDRESSED)


@dataclass(frozen=True)
class Evidence(Record):
    """One piece of evidence: the stage, the artefact file (``<stage>/<path>``, empty when the figure is
    in the stage summary only), its SHA-256 and the figure in words."""

    stage: str
    file: str
    sha256: str
    figure: str


@dataclass(frozen=True)
class TraceRow(Record):
    objective: str
    title: str
    done: str
    evidence: tuple[Evidence, ...]
    verdict: str
    reason: str


@dataclass(frozen=True)
class Traceability(Record):
    """The matrix (one row per objective, catalogue order) and the standards it is read against."""

    rows: tuple[TraceRow, ...]
    references: tuple[Reference, ...]

    def row(self, objective: str) -> TraceRow:
        return next(r for r in self.rows if r.objective == objective)

    def count(self, verdict: str) -> int:
        return sum(1 for r in self.rows if r.verdict == verdict)


class _Run:
    """The stage results typed on demand, and the artefact digests."""

    def __init__(self, stages: Mapping[str, Any], artefacts: Mapping[str, str], acceptance: Any = None):
        self.stages = stages
        self.artefacts = artefacts
        self.acceptance = acceptance

    def has(self, name: str) -> bool:
        """The stage ran and produced its result (a stage switched off records only why: ``skipped``)."""
        return name in self.stages and not isinstance(self.stages[name].get("skipped"), str)

    def absent(self, *names: str) -> str:
        """Why the stages ``names`` give no evidence: not run, or skipped with their reason."""
        reasons = [f"the {n} stage was skipped ({self.stages[n]['skipped']})" if n in self.stages
                   else f"the {n} stage did not run" for n in names]
        return "; ".join(reasons)

    def typed(self, name: str, record_type: type) -> Any:
        return record_type.from_dict(self.stages[name], where=f"stage {name!r}") if name in self.stages else None

    def evidence(self, stage: str, figure: str, *names: str) -> Evidence:
        """Evidence from ``stage`` naming the first artefact whose path ends with one of ``names``."""
        for suffix in names:
            for key in sorted(self.artefacts):
                if key.startswith(f"{stage}/") and key.endswith(suffix):
                    return Evidence(stage, key, self.artefacts[key], figure)
        return Evidence(stage, f"{stage}/stage.json" if stage in self.stages else "", "", figure)


def _dm06(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("data"):
        return "", [], NOT_ADDRESSED, run.absent("data")
    d = run.stages["data"]
    counts = d.get("counts") or {}
    sizes = ", ".join(f"{k} {sum(v)}" for k, v in sorted(counts.items()))
    leaks = [w for w in d.get("warnings") or () if "leak" in str(w)]
    done = (f"split by the data source's recipe into {sizes} images; images in more than one split are searched "
            "for (leakage warning); every image's SHA-256 is in the manifest")
    ev = [run.evidence("data", f"split sizes {sizes}; manifest SHA-256 {str(d.get('manifest_sha256', ''))[:16]}…",
                       "manifest.csv")]
    train = run.stages.get("train") or {}
    if train.get("imported") is not None:
        return done, ev, PARTLY, "the model was imported: the data it was trained on are not known to etdeploy"
    if leaks:
        return done, ev, PARTLY, f"leakage warning: {leaks[0]}"
    if not all(k in counts and sum(counts[k]) > 0 for k in ("train", "val", "test")):
        return done, ev, PARTLY, "not every one of train, val and test holds images"
    return done, ev, MET, "three non-empty splits, no image in more than one split"


def _lm06(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("prune"):
        return "", [], NOT_ADDRESSED, run.absent("prune")
    from etdeploy.pruning.prune_dirs import PruneSeries

    p = run.typed("prune", PruneSeries)
    kept = next((r for r in p.runs if r.percent == p.export_percent), p.runs[-1])
    acc = kept.test_accuracy
    done = (f"pruning ({p.schedule}, {', '.join(f'{r.percent:g}' for r in p.runs)} % of {', '.join(p.layers)}; "
            f"{p.export_percent:g} % exported) documented with its accuracy at every percent")
    ev = [run.evidence("prune", f"test accuracy {acc.original.accuracy:.3f} -> {acc.final.accuracy:.3f} at "
                       f"{kept.percent:g} %", "prune.json")]
    if run.has("quantize"):
        from etdeploy.export import QuantizeRun

        q = run.typed("quantize", QuantizeRun)
        done += "; int8 quantisation with its accuracy against fp32"
        ev.append(run.evidence("quantize", f"int8 {q.accuracy_int8:.3f} vs fp32 {q.accuracy_fp32:.3f}, top-1 "
                               f"agreement {q.top1_agreement:.1%}", ".onnx"))
    if run.has("evaluate"):
        from etdeploy.assurance.forms import FormsRun

        f = run.typed("evaluate", FormsRun)
        done += "; every form's accuracy with a 95 % interval and paired exact McNemar tests"
        ev.append(run.evidence("evaluate", f"{len(f.forms)} forms, {len(f.pairs)} paired tests on {f.n} images",
                               "forms.json", ".csv"))
        return done, ev, MET, "the optimisations are documented and their impact measured with intervals and tests"
    return done, ev, PARTLY, "the impact is a point accuracy without an interval or a paired test (evaluate stage absent)"


def _lm07(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("train"):
        return "", [], NOT_ADDRESSED, run.absent("train")
    t = run.stages["train"]
    if t.get("imported") is not None:
        return ("the imported model's file SHA-256 is recorded", [run.evidence("train", "imported model", "model.safetensors")],
                NOT_ADDRESSED, "the model was trained outside etdeploy: its training cannot be reproduced from this run")
    done = ("training seeded (configuration seed), torch thread count recorded and checked on resume; the "
            "pipeline reproduces weights and report.json byte for byte for the same configuration, seed and "
            "thread count (tests/test_pipeline.py)")
    ev = [run.evidence("train", f"weights SHA-256 {str(t.get('weights_sha256', ''))[:16]}…", "model.safetensors"),
          run.evidence("train", "training history and metrics", "metrics.json")]
    return done, ev, MET, "seed, threads, configuration hash, package versions and weights digest recorded"


def _imp04(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("export"):
        return "", [], NOT_ADDRESSED, run.absent("export")
    steps = ["masking (prune)", "slicing", "ONNX export", "onnxsim simplification"]
    ev = [run.evidence("export", "simplified ONNX of the sliced model", "sliced/model.sim.onnx")]
    if run.has("prune"):
        ev.insert(0, run.evidence("prune", "masked and sliced models, slicing parity", "prune.json"))
    if run.has("quantize"):
        steps.append("int8 quantisation")
        ev.append(run.evidence("quantize", "static int8 QDQ model", "model.int8.onnx"))
    if run.has("package"):
        steps.append("C99 generation")
        ev.append(run.evidence("package", "C99 flight bundle", "package.json"))
    done = f"every transformation recorded with its tool and version ({', '.join(steps)}); see the configuration index"
    if not run.has("parity"):
        return done, ev, PARTLY, "the transformations are identified but not validated (" + run.absent("parity") + ")"
    from etdeploy.export import ParityRun

    q = run.typed("parity", ParityRun)
    ev.append(run.evidence("parity", f"{len(q.pairs)} pairs, max |Δ logit| "
                           f"{max((p.max_abs_logit_delta for p in q.pairs), default=0.0):.2e}, tolerance {q.tolerance:g}",
                           "parity.json"))
    if not q.passed:
        return done, ev, PARTLY, "the parity check failed: see the problem reports"
    return done, ev, MET, "identified, tools and versions recorded, validated by the parity check"


def _imp06(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("parity"):
        return "", [], NOT_ADDRESSED, run.absent("parity")
    from etdeploy.export import ParityRun

    q = run.typed("parity", ParityRun)
    ev = [run.evidence("parity", f"{'passed' if q.passed else 'failed'}: {len(q.names)} implementations agree "
                       f"within {q.tolerance:g}", "parity.json")]
    done = "the exported and simplified files compared with the model they came from, image by image"
    missing = []
    if run.has("evaluate"):
        ev.append(run.evidence("evaluate", "labels changed per form (McNemar)", "forms.json", ".csv"))
        done += "; labels changed by each transformation counted with exact McNemar tests"
    else:
        missing.append(run.absent("evaluate"))
    if run.has("stability"):
        from etdeploy.assurance.stability import StabilityRun

        st = run.typed("stability", StabilityRun)
        ssim = ("no SSIM defined (constant maps)" if st.min_ssim is None else
                f"min SSIM {st.min_ssim:.3f}, median {st.median_ssim:.3f}")
        ev.append(run.evidence("stability", f"occlusion maps original vs pruned on {len(st.images)} images: {ssim}",
                               "stability.png", "stability.json"))
        done += "; explanation stability (what the model looks at) measured"
        if st.min_ssim is None:
            missing.append("a defined map SSIM (the stability stage's maps are constant)")
    else:
        missing.append(run.absent("stability"))
    if not q.passed:
        return done, ev, PARTLY, "the parity check failed: see the problem reports"
    altered = [r for r in (run.acceptance.results if run.acceptance else ())
               if r.criterion in ("max_accuracy_drop", "min_accuracy") and r.status == "fail"]
    if altered:
        return done, ev, PARTLY, ("the exact transformations (slicing, export) preserve the outputs, but the verification "
                                  "shows pruning altered the accuracy beyond the acceptance criteria ("
                                  + "; ".join(f"{r.criterion}: {r.measured}" for r in altered) + ")")
    if missing:
        return done, ev, PARTLY, f"export parity shown; missing: {'; '.join(missing)}"
    return done, ev, MET, "export parity, label changes and explanation stability measured; accuracy within the criteria"


def _imp07(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("fit") and not run.has("package"):
        return "", [], NOT_ADDRESSED, run.absent("fit", "package")
    ev, done = [], []
    if run.has("fit"):
        from etdeploy.targets import FitRun

        f = run.typed("fit", FitRun)
        done.append(f"memory, operator support and latency bound assessed on {len(f.targets)} flight-processor profiles")
        ev.append(run.evidence("fit", f"{len(f.targets)} targets", "fit.json"))
    if run.has("package"):
        from etdeploy.packaging import PackageRun

        pk = run.typed("package", PackageRun)
        done.append(f"the generated C run on {', '.join(pk.passed) or 'no'} cross ISA(s) under emulation against "
                    "golden vectors")
        ev.append(run.evidence("package", f"golden-vector checks passed: {', '.join(pk.passed) or 'none'}", "package.json"))
    return ("; ".join(done), ev, PARTLY,
            "assessed by static analysis and emulation, not measured on the flight hardware and its toolchain")


def _imp08(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if run.has("evaluate"):
        from etdeploy.assurance.forms import FormsRun

        f = run.typed("evaluate", FormsRun)
        deployed = next((n for n in ("c", "int8", "onnx", "sliced") if n in f.forms), None)
        ev = [run.evidence("evaluate", "; ".join(f"{n} {r.accuracy:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                                                 for n, r in f.forms.items()), "forms.json", ".csv")]
        done = (f"every form of the model evaluated on the same {f.n} {f.split} images with 95 % intervals, "
                "per class")
        if f.split != "test":
            return done, ev, PARTLY, f"evaluated on the {f.split} split, not the test split"
        if deployed is None:
            return done, ev, PARTLY, "the deployed (exported) form was not evaluated"
        return done, ev, MET, f"the deployed forms (up to '{deployed}') evaluated on the test set with intervals"
    if run.has("parity"):
        from etdeploy.export import ParityRun

        q = run.typed("parity", ParityRun)
        return (f"accuracy of each implementation on {q.n} {q.split} images (parity stage)",
                [run.evidence("parity", ", ".join(f"{n} {a:.3f}" for n, a in q.accuracy.items()), "parity.json")],
                PARTLY, "point accuracies without intervals (evaluate stage absent)")
    return "", [], NOT_ADDRESSED, run.absent("evaluate")


def _robust(run: _Run, low: bool) -> tuple[str, list[Evidence], str, str]:
    if not run.has("robustness"):
        return "", [], NOT_ADDRESSED, run.absent("robustness")
    from etdeploy.assurance.robustness import RobustnessRun

    r = run.typed("robustness", RobustnessRun)
    models = ", ".join(m.name for m in r.models)
    names = ", ".join(p.name for p in r.perturbations)
    severities = [s for s in r.severities if s > 0]
    pick = [min(severities)] if (low and severities) else severities
    cells = [c for c in r.cells if c.severity in pick]
    worst = min(cells, key=lambda c: c.accuracy) if cells else None
    figure = (f"lowest accuracy at severity {', '.join(map(str, pick))}: {worst.accuracy:.3f} ({worst.model}, "
              f"{worst.perturbation})" if worst else "no cells")
    ev = [run.evidence("robustness", figure, ".csv", ".json")]
    what = "small" if low else "graded"
    done = f"{models} evaluated on {r.n} {r.split} images under {what} perturbations ({names}), seeded"
    deployed = any(m.name in ("int8", "sliced", "onnx", "pruned") for m in r.models)
    if not deployed:
        return done, ev, PARTLY, "only the original model was evaluated, not the deployed one"
    if low:
        return done, ev, PARTLY, ("stability shown as accuracy under the mildest perturbation; no bound on the output "
                                  "change for a bounded input change is given")
    return done, ev, MET, ("robustness of the deployed forms measured under rover-camera degradations; the adverse "
                           "conditions of the operational domain are the applicant's to define")


def _cm01(run: _Run) -> tuple[str, list[Evidence], str, str]:
    n = len(run.artefacts)
    done = (f"configuration index: configuration and its SHA-256, seeds, thread count, package versions, platform, "
            f"command, the SHA-256 of {n} artefacts; code version and run date in the report")
    return (done, [Evidence("report", "report/report.json", "", f"{n} artefact digests")], PARTLY,
            ("configuration identification only: baselines, change control, problem tracking, archiving and "
            "retention are the project's configuration-management process"))


def _exp03(run: _Run) -> tuple[str, list[Evidence], str, str]:
    if not run.has("explain"):
        return "", [], NOT_ADDRESSED, run.absent("explain")
    from etdeploy.occlusion.explain import ExplainRun

    e = run.typed("explain", ExplainRun)
    maps = e.all_maps()
    flat = sum(1 for _, m in maps if m.flat)
    ev = [run.evidence("explain", f"{len(maps)} occlusion maps of {len(e.images)} images ({flat} flat), "
                       f"{e.map_kind} maps, patch {e.patch}, stride {e.stride}", "summary.json")]
    done = "occlusion sensitivity maps (docs/method.md §6) of the deployed ONNX model on test images"
    if run.has("stability"):
        ev.append(run.evidence("stability", "map SSIM original vs pruned", "stability.png", "stability.json"))
        done += "; their stability under compression"
    reason = ("development explainability at output level; operational explainability for end users and the "
              "stakeholders' explanation needs are outside etdeploy")
    return done, ev, PARTLY, reason


TRACERS: dict[str, Callable[[_Run], tuple[str, list[Evidence], str, str]]] = {
    "DM-06": _dm06, "LM-06": _lm06, "LM-07": _lm07, "IMP-04": _imp04, "IMP-06": _imp06, "IMP-07": _imp07,
    "IMP-08": _imp08, "IMP-09": lambda run: _robust(run, True), "IMP-10": lambda run: _robust(run, False),
    "CM-01": _cm01, "EXP-03": _exp03,
}


def trace(stages: Mapping[str, Any], artefacts: Mapping[str, str], acceptance: Any = None) -> Traceability:
    """The matrix of a run: its stage results (serialised, by stage name), artefact digests and (for IMP-06, whose
    objective is that the model's properties were *not* altered) its
    :class:`~etdeploy.assurance.acceptance.AcceptanceResult`."""
    run = _Run(stages, artefacts, acceptance)
    rows = []
    for o in OBJECTIVES:
        done, evidence, verdict, reason = TRACERS[o.id](run)
        rows.append(TraceRow(o.id, o.title, done or "nothing in this run", tuple(evidence), verdict, reason))
    return Traceability(rows=tuple(rows), references=REFERENCES)


__all__ = ["MET", "NOT_ADDRESSED", "PARTLY", "TRACERS", "VERDICTS", "Evidence", "TraceRow", "Traceability", "trace"]
