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

A model imported from ONNX keeps the original's interface (:mod:`etdeploy.export.interface`): its
exports take the original's input (NHWC, the input affine re-applied) and may end in a Softmax. Every
ONNX implementation (:class:`OnnxMember`) is then fed that input, converted from the same normalised
batch, and parity still compares *logits*: the tensor entering the final Softmax/LogSoftmax is read as
an extra graph output (``compared`` = ``"logits (pre-softmax tensor of the ONNX files)"``), and each
such file's own output must equal the softmax of those logits within ``tol``. The original ONNX file of
the import (``original.onnx``; for a PyTorch import, the factory's module with the user's weights file,
:func:`torch_original`) is the fifth member, ``original``; it is compared with the imported
model (``imported``, the unpruned torch model) and, when no pruning lies between them, with the
exports too: a pruned model computes another function, so pairs across the pruning are not compared
(:func:`parity_from_dirs`).

Use case: :func:`parity_from_dirs` (``etdeploy parity`` and the pipeline's parity stage) checks that
the export was made from the model, loads the split and returns a :class:`ParityRun`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import DataError, ParityError
from etdeploy.export.interface import Interface, interface_of, logits_tap
from etdeploy.records import Record

ORIGINAL_FILE = "original.onnx"
TAPPED = "logits (pre-softmax tensor of the ONNX files)"

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
    compared: str | None = field(default=None, kw_only=True)
    notes: tuple[str, ...] = field(default=(), kw_only=True)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def compared_text(self) -> str:
        """What was compared: ``logits``, or how the logits were read (``compared``)."""
        return self.compared or "logits"

    def pair(self, a: str, b: str) -> PairResult:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        raise KeyError(f"no pair {a!r}/{b!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON record; ``compared`` and ``notes`` only when set (a plain model's record is unchanged)."""
        out = {**super().to_dict(), "passed": self.passed}
        if self.compared is None:
            del out["compared"]
        if not self.notes:
            del out["notes"]
        return out

    def error(self) -> ParityError:
        """The :class:`ParityError` listing every mismatch (``.report`` is this report)."""
        error = ParityError(f"{len(self.mismatches)} parity mismatch(es) on {self.n} images: "
                            + "; ".join(self.mismatches))
        error.report = self
        return error

    def table(self) -> str:
        """Plain-text summary: accuracy per implementation, then one line per pair."""
        lines = [f"parity on {self.n} images, tolerance {self.tolerance:g} (absolute, {self.compared_text})"]
        width = max(len(n) for n in self.names)
        for name in self.names:
            ref = self.reference.get(name)
            extra = "" if ref is None else f"  (ReferenceEvaluator vs ORT on {self.reference_images}: {ref:.3g})"
            lines.append(f"  {name:<{width}}  {self.kinds[name]:<5}  accuracy {self.accuracy[name]:.4f}{extra}")
        for p in self.pairs:
            lines.append(f"  {p.a} vs {p.b}: max |delta logit| {p.max_abs_logit_delta:.3g}, "
                         f"top-1 disagreements {p.label_disagreements}")
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.append("PASS" if self.passed else f"FAIL: {len(self.mismatches)} mismatch(es)")
        return "\n".join(lines)


@dataclass(frozen=True)
class OnnxMember:
    """An ONNX implementation called through ``interface`` (``None``: the plain NCHW-in, logits-out contract)."""

    path: Path
    interface: Interface | None = None


def _is_onnx_source(model: Any) -> bool:
    return isinstance(model, (str, os.PathLike, OnnxMember))


@dataclass
class _Onnx:
    """A loaded ONNX implementation: ``proto`` with its logits tensor ``tap`` as an extra graph output."""

    path: Path
    interface: Interface | None
    proto: Any
    input_name: str
    output_name: str
    tap: str
    batch: int | None  # a fixed batch size of the graph's input, else None

    def feed(self, x: np.ndarray) -> list[np.ndarray]:
        """The normalised ``(b, 3, S, S)`` batch as this graph's input, in chunks of its fixed batch size."""
        xi = x if self.interface is None else self.interface.deployable_input(x)
        if self.batch is None:
            return [xi]
        if len(xi) % self.batch:
            raise ParityError(f"{self.path} takes batches of exactly {self.batch}; {len(xi)} images do not divide")
        return [xi[i:i + self.batch] for i in range(0, len(xi), self.batch)]


def _load_onnx_member(member: Any) -> _Onnx:
    import onnx

    from etdeploy.onnx_graph import image_input
    from etdeploy.onnx_safety import load_onnx_checked

    member = member if isinstance(member, OnnxMember) else OnnxMember(Path(member))
    proto = load_onnx_checked(Path(member.path))
    in_name, dims = image_input(proto)
    out_name = proto.graph.output[0].name
    tap = logits_tap(proto, member.interface)
    if tap is None:
        raise ParityError(f"the {member.interface.output} output of {member.path} is not produced by a final "
                          f"{'Softmax' if member.interface.output == 'softmax' else 'LogSoftmax'} over the "
                          "classes: its logits cannot be compared")
    if tap != out_name:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    first = dims[0] if dims else None
    batch = first if isinstance(first, int) and first > 0 else None
    return _Onnx(Path(member.path), member.interface, proto, in_name, out_name, tap, batch)


def _runner(name: str, model: Any):
    """Return ``(kind, fn, onnx)``: ``fn`` maps float32 ``(b, 3, S, S)`` numpy -> ``(logits (b, K), output)``
    (``output``: the graph's own output when it is not the logits, else ``None``); ``onnx``: the
    loaded ONNX implementation (:class:`_Onnx`), ``None`` for torch."""
    if _is_onnx_source(model):
        from etdeploy.ort_session import make_session

        loaded = _load_onnx_member(model)
        session = make_session(loaded.proto, threads=1, opt_level="disable")
        names = [loaded.tap] if loaded.tap == loaded.output_name else [loaded.tap, loaded.output_name]

        def run_onnx(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            runs = [session.run(names, {loaded.input_name: chunk}) for chunk in loaded.feed(x)]
            got = [np.concatenate([np.asarray(r[k], dtype=np.float32) for r in runs]) for k in range(len(names))]
            return got[0], (got[1] if len(got) > 1 else None)

        return "onnx", run_onnx, loaded
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ParityError(f"implementation {name!r} is neither a torch model nor an ONNX path "
                          f"({type(model).__name__})")
    model.eval()

    def run_torch(x: np.ndarray) -> tuple[np.ndarray, None]:
        with torch.no_grad():
            return model(torch.from_numpy(x)).detach().to(torch.float32).numpy(), None

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


def reference_logits(proto, x: np.ndarray, *, output: str | None = None) -> np.ndarray:
    """``x`` (the graph's input) ``-> (b, K)`` with onnx.reference.ReferenceEvaluator (numpy; slow, small b
    only): the tensor ``output`` (default: the first graph output).

    Its LRN is replaced by :func:`lrn_reference` (the installed onnx's reference LRN is wrong).
    """
    from onnx.reference import ReferenceEvaluator

    from etdeploy.onnx_graph import image_input

    evaluator = ReferenceEvaluator(proto, new_ops=[_spec_lrn_op()])
    in_name, _ = image_input(proto)
    return np.asarray(evaluator.run(None if output is None else [output], {in_name: x})[0], dtype=np.float32)


def check_parity(models: Mapping[str, Any], images_uint8: np.ndarray, labels: np.ndarray,
                 mean, std, *, tol: float = DEFAULT_TOL, batch_size: int = 32,
                 reference_images: int = 2, reference_tol: float = DEFAULT_REFERENCE_TOL,
                 raise_on_mismatch: bool = True, pairs: Sequence[tuple[str, str]] | None = None,
                 notes: Sequence[str] = ()) -> ParityReport:
    """Run every implementation on the same images and compare them pairwise.

    ``models``: ordered ``{name: torch.nn.Module | path to .onnx | OnnxMember}`` (at least two; an
    :class:`OnnxMember` with an interface is fed the original's input and compared on its logits);
    ``pairs``: the pairs to compare (default: every pair); ``notes``: lines for the report;
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
    wanted = list(combinations(names, 2)) if pairs is None else [tuple(p) for p in pairs]
    unknown = sorted({n for p in wanted for n in p} - set(names))
    if unknown or not wanted:
        raise ParityError(f"parity pairs name unknown implementations {unknown}" if unknown else "no pairs to compare")
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    own: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(images_uint8), batch_size):
        x = normalise(images_uint8[start:start + batch_size], mean, std).numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        for name in names:
            got, output = runners[name][1](x)
            outputs[name].append(got)
            if output is not None:
                own[name].append(output)
    logits = {name: np.concatenate(outputs[name]) for name in names}

    mismatches: list[str] = []
    for name in names:  # a file whose output is a softmax of its logits: that output must be just that
        loaded = runners[name][2]
        if own[name] and loaded is not None and loaded.interface is not None:
            delta, _, violate = compare_logits(np.concatenate(own[name]),
                                               loaded.interface.output_of(logits[name]), tol)
            if violate.any():
                mismatches.append(f"{name}: its {loaded.interface.output} output differs from the "
                                  f"{loaded.interface.output} of its logits by {delta:.3g} (tolerance {tol:g})")
    accuracy = {name: float(np.mean(np.argmax(logits[name], axis=1) == labels)) for name in names}
    pairs_out: list[PairResult] = []
    for a, b in wanted:
        if logits[a].shape != logits[b].shape:
            mismatches.append(f"{a} vs {b}: logits shape {logits[a].shape} != {logits[b].shape}")
            pairs_out.append(PairResult(a, b, float("inf"), len(labels), len(labels), ()))
            continue
        delta, differ, violate = compare_logits(logits[a], logits[b], tol)
        idx = tuple(int(i) for i in np.nonzero(differ | violate)[0])
        pairs_out.append(PairResult(a, b, delta, int(differ.sum()), int(violate.sum()), idx[:MAX_LISTED_INDICES]))
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
            kind, _, loaded = runners[name]
            if kind != "onnx":
                continue
            ref = np.concatenate([reference_logits(loaded.proto, chunk, output=loaded.tap)
                                  for chunk in loaded.feed(x)])
            if ref.shape != logits[name][:n_ref].shape:
                mismatches.append(f"{name}: ReferenceEvaluator output shape {ref.shape} != ORT {logits[name][:n_ref].shape}")
                reference[name] = float("inf")
                continue
            delta, differ, violate = compare_logits(ref, logits[name][:n_ref], reference_tol)
            reference[name] = delta
            if differ.any() or violate.any():
                mismatches.append(f"{name}: onnx ReferenceEvaluator and ORT differ by {delta:.3g} "
                                  f"(tolerance {reference_tol:g}; top-1 differs on {int(differ.sum())} of {n_ref})")

    tapped = any(r[2] is not None and r[2].tap != r[2].output_name for r in runners.values())
    report = ParityReport(names=names, kinds={n: runners[n][0] for n in names}, n=len(labels),
                          tolerance=float(tol), accuracy=accuracy, pairs=tuple(pairs_out), reference=reference,
                          reference_images=n_ref, reference_tolerance=float(reference_tol),
                          mismatches=tuple(mismatches), compared=TAPPED if tapped else None, notes=tuple(notes))
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
                     allow_other_data: bool = False, original: str | os.PathLike | None = None) -> ParityRun:
    """Parity of a saved model, its export, (optionally) the masked model it was sliced from and (for a
    model imported from ONNX) the original ONNX file.

    ``model_dir``: the sliced (or unpruned) model; ``export_dir``: written by ``etdeploy export`` from
    it (checked: SHA-256 of both ONNX files, weights fingerprint); ``masked_dir``: the masked model
    before slicing (same input size). Implementations compared, in order: ``masked-torch`` (when
    ``masked_dir``), ``sliced-torch`` (``torch`` without ``masked_dir``), ``onnx``, ``onnx-sim``.
    ``original``: the directory ``etdeploy import --onnx`` wrote (it keeps the user's file as
    ``original.onnx``; derived models record only its SHA-256, which must match); default:
    ``model_dir`` itself when it holds ``original.onnx``. The original joins as ``original`` (first);
    when pruning lies between it and ``model_dir`` the unpruned imported model joins as ``imported``
    and ``original`` is compared with it only (the others among themselves).
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

    root = original_source(model_dir, original)  # before anything is loaded: a wrong path fails fast
    model = load_model(model_dir)
    export = read_export(export_dir)
    fingerprint = weights_fingerprint(model)
    if export.model.weights_fingerprint != fingerprint:
        raise DataError("the export was made from a different model (weights fingerprint differs)", export_dir)
    models: dict[str, Any] = {}
    pairs: list[tuple[str, str]] | None = None
    notes: list[str] = []
    if root is not None and root.is_file():  # the weights file of a PyTorch import
        models["original"], imported = torch_original(root, model.spec)
        if masked_dir is not None or weights_fingerprint(imported) != fingerprint:
            models["imported"] = imported
            pairs = [("original", "imported")]
    elif root is not None:
        imported = load_model(root)
        models["original"] = OnnxMember(check_original(root, imported.spec, model.spec, model_dir),
                                        interface_of(imported.spec))
        if masked_dir is not None or weights_fingerprint(imported) != fingerprint:
            models["imported"] = imported
            pairs = [("original", "imported")]
    elif (model.spec.meta.get("imported") or {}).get("route") == "onnx":
        notes.append(f"the original ONNX file is not compared: pass the import's directory (it keeps "
                     f"{ORIGINAL_FILE}) as the original")
    if masked_dir is not None:
        masked = load_model(masked_dir)
        if masked.spec.input_size != model.spec.input_size:
            raise DataError(f"masked and sliced models have different input sizes ({masked.spec.input_size} "
                            f"and {model.spec.input_size} pixels)", masked_dir)
        models["masked-torch"] = masked
    models["sliced-torch" if masked_dir is not None else "torch"] = model
    models["onnx"] = OnnxMember(Path(export_dir) / ONNX_FILE, export.interface)
    models["onnx-sim"] = OnnxMember(Path(export_dir) / SIM_FILE, export.interface)
    if pairs is not None:
        chain = [n for n in models if n not in ("original", "imported")]
        pairs += list(combinations(chain, 2))
    check_compatible(model, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    if images is None:
        images = load_split_images(dataset, split, model.spec.input_size, progress=progress)
    elif tuple(images.images.shape[-2:]) != (model.spec.input_size,) * 2:
        raise DataError(f"the {split} images are {images.images.shape[-1]} pixels, the model takes "
                        f"{model.spec.input_size}", model_dir)
    report = check_parity(models, images.images, images.labels, model.spec.mean, model.spec.std, tol=tol,
                          reference_images=reference_images, reference_tol=reference_tol,
                          raise_on_mismatch=False, pairs=pairs, notes=notes)
    run = ParityRun(split=split, **{f.name: getattr(report, f.name) for f in fields(ParityReport)})
    if raise_on_mismatch and not run.passed:
        raise run.error()
    return run


def original_source(model_dir: str | os.PathLike, original: str | os.PathLike | None) -> Path | None:
    """What joins parity as the original: ``original`` when given (the directory of an ONNX import, which
    holds ``original.onnx``, or the weights file of a PyTorch import), else ``model_dir`` when it holds
    ``original.onnx``, else ``None``."""
    if original is not None:
        root = Path(original)
        if root.is_file():
            return root
        if not root.is_dir():
            raise DataError("the import directory (or weights file) given as the original does not exist", root)
        if not (root / ORIGINAL_FILE).is_file():
            raise DataError(f"not the directory of an ONNX import: it has no {ORIGINAL_FILE} "
                            "(give the folder `etdeploy import --onnx` wrote)", root)
        return root
    return Path(model_dir) if (Path(model_dir) / ORIGINAL_FILE).is_file() else None


def check_original(root: Path, imported_spec: Any, spec: Any, model_dir: str | os.PathLike) -> Path:
    """``root/original.onnx`` after checking that it is the file the import recorded (SHA-256 in
    ``meta["imported"]``) and that the model in ``model_dir`` derives from that import (same SHA-256)."""
    from etdeploy.fileio import sha256_file

    path = root / ORIGINAL_FILE
    recorded = (imported_spec.meta.get("imported") or {}).get("sha256")
    actual = sha256_file(path)
    if recorded != actual:
        raise DataError(f"{ORIGINAL_FILE} does not match the SHA-256 its import recorded ({recorded}; the file "
                        f"has {actual})", path)
    derived = (spec.meta.get("imported") or {}).get("sha256")
    if derived != recorded:
        raise DataError(f"the model {model_dir} was not derived from this import: it records the original "
                        f"SHA-256 {derived}, {path} is {recorded}", root)
    return path


def torch_original(weights: Path, spec: Any) -> tuple[Any, Any]:
    """``(original module, imported model)`` of a PyTorch import, rebuilt from ``weights`` (its SHA-256 must
    be the one ``spec.meta["imported"]`` records) and the factory ``spec.arch``: the module the factory
    builds with the weights loaded (called as the user calls it), and that module converted to the
    contract as the import converted it (:func:`etdeploy.models.layouts.contract_parts`)."""
    from torch import nn

    from etdeploy.errors import ModelError
    from etdeploy.fileio import sha256_file
    from etdeploy.importing.weights_file import read_state_dict
    from etdeploy.models.layouts import contract_parts
    from etdeploy.models.zoo import ETModel, call_factory

    origin = spec.meta.get("imported") or {}
    if origin.get("route") in (None, "onnx"):
        raise DataError("a weights file is the original of a PyTorch import only; this model records "
                        + ("no import" if origin.get("route") is None else "an ONNX import: give its directory"),
                        weights)
    if sha256_file(weights) != origin.get("sha256"):
        raise DataError(f"the weights file is not the one this model was imported from (SHA-256 differs from "
                        f"{origin.get('sha256')})", weights)
    try:
        built = call_factory(spec.arch, spec.num_classes, input_size=spec.input_size, **spec.kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the model factory {spec.arch!r} no longer builds the original: {type(exc).__name__}: "
                         f"{exc}") from exc

    class FeaturesClassifier(nn.Module):  # what a (features, classifier) factory's weights were saved from
        def __init__(self, features, classifier):
            super().__init__()
            self.features, self.classifier = features, classifier

        def forward(self, x):
            return self.classifier(self.features(x))

    module = built if isinstance(built, nn.Module) else FeaturesClassifier(*built)
    expected = module.state_dict()
    tensors = read_state_dict(weights)
    try:
        module.load_state_dict({k: v.to(expected[k].dtype) if k in expected else v for k, v in tensors.items()})
    except RuntimeError as exc:
        raise ModelError(f"the weights no longer fit the factory {spec.arch!r}: {str(exc).splitlines()[0]}",
                         weights) from None
    features, classifier, _ = contract_parts(built, input_size=spec.input_size)
    return module.eval(), ETModel(features, classifier, spec).eval()
