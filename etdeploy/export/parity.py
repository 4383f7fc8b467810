"""Parity: the same images through several implementations of one model must agree.

Typically four: the masked torch model, the sliced torch model, ``model.onnx`` and
``model.sim.onnx`` (docs/method.md §5). Every implementation sees the *same* float32 input
(normalised once per batch). ONNX files are loaded through :mod:`etdeploy.onnx_safety` (checker
first) and run on ONNX Runtime's CPU provider with ``ORT_DISABLE_ALL`` and one intra-/inter-op
thread. For a second opinion, the first ``reference_images`` images of every ONNX file also go
through ``onnx.reference.ReferenceEvaluator`` (pure numpy) and must match ORT within
``reference_tol`` (default 1e-4: numpy's Conv/LRN sum in another order, and on a trained
alexnet-mini the two runtimes differ by ~2e-5 on logits of magnitude ~10, which is float32
rounding, not a bug; labels must still agree).

Every mismatch (top-1 label disagreement, |delta logit| above ``tol``, shape difference,
reference disagreement) is collected first; then one :class:`~etdeploy.errors.ParityError`
lists them all (its ``.report`` holds the full :class:`ParityReport`).

Use case: :func:`parity_from_dirs` (``etdeploy parity`` and the pipeline's parity stage) checks that
the export was made from the model, loads the split and returns a :class:`ParityRun`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import DataError, ParityError
from etdeploy.records import Record

PARITY_FORMAT = "etdeploy-parity"
DEFAULT_TOL = 1e-5
DEFAULT_REFERENCE_TOL = 1e-4
MAX_LISTED_INDICES = 10


@dataclass(frozen=True)
class PairResult(Record):
    """Agreement of implementations ``a`` and ``b`` over ``n`` images."""

    a: str
    b: str
    max_abs_logit_delta: float
    label_disagreements: int
    logit_violations: int
    disagreeing_indices: tuple[int, ...]


@dataclass(frozen=True)
class ParityReport(Record):
    """Agreement of ``names`` (``kinds``: torch | onnx) on ``n`` images; ``reference``: ReferenceEvaluator
    vs ONNX Runtime max |delta logit| per ONNX implementation; ``mismatches``: every failure, in words."""

    names: tuple[str, ...]
    kinds: dict[str, str]
    n: int
    tolerance: float
    accuracy: dict[str, float]
    pairs: tuple[PairResult, ...]
    reference: dict[str, float]
    reference_images: int
    reference_tolerance: float
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def pair(self, a: str, b: str) -> PairResult:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        raise KeyError(f"no pair {a!r}/{b!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "passed": self.passed}

    def error(self) -> ParityError:
        """The :class:`ParityError` listing every mismatch (``.report`` is this report)."""
        error = ParityError(f"{len(self.mismatches)} parity mismatch(es) on {self.n} images: "
                            + "; ".join(self.mismatches))
        error.report = self
        return error

    def table(self) -> str:
        """Plain-text summary: accuracy per implementation, then one line per pair."""
        lines = [f"parity on {self.n} images, tolerance {self.tolerance:g} (absolute, logits)"]
        width = max(len(n) for n in self.names)
        for name in self.names:
            ref = self.reference.get(name)
            extra = "" if ref is None else f"  (ReferenceEvaluator vs ORT on {self.reference_images}: {ref:.3g})"
            lines.append(f"  {name:<{width}}  {self.kinds[name]:<5}  accuracy {self.accuracy[name]:.4f}{extra}")
        for p in self.pairs:
            lines.append(f"  {p.a} vs {p.b}: max |delta logit| {p.max_abs_logit_delta:.3g}, "
                         f"top-1 disagreements {p.label_disagreements}")
        lines.append("PASS" if self.passed else f"FAIL: {len(self.mismatches)} mismatch(es)")
        return "\n".join(lines)


def _is_onnx_source(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike))


def _runner(name: str, model: Any):
    """Return ``(kind, fn, proto)``: ``fn`` maps float32 ``(b, 3, S, S)`` numpy -> ``(b, K)`` float32."""
    if _is_onnx_source(model):
        from etdeploy.onnx_safety import load_onnx_checked
        from etdeploy.ort_session import make_session

        proto = load_onnx_checked(Path(model))
        session = make_session(proto, threads=1, opt_level="disable")
        in_name = session.get_inputs()[0].name
        out_name = session.get_outputs()[0].name

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run([out_name], {in_name: x})[0], dtype=np.float32)

        return "onnx", run_onnx, proto
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ParityError(f"implementation {name!r} is neither a torch model nor an ONNX path "
                          f"({type(model).__name__})")
    model.eval()

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).detach().to(torch.float32).numpy()

    return "torch", run_torch, None


def compare_logits(a: np.ndarray, b: np.ndarray, tol: float) -> tuple[float, np.ndarray, np.ndarray]:
    """``(N, K), (N, K) -> (max |a - b|, label_disagree (N,) bool, logit_violation (N,) bool)``."""
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    per_image = delta.max(axis=1) if delta.size else np.zeros(len(a))
    labels_differ = np.argmax(a, axis=1) != np.argmax(b, axis=1) if a.size else np.zeros(len(a), bool)
    return float(per_image.max(initial=0.0)), labels_differ, ~(per_image <= tol)


def lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX ``LRN`` exactly as the operator spec defines it, ``(N, C, H, W) -> (N, C, H, W)``.

    ``square_sum[n, c] = sum(x[n, i]**2 for i in [max(0, c - floor((size-1)/2)),
    min(C-1, c + ceil((size-1)/2))])``; ``y = x / (bias + alpha / size * square_sum) ** beta``.
    """
    channels = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    squares = x.astype(np.float64) ** 2
    square_sum = np.zeros_like(squares)
    for c in range(channels):
        square_sum[:, c] = squares[:, max(0, c - lo):min(channels, c + hi + 1)].sum(axis=1)
    return (x / (bias + (alpha / size) * square_sum) ** beta).astype(x.dtype)


