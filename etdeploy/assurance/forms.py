"""Every form of the model on the same images: accuracy with 95 % intervals, per class, and paired exact
McNemar tests between the forms (docs/method.md §12.1).

The forms, in the order the model is transformed (:data:`FORM_ORDER`):

- ``original``: the trained (or imported) torch model;
- ``pruned``: the masked torch model (weights of the pruned neurons held at zero, after fine-tuning);
- ``sliced``: the torch model with the pruned neurons removed;
- ``onnx``: the simplified ONNX export of the sliced model (``model.sim.onnx``), ONNX Runtime CPU,
  graph optimisations off, one thread;
- ``int8``: the static int8 (QDQ) copy of that ONNX file (:func:`etdeploy.export.quantize_model`);
- ``c``: the C99 model generated from that ONNX file exactly as the flight bundle's (same generator,
  same options: :func:`etdeploy.packaging.codegen.generate_c`, :mod:`etdeploy.packaging.csource`),
  built with the host gcc and run by the bundle's own harness on every image of the split
  (:func:`etdeploy.packaging.toolchains.check_isa`). Its sources' SHA-256 equal the bundle's
  ``c/etd_model.c`` and ``c/etd_model_data.c``.

A form that cannot run is listed in :attr:`FormsRun.skipped` with the reason, never silently left out.

Per form: ``correct`` of ``n`` images, ``accuracy`` with the Wilson 95 % interval (``ci_low``,
``ci_high``) and the Clopper-Pearson one (``cp_low``, ``cp_high``), the same per true class
(``per_class``), ``changed_vs_original`` (images whose predicted label differs from the original's) and
``predictions_sha256``: SHA-256 of the predicted labels as little-endian int32 in image order (two forms
with the same digest made the same predictions). Per pair (:class:`PairTest`): each form against the
original and against the form it was derived from (:data:`DERIVED_FROM`), with the McNemar counts
``b`` (first right, second wrong) and ``c`` (first wrong, second right), the exact two-sided p-value and
mid-p, and ``changed`` (labels that differ, including images both get wrong with different labels).

Use cases: :func:`evaluate_forms` (model folders and ONNX files -> :class:`FormsRun`) and
:func:`compare_forms` (predictions -> :class:`FormsRun`, pure).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.assurance.stats import DEFAULT_CONFIDENCE, clopper_pearson_interval, mcnemar_exact, wilson_interval
from etdeploy.errors import DataError, ExportError
from etdeploy.records import Record, read_record

FORMS_FORMAT = "etdeploy-forms"
FORMS_FILE = "forms.json"
#: Forms in the order the model is transformed.
FORM_ORDER = ("original", "pruned", "sliced", "onnx", "int8", "c")
#: What each form was made from (its pair in the chain).
DERIVED_FROM = {"pruned": "original", "sliced": "pruned", "onnx": "sliced", "int8": "onnx", "c": "onnx"}
DESCRIPTIONS = {
    "original": "trained model (torch)",
    "pruned": "pruned, masked (torch)",
    "sliced": "pruned, sliced (torch)",
    "onnx": "sliced export, model.sim.onnx (ONNX Runtime)",
    "int8": "static int8 QDQ of model.sim.onnx (ONNX Runtime)",
    "c": "C99 of model.sim.onnx (host gcc, bundle harness)",
}
_BATCH = 32

__all__ = ["DERIVED_FROM", "FORMS_FILE", "FORM_ORDER", "ClassAccuracy", "FormResult", "FormsRun", "PairTest",
           "compare_forms", "evaluate_forms", "read_forms"]


@dataclass(frozen=True)
class ClassAccuracy(Record):
    """One true class: ``correct`` of ``n`` images, ``accuracy``, Wilson (``ci_low``, ``ci_high``) and
    Clopper-Pearson (``cp_low``, ``cp_high``) intervals (NaN, ``null`` in JSON, when ``n`` is 0)."""

    class_: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    cp_low: float
    cp_high: float


@dataclass(frozen=True)
class FormResult(Record):
    """One form of the model on the split (see the module docstring for every field); ``kind``: torch,
    onnx or c; ``files``: SHA-256 of the files that were run (weights, ONNX file, C sources)."""

    name: str
    kind: str
    description: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    cp_low: float
    cp_high: float
    per_class: tuple[ClassAccuracy, ...]
    predictions_sha256: str
    changed_vs_original: int | None
    files: dict[str, str]


@dataclass(frozen=True)
class PairTest(Record):
    """Exact McNemar test of ``first`` vs ``second`` on the same ``n`` images: ``b`` only ``first`` right,
    ``c`` only ``second`` right, ``p_value`` (two-sided exact), ``mid_p``, ``changed`` (labels that differ);
    ``relation``: ``derived`` (``second`` was made from ``first``) or ``original`` (``first`` is the original)."""

    first: str
    second: str
    relation: str
    n: int
    both_correct: int
    both_wrong: int
    b: int
    c: int
    changed: int
    p_value: float
    mid_p: float


@dataclass(frozen=True)
class FormsRun(Record):
    """``forms.json`` / the evaluate stage's summary: ``forms`` (by name, in :data:`FORM_ORDER`), ``pairs``,
    ``skipped`` (form -> why it did not run), the ``split``, its ``n`` images, ``classes``, the
    ``confidence`` of every interval and ``labels_sha256`` (true labels, little-endian int32)."""

    split: str
    n: int
    classes: tuple[str, ...]
    confidence: float
    labels_sha256: str
    forms: dict[str, FormResult]
    pairs: tuple[PairTest, ...]
    skipped: dict[str, str]
    format: str = FORMS_FORMAT
    format_version: int = 1

    def ordered(self) -> list[FormResult]:
        """The forms in :data:`FORM_ORDER` (JSON readers may sort ``forms`` by name), others after them."""
        return sorted(self.forms.values(), key=lambda f: (FORM_ORDER.index(f.name) if f.name in FORM_ORDER
                                                          else len(FORM_ORDER), f.name))

    def pair(self, first: str, second: str) -> PairTest:
        return next(p for p in self.pairs if (p.first, p.second) == (first, second))


def read_forms(path: str | os.PathLike) -> FormsRun:
    """``forms.json`` as a :class:`FormsRun` (a :class:`~etdeploy.errors.ReportError` naming the file)."""
    from etdeploy.errors import ReportError

    return read_record(path, FormsRun, what="forms evaluation", format=FORMS_FORMAT, error=ReportError)


def _digest(values: np.ndarray) -> str:
    from etdeploy.fileio import sha256_bytes

    return sha256_bytes(np.asarray(values, dtype="<i4").tobytes())


def _intervals(k: int, n: int, confidence: float) -> dict[str, float]:
    ci = wilson_interval(k, n, confidence)
    cp = clopper_pearson_interval(k, n, confidence)
    return {"accuracy": k / n if n else float("nan"), "ci_low": ci[0], "ci_high": ci[1], "cp_low": cp[0],
            "cp_high": cp[1]}


def _pair(first: str, second: str, relation: str, pa: np.ndarray, pb: np.ndarray, labels: np.ndarray) -> PairTest:
    ra, rb = pa == labels, pb == labels
    test = mcnemar_exact(int(np.sum(ra & ~rb)), int(np.sum(~ra & rb)))
    return PairTest(first=first, second=second, relation=relation, n=len(labels),
                    both_correct=int(np.sum(ra & rb)), both_wrong=int(np.sum(~ra & ~rb)), b=test.b, c=test.c,
                    changed=int(np.sum(pa != pb)), p_value=test.p_value, mid_p=test.mid_p)


def compare_forms(predictions: Mapping[str, Any], labels: Any, classes: tuple[str, ...], *, split: str,
                  confidence: float = DEFAULT_CONFIDENCE, kinds: Mapping[str, str] | None = None,
                  files: Mapping[str, Mapping[str, str]] | None = None,
                  skipped: Mapping[str, str] | None = None) -> FormsRun:
    """The :class:`FormsRun` of predicted labels ``{form: (n,) int}`` against the true ``labels`` ``(n,)``.

    Forms are taken in :data:`FORM_ORDER` (names outside it follow, in the order given, compared with
    the original only). ``kinds``/``files``: per form, as :class:`FormResult` records them."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    preds = {k: np.asarray(v, dtype=np.int64) for k, v in predictions.items()}
    for name, p in preds.items():
        if p.shape != labels.shape:
            raise DataError(f"form {name!r} has {p.shape[0] if p.ndim else 0} predictions for {n} images")
    names = [f for f in FORM_ORDER if f in preds] + [f for f in preds if f not in FORM_ORDER]
    original = preds.get("original")
    forms = {}
    for name in names:
        p = preds[name]
        right = p == labels
        per_class = tuple(ClassAccuracy(class_=c, n=int(np.sum(labels == i)), correct=int(np.sum(right[labels == i])),
                                        **_intervals(int(np.sum(right[labels == i])), int(np.sum(labels == i)),
                                                     confidence))
                          for i, c in enumerate(classes))
        forms[name] = FormResult(name=name, kind=(kinds or {}).get(name, ""), description=DESCRIPTIONS.get(name, name),
                                 n=n, correct=int(right.sum()), **_intervals(int(right.sum()), n, confidence),
                                 per_class=per_class, predictions_sha256=_digest(p),
                                 changed_vs_original=None if original is None else int(np.sum(p != original)),
                                 files=dict((files or {}).get(name, {})))
    pairs = []
    for name in names:
        if name == "original":
            continue
        parent = DERIVED_FROM.get(name)
        if parent in preds and parent != "original":
            pairs.append(_pair(parent, name, "derived", preds[parent], preds[name], labels))
        if original is not None:
            pairs.append(_pair("original", name, "original" if parent != "original" else "derived",
                               original, preds[name], labels))
    return FormsRun(split=split, n=n, classes=tuple(classes), confidence=confidence, labels_sha256=_digest(labels),
                    forms=forms, pairs=tuple(pairs), skipped=dict(skipped or {}))


