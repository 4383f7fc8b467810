"""The ranking use case: a saved model + a data split -> a ranking folder and a typed :class:`RankRun`.

    from etdeploy.attribution import rank_dirs
    run = rank_dirs("runs/model", dataset, split="train", steps=32, out="runs/rank")
    run.layer("dense2").live, run.layer("dense2").top[0].index

``out`` receives what :func:`~etdeploy.attribution.result.save_ranking` writes (``summary.json``,
``<layer>.csv``, ``attributions.safetensors``: the contract :func:`load_ranking` reads) and
``rank.json`` = ``RankRun.to_dict()``: everything a report shows about the ranking (per-layer counts
and completeness gaps, the best and worst neurons with their expected attributions, a histogram of
the ranks of live neurons, the conditional expected attributions ``E^k_ij`` of the best and worst
live neuron of the last layer), so a report needs no arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.attribution.result import LayerAttribution, Ranking
from etdeploy.records import Record

RUN_FILE = "rank.json"
#: How many best / worst live neurons of each layer a :class:`RankRun` keeps.
EXTREMES = 10
#: Bins of the rank histogram of each layer.
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class NeuronSummary(Record):
    """One neuron: ``index`` in its layer, ``rank`` (-E[A^L_i]), ``activation_mean``, ``ea`` ``(n,)``: E[A_i -> j]."""

    index: int
    rank: float
    activation_mean: float
    ea: tuple[float, ...]


@dataclass(frozen=True)
class RankHistogram(Record):
    """Histogram of the ranks of a layer's live neurons: ``edges`` ``(bins + 1,)``, ``counts`` ``(bins,)``."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class RankedLayer(Record):
    """One ranked layer: counts, completeness gaps, the ``EXTREMES`` best neurons (``top``, highest rank
    first; ties: lower index first) and worst live neurons (``bottom_live``, lowest rank first)."""

    name: str
    width: int
    live: int
    dead: int
    gap_mean: float
    gap_max: float
    loss_gap_mean: float
    loss_gap_max: float
    top: tuple[NeuronSummary, ...]
    bottom_live: tuple[NeuronSummary, ...]
    histogram: RankHistogram


