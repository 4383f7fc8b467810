"""Use case: accuracy of every form of the model under rover-camera perturbations (docs/method.md §12.2).

    from etdeploy.assurance.robustness import evaluate_robustness, torch_classifier
    run = evaluate_robustness([torch_classifier("original", "run/train/model")], split.images, split.labels,
                              split="test", severities=(1, 2, 3), seed=0)
    run.cell("noise", 2, "original").accuracy, run.cell("noise", 2, "original").low

For each perturbation of :mod:`etdeploy.assurance.perturb` and each severity (``0`` = the clean images, bit
for bit, then the configured ones) every classifier predicts the same perturbed images; a cell records the
correct count, the accuracy with its Wilson interval (:func:`etdeploy.assurance.stats.wilson_interval`)
and ``changed``: the images whose predicted class differs from the same model's prediction on the clean
image (a prediction flip, right or wrong). ``max_images`` keeps a class-stratified prefix of the split
(:func:`etdeploy.attribution.rank_dirs.stratified_subset`); the perturbation randomness of an image is that of
its index in the split, so a cap does not change how a kept image is perturbed. Forms that are not there
(an int8 model before quantisation) are listed in ``missing`` with the reason, never silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import ConfigError
from etdeploy.records import Record
from etdeploy.vocab import PERTURBATIONS, SPLITS, choices_text

__all__ = ["ROBUSTNESS_FORMAT", "Classifier", "FormInfo", "MissingForm", "PerturbationInfo", "RobustnessCell",
           "RobustnessRun", "evaluate_robustness", "onnx_classifier", "read_robustness", "robustness_csv",
           "robustness_from_dirs", "torch_classifier"]

ROBUSTNESS_FORMAT = "etdeploy-robustness"
CSV_HEADER = ["perturbation", "severity", "setting", "model", "correct", "n", "accuracy", "ci_low", "ci_high",
              "changed"]


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FormInfo(Record):
    """One form of the model evaluated: its name (the forms' names of :data:`etdeploy.assurance.forms.FORM_ORDER`:
    ``original``, ``sliced``, ``int8``), runtime and file digest."""

    name: str
    runtime: str
    file: str
    sha256: str


@dataclass(frozen=True)
class MissingForm(Record):
    name: str
    reason: str


@dataclass(frozen=True)
class PerturbationInfo(Record):
    """A perturbation: what it models and its setting at each of the run's severities (``"clean"`` at 0)."""

    name: str
    models: str
    settings: tuple[str, ...]


@dataclass(frozen=True)
class RobustnessCell(Record):
    """One model on one perturbation at one severity: ``correct`` of ``n``, ``accuracy`` (6 decimals) and its
    Wilson interval ``[low, high]``; ``changed``: images whose prediction differs from the clean one."""

    perturbation: str
    severity: int
    model: str
    correct: int
    n: int
    accuracy: float
    low: float
    high: float
    changed: int


@dataclass(frozen=True)
class RobustnessRun(Record):
    """Result of :func:`evaluate_robustness` (``to_dict()`` is ``robustness.json`` and the stage's summary)."""

    split: str
    n: int
    max_images: int | None
    seed: int
    confidence: float
    input_size: int
    images_sha256: str
    severities: tuple[int, ...]
    perturbations: tuple[PerturbationInfo, ...]
    models: tuple[FormInfo, ...]
    missing: tuple[MissingForm, ...]
    cells: tuple[RobustnessCell, ...]
    format: str = ROBUSTNESS_FORMAT
    format_version: int = 1

    def cell(self, perturbation: str, severity: int, model: str) -> RobustnessCell:
        for c in self.cells:
            if (c.perturbation, c.severity, c.model) == (perturbation, severity, model):
                return c
        raise KeyError(f"no robustness cell for {perturbation} severity {severity} model {model}")

    def clean(self, model: str) -> RobustnessCell:
        """The model's cell on the clean images (severity 0 of the first perturbation; all are equal)."""
        return self.cell(self.perturbations[0].name, 0, model)

    def worst(self, model: str) -> RobustnessCell:
        """The model's lowest-accuracy cell (first in table order on ties)."""
        cells = [c for c in self.cells if c.model == model]
        return min(cells, key=lambda c: c.accuracy)


