"""Finalists and output of a compress search (docs/method.md §13): fine-tune and quantise the finalists,
choose, and write the chosen model sliced, exported, parity-checked and fitted, with the front.

Called by :func:`etdeploy.compress.search.compress_dirs` once the search has fitting candidates; not a
public entry point.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.compress.search import (
    CANDIDATE_COLUMNS,
    RUN_FILE,
    Candidate,
    CompressRun,
    HeldOut,
    _choice_key,
    _closest,
    _wilson,
    no_fit_error,
)
from etdeploy.compress.space import ordered
from etdeploy.errors import CompressError


@dataclasses.dataclass
class _Finalist:
    candidate: Candidate
    model: Any  # the masked (fine-tuned) ETModel
    int8: dict[str, Any] | None = None


def _calibration(train_images: np.ndarray, count: int) -> np.ndarray:
    """``count`` training images evenly spaced over the split (as ``etdeploy quantize`` picks them)."""
    step = max(1, len(train_images) // max(1, count))
    return train_images[::step][:count]


def _int8_of(masked, work: Path, calibration: np.ndarray, images, target, max_latency_s):
    """Export the sliced model, quantise it, measure it on ``images``; ``(cost, comparison, int8 path)``."""
    import onnx

    from etdeploy.compress.cost import cost_from_analysis
    from etdeploy.export import export_model
    from etdeploy.export.quantize import compare_int8, quantize_int8
    from etdeploy.pruning import slice_model
    from etdeploy.targets.analysis import analyse_graph

    sliced, _ = slice_model(masked)
    result = export_model(sliced, work / "export")
    spec = sliced.spec
    int8 = quantize_int8(result.sim_path, work / "model.int8.onnx", calibration, spec.mean, spec.std)
    cost = cost_from_analysis(analyse_graph(onnx.load(str(int8))), target, "int8", max_latency_s)
    comparison = compare_int8(result.sim_path, int8, images.images, images.labels, spec.mean, spec.std)
    return cost, comparison, int8


def _finalists(search, finalists, model_dir, load, sel_images, settings, target) -> list[_Finalist]:
    from etdeploy.models import load_model, with_masks
    from etdeploy.pruning.finetune import finetune_masked
    from etdeploy.pruning.masking import set_layer_masks
    from etdeploy.training import TrainConfig, evaluate

    out: list[_Finalist] = []
    epochs = settings["finetune_epochs"]
    size = search.model.spec.input_size
    for cand in finalists:
        pid = (cand.criterion, tuple(cand.percents[n] for n in search.geometry.layers))
        model = with_masks(load_model(model_dir))
        set_layer_masks(model, search.points[pid][1])
        source = cand.accuracy_source
        correct = cand.correct
        if epochs > 0:
            config = TrainConfig(epochs=epochs, batch_size=settings["batch_size"], lr=settings["lr"],
                                 seed=settings["seed"])
            finetune_masked(model, load("train", size), load("val", size), config, progress=settings["progress"])
            acc = evaluate(model, sel_images, model.spec.mean, model.spec.std).accuracy
            correct, source = round(acc * len(sel_images)), "fine-tuned"
        cost, int8 = cand.cost, None
        if cand.precision == "int8":
            with tempfile.TemporaryDirectory(prefix="etdeploy-compress-") as work:
                calibration = _calibration(load("train", size).images, settings["calibration_images"])
                cost, comparison, _ = _int8_of(model, Path(work), calibration, sel_images, target,
                                               settings["max_latency_s"])
            correct = round(comparison.accuracy_int8 * comparison.n)
            source = "int8" + (" fine-tuned" if epochs > 0 else "")
            int8 = comparison.to_dict()
        low, high = _wilson(correct, cand.n)
        updated = dataclasses.replace(cand, correct=correct, accuracy=correct / cand.n, ci_low=low, ci_high=high,
                                      accuracy_source=source, cost=cost, phase="finalist")
        out.append(_Finalist(updated, model, int8))
    return out


def _reason(chosen: Candidate, original: Candidate, candidates, target, finalists, split: str) -> str:
    from etdeploy.targets.text import format_bytes

    c = chosen.cost
    fitting = [x for x in candidates if x.cost is not None and x.cost.fits]
    text = (f"{chosen.label}: the most accurate of {len(finalists)} finalist(s) (the fitting candidates on the "
            f"Pareto front; {len(fitting)} of {len(candidates)} costed candidates fit {target.id}); {split} "
            f"accuracy {chosen.accuracy:.3f} [{chosen.ci_low:.3f}, {chosen.ci_high:.3f}] ({chosen.accuracy_source})")
    if original.n:
        text += f" vs unpruned {original.accuracy:.3f}"
    text += f"; flash {format_bytes(c.flash_bytes)}"
    if target.flash_bytes > 0:
        text += f" of {format_bytes(target.flash_bytes)}"
    text += (f", RAM {format_bytes(c.ram_bytes)} of {format_bytes(target.model_ram_bytes)}, {c.macc:,} MACC, "
             f"latency {c.latency_s:.3g} s (bound {c.latency_lower_bound_s:.3g} s)")
    if original.cost is not None:
        text += ("; the unpruned model fits too" if original.cost.fits else
                 f"; the unpruned model does not fit ({', '.join(original.cost.failing)})")
    if not chosen.shared:
        shared = [x for x in fitting if x.shared and x.precision == chosen.precision]
        if shared:
            best = min(shared, key=_choice_key)
            text += f"; per-layer percents: the best fitting shared percent is {best.label} at {best.accuracy:.3f}"
    return text


def _rows(candidates, front_keys) -> list[list[Any]]:
    rows = []
    for c in candidates:
        cost = c.cost
        rows.append([c.criterion, "/".join(f"{v:g}" for v in c.percent_values), c.precision,
                     "/".join(str(c.kept[n]) for n in ordered(c.kept)), c.accuracy, c.ci_low, c.ci_high, c.correct, c.n,
                     c.accuracy_source, c.phase,
                     *(("", "", "", "", "", "", "", "bound") if cost is None else
                       (cost.flash_bytes, cost.ram_bytes, cost.macc, cost.parameters, cost.latency_s,
                        cost.latency_lower_bound_s, cost.fits, " ".join(cost.failing))),
                     _key(c) in front_keys])
    return rows


def _key(c: Candidate) -> tuple:
    return (c.criterion, c.percent_values, c.precision)


def finalise(*, search, model_dir, ranking_dir, dataset, profile, targets_dir, finalists, candidates, original, out,
             load, sel_images, test_images, names, orders, skipped, settings) -> CompressRun:
    from etdeploy.compress.front import pareto_front
    from etdeploy.compress.plot import front_png
    from etdeploy.export import SIM_FILE, export_dir, parity_from_dirs
    from etdeploy.export.quantize import compare_int8, quantize_int8
    from etdeploy.fileio import StagedDir, atomic_write_bytes, atomic_write_json, atomic_write_text, csv_text
    from etdeploy.models import load_model, save_model
    from etdeploy.pruning import slice_model
    from etdeploy.pruning.record import ranking_sha256
    from etdeploy.targets import fit_targets
    from etdeploy.training import evaluate

    done = _finalists(search, finalists, model_dir, load, sel_images, settings, profile)
    measured = {_key(f.candidate): f.candidate for f in done}
    candidates = [measured.get(_key(c), c) for c in candidates]
    ok = [f for f in done if f.candidate.cost.fits and (settings["min_accuracy"] is None
                                                         or f.candidate.accuracy >= settings["min_accuracy"])]
    if not ok:
        raise no_fit_error(profile, settings["min_accuracy"], settings["max_latency_s"],
                           _closest([f.candidate for f in done], settings["min_accuracy"]),
                           f"{len(done)} finalist(s) fine-tuned/quantised and measured")
    pick = min(ok, key=lambda f: _choice_key(f.candidate))
    chosen = pick.candidate
    front = pareto_front([c for c in candidates if c.precision == "fp32" or c.accuracy_source.startswith("int8")])
    front_keys = {_key(c) for c in front}
    reason = _reason(chosen, original, candidates, profile, done, settings["split"])

    masked = pick.model
    spec = masked.spec
    context = {"schedule": chosen.criterion, "percents": dict(chosen.percents), "seed": settings["seed"],
               "layers": list(names), "ranking_sha256": ranking_sha256(ranking_dir),
               "finetune_epochs": settings["finetune_epochs"], "compress_target": profile.id}
    masked.spec = spec.replace(meta={**spec.meta, "masked": context})
    sliced, record = slice_model(masked, context=context)
    unpruned = load_model(model_dir)
    original_test = evaluate(unpruned, test_images, spec.mean, spec.std)
    out = Path(out)
    with StagedDir(out, force=settings["force"]) as tmp:
        save_model(masked, tmp / "masked")
        save_model(sliced, tmp / "sliced")
        atomic_write_json(tmp / "record.json", record)
        export_dir(tmp / "sliced", tmp / "export")
        parity = parity_from_dirs(tmp / "sliced", tmp / "export", masked_dir=tmp / "masked", dataset=dataset,
                                  split="test", images=test_images, progress=settings["progress"])
        atomic_write_json(tmp / "parity.json", parity.to_dict())
        deployed = tmp / "export" / SIM_FILE
        int8 = None
        if chosen.precision == "int8":
            calibration = _calibration(load("train", spec.input_size).images, settings["calibration_images"])
            deployed = quantize_int8(tmp / "export" / SIM_FILE, tmp / "model.int8.onnx", calibration, spec.mean,
                                     spec.std)
            comparison = compare_int8(tmp / "export" / SIM_FILE, deployed, test_images.images, test_images.labels,
                                      spec.mean, spec.std)
            int8 = {**comparison.to_dict(), "split": "test", "calibration_images": len(calibration)}
            atomic_write_json(tmp / "int8.json", int8)
            chosen_correct = round(comparison.accuracy_int8 * comparison.n)
        else:
            chosen_correct = round(evaluate(masked, test_images, spec.mean, spec.std).accuracy * len(test_images))
        fit = fit_targets({"chosen": deployed}, [settings["target"]], targets_dir=targets_dir,
                          deadline_s=settings["max_latency_s"])
        atomic_write_json(tmp / "fit.json", fit.to_dict())
        verdict = next(iter(fit.models["chosen"].verdicts.values()))
        if not verdict.fits:
            failing = ", ".join(c.resource for c in verdict.checks if c.status == "does not fit")
            raise CompressError(f"the exported {chosen.label} does not fit {profile.id} ({failing}) although the "
                                "search's cost said it would (internal error)")
        n = len(test_images)
        orig_correct = round(original_test.accuracy * n)
        held = HeldOut(n=n, original=orig_correct / n, original_ci=_wilson(orig_correct, n),
                       chosen=chosen_correct / n, chosen_ci=_wilson(chosen_correct, n))
        run = CompressRun(
            target=profile, min_accuracy=settings["min_accuracy"], max_latency_s=settings["max_latency_s"],
            split=settings["split"], layers=tuple(names), criteria=tuple(orders), skipped_criteria=dict(skipped),
            precisions=settings["precisions"], coarse_percents=settings["coarse_percents"],
            refine_rounds=settings["refine_rounds"], finetune_epochs=settings["finetune_epochs"],
            seed=settings["seed"], evaluated=len(search.points), costed=len(search.analyses),
            bounded=len(search.bounded), finetuned=len(done) if settings["finetune_epochs"] > 0 else 0,
            quantized=sum(1 for f in done if f.int8 is not None), original=original, candidates=tuple(candidates),
            front=tuple(front), chosen=chosen, reason=reason, test=held,
            parity_max_abs_logit_delta=max(p.max_abs_logit_delta for p in parity.pairs),
            parity_passed=parity.passed, int8=int8, fits_exported=verdict.fits)
        atomic_write_text(tmp / "candidates.csv", csv_text(CANDIDATE_COLUMNS, _rows(candidates, front_keys)))
        atomic_write_text(tmp / "front.csv", csv_text(CANDIDATE_COLUMNS, _rows(front, front_keys)))
        atomic_write_bytes(tmp / "front.png", front_png(run))
        atomic_write_json(tmp / RUN_FILE, run.to_dict())
    return run


__all__ = ["finalise"]
