"""The compress use case: the most accurate pruned (and quantised) model that fits a target (docs/method.md §13).

    from etdeploy.compress import compress_dirs
    run = compress_dirs("runs/model", "runs/rank", dataset=ds, target="stm32h7", out="runs/compress")
    run.chosen.label, run.chosen.cost.flash_bytes, run.reason

Search (every step deterministic):

1. **Score** every point of the coarse grid (each layer's masking percent from ``percents``, every
   combination, so shared and per-layer percents) under every criterion, on the selection split, with
   masked dense heads over cached conv features (:mod:`.heads`): no conv is run twice.
2. **Cost, best first**: candidates (point x precision) in order of decreasing accuracy (int8 ranked by
   its fp32 accuracy); a candidate whose lower bound (:func:`.cost.cost_bound`) breaks a budget is
   infeasible without an export; the others get the exact fit cost of their sliced ONNX graph, once per
   structure (:mod:`.cost`). The scan stops once ``max_finetune`` candidates fit (or accuracy falls
   below ``min_accuracy``): on the grid, the first that fits is the most accurate that fits.
3. **Refine** (``refine_rounds``): around the best fitting point, the midpoints between each layer's
   percent and its grid neighbours, every combination, same criterion; then step 2 again over all.
4. **Shared line**: the shared-percent points of the IG rank and of the best criterion are costed too,
   so the front spans the whole range.
5. **Finalists**: the fitting candidates on the Pareto front (:mod:`.front`), most accurate first, at
   most ``max_finetune``: fine-tuned with the masks held (``finetune_epochs``) and, for int8, quantised
   (static QDQ, as ``etdeploy quantize``) and measured, with the int8 file's own fit. The chosen model
   is the most accurate finalist (ties: fp32 before int8, then least flash).
6. **Output** (a folder that appears whole or not at all): ``masked/``, ``sliced/`` (as ``etdeploy
   prune`` writes them), ``record.json``, ``export/`` (``etdeploy export``), ``parity.json`` (masked,
   sliced, ONNX, simplified ONNX), ``model.int8.onnx`` + ``int8.json`` for an int8 choice, ``fit.json``
   of the exported file, ``candidates.csv``, ``front.csv``, ``front.png`` and ``compress.json``
   (:class:`CompressRun`). When nothing meets the target: :class:`~etdeploy.errors.CompressError`
   naming the closest candidate, and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.compress.cost import CandidateCost
from etdeploy.compress.space import COARSE_PERCENTS, IG_SCHEDULE, PRECISIONS
from etdeploy.errors import CompressError, PruningError
from etdeploy.records import Record
from etdeploy.targets.profile import TargetProfile

RUN_FILE = "compress.json"
COMPRESS_FORMAT = "etdeploy-compress"
CANDIDATE_COLUMNS = ["criterion", "percents", "precision", "kept", "accuracy", "ci_low", "ci_high", "correct", "n",
                     "accuracy_source", "phase", "flash_bytes", "ram_bytes", "macc", "parameters", "latency_s",
                     "latency_lower_bound_s", "fits", "failing", "on_front"]


@dataclass(frozen=True)
class Candidate(Record):
    """One point x precision: masking percent per layer under ``criterion``, kept neurons, accuracy on the
    selection split (``correct``/``n``, Wilson 95 % interval), where that accuracy comes from
    (``masked``: the fp32 masked model; ``fine-tuned``; ``int8``: the quantised file measured;
    ``fp32 estimate``: an int8 candidate not quantised), its cost on the target (``None``: ruled out by
    the lower bound without an export) and the search phase that found it."""

    criterion: str
    percents: dict[str, float]
    precision: str
    kept: dict[str, int]
    correct: int
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    accuracy_source: str
    cost: CandidateCost | None
    phase: str

    @property
    def label(self) -> str:
        from etdeploy.compress.space import ordered, point_label

        return point_label(self.criterion, self.percents, ordered(self.percents), self.precision)

    @property
    def percent_values(self) -> tuple[float, ...]:
        """The masking percents in model order (``flatten``, ``dense1``...)."""
        from etdeploy.compress.space import ordered

        return tuple(self.percents[n] for n in ordered(self.percents))

    @property
    def shared(self) -> bool:
        return len(set(self.percents.values())) <= 1


@dataclass(frozen=True)
class HeldOut(Record):
    """Test-split accuracy of the unpruned and the chosen model (Wilson 95 % intervals)."""

    n: int
    original: float
    original_ci: tuple[float, float]
    chosen: float
    chosen_ci: tuple[float, float]


@dataclass(frozen=True)
class CompressRun(Record):
    """What :func:`compress_dirs` searched, found and wrote (``compress.json``).

    ``evaluated``: points scored on cached features; ``costed``: structures exported and analysed;
    ``bounded``: candidates ruled out by the lower bound; ``candidates``: every candidate with a cost
    (or bounded), ``front``: their Pareto front; ``chosen`` and ``reason``; ``original``: the unpruned
    model at fp32; ``test``: held-out accuracy; ``parity``: max |delta logit| of masked, sliced, ONNX and
    simplified ONNX on the test split; ``int8``: the int8 file against its fp32 source (int8 choice).
    """

    target: TargetProfile
    min_accuracy: float | None
    max_latency_s: float | None
    split: str
    layers: tuple[str, ...]
    criteria: tuple[str, ...]
    skipped_criteria: dict[str, str]
    precisions: tuple[str, ...]
    coarse_percents: tuple[float, ...]
    refine_rounds: int
    finetune_epochs: int
    seed: int
    evaluated: int
    costed: int
    bounded: int
    finetuned: int
    quantized: int
    original: Candidate
    candidates: tuple[Candidate, ...]
    front: tuple[Candidate, ...]
    chosen: Candidate
    reason: str
    test: HeldOut
    parity_max_abs_logit_delta: float
    parity_passed: bool
    int8: dict[str, Any] | None
    fits_exported: bool
    format: str = COMPRESS_FORMAT
    format_version: int = 1


def _wilson(correct: int, n: int) -> tuple[float, float]:
    from etdeploy.assurance.stats import wilson_interval

    return wilson_interval(int(correct), int(n))


class _Search:
    """State of one search: scored points, cached costs, counters (not part of the public API)."""

    def __init__(self, model, orders, geometry, unpruned, target, split, precisions, max_latency_s, min_accuracy):
        self.model, self.orders, self.geometry, self.unpruned = model, orders, geometry, unpruned
        self.target, self.split, self.precisions = target, split, precisions
        self.max_latency_s, self.min_accuracy = max_latency_s, min_accuracy
        self.points: dict[tuple, tuple[int, dict, tuple[int, ...], str]] = {}  # (crit, percents) -> scored
        self.analyses: dict[tuple[int, ...], Any] = {}
        self.bounded: set[tuple] = set()

    def score(self, criterion: str, percents: dict[str, float], phase: str) -> None:
        from etdeploy.compress.heads import head_correct

        pid = (criterion, tuple(percents[n] for n in self.geometry.layers if n in percents))
        if pid in self.points:
            return
        plan = self.orders[criterion].plan(percents)
        if plan is None:
            return
        correct = head_correct(self.model, self.split, plan)
        self.points[pid] = (correct, plan, self.geometry.structure_key(plan), phase)

    def cost(self, pid: tuple, precision: str, *, exact: bool = False) -> CandidateCost | None:
        """The candidate's cost, or ``None`` when its lower bound breaks a budget (``exact``: export anyway)."""
        from etdeploy.compress.cost import cost_bound, cost_from_analysis, sliced_analysis
        from etdeploy.pruning.masking import set_layer_masks

        _, plan, key, _ = self.points[pid]
        analysis = self.analyses.get(key)
        if analysis is None:
            if not exact and cost_bound(self.geometry, self.unpruned, key).breaks(self.target, precision,
                                                                                   self.max_latency_s):
                self.bounded.add((pid, precision))
                return None
            set_layer_masks(self.model, plan)
            analysis = self.analyses[key] = sliced_analysis(self.model)
        self.bounded.discard((pid, precision))
        return cost_from_analysis(analysis, self.target, precision, self.max_latency_s)

    def candidate(self, pid: tuple, precision: str, cost: CandidateCost | None) -> Candidate:
        correct, plan, _, phase = self.points[pid]
        n = self.split.n
        low, high = _wilson(correct, n)
        return Candidate(criterion=pid[0], percents=dict(zip(self.geometry.layers, pid[1])), precision=precision,
                         kept={k: len(v) for k, v in plan.items()}, correct=correct, n=n,
                         accuracy=correct / n if n else float("nan"), ci_low=low, ci_high=high,
                         accuracy_source="masked" if precision == "fp32" else "fp32 estimate", cost=cost, phase=phase)

    def best_first(self, want: int) -> tuple[list[Candidate], dict[tuple, Candidate]]:
        """Fitting candidates in order (most accurate first; ties: least flash, MACC, RAM), at least ``want``
        of them when that many exist, and every candidate costed on the way."""
        order = sorted(((pid, prec) for pid in self.points for prec in self.precisions),
                       key=lambda item: (-self.points[item[0]][0], self.precisions.index(item[1]), item[0]))
        fitting: list[Candidate] = []
        seen: dict[tuple, Candidate] = {}
        i = 0
        while i < len(order):
            correct = self.points[order[i][0]][0]
            if self.min_accuracy is not None and self.split.n and correct / self.split.n < self.min_accuracy:
                break
            tier = []
            while i < len(order) and self.points[order[i][0]][0] == correct:
                pid, prec = order[i]
                cand = self.candidate(pid, prec, self.cost(pid, prec))
                seen[(pid, prec)] = cand
                if cand.cost is not None and cand.cost.fits:
                    tier.append(cand)
                i += 1
            fitting += sorted(tier, key=_tie_key)
            if len(fitting) >= want:
                break
        return fitting, seen