def read_robustness(path: str | os.PathLike) -> RobustnessRun:
    """``robustness.json`` (or its folder) as a :class:`RobustnessRun`; errors name the file."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    path = Path(path)
    if path.is_dir():
        path = path / "robustness.json"
    return read_record(path, RobustnessRun, what="robustness record", format=ROBUSTNESS_FORMAT, error=ReportError)


def robustness_csv(run: RobustnessRun) -> str:
    """The table of :class:`RobustnessRun` as CSV (one row per perturbation, severity and model)."""
    from etdeploy.fileio import csv_text

    settings = {(p.name, s): text for p in run.perturbations for s, text in zip(run.severities, p.settings)}
    return csv_text(CSV_HEADER, [[c.perturbation, c.severity, settings[(c.perturbation, c.severity)], c.model,
                                  c.correct, c.n, c.accuracy, c.low, c.high, c.changed] for c in run.cells])


# -------------------------------------------------------------------------------------------- classifiers
@dataclass(frozen=True)
class Classifier:
    """A form of the model: ``predict((N, 3, S, S) uint8) -> (N,) int64`` predicted classes, and what it is."""

    info: FormInfo
    predict: Callable[[np.ndarray], np.ndarray]


def torch_classifier(name: str, model_dir: str | os.PathLike, *, model: Any = None) -> Classifier:
    """A saved model directory (:func:`etdeploy.models.load_model`; ``model``: it, already loaded), run in torch
    with its spec's normalisation (:func:`etdeploy.training.predict_logits`, the evaluation the train and prune
    stages report)."""
    from etdeploy.fileio import sha256_file
    from etdeploy.models import load_model
    from etdeploy.models.serialization import WEIGHTS_FILE
    from etdeploy.training import predict_logits

    model = load_model(model_dir) if model is None else model
    spec = model.spec

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_logits(model, images, spec.mean, spec.std).argmax(dim=1).numpy().astype(np.int64)

    weights = Path(model_dir) / WEIGHTS_FILE
    return Classifier(FormInfo(name=name, runtime="torch", file=f"{Path(model_dir).name}/{WEIGHTS_FILE}",
                               sha256=sha256_file(weights)), predict)


def onnx_classifier(name: str, onnx_path: str | os.PathLike, *, mean: Sequence[float], std: Sequence[float],
                    interface: Any = None, batch_size: int = 32) -> Classifier:
    """An ONNX classifier on ONNX Runtime (CPU, 1 thread, graph optimisations off): input
    ``(uint8 / 255 - mean) / std`` (through ``interface.deployable_input`` for an imported model's layout),
    prediction = argmax of the first output (logits or probabilities alike); a graph with a fixed batch
    size is fed in chunks of it."""
    from etdeploy.data.images import normalise
    from etdeploy.fileio import sha256_file
    from etdeploy.onnx_graph import image_input
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session

    onnx_path = Path(onnx_path)
    proto = load_onnx_checked(onnx_path)
    input_name, dims = image_input(proto)
    first = dims[0] if dims else None
    chunk = first if isinstance(first, int) and first > 0 else batch_size
    session = make_session(proto, threads=1, opt_level="disable")
    output = proto.graph.output[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), chunk):
            x = normalise(images[start:start + chunk], mean, std).numpy()
            x = x if interface is None else interface.deployable_input(x)
            scores = np.asarray(session.run([output], {input_name: np.ascontiguousarray(x, np.float32)})[0])
            out.append(scores.reshape(len(x), -1).argmax(axis=1))
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    return Classifier(FormInfo(name=name, runtime="onnxruntime", file=onnx_path.name, sha256=sha256_file(onnx_path)),
                      predict)


# ---------------------------------------------------------------------------------------------- use case
def evaluate_robustness(classifiers: Sequence[Classifier], images: np.ndarray, labels: np.ndarray, *,
                        split: str = "test", perturbations: Sequence[str] = PERTURBATIONS,
                        severities: Sequence[int] = (1, 2, 3), seed: int = 0, max_images: int | None = None,
                        missing: Mapping[str, str] | None = None, confidence: float = 0.95) -> RobustnessRun:
    """Accuracy of each classifier on ``images`` (``(N, 3, S, S)`` uint8, labels ``(N,)``) under every
    perturbation at severity 0 (clean) and each of ``severities`` (module docstring).

    ``missing``: ``{form name: why it is not evaluated}``, recorded. Raises :class:`ConfigError` on unknown
    perturbations, severities outside ``1..MAX_SEVERITY``, duplicate model names or no model.
    """
    from etdeploy.assurance.perturb import MAX_SEVERITY, REGISTRY, perturb_images, severity_text
    from etdeploy.assurance.stats import wilson_interval
    from etdeploy.attribution.rank_dirs import stratified_subset
    from etdeploy.fileio import sha256_bytes

    unknown = [p for p in perturbations if p not in REGISTRY]
    if unknown or not perturbations or len(set(perturbations)) != len(perturbations):
        raise ConfigError(f"perturbations must be distinct names among {choices_text(PERTURBATIONS)}, "
                          f"got {list(perturbations)}")
    if any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SEVERITY for s in severities):
        raise ConfigError(f"severities must be integers in 1..{MAX_SEVERITY} (0, the clean image, is always "
                          f"included), got {list(severities)}")
    names = [c.info.name for c in classifiers]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"give at least one model, each under its own name; got {names}")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {choices_text(SPLITS)}, got {split!r}")
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) != len(labels):
        raise ConfigError(f"images must be uint8 (N, 3, S, S) with one label each; got {images.dtype} "
                          f"{tuple(images.shape)} and {len(labels)} labels")
    keep = stratified_subset(labels, max_images)
    images, labels = images[keep], labels[keep]
    if len(images) == 0:
        raise ConfigError(f"the {split} split holds no images")
    levels = (0, *sorted({int(s) for s in severities}))
    side = int(images.shape[-1])

    clean = {c.info.name: c.predict(images) for c in classifiers}
    cells = []
    for name in perturbations:
        for severity in levels:
            # severity 0 is the clean image bit for bit (perturb.py): its predictions are the clean ones
            perturbed = None if severity == 0 else perturb_images(images, name, severity, seed=seed, indices=keep)
            for c in classifiers:
                predicted = clean[c.info.name] if perturbed is None else c.predict(perturbed)
                correct = int((predicted == labels).sum())
                low, high = wilson_interval(correct, len(labels), confidence)
                cells.append(RobustnessCell(
                    perturbation=name, severity=severity, model=c.info.name, correct=correct, n=len(labels),
                    accuracy=round(correct / len(labels), 6), low=round(low, 6), high=round(high, 6),
                    changed=int((predicted != clean[c.info.name]).sum())))
    return RobustnessRun(
        split=split, n=len(labels), max_images=max_images, seed=int(seed), confidence=float(confidence),
        input_size=side, images_sha256=sha256_bytes(np.ascontiguousarray(images).tobytes()), severities=levels,
        perturbations=tuple(PerturbationInfo(name=p, models=REGISTRY[p].models,
                                             settings=tuple(severity_text(p, s, side) for s in levels))
                            for p in perturbations),
        models=tuple(c.info for c in classifiers),
        missing=tuple(MissingForm(name=k, reason=v) for k, v in (missing or {}).items()),
        cells=tuple(cells))


def robustness_from_dirs(original_dir: str | os.PathLike, pruned_dir: str | os.PathLike, *, dataset: Any,
                         int8: str | os.PathLike | None = None, int8_missing: str | None = None,
                         split: str = "test", perturbations: Sequence[str] = PERTURBATIONS,
                         severities: Sequence[int] = (1, 2, 3), seed: int = 0, max_images: int | None = None,
                         images: Any = None, out: str | os.PathLike | None = None,
                         progress: bool = False) -> RobustnessRun:
    """The pipeline's robustness evidence: the original (torch, ``original_dir``), the pruned model as deployed
    (``sliced``: the sliced torch model in ``pruned_dir``) and, when ``int8`` is an existing file, the int8 ONNX
    model (its input normalised as the sliced model's; else ``int8_missing`` or "no int8 model" is recorded) on
    ``split`` of ``dataset``.

    ``images``: the split already decoded at the model's input size (an
    :class:`~etdeploy.data.images.ImageSplit`); ``out``: an existing folder that receives ``robustness.json``
    and ``robustness.csv``.
    """
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.export.interface import interface_of
    from etdeploy.fileio import atomic_write_json, atomic_write_text
    from etdeploy.models import load_model

    model = load_model(pruned_dir)
    spec = model.spec
    check_compatible(spec, dataset, pruned_dir, split=split)
    original = torch_classifier("original", original_dir)
    sliced = torch_classifier("sliced", pruned_dir, model=model)
    classifiers = [original, sliced]
    missing = {}
    if int8 is not None and Path(int8).is_file():
        classifiers.append(onnx_classifier("int8", int8, mean=spec.mean, std=spec.std, interface=interface_of(spec)))
    else:
        missing["int8"] = int8_missing or "no int8 model (run the quantize stage or etdeploy quantize)"
    if images is None:
        images = load_split_images(dataset, split, spec.input_size, progress=progress)
    run = evaluate_robustness(classifiers, images.images, images.labels, split=split, perturbations=perturbations,
                              severities=severities, seed=seed, max_images=max_images, missing=missing)
    if out is not None:
        atomic_write_json(Path(out) / "robustness.json", run.to_dict())
        atomic_write_text(Path(out) / "robustness.csv", robustness_csv(run))
    return run