def _spec_lrn_op():
    from onnx.reference.op_run import OpRun

    class LRN(OpRun):
        # onnx 1.23's reference LRN loops over the batch axis instead of the channel axis
        # (channels >= batch size get square_sum 0), so the second opinion uses the spec directly.
        def _run(self, x, alpha=None, beta=None, bias=None, size=None):
            return (lrn_reference(x, int(size), float(alpha), float(beta), float(bias)),)

    return LRN


def reference_logits(proto, x: np.ndarray) -> np.ndarray:
    """``(b, 3, S, S) -> (b, K)`` with onnx.reference.ReferenceEvaluator (numpy; slow, small b only).

    Its LRN is replaced by :func:`lrn_reference` (the installed onnx's reference LRN is wrong).
    """
    from onnx.reference import ReferenceEvaluator

    from etdeploy.onnx_graph import image_input

    evaluator = ReferenceEvaluator(proto, new_ops=[_spec_lrn_op()])
    in_name, _ = image_input(proto)
    return np.asarray(evaluator.run(None, {in_name: x})[0], dtype=np.float32)


def check_parity(models: Mapping[str, Any], images_uint8: np.ndarray, labels: np.ndarray,
                 mean, std, *, tol: float = DEFAULT_TOL, batch_size: int = 32,
                 reference_images: int = 2, reference_tol: float = DEFAULT_REFERENCE_TOL,
                 raise_on_mismatch: bool = True) -> ParityReport:
    """Run every implementation on the same images and compare them pairwise.

    ``models``: ordered ``{name: torch.nn.Module | path to .onnx}`` (at least two);
    ``images_uint8``: ``(N, 3, S, S)`` uint8; ``labels``: ``(N,)`` int. ``mean``/``std``: the
    model's normalisation. ``reference_images``: how many leading images also run through
    ``onnx.reference.ReferenceEvaluator`` for each ONNX implementation (0 to skip), compared with
    ORT within ``reference_tol``.
    Raises :class:`ParityError` listing every mismatch (unless ``raise_on_mismatch=False``).
    """
    from etdeploy.data.images import normalise

    if len(models) < 2:
        raise ParityError(f"parity needs at least two implementations, got {len(models)}")
    if not tol > 0 or not reference_tol > 0:
        raise ParityError(f"tolerances must be > 0, got {tol} and {reference_tol}")
    images_uint8 = np.asarray(images_uint8)
    labels = np.asarray(labels).astype(np.int64)
    if images_uint8.ndim != 4 or images_uint8.shape[1] != 3 or images_uint8.dtype != np.uint8:
        raise ParityError(f"images must be uint8 (N, 3, S, S), got {images_uint8.dtype} {images_uint8.shape}")
    if len(labels) != len(images_uint8) or len(labels) == 0:
        raise ParityError(f"{len(images_uint8)} images but {len(labels)} labels (need the same, > 0)")

    runners = {name: _runner(name, model) for name, model in models.items()}
    names = tuple(runners)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(images_uint8), batch_size):
        x = normalise(images_uint8[start:start + batch_size], mean, std).numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        for name in names:
            outputs[name].append(runners[name][1](x))
    logits = {name: np.concatenate(outputs[name]) for name in names}

    mismatches: list[str] = []
    accuracy = {name: float(np.mean(np.argmax(logits[name], axis=1) == labels)) for name in names}
    pairs: list[PairResult] = []
    for a, b in combinations(names, 2):
        if logits[a].shape != logits[b].shape:
            mismatches.append(f"{a} vs {b}: logits shape {logits[a].shape} != {logits[b].shape}")
            pairs.append(PairResult(a, b, float("inf"), len(labels), len(labels), ()))
            continue
        delta, differ, violate = compare_logits(logits[a], logits[b], tol)
        idx = tuple(int(i) for i in np.nonzero(differ | violate)[0])
        pairs.append(PairResult(a, b, delta, int(differ.sum()), int(violate.sum()), idx[:MAX_LISTED_INDICES]))
        if differ.any():
            listed = ", ".join(str(i) for i in np.nonzero(differ)[0][:MAX_LISTED_INDICES])
            mismatches.append(f"{a} vs {b}: top-1 label differs on {int(differ.sum())} image(s) (indices {listed}"
                              f"{', ...' if differ.sum() > MAX_LISTED_INDICES else ''})")
        if violate.any():
            mismatches.append(f"{a} vs {b}: |delta logit| up to {delta:.3g} > tolerance {tol:g} on "
                              f"{int(violate.sum())} image(s)")

    reference: dict[str, float] = {}
    n_ref = min(int(reference_images), len(images_uint8))
    if n_ref > 0:
        x = np.ascontiguousarray(normalise(images_uint8[:n_ref], mean, std).numpy(), dtype=np.float32)
        for name in names:
            kind, _, proto = runners[name]
            if kind != "onnx":
                continue
            ref = reference_logits(proto, x)
            if ref.shape != logits[name][:n_ref].shape:
                mismatches.append(f"{name}: ReferenceEvaluator output shape {ref.shape} != ORT {logits[name][:n_ref].shape}")
                reference[name] = float("inf")
                continue
            delta, differ, violate = compare_logits(ref, logits[name][:n_ref], reference_tol)
            reference[name] = delta
            if differ.any() or violate.any():
                mismatches.append(f"{name}: onnx ReferenceEvaluator and ORT differ by {delta:.3g} "
                                  f"(tolerance {reference_tol:g}; top-1 differs on {int(differ.sum())} of {n_ref})")

    report = ParityReport(names=names, kinds={n: runners[n][0] for n in names}, n=len(labels),
                          tolerance=float(tol), accuracy=accuracy, pairs=tuple(pairs), reference=reference,
                          reference_images=n_ref, reference_tolerance=float(reference_tol),
                          mismatches=tuple(mismatches))
    if mismatches and raise_on_mismatch:
        raise report.error()
    return report