def _tie_key(c: Candidate) -> tuple:
    return (c.cost.flash_bytes, c.cost.macc, c.cost.ram_bytes, PRECISIONS.index(c.precision), c.criterion,
            c.percent_values)


def _choice_key(c: Candidate) -> tuple:
    return (-c.correct, *_tie_key(c))


def _closest(candidates: Sequence[Candidate], min_accuracy: float | None) -> Candidate | None:
    fitting = [c for c in candidates if c.cost is not None and c.cost.fits]
    if fitting:
        return min(fitting, key=_choice_key)
    costed = [c for c in candidates if c.cost is not None]
    return min(costed, key=lambda c: (c.cost.shortfall, -c.correct, *_tie_key(c))) if costed else None


def _closest_text(c: Candidate | None, target: TargetProfile, min_accuracy: float | None) -> str:
    if c is None:
        return "no candidate could be costed"
    from etdeploy.targets.text import format_bytes

    if c.cost.fits:
        return (f"closest: {c.label} fits but reaches accuracy {c.accuracy:.3f} < min accuracy {min_accuracy:g}")
    parts = []
    if "flash" in c.cost.failing:
        parts.append(f"flash {format_bytes(c.cost.flash_bytes)} > {format_bytes(target.flash_bytes)}")
    if "ram" in c.cost.failing:
        parts.append(f"RAM {format_bytes(c.cost.ram_bytes)} > {format_bytes(target.model_ram_bytes)}")
    if "latency" in c.cost.failing:
        parts.append(f"latency {c.cost.latency_s:.3g} s over the limit")
    for r in c.cost.failing:
        if r in ("ops", "precision"):
            parts.append(f"{r} check fails")
    return f"closest: {c.label} (accuracy {c.accuracy:.3f}; {', '.join(parts)})"


