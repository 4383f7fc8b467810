"""Use case: does compression change what the model looks at? Occlusion maps of the original and the pruned
model on the same images, and their SSIM (docs/method.md §12.3).

    from etdeploy.assurance.stability import explanation_stability
    run = explanation_stability("export/original/model.sim.onnx", "export/sliced/model.sim.onnx", images,
                                mean=m, std=s, patch=16, stride=4, map_kind="prob", out="stability")
    run.min_ssim, run.median_ssim, run.images[0].ssim

Both maps of an image are exact (the incremental executor in exact mode, or full forwards where it cannot
split the graph: both are the plain occlusion map), of the same class (``classes``; default: the original's
prediction), with the same patch, stride and patch value. Their similarity is the SSIM of the pruned map
against the original's, with the data range of the original's map, as the approximate-mode tuner scores a
map against its exact reference (:func:`etdeploy.occlusion.tuner.map_ssim`). SSIM is undefined on a constant
original map: that image records ``ssim = None`` and why. Maps whose value range is below
:data:`etdeploy.vocab.FLAT_MAP_RANGE` are flagged ``flat``: their SSIM compares near-noise and is weak evidence.

Files: ``<stem>_original.npy`` / ``<stem>_pruned.npy`` (float64 maps) per image, ``stability.png`` (each
image's two maps side by side on one shared colour scale, with its colour bar) and ``stability.json``.
"""

from __future__ import annotations

import io
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError, UnsupportedOpError
from etdeploy.occlusion.explain import ExplainInput, OnnxFile
from etdeploy.records import Record
from etdeploy.vocab import FLAT_MAP_RANGE, MAP_KINDS, choices_text

__all__ = ["STABILITY_FORMAT", "StabilityImage", "StabilityRun", "explanation_stability", "read_stability",
           "stability_inputs"]

STABILITY_FORMAT = "etdeploy-stability"
FIGURE = "stability.png"


@dataclass(frozen=True)
class StabilityImage(Record):
    """One image: the mapped class ``class_`` (``"class"`` in JSON) and its name, both models' predictions,
    their maps' files and value ranges, ``flat`` (either map's range below the flat threshold) and the SSIM
    of the pruned map against the original's (``None`` with ``note`` when undefined)."""

    file: str
    sha256: str
    true_class: int | None
    class_: int
    name: str
    original_predicted: int
    pruned_predicted: int
    original_npy: str
    pruned_npy: str
    original_range: tuple[float, float]
    pruned_range: tuple[float, float]
    flat: bool
    ssim: float | None
    note: str | None = None


@dataclass(frozen=True)
class StabilityRun(Record):
    """Result of :func:`explanation_stability` (``to_dict()`` is ``stability.json`` and the stage's summary);
    ``min_ssim``/``median_ssim`` over the images with an SSIM (``None`` when none has one)."""

    original: OnnxFile
    pruned: OnnxFile
    mode: str
    patch: int
    stride: int
    map_kind: str
    patch_value: float
    input_size: int
    classes: tuple[str, ...]
    images: tuple[StabilityImage, ...]
    min_ssim: float | None
    median_ssim: float | None
    figure: str | None
    format: str = STABILITY_FORMAT
    format_version: int = 1