def _torch_labels(model: Any, images: np.ndarray) -> np.ndarray:
    from etdeploy.training import predict_logits

    return predict_logits(model, images, model.spec.mean, model.spec.std).argmax(1).numpy()


def _onnx_inputs(images: np.ndarray, mean, std, interface: Any) -> np.ndarray:
    """The split normalised and laid out as the exported ONNX file (and its C) takes it: float32."""
    from etdeploy.data.images import normalise

    x = np.ascontiguousarray(normalise(images, mean, std).numpy(), dtype=np.float32)
    return x if interface is None else interface.deployable_input(x)


def _onnx_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    """ONNX Runtime's outputs (logits, or probabilities for a softmax interface) ``(n, K)``, in batches."""
    from etdeploy.onnx_graph import image_input
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session

    proto = load_onnx_checked(path)
    name, dims = image_input(proto)
    fixed = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else None
    step = fixed or _BATCH
    session = make_session(proto, threads=1, opt_level="disable")
    out = session.get_outputs()[0].name
    if fixed is not None and len(inputs) % fixed:
        raise ExportError(f"takes batches of exactly {fixed}; {len(inputs)} images do not divide", path)
    return np.concatenate([np.asarray(session.run([out], {name: inputs[i:i + step]})[0], np.float32)
                           for i in range(0, len(inputs), step)])