def no_fit_error(target: TargetProfile, min_accuracy: float | None, max_latency_s: float | None,
                 closest: Candidate | None, what: str) -> CompressError:
    """The error of a search with no answer: the constraints, what was tried, the closest candidate."""
    return CompressError(f"no candidate meets target {target.id!r}"
                         + (f" with min accuracy {min_accuracy:g}" if min_accuracy is not None else "")
                         + (f" and max latency {max_latency_s:g} s" if max_latency_s is not None else "")
                         + f" ({what}); " + _closest_text(closest, target, min_accuracy))


def _check_options(min_accuracy, max_latency_s, precisions, percents, refine_rounds, max_finetune,
                   finetune_epochs, split) -> None:
    from etdeploy.vocab import SPLITS

    if min_accuracy is not None and not 0.0 <= float(min_accuracy) <= 1.0:
        raise CompressError(f"min accuracy must be in [0, 1] (a fraction), got {min_accuracy}")
    if max_latency_s is not None and not float(max_latency_s) > 0:
        raise CompressError(f"max latency must be > 0 seconds, got {max_latency_s}")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise CompressError(f"precisions must be among {', '.join(PRECISIONS)}, got {', '.join(precisions) or 'none'}")
    if not percents or any(not 0.0 <= float(p) < 100.0 for p in percents):
        raise CompressError("percents must be one or more masking percentages in [0, 100)")
    if refine_rounds < 0 or max_finetune < 1 or finetune_epochs < 0:
        raise CompressError("refine rounds and fine-tuning epochs must be >= 0, max fine-tuned candidates >= 1")
    if split not in SPLITS:
        raise CompressError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def compress_dirs(model_dir: str | os.PathLike, ranking_dir: str | os.PathLike, *, dataset, target: str,
                  out: str | os.PathLike, targets_dir: str | os.PathLike | None = None,
                  min_accuracy: float | None = None, max_latency_s: float | None = None,
                  criteria: Sequence[str] | None = None, precisions: Sequence[str] = PRECISIONS,
                  percents: Sequence[float] = COARSE_PERCENTS, layers: Sequence[str] | None = None,
                  refine_rounds: int = 2, finetune_epochs: int = 0, max_finetune: int = 3, lr: float = 1e-3,
                  batch_size: int = 32, seed: int = 0, split: str = "val", calibration_images: int = 32,
                  force: bool = False, progress: bool = True,
                  split_images: Callable[[str, int], Any] | None = None,
                  allow_other_data: bool = False) -> CompressRun:
    """Search masking percent per layer, criterion and precision for the most accurate model that fits
    ``target`` (a profile id of ``targets_dir``, default the shipped profiles, or a ``.toml`` path) within
    ``min_accuracy`` (fraction, on ``split``) and ``max_latency_s`` (the fit's latency estimate); write
    it (module docstring) into the new folder ``out``; return the :class:`CompressRun`.

    ``criteria``: schedules/criteria to search (default: the IG rank ``bottom-first`` and every
    criterion of :data:`etdeploy.pruning.criteria.CRITERIA` whose statistics the ranking has);
    ``precisions``: ``fp32`` and/or ``int8``; ``percents``: the coarse grid per layer; ``layers``: the
    layers masked (default: every ranked layer). ``split_images(split, size)``: where decoded images
    come from (the pipeline passes its cache). Raises :class:`~etdeploy.errors.CompressError` naming
    the closest candidate when nothing fits.
    """
    from etdeploy.attribution.result import load_ranking
    from etdeploy.compress.cost import sliced_analysis
    from etdeploy.compress.front import pareto_front
    from etdeploy.compress.heads import cache_features
    from etdeploy.compress.space import geometry_of, grid_points, layer_orders, refine_values
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import refuse_existing_output
    from etdeploy.models import load_model, with_masks
    from etdeploy.pruning.criteria import CRITERIA
    from etdeploy.pruning.masking import resolve_layers
    from etdeploy.targets.profile import resolve_targets

    out = Path(out)
    refuse_existing_output(out, force=force)
    precisions = tuple(precisions)
    _check_options(min_accuracy, max_latency_s, precisions, percents, refine_rounds, max_finetune,
                   finetune_epochs, split)
    profiles = resolve_targets([str(target)], targets_dir)
    if len(profiles) != 1:
        raise CompressError(f"compress searches for one target, got {len(profiles)} ({', '.join(profiles)})")
    profile = next(iter(profiles.values()))
    model = load_model(model_dir)
    ranking = load_ranking(ranking_dir)
    names = resolve_layers(model, ranking, layers)
    asked = list(criteria) if criteria else [IG_SCHEDULE, *CRITERIA]
    orders, skipped = {}, {}
    for crit in asked:
        try:
            orders[crit] = layer_orders(model, ranking, crit, names, seed=seed)
        except PruningError as exc:
            if criteria:
                raise
            skipped[crit] = exc.message
    check_compatible(model, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    load = split_images or (lambda s, px: load_split_images(dataset, s, px, progress=progress))
    size = model.spec.input_size
    sel_images, test_images = load(split, size), load("test", size)
    unpruned = sliced_analysis(model)
    with_masks(model)
    geometry = geometry_of(model, names)
    search = _Search(model, orders, geometry, unpruned, profile, cache_features(model, sel_images.images,
                     sel_images.labels), precisions, max_latency_s, min_accuracy)

    grid = {n: sorted({float(p) for p in percents}) for n in names}
    for crit in orders:
        for point in grid_points(names, grid):
            search.score(crit, point, "coarse")
    fitting, seen = search.best_first(max_finetune)
    for _ in range(refine_rounds):
        if not fitting:
            break
        best = fitting[0]
        local = {n: refine_values(grid[n], best.percents[n]) for n in names}
        for n in names:
            grid[n] = sorted(set(grid[n]) | set(local[n]))
        for point in grid_points(names, local):
            search.score(best.criterion, point, "refine")
        fitting, more = search.best_first(max_finetune)
        seen.update(more)
    line_criteria = [IG_SCHEDULE] if IG_SCHEDULE in orders else [next(iter(orders))]
    if fitting and fitting[0].criterion not in line_criteria:
        line_criteria.append(fitting[0].criterion)
    for crit in line_criteria:
        for p in sorted({float(p) for p in percents}):
            pid = (crit, tuple(p for _ in names))
            if pid in search.points:
                for prec in precisions:
                    seen[(pid, prec)] = search.candidate(pid, prec, search.cost(pid, prec))
    if not any(c.cost is not None for c in seen.values()):  # all bounded: cost the smallest models exactly
        top = max(float(p) for p in percents)
        for crit in line_criteria:
            pid = (crit, tuple(top for _ in names))
            if pid in search.points:
                for prec in precisions:
                    seen[(pid, prec)] = search.candidate(pid, prec, search.cost(pid, prec, exact=True))
    candidates = [seen[k] for k in sorted(seen, key=lambda k: (k[0], PRECISIONS.index(k[1])))]
    original = Candidate(criterion="none", percents=dict.fromkeys(names, 0.0), precision="fp32",
                         kept=dict(geometry.widths), correct=0, n=0, accuracy=float("nan"), ci_low=float("nan"),
                         ci_high=float("nan"), accuracy_source="masked", cost=None, phase="unpruned")
    full = (IG_SCHEDULE if IG_SCHEDULE in orders else next(iter(orders)), tuple(0.0 for _ in names))
    search.score(full[0], dict(zip(names, full[1])), "coarse")
    if full in search.points:
        import dataclasses

        from etdeploy.compress.cost import cost_from_analysis

        base = search.candidate(full, "fp32", cost_from_analysis(unpruned, profile, "fp32", max_latency_s))
        original = dataclasses.replace(base, criterion="none", phase="unpruned")

    pool = [c for c in candidates if c.cost is not None and c.cost.fits
            and (min_accuracy is None or finetune_epochs > 0 or c.accuracy >= min_accuracy)]
    finalists = sorted(pareto_front(pool), key=_choice_key)[:max_finetune]
    if not finalists:
        raise no_fit_error(profile, min_accuracy, max_latency_s, _closest(candidates, min_accuracy),
                           f"{len(search.points)} points scored, {len(search.analyses)} structures costed")
    from etdeploy.compress.finalise import finalise

    return finalise(
        search=search, model_dir=model_dir, ranking_dir=ranking_dir, dataset=dataset, profile=profile,
        targets_dir=targets_dir, finalists=finalists, candidates=candidates, original=original, out=out,
        load=load, sel_images=sel_images, test_images=test_images, names=names, orders=orders, skipped=skipped,
        settings={"target": str(target), "min_accuracy": min_accuracy, "max_latency_s": max_latency_s, "split": split,
                  "precisions": precisions, "coarse_percents": tuple(sorted({float(p) for p in percents})),
                  "refine_rounds": refine_rounds, "finetune_epochs": finetune_epochs, "seed": seed, "lr": lr,
                  "batch_size": batch_size, "calibration_images": calibration_images, "force": force,
                  "progress": progress})


def read_compress(folder: str | os.PathLike) -> CompressRun:
    """The :class:`CompressRun` of a :func:`compress_dirs` folder (its ``compress.json``)."""
    from etdeploy.records import read_record

    return read_record(Path(folder) / RUN_FILE, CompressRun, what="compress result", format=COMPRESS_FORMAT,
                       error=CompressError)


__all__ = ["CANDIDATE_COLUMNS", "COMPRESS_FORMAT", "RUN_FILE", "Candidate", "CompressRun", "HeldOut",
           "compress_dirs", "read_compress"]
