"""Use case: occlusion maps of a few images on an ONNX classifier, written as files, returned typed.

    from etdeploy.occlusion import ExplainInput, explain_images
    run = explain_images("model.onnx", [ExplainInput.from_file("a.jpg")], mean=m, std=s, out="maps")
    run.images[0].maps[0].npy        # "img00_a_c3.npy"; run.to_dict() is maps/summary.json

One flow serves ``etdeploy explain`` (image files) and the pipeline's explain stage (test images
already decoded, picked by :func:`pick_explain_images`): build the executor, choose the approximate
settings (tune on ``tune_images`` unless ``tau``/``r_drill`` are given), run every image, write a
``.npy`` map and a PNG overlay per image and class, and return an :class:`ExplainRun`, whose
``to_dict()`` is ``summary.json``. Timings go to ``timing.json`` only (``summary.json`` is
byte-reproducible); a pipeline stage asks for none.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import ImageError, OcclusionError, UnsupportedOpError
from etdeploy.occlusion.tuner import TuneCandidate, TuneResult
from etdeploy.records import Record
from etdeploy.vocab import FLAT_MAP_RANGE, MAP_KINDS, OCCLUSION_MODES, choices_text

__all__ = ["EXPLAIN_FORMAT", "ApproxSettings", "ClassMap", "ExplainInput", "ExplainRun", "ExplainedImage", "OnnxFile",
           "Tuning", "TuningCandidate", "explain_images", "pick_explain_images", "read_explain"]

EXPLAIN_FORMAT = "etdeploy-explain"

#: What :attr:`ExplainInput.kind` may say about an image picked from a labelled split.
IMAGE_KINDS = ("correct", "misclassified")


# ----------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ExplainInput:
    """One image to explain: ``name`` (recorded and used in file names), ``sha256`` of its file, and either
    ``image`` (``(3, H, W)`` uint8 at the model's input size) or ``path`` (decoded at that size).

    ``true_class`` and ``kind`` (``"correct"`` / ``"misclassified"``) are recorded when known.
    """

    name: str
    sha256: str
    image: np.ndarray | None = None
    path: Path | None = None
    true_class: int | None = None
    kind: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, **metadata: Any) -> ExplainInput:
        from etdeploy.fileio import sha256_file

        path = Path(path)
        if not path.is_file():
            raise ImageError("image file does not exist" if not path.exists() else "image path is not a file", path)
        return cls(name=path.name, sha256=sha256_file(path), path=path, **metadata)

    def decoded(self, size: int) -> np.ndarray:
        """``(3, size, size)`` uint8."""
        if self.image is None:
            if self.path is None:
                raise OcclusionError(f"image {self.name!r} has neither pixels nor a file")
            from etdeploy.data.images import decode_image

            return decode_image(self.path, size)
        image = np.asarray(self.image)
        if image.dtype != np.uint8 or image.shape != (3, size, size):
            raise OcclusionError(f"image {self.name!r} is {image.dtype} {tuple(image.shape)}; the model needs "
                                 f"uint8 (3, {size}, {size})")
        return image


def pick_explain_images(labels: Sequence[int], predictions: Sequence[int], per_class: int) -> list[tuple[int, str]]:
    """``(index, kind)``: per class, up to ``per_class`` correctly classified images and one misclassified one
    (if any), in class order then index order."""
    chosen: list[tuple[int, str]] = []
    for k in sorted({int(v) for v in labels}):
        correct = [i for i in range(len(labels)) if labels[i] == k and predictions[i] == k][:per_class]
        wrong = [i for i in range(len(labels)) if labels[i] == k and predictions[i] != k][:1]
        chosen += [(i, "correct") for i in correct] + [(i, "misclassified") for i in wrong]
    return chosen


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class OnnxFile(Record):
    file: str
    sha256: str


@dataclass(frozen=True)
class ApproxSettings(Record):
    """The approximate-mode settings the maps were computed with (``stage1_stride`` None: 2 x stride)."""

    tau: float
    r_drill: float
    stage1_stride: int | None
    map_kind: str


# the tuning an explanation ran with: the tuner's own record (with the tuning images' names)
Tuning = TuneResult
TuningCandidate = TuneCandidate


@dataclass(frozen=True)
class ClassMap(Record):
    """One map of one image: class index ``class_`` (``"class"`` in JSON) and name, its files, value range,
    ``flat`` (range below :data:`etdeploy.vocab.FLAT_MAP_RANGE`) and SSIM against the exact map (when checked
    and the exact map is not constant)."""

    class_: int
    name: str
    npy: str
    png: str
    min: float
    max: float
    flat: bool
    ssim_vs_exact: float | None = None


@dataclass(frozen=True)
class ExplainedImage(Record):
    """One image: its file and digest, what is known of it (``true_class``, ``kind``), the model's prediction
    and probabilities on it, the map grid, the multiply-accumulates spent (naive: a full forward per
    position) and its maps."""

    file: str
    sha256: str
    true_class: int | None
    kind: str | None
    predicted: int
    probabilities: tuple[float, ...]
    map_shape: tuple[int, int]
    macs: int
    naive_macs: int
    modelled_speedup: float | None
    maps: tuple[ClassMap, ...]

    @property
    def probability(self) -> float:
        """Probability of the predicted class."""
        return self.probabilities[self.predicted]


@dataclass(frozen=True)
class ExplainRun(Record):
    """Result of :func:`explain_images` (``to_dict()`` is ``summary.json`` and the explain stage's summary).

    ``classes``: the model's class names (index = output); ``redundancy_ratio``: KRYPTON's R of the model
    (None in naive mode on a graph the incremental executor cannot split); ``run``: the approximate settings
    used (None in naive and exact mode); ``tuning``: what the tuner chose (None unless it ran); ``images`` in input order.
    ``to_dict()`` adds ``maps``, a flat view (one row per map with its image's fields, values as
    ``map_min``/``map_max``) for tables and scripts; ``from_dict`` ignores it (``images`` is the record).
    """

    onnx: OnnxFile
    mode: str
    patch: int
    stride: int
    map_kind: str
    patch_value: float
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    redundancy_ratio: float | None
    check_ssim: bool
    run: ApproxSettings | None
    tuning: Tuning | None
    images: tuple[ExplainedImage, ...]
    format: str = EXPLAIN_FORMAT
    format_version: int = 1

    def all_maps(self) -> list[tuple[ExplainedImage, ClassMap]]:
        """Every ``(image, map)`` in order."""
        return [(image, m) for image in self.images for m in image.maps]

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["maps"] = [{"image": index, "file": image.file, "kind": image.kind, "true_class": image.true_class,
                      "predicted": image.predicted, "probability": image.probability,
                      "modelled_speedup": image.modelled_speedup, "class": m.class_, "name": m.name, "npy": m.npy,
                      "png": m.png, "map_min": m.min, "map_max": m.max, "flat": m.flat,
                      "ssim_vs_exact": m.ssim_vs_exact}
                     for index, image in enumerate(self.images) for m in image.maps]
        return d


def read_explain(path: str | os.PathLike) -> ExplainRun:
    """``summary.json`` of an ``etdeploy explain`` folder or an explain stage folder (give either the folder or
    the file) as an :class:`ExplainRun`; a damaged or foreign file raises :class:`ReportError` naming it."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    return read_record(path, ExplainRun, what="explanation summary", format=EXPLAIN_FORMAT, error=ReportError)


# ---------------------------------------------------------------------------------------------- use case
def explain_images(onnx_path: str | os.PathLike, images: Sequence[ExplainInput], *, mean: Sequence[float],
                   std: Sequence[float], out: str | os.PathLike, class_names: Sequence[str] | None = None,
                   input_size: int | None = None, patch: int = 16, stride: int = 4, mode: str = "exact",
                   map_kind: str = "prob", classes: Sequence[int] = (), target_ssim: float = 0.9,
                   ssim_margin: float = 0.05, tau: float | None = None, r_drill: float | None = None,
                   stage1_stride: int | None = None, tune_images: Sequence[ExplainInput] | None = None,
                   check_ssim: bool = False, patch_value: float = 0.0, batch_size: int = 16, threads: int = 2,
                   force: bool = False, staged: bool = True, timing: bool = True,
                   progress: bool = True, min_tuning_maps: int = 1) -> ExplainRun:
    """Occlusion maps of ``images`` on the ONNX classifier ``onnx_path``, written into ``out``.

    ``mean``/``std``: per-channel normalisation on [0, 1]; ``class_names`` (default ``class0``...) name the
    model's outputs; ``input_size`` overrides a dynamic ONNX input size. ``mode``: naive | exact | approx;
    ``map_kind``: prob | drop | logit | logprob; ``classes``: the classes to map (default: each image's
    predicted class). Approx mode runs with ``tau``/``r_drill``/``stage1_stride`` when ``tau`` or ``r_drill``
    is given (the other defaulting to 1), else tunes them on ``tune_images`` (default: the first two
    images) to reach ``target_ssim + ssim_margin``, scoring ``map_kind`` maps or, when fewer than
    ``min_tuning_maps`` of them are usable (a confident model's ``prob`` maps are flat), logit maps
    (:func:`~etdeploy.occlusion.tuner.tune_approx`; the summary's ``tuning`` records the kind and why, and
    the drill-down then selects by that kind); fewer usable maps than ``min_tuning_maps`` is refused
    (``OcclusionError``), and tuning on a single one is recorded as ``tuning.warning``. ``check_ssim`` also
    computes the exact maps and records each map's SSIM against them. ``patch_value``: patch colour in
    normalised space (0 = the data mean).

    ``out``: a new folder, built under a temporary name and renamed into place (``staged``; an existing
    non-empty one is refused unless ``force``), or with ``staged=False`` an existing empty folder that the
    caller stages (a pipeline stage folder). It receives ``<stem>.npy`` (float64 map) and ``<stem>.png``
    (overlay) per image and class, ``summary.json`` (= the result's ``to_dict()``) and, with ``timing``,
    ``timing.json`` (seconds per image).
    """
    from etdeploy.data.images import normalise
    from etdeploy.fileio import StagedDir, atomic_write_bytes, atomic_write_json, refuse_existing_output, sha256_file
    from etdeploy.progress import progress_bar

    if mode not in OCCLUSION_MODES:
        raise OcclusionError(f"unknown occlusion mode {mode!r}; choose {choices_text(OCCLUSION_MODES)}")
    if map_kind not in MAP_KINDS:
        raise OcclusionError(f"unknown map kind {map_kind!r}; choose {choices_text(MAP_KINDS)}")
    if mode != "approx" and (tau is not None or r_drill is not None or stage1_stride is not None or tune_images
                             or check_ssim):
        raise OcclusionError("tau, r_drill, the stage-1 stride, tuning images and the SSIM check apply to "
                             "approx mode only")
    if not images and staged:  # a pipeline run may explain nothing (occlusion.images_per_class = 0)
        raise OcclusionError("no images to explain")
    if len(mean) != 3 or len(std) != 3:
        raise OcclusionError(f"mean and std need 3 numbers each (RGB), got {len(mean)} and {len(std)}")
    for image in images:
        if image.kind is not None and image.kind not in IMAGE_KINDS:
            raise OcclusionError(f"image kind must be {choices_text(IMAGE_KINDS)}, got {image.kind!r}", image.name)
    out = Path(out)
    if staged:
        refuse_existing_output(out, force=force)

    executor = open_executor(onnx_path, mode, input_size=input_size, patch=patch, stride=stride,
                             batch_size=batch_size, threads=threads, patch_value=patch_value)
    redundancy = redundancy_of(executor)
    size_h, size_w = executor.input_hw
    if size_h != size_w:
        raise OcclusionError(f"images are decoded square; the model input is {size_h}x{size_w}", onnx_path)
    k = executor.num_classes
    names = tuple(class_names) if class_names is not None else tuple(f"class{i}" for i in range(k))
    if len(names) != k:
        raise OcclusionError(f"{len(names)} class names for a model with {k} outputs", onnx_path)
    for c in classes:
        if not 0 <= int(c) < k:
            raise OcclusionError(f"class {c} is out of range for a model with {k} classes")
    for image in images:
        if image.true_class is not None and not 0 <= image.true_class < k:
            raise OcclusionError(f"true class {image.true_class} is out of range for a model with {k} classes",
                                 image.name)

    def prepared(item: ExplainInput) -> tuple[np.ndarray, np.ndarray]:
        raw = item.decoded(size_h)
        return raw, normalise(raw[None], mean, std).numpy()[0]

    decoded = [prepared(item) for item in images]
    started = time.perf_counter()
    seconds: dict[str, Any] = {"images": []}
    settings, tuning, tuning_seconds = choose_approx(
        executor, mode=mode, map_kind=map_kind, tau=tau, r_drill=r_drill, stage1_stride=stage1_stride,
        tune_images=(list(tune_images) if tune_images else list(images[:2])) if images else [],
        prepare=lambda item: prepared(item)[1], target_ssim=target_ssim, ssim_margin=ssim_margin,
        min_tuning_maps=min_tuning_maps, progress=progress)
    if tuning_seconds is not None:
        seconds["tuning_seconds"] = tuning_seconds
    run_kwargs = run_options(mode, settings)

    def write_into(folder: Path) -> ExplainRun:
        explained = []
        for index, (item, (raw, image)) in enumerate(progress_bar(list(zip(images, decoded)), desc="explain",
                                                                  enabled=progress)):
            record, files, spent = explain_one(executor, item, raw, image, index=index, run_kwargs=run_kwargs,
                                               classes=classes, names=names, map_kind=map_kind,
                                               check_ssim=check_ssim)
            seconds["images"].append({"file": item.name, "seconds": spent})
            for name, data in files.items():
                atomic_write_bytes(folder / name, data)
            explained.append(record)
        run = ExplainRun(
            onnx=OnnxFile(file=Path(onnx_path).name, sha256=sha256_file(onnx_path)), mode=mode, patch=int(patch),
            stride=int(stride), map_kind=map_kind, patch_value=float(patch_value), input_size=(size_h, size_w),
            mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), classes=names,
            redundancy_ratio=redundancy, check_ssim=bool(check_ssim), run=settings,
            tuning=tuning, images=tuple(explained))
        atomic_write_json(folder / "summary.json", run.to_dict())
        if timing:
            seconds["total_seconds"] = time.perf_counter() - started
            atomic_write_json(folder / "timing.json", seconds)
        return run

    if not staged:
        if not out.is_dir():
            raise OcclusionError("output folder does not exist", out)
        return write_into(out)
    with StagedDir(out, force=force) as tmp:
        return write_into(tmp)


# ------------------------------------------------------------------------------ steps shared with the archive
def open_executor(onnx_path: str | os.PathLike, mode: str, **options: Any):
    """The incremental executor of ``onnx_path`` (``options``: input_size, patch, stride, batch_size, threads,
    patch_value); in naive mode, the naive executor when the graph has an op the incremental one cannot split."""
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
    from etdeploy.occlusion.naive import NaiveOcclusionExecutor

    try:
        return IncrementalOcclusionExecutor(onnx_path, **options)
    except UnsupportedOpError:
        if mode != "naive":
            raise
        return NaiveOcclusionExecutor(onnx_path, **options)  # naive runs any graph; R is then unknown


def redundancy_of(executor) -> float | None:
    """KRYPTON's R of the executor's model (None for the naive executor, which does not split the graph)."""
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor

    return float(executor.redundancy_ratio()["R"]) if isinstance(executor, IncrementalOcclusionExecutor) else None


def choose_approx(executor, *, mode: str, map_kind: str, tau: float | None, r_drill: float | None,
                  stage1_stride: int | None, tune_images: Sequence[ExplainInput], prepare, target_ssim: float,
                  ssim_margin: float, min_tuning_maps: int,
                  progress: bool) -> tuple[ApproxSettings | None, Tuning | None, float | None]:
    """``(settings, tuning, tuning seconds)`` of an explanation: None/None/None outside approx mode; the given
    ``tau``/``r_drill`` (the other defaulting to 1); else what :func:`~etdeploy.occlusion.tuner.tune_approx`
    chooses on ``tune_images`` (``prepare(item)`` -> normalised ``(3, H, W)`` float32; none: no settings)."""
    from etdeploy.occlusion.tuner import tune_approx

    if mode != "approx":
        return None, None, None
    if tau is not None or r_drill is not None:
        return (ApproxSettings(tau=1.0 if tau is None else float(tau), r_drill=1.0 if r_drill is None else float(r_drill),
                               stage1_stride=stage1_stride, map_kind=map_kind), None, None)
    if not tune_images:
        return None, None, None
    tune_floats = [prepare(item) for item in tune_images]
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # a single tuning map is recorded in the summary (tuning.warning)
        warnings.simplefilter("ignore", UserWarning)
        tuned = tune_approx(executor, tune_floats, target_ssim=target_ssim, map_kind=map_kind, margin=ssim_margin,
                            flat_threshold=FLAT_MAP_RANGE, min_maps=min_tuning_maps, progress=progress)
    seconds = time.perf_counter() - t0
    tuning = dataclasses.replace(tuned, images=tuple(item.name for item in tune_images))
    return (ApproxSettings(tau=tuned.tau, r_drill=tuned.r_drill, stage1_stride=tuned.stage1_stride,
                           map_kind=tuned.map_kind), tuning, seconds)


def run_options(mode: str, settings: ApproxSettings | None) -> dict[str, Any]:
    """Keyword arguments of ``executor.run`` for ``mode`` with these approximate settings."""
    options: dict[str, Any] = {"mode": mode}
    if settings is not None:
        options.update(tau=settings.tau, r_drill=settings.r_drill, stage1_stride=settings.stage1_stride,
                       map_kind=settings.map_kind)
    return options


def map_stem(index: int, name: str, target: int) -> str:
    """File stem of image ``index``'s map of class ``target``: ``img<index>_<name stem>_c<target>``."""
    return f"img{index:02d}_{Path(name).stem}_c{target}"


def explain_one(executor, item: ExplainInput, raw: np.ndarray, image: np.ndarray, *, index: int,
                run_kwargs: dict[str, Any], classes: Sequence[int], names: Sequence[str], map_kind: str,
                check_ssim: bool) -> tuple[ExplainedImage, dict[str, bytes], float]:
    """One image's maps: ``(record, {file name: bytes}, seconds of the occlusion run)``.

    ``raw``: ``(3, H, W)`` uint8 (the overlay's background); ``image``: the normalised float32 input;
    ``index``: its position in the run (file names, :func:`map_stem`); ``classes``: the classes to map
    (empty: the predicted one). Writes nothing: the caller writes the files (atomically).
    """
    from etdeploy.occlusion.output import map_files
    from etdeploy.occlusion.result import log_softmax
    from etdeploy.occlusion.tuner import map_ssim

    t0 = time.perf_counter()
    result = executor.run(image, **run_kwargs)
    seconds = time.perf_counter() - t0
    exact = executor.run(image, mode="exact") if check_ssim else None
    probabilities = np.exp(log_softmax(result.base_logits))
    maps = []
    files: dict[str, bytes] = {}
    for c in (classes or (result.target,)):
        c = int(c)
        stem = map_stem(index, item.name, c)
        files.update(map_files(stem, result, raw, map_kind, names[c], c))
        values = result.map(map_kind, c)
        ssim = None
        if exact is not None:
            reference = exact.map(map_kind, c)
            ssim = map_ssim(reference, values) if reference.max() > reference.min() else None
        maps.append(ClassMap(class_=c, name=names[c], npy=f"{stem}.npy", png=f"{stem}.png", min=float(values.min()),
                             max=float(values.max()), flat=bool(values.max() - values.min() < FLAT_MAP_RANGE),
                             ssim_vs_exact=ssim))
    record = ExplainedImage(
        file=item.name, sha256=item.sha256, true_class=item.true_class, kind=item.kind,
        predicted=int(np.argmax(probabilities)), probabilities=tuple(float(p) for p in probabilities),
        map_shape=result.shape, macs=int(result.macs), naive_macs=int(result.naive_macs),
        modelled_speedup=result.naive_macs / result.macs if result.macs else None, maps=tuple(maps))
    return record, files, seconds