def _c_outputs(onnx_path: Path, inputs: np.ndarray, expected: np.ndarray, n_classes: int, layout: str
               ) -> tuple[np.ndarray | None, dict[str, str], str]:
    """The generated C model's outputs on ``inputs`` (every image, batch 1, host gcc), the SHA-256 of its
    sources, and why it did not run (``''`` when it did). ``expected``: ONNX Runtime's outputs, which the
    harness compares against (its verdict is not needed here: the labels are compared by the caller)."""
    from importlib.util import find_spec

    if find_spec("emx_onnx_cgen") is None:
        return None, {}, "the C generator emx-onnx-cgen is not installed (pip install 'etdeploy[package]')"
    from etdeploy.fileio import atomic_write_bytes, atomic_write_text, sha256_bytes
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.packaging import codegen, csource, toolchains
    from etdeploy.packaging.vectors import DEFAULT_TOLERANCE

    proto = load_onnx_checked(onnx_path)
    generated = codegen.generate_c(proto, onnx_path)
    sources = {f"{codegen.ENTRY}.c": generated.model, f"{codegen.ENTRY}_data.c": generated.data}
    digests = {name: sha256_bytes(text.encode("utf-8")) for name, text in sources.items()}
    with tempfile.TemporaryDirectory(prefix="etdeploy-forms-c-") as work:
        root = Path(work)
        for name, text in sources.items():
            atomic_write_text(root / "c" / name, text)
        atomic_write_text(root / "c" / csource.HEADER,
                          csource.header_text(generated.prototype, tuple(inputs.shape[1:]), layout, n_classes))
        atomic_write_text(root / "c" / csource.HARNESS, csource.HARNESS_TEXT)
        atomic_write_text(root / "c" / "Makefile", csource.makefile_text())
        vectors = root / "vectors"
        atomic_write_bytes(vectors / "inputs.f32", inputs.astype("<f4").tobytes())
        atomic_write_bytes(vectors / "expected_logits.f32", expected.astype("<f4").tobytes())
        atomic_write_bytes(vectors / "expected_labels.i32", expected.argmax(1).astype("<i4").tobytes())
        atomic_write_text(vectors / "tolerance.txt", f"{DEFAULT_TOLERANCE!r}\n")
        check = toolchains.check_isa(csource.isa("host"), root / "c", vectors, root / "build", expected)
        if check.status == "not run":
            return None, digests, f"the host C build did not run: {check.detail}"
        logits = root / "build" / "host" / "logits.f32"
        if check.vectors != len(inputs) or not logits.is_file():
            raise ExportError(f"the generated C model could not be built or run on the host: {check.detail}",
                              onnx_path)
        return np.fromfile(logits, dtype="<f4").reshape(len(inputs), n_classes), digests, ""