@dataclass(frozen=True)
class ConditionalEA(Record):
    """``E^k_ij`` of one neuron ``i``: ``ea_class`` ``(K, n)``, row ``k`` = images of true class ``k``
    (NaN where class ``k`` had no images); ``role``: ``"best"`` or ``"worst"`` live neuron of ``layer``."""

    role: str
    layer: str
    index: int
    rank: float
    ea_class: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class RankRun(Record):
    """What :func:`rank_dirs` did and found (``rank.json``; the pipeline's rank stage summary).

    ``layers`` in ranking order; ``extremes``: the conditional EA of the best and the worst live
    neuron of the last layer; ``settings``: the ranking's recorded settings (quadrature, data, ...).
    """

    model_fingerprint: str
    split: str | None
    steps: int
    method: str
    dtype: str
    seed: int | None
    n_images: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    layers: tuple[RankedLayer, ...]
    extremes: tuple[ConditionalEA, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(la.name for la in self.layers)

    @property
    def missing_classes(self) -> tuple[str, ...]:
        """Classes without any image in the ranked split (their per-class values are NaN)."""
        return tuple(c for c, n in zip(self.classes, self.class_counts) if n == 0)

    def layer(self, name: str) -> RankedLayer:
        from etdeploy.errors import AttributionError

        for la in self.layers:
            if la.name == name:
                return la
        raise AttributionError(f"ranking has no layer {name!r}; it has: {', '.join(self.layer_names)}")


def _neuron(la: LayerAttribution, i: int) -> NeuronSummary:
    return NeuronSummary(index=int(i), rank=float(la.rank[i]), activation_mean=float(la.activation_mean[i]),
                         ea=tuple(float(v) for v in la.ea[i]))


def _order(la: LayerAttribution) -> list[int]:
    """Neuron indices, highest rank first (ties: lower index first)."""
    return sorted(range(la.width), key=lambda i: (-float(la.rank[i]), i))


def ranked_layer(la: LayerAttribution, *, extremes: int = EXTREMES, bins: int = HISTOGRAM_BINS) -> RankedLayer:
    """The :class:`RankedLayer` summary of one layer's arrays."""
    order = _order(la)
    bottom = [j for j in reversed(order) if la.live[j]][:extremes]
    counts, edges = np.histogram(np.asarray(la.rank, dtype=np.float64)[np.asarray(la.live, dtype=bool)], bins=bins)
    return RankedLayer(name=la.layer, width=la.width, live=la.n_live, dead=la.width - la.n_live,
                       gap_mean=float(la.gap_mean), gap_max=float(la.gap_max),
                       loss_gap_mean=float(la.loss_gap_mean), loss_gap_max=float(la.loss_gap_max),
                       top=tuple(_neuron(la, i) for i in order[:extremes]),
                       bottom_live=tuple(_neuron(la, i) for i in bottom),
                       histogram=RankHistogram(edges=tuple(float(e) for e in edges),
                                               counts=tuple(int(c) for c in counts)))


def _conditional(la: LayerAttribution, role: str, index: int) -> ConditionalEA:
    rows = np.asarray(la.ea_class)[:, index, :]
    return ConditionalEA(role=role, layer=la.layer, index=int(index), rank=float(la.rank[index]),
                         ea_class=tuple(tuple(float(v) for v in row) for row in rows))


def rank_run(ranking: Ranking) -> RankRun:
    """The :class:`RankRun` summary of a :class:`~etdeploy.attribution.result.Ranking`.

    Layers in the order they were ranked (``settings["layers"]``; a reloaded ranking's dict follows
    its ``summary.json``, whose keys are sorted).
    """
    s = ranking.settings
    names = list(s.get("layers") or ())
    if sorted(names) != sorted(ranking.layers):
        names = list(ranking.layers)
    layers = tuple(ranked_layer(ranking.layers[n]) for n in names)
    last_arrays = ranking.layers[names[-1]]
    last = layers[-1]
    best = last.top[0].index
    worst = last.bottom_live[0].index if last.bottom_live else best
    return RankRun(model_fingerprint=ranking.model_fingerprint, split=s.get("split"), steps=int(s["steps"]),
                   method=str(s["method"]), dtype=str(s.get("dtype", "float32")), seed=s.get("seed"),
                   n_images=int(sum(ranking.class_counts)), classes=tuple(ranking.classes),
                   class_counts=tuple(int(c) for c in ranking.class_counts), layers=layers,
                   extremes=(_conditional(last_arrays, "best", best), _conditional(last_arrays, "worst", worst)),
                   settings=dict(s))


def stratified_subset(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of at most about ``limit`` images keeping each class's share: ``(N,) -> (n,)`` int64.

    Takes the first images of each class, ``max(1, round(limit · N_k / N))`` of class ``k`` (so
    every class present keeps at least one image). ``limit=None`` or ``>= N``: every index.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    quota = {int(c): max(1, round(limit * int(k) / n)) for c, k in zip(classes, counts)}
    taken = {c: 0 for c in quota}
    keep = []
    for i, y in enumerate(labels):
        if taken[int(y)] < quota[int(y)]:
            keep.append(i)
            taken[int(y)] += 1
    return np.asarray(keep, dtype=np.int64)


def rank_dirs(model_dir: str | os.PathLike, dataset, *, split: str = "train", layers: Sequence[str] | None = None,
              steps: int = 32, method: str = "gausslegendre", batch_size: int = 16, dtype: str = "float32",
              max_images: int | None = None, seed: int | None = 0, out: str | os.PathLike, force: bool = False,
              progress: bool = True, split_images: Callable[[str, int], Any] | None = None,
              allow_other_data: bool = False) -> RankRun:
    """Rank the neurons of ``layers`` (default: every dense layer) of a saved model on one split.

    ``dataset``: a :class:`~etdeploy.data.sources.DataSet` with the model's classes;
    ``steps``/``method``: the quadrature (:data:`~etdeploy.vocab.QUADRATURE_METHODS`); ``dtype``:
    compute precision (:data:`~etdeploy.vocab.ATTRIBUTION_DTYPES`); ``max_images``: rank on a
    class-stratified prefix of at most about this many images (:func:`stratified_subset`);
    ``seed``: recorded in the ranking's settings. ``split_images(split, size) -> ImageSplit``: where
    decoded images come from (default: decode ``split`` of ``dataset``; the pipeline passes its
    cache). ``allow_other_data``: use splits other than the model's training data's (warns instead of
    refusing; :func:`~etdeploy.data.check_compatible`). Writes the ranking folder plus ``rank.json``
    into the new folder ``out`` (atomically; an existing non-empty one is refused unless ``force``)
    and returns the :class:`RankRun`.
    """
    from etdeploy.attribution.ranking import rank_model
    from etdeploy.attribution.result import save_ranking
    from etdeploy.data.compat import check_compatible
    from etdeploy.data.images import load_split_images
    from etdeploy.errors import AttributionError
    from etdeploy.fileio import StagedDir, atomic_write_text, canonical_json, refuse_existing_output
    from etdeploy.models import load_model

    out = Path(out)
    refuse_existing_output(out, force=force)
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise AttributionError(f"the image limit of the ranking must be a positive integer, got {max_images!r}")
    model = load_model(model_dir)
    check_compatible(model, dataset, model_dir, split=split, allow_other_data=allow_other_data)
    size = model.spec.input_size
    images = (split_images or (lambda s, px: load_split_images(dataset, s, px, progress=progress)))(split, size)
    keep = stratified_subset(images.labels, max_images)
    extra: dict[str, Any] = {"data": dataset.provenance()}
    if max_images is not None:
        extra["max_images"] = int(max_images)
    ranking = rank_model(model, images.images[keep], images.labels[keep], layers=layers, steps=steps, method=method,
                         batch_size=batch_size, progress=progress, dtype=dtype, split=split, seed=seed,
                         extra_settings=extra)
    run = rank_run(ranking)
    with StagedDir(out, force=force) as tmp:
        save_ranking(ranking, tmp, force=True)  # fills the (empty) staged folder
        atomic_write_text(tmp / RUN_FILE, canonical_json(run.to_dict()))
    return run


def read_rank_run(folder: str | os.PathLike) -> RankRun:
    """The :class:`RankRun` of a ranking folder: its ``rank.json``, or, for a folder written without
    one (by :func:`~etdeploy.attribution.result.save_ranking` alone), computed from the ranking."""
    from etdeploy.attribution.result import load_ranking
    from etdeploy.errors import AttributionError
    from etdeploy.records import read_record

    folder = Path(folder)
    path = folder / RUN_FILE
    if not path.is_file():
        return rank_run(load_ranking(folder))
    return read_record(path, RankRun, what="ranking result", error=AttributionError)


__all__ = ["ConditionalEA", "NeuronSummary", "RankHistogram", "RankRun", "RankedLayer", "rank_dirs", "rank_run",
           "ranked_layer", "read_rank_run", "stratified_subset"]