def read_stability(path: str | os.PathLike) -> StabilityRun:
    """``stability.json`` (or its folder) as a :class:`StabilityRun`; errors name the file."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    path = Path(path)
    if path.is_dir():
        path = path / "stability.json"
    return read_record(path, StabilityRun, what="explanation stability record", format=STABILITY_FORMAT,
                       error=ReportError)


def _executor(onnx_path: Path, size: int | None, patch: int, stride: int, patch_value: float, threads: int):
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
    from etdeploy.occlusion.naive import NaiveOcclusionExecutor

    options = {"input_size": size, "patch": patch, "stride": stride, "threads": threads, "patch_value": patch_value}
    try:
        return IncrementalOcclusionExecutor(onnx_path, **options), "exact"
    except UnsupportedOpError:
        return NaiveOcclusionExecutor(onnx_path, **options), "naive"


def pair_figure(pairs: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]], map_kind: str) -> bytes:
    """PNG: one row per image, its original and pruned maps side by side on one shared colour scale (the
    pair's min..max) with a colour bar; ``pairs``: ``(caption, original (ny, nx), pruned (ny, nx), ssim)``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(pairs)
    fig = Figure(figsize=(4.6, 2.4 * rows + 0.3), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False)
    for (caption, a, b, ssim), (ax_a, ax_b) in zip(pairs, axes):
        lo = float(min(a.min(), b.min()))
        hi = float(max(a.max(), b.max()))
        hi = hi if hi > lo else lo + 1e-12
        ax_a.imshow(a, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        shown = ax_b.imshow(b, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax_a.set_title("original", fontsize=7)
        ax_b.set_title("pruned" + ("" if ssim is None else f" (SSIM {ssim:.3f})"), fontsize=7)
        ax_a.annotate(caption, xy=(0.0, -0.04), xycoords="axes fraction", fontsize=6, ha="left", va="top",
                      annotation_clip=False)
        for ax in (ax_a, ax_b):
            ax.set_axis_off()
        bar = fig.colorbar(shown, ax=[ax_a, ax_b], fraction=0.046, pad=0.04)
        bar.set_label(map_kind, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def explanation_stability(original_onnx: str | os.PathLike, pruned_onnx: str | os.PathLike,
                          images: Sequence[ExplainInput], *, mean: Sequence[float], std: Sequence[float],
                          pruned_mean: Sequence[float] | None = None, pruned_std: Sequence[float] | None = None,
                          classes: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                          input_size: int | None = None, patch: int = 16, stride: int = 4, map_kind: str = "prob",
                          patch_value: float = 0.0, threads: int = 1, out: str | os.PathLike | None = None,
                          figure: bool = True) -> StabilityRun:
    """Exact occlusion maps of ``images`` on both ONNX classifiers and their SSIM (module docstring).

    ``mean``/``std``: the normalisation of the original's input (``pruned_mean``/``pruned_std``: the pruned
    model's, default the same); ``classes``: the class mapped on each image (default: the original's
    prediction); ``out``: an existing folder that receives the maps, the figure (``figure``) and
    ``stability.json``; ``None`` writes nothing.
    """
    from etdeploy.data.images import normalise
    from etdeploy.fileio import atomic_write_bytes, atomic_write_json, sha256_file
    from etdeploy.occlusion.output import npy_bytes
    from etdeploy.occlusion.tuner import map_ssim

    if map_kind not in MAP_KINDS:
        raise OcclusionError(f"unknown map kind {map_kind!r}; choose {choices_text(MAP_KINDS)}")
    if classes is not None and len(classes) != len(images):
        raise OcclusionError(f"{len(classes)} classes for {len(images)} images")
    original_onnx, pruned_onnx = Path(original_onnx), Path(pruned_onnx)
    pruned_mean = mean if pruned_mean is None else pruned_mean
    pruned_std = std if pruned_std is None else pruned_std
    ex_o, mode_o = _executor(original_onnx, input_size, patch, stride, patch_value, threads)
    ex_p, mode_p = _executor(pruned_onnx, input_size, patch, stride, patch_value, threads)
    size = ex_o.input_hw[0]
    if ex_o.input_hw != ex_p.input_hw or ex_o.input_hw[0] != ex_o.input_hw[1]:
        raise OcclusionError(f"the original takes {ex_o.input_hw}, the pruned model {ex_p.input_hw}: maps of one "
                             "square image size are compared", pruned_onnx)
    k = ex_o.num_classes
    if ex_p.num_classes != k:
        raise OcclusionError(f"the original has {k} classes, the pruned model {ex_p.num_classes}", pruned_onnx)
    names = tuple(class_names) if class_names is not None else tuple(f"class{i}" for i in range(k))
    if len(names) != k:
        raise OcclusionError(f"{len(names)} class names for a model with {k} outputs", original_onnx)
    if out is not None and not Path(out).is_dir():
        raise OcclusionError("output folder does not exist", out)

    records = []
    pairs = []
    for index, item in enumerate(images):
        raw = item.decoded(size)
        r_o = ex_o.run(normalise(raw[None], mean, std).numpy()[0], mode=mode_o)
        r_p = ex_p.run(normalise(raw[None], pruned_mean, pruned_std).numpy()[0], mode=mode_p)
        c = int(np.argmax(r_o.base_logits)) if classes is None else int(classes[index])
        if not 0 <= c < k:
            raise OcclusionError(f"class {c} is out of range for a model with {k} classes", item.name)
        a = r_o.map(map_kind, c)
        b = r_p.map(map_kind, c)
        ssim, note = None, None
        if min(a.shape) < 3:
            note = f"the map has {a.shape[0]}x{a.shape[1]} positions: too few for SSIM (3x3 at least)"
        elif a.max() > a.min():
            ssim = map_ssim(a, b)
        else:
            note = "the original's map is constant: SSIM undefined"
        stem = f"img{index:02d}_{Path(item.name).stem}_c{c}"
        if out is not None:
            atomic_write_bytes(Path(out) / f"{stem}_original.npy", npy_bytes(a))
            atomic_write_bytes(Path(out) / f"{stem}_pruned.npy", npy_bytes(b))
        flat = bool(min(a.max() - a.min(), b.max() - b.min()) < FLAT_MAP_RANGE)
        records.append(StabilityImage(
            file=item.name, sha256=item.sha256, true_class=item.true_class, class_=c, name=names[c],
            original_predicted=int(np.argmax(r_o.base_logits)), pruned_predicted=int(np.argmax(r_p.base_logits)),
            original_npy=f"{stem}_original.npy", pruned_npy=f"{stem}_pruned.npy",
            original_range=(float(a.min()), float(a.max())), pruned_range=(float(b.min()), float(b.max())),
            flat=flat, ssim=ssim, note=note))
        pairs.append((f"{item.name} ({names[c]})", a, b, ssim))
    scores = [r.ssim for r in records if r.ssim is not None]
    made_figure = figure and out is not None and bool(pairs)
    run = StabilityRun(
        original=OnnxFile(file=original_onnx.name, sha256=sha256_file(original_onnx)),
        pruned=OnnxFile(file=pruned_onnx.name, sha256=sha256_file(pruned_onnx)),
        mode="exact" if mode_o == mode_p == "exact" else "naive", patch=int(patch), stride=int(stride),
        map_kind=map_kind, patch_value=float(patch_value), input_size=int(size), classes=names,
        images=tuple(records), min_ssim=min(scores) if scores else None,
        median_ssim=float(statistics.median(scores)) if scores else None,
        figure=FIGURE if made_figure else None)
    if out is not None:
        if made_figure:
            atomic_write_bytes(Path(out) / FIGURE, pair_figure(pairs, map_kind))
        atomic_write_json(Path(out) / "stability.json", run.to_dict())
    return run


def stability_inputs(explained: Any, split: Any) -> tuple[list[ExplainInput], list[int]]:
    """The images an explain run (:class:`~etdeploy.occlusion.ExplainRun`) explained, found in ``split`` (an
    :class:`~etdeploy.data.images.ImageSplit`) by file name and SHA-256, and the class each was mapped for."""
    from etdeploy.errors import ReportError
    from etdeploy.fileio import sha256_file

    by_name: dict[str, list[int]] = {}
    for i, path in enumerate(split.paths):
        by_name.setdefault(path.name, []).append(i)
    items, classes = [], []
    for image in explained.images:
        found = [i for i in by_name.get(image.file, []) if sha256_file(split.paths[i]) == image.sha256]
        if not found:
            raise ReportError(f"the explained image {image.file!r} (SHA-256 {image.sha256[:12]}...) is not in the "
                              "split: the explain stage ran on other data")
        i = found[0]
        items.append(ExplainInput(name=image.file, sha256=image.sha256, image=split.images[i],
                                  true_class=image.true_class, kind=image.kind))
        classes.append(image.maps[0].class_ if image.maps else image.predicted)
    return items, classes