def evaluate_forms(original: str | os.PathLike, *, dataset: Any, split: str = "test",
                   pruned: str | os.PathLike | None = None, sliced: str | os.PathLike | None = None,
                   export: str | os.PathLike | None = None, int8: str | os.PathLike | None = None,
                   c_model: bool = True, images: Any = None, confidence: float = DEFAULT_CONFIDENCE,
                   progress: bool = False, allow_other_data: bool = False) -> FormsRun:
    """Every form of the model given, on the same images of ``split`` (see the module docstring).

    ``original``, ``pruned``, ``sliced``: model folders (``pruned``: the masked model); ``export``: the
    export folder of the sliced model (its ``model.sim.onnx`` is the ``onnx`` form, and the source of the
    ``c`` form unless ``c_model=False``); ``int8``: the int8 ONNX file of that export. ``dataset`` must have
    the original's classes and, unless ``allow_other_data``, its splits
    (:func:`~etdeploy.data.check_compatible`); ``images``: ``split`` already decoded at the original's input
    size (else it is decoded here). Every form must take that input size.
    """
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import sha256_file
    from etdeploy.models import load_model
    from etdeploy.models.serialization import WEIGHTS_FILE

    models = {"original": Path(original)}
    models.update({k: Path(v) for k, v in (("pruned", pruned), ("sliced", sliced)) if v is not None})
    loaded = {k: load_model(v) for k, v in models.items()}  # a wrong folder fails before any image is decoded
    spec = loaded["original"].spec
    for name, m in loaded.items():
        if m.spec.input_size != spec.input_size or tuple(m.spec.class_names) != tuple(spec.class_names):
            raise DataError(f"the {name} model takes {m.spec.input_size}-pixel images of classes "
                            f"{list(m.spec.class_names)}; the original {spec.input_size} pixels of "
                            f"{list(spec.class_names)}", models[name])
    exported = None
    if export is not None:
        from etdeploy.export import SIM_FILE, read_export

        exported = read_export(export)
        sim = Path(export) / SIM_FILE
    if int8 is not None and not Path(int8).is_file():
        raise DataError("the int8 ONNX file does not exist", int8)
    check_compatible(loaded["original"], dataset, models["original"], split=split, allow_other_data=allow_other_data)
    if images is None:
        images = load_split_images(dataset, split, spec.input_size, progress=progress)
    elif tuple(images.images.shape[-2:]) != (spec.input_size,) * 2:
        raise DataError(f"the {split} images are {images.images.shape[-1]} pixels, the model takes "
                        f"{spec.input_size}", models["original"])
    predictions: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    files: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    for name, m in loaded.items():
        predictions[name], kinds[name] = _torch_labels(m, images.images), "torch"
        files[name] = {WEIGHTS_FILE: sha256_file(models[name] / WEIGHTS_FILE)}
    for name in ("pruned", "sliced"):
        if name not in loaded:
            skipped[name] = f"no {name} model given"
    if exported is not None:
        m = exported.model
        inputs = _onnx_inputs(images.images, m.mean, m.std, exported.interface)
        outputs = _onnx_outputs(sim, inputs)
        predictions["onnx"], kinds["onnx"], files["onnx"] = outputs.argmax(1), "onnx", {sim.name: sha256_file(sim)}
        if int8 is not None:
            predictions["int8"] = _onnx_outputs(Path(int8), inputs).argmax(1)
            kinds["int8"], files["int8"] = "onnx", {Path(int8).name: sha256_file(int8)}
        else:
            skipped["int8"] = "no int8 model given (the quantize stage did not run)"
        if c_model:
            c_out, c_files, why = _c_outputs(sim, inputs, outputs, len(spec.class_names),
                                                "NCHW" if exported.interface is None else exported.interface.layout)
            if c_out is None:
                skipped["c"] = why
            else:
                predictions["c"], kinds["c"], files["c"] = c_out.argmax(1), "c", c_files
        else:
            skipped["c"] = "not asked for (c_model=False)"
    else:
        skipped.update({k: "no export given" for k in ("onnx", "int8", "c")})
    return compare_forms(predictions, images.labels, tuple(spec.class_names), split=split, confidence=confidence,
                         kinds=kinds, files=files, skipped={k: skipped[k] for k in FORM_ORDER if k in skipped})