@dataclass(frozen=True)
class ParityRun(ParityReport):
    """:class:`ParityReport` of one data split (``split``): what ``etdeploy parity --out`` writes
    (``parity.json``, read back by :func:`read_parity`) and the pipeline's parity stage records."""

    split: str
    format: str = PARITY_FORMAT
    format_version: int = 1


def read_parity(path: str | os.PathLike) -> ParityRun:
    """``parity.json`` (written by ``etdeploy parity --out`` or the parity stage) as a :class:`ParityRun`."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    return read_record(path, ParityRun, what="parity report", format=PARITY_FORMAT, error=ReportError)


def parity_from_dirs(model_dir: str | os.PathLike, export_dir: str | os.PathLike, *, dataset: Any,
                     masked_dir: str | os.PathLike | None = None, split: str = "test", tol: float = DEFAULT_TOL,
                     reference_images: int = 2, reference_tol: float = DEFAULT_REFERENCE_TOL,
                     images: Any = None, progress: bool = True, raise_on_mismatch: bool = True,
                     allow_other_data: bool = False) -> ParityRun:
    """Parity of a saved model, its export and (optionally) the masked model it was sliced from.

    ``model_dir``: the sliced (or unpruned) model; ``export_dir``: written by ``etdeploy export`` from
    it (checked: SHA-256 of both ONNX files, weights fingerprint); ``masked_dir``: the masked model
    before slicing (same input size). Implementations compared, in order: ``masked-torch`` (when
    ``masked_dir``), ``sliced-torch`` (``torch`` without ``masked_dir``), ``onnx``, ``onnx-sim``.
    ``dataset`` must have the model's classes and, unless ``allow_other_data``, its training splits
    (:func:`~etdeploy.data.check_compatible`); ``split`` is decoded at the model's input size unless
    the caller passes it already decoded as ``images`` (an :class:`~etdeploy.data.images.ImageSplit`).
    A mismatch raises :class:`ParityError` listing all of them (``.report`` is the :class:`ParityRun`);
    with ``raise_on_mismatch=False`` the run is returned and ``run.passed`` is false.
    """
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.export.manifest import ONNX_FILE, SIM_FILE, read_export
    from etdeploy.models import load_model, weights_fingerprint

    model = load_model(model_dir)
    export = read_export(export_dir)
    if export.model.weights_fingerprint != weights_fingerprint(model):
        raise DataError("the export was made from a different model (weights fingerprint differs)", export_dir)
    models: dict[str, Any] = {}
    if masked_dir is not None:
        masked = load_model(masked_dir)
        if masked.spec.input_size != model.spec.input_size:
            raise DataError(f"masked and sliced models have different input sizes ({masked.spec.input_size} "
                            f"and {model.spec.input_size} pixels)", masked_dir)
        models["masked-torch"] = masked
    models["sliced-torch" if masked_dir is not None else "torch"] = model
    models["onnx"] = Path(export_dir) / ONNX_FILE
    models["onnx-sim"] = Path(export_dir) / SIM_FILE
    check_compatible(model, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    if images is None:
        images = load_split_images(dataset, split, model.spec.input_size, progress=progress)
    elif tuple(images.images.shape[-2:]) != (model.spec.input_size,) * 2:
        raise DataError(f"the {split} images are {images.images.shape[-1]} pixels, the model takes "
                        f"{model.spec.input_size}", model_dir)
    report = check_parity(models, images.images, images.labels, model.spec.mean, model.spec.std, tol=tol,
                          reference_images=reference_images, reference_tol=reference_tol,
                          raise_on_mismatch=False)
    run = ParityRun(split=split, **{f.name: getattr(report, f.name) for f in fields(ParityReport)})
    if raise_on_mismatch and not run.passed:
        raise run.error()
    return run
