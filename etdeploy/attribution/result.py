"""Typed attribution results and their on-disk form (the contract between ranking and pruning).

A ranking directory holds ``summary.json`` (settings, counts, completeness gaps, model fingerprint),
one ``<layer>.csv`` per ranked layer (human-readable table, one row per neuron) and
``attributions.safetensors`` (the exact float64 arrays, reloaded by :func:`load_ranking`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import AttributionError
from etdeploy.fileio import read_json_artefact

RANKING_FORMAT = "etdeploy-ranking"
ARRAYS_FILE = "attributions.safetensors"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class LayerAttribution:
    """Per-neuron statistics of one ranked layer (``m`` neurons, ``n`` outputs, ``K`` classes; n == K).

    - ``live`` ``(m,)`` bool: activation > 0 on at least one ranking image;
    - ``activation_mean`` ``(m,)``;
    - ``rank`` ``(m,)``: ``-E[A^L_i]`` (exactly 0 for dead neurons);
    - ``rank_class`` ``(K, m)``: the same restricted to images of class k (NaN if class k had none);
    - ``ea`` ``(m, n)``: ``E_ij = sum_k E^k_ij P(y=k)``;
    - ``ea_class`` ``(K, m, n)``: ``E^k_ij`` (NaN rows where class k had no images);
    - ``gap_mean`` / ``gap_max``: completeness gap ``|sum_i A_ij - (G_j(h) - G_j(0))|`` statistics;
    - ``loss_gap_mean`` / ``loss_gap_max``: the same for the loss attribution ``A^L`` (NaN if unknown);
    - ``criteria``: ``(m,)`` statistics of the other importance criteria by name (``taylor``, ``apoz``,
      ``weight_l1``, ``weight_l2``, ``ig_vote``: :mod:`etdeploy.attribution.neuron_stats`); empty for a
      ranking written before they existed.
    """

    layer: str
    live: np.ndarray
    activation_mean: np.ndarray
    rank: np.ndarray
    rank_class: np.ndarray
    ea: np.ndarray
    ea_class: np.ndarray
    gap_mean: float
    gap_max: float
    loss_gap_mean: float = float("nan")
    loss_gap_max: float = float("nan")
    criteria: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.rank.shape[0])

    @property
    def n_live(self) -> int:
        return int(self.live.sum())


@dataclass(frozen=True)
class Ranking:
    """Attribution results for several layers of one model on one data split."""

    layers: dict[str, LayerAttribution]
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    model_fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> LayerAttribution:
        if name not in self.layers:
            raise AttributionError(f"ranking has no layer {name!r}; it has: {', '.join(self.layers)}")
        return self.layers[name]


_FIELDS = ("live", "activation_mean", "rank", "rank_class", "ea", "ea_class")
#: Key infix of the criteria statistics in ``attributions.safetensors``: ``<layer>.criteria.<name>``.
CRITERIA_KEY = "criteria"


def ranking_arrays(ranking: Ranking) -> dict[str, np.ndarray]:
    out = {}
    for name, la in ranking.layers.items():
        for f in _FIELDS:
            arr = getattr(la, f)
            out[f"{name}.{f}"] = np.ascontiguousarray(arr.astype(np.uint8 if f == "live" else np.float64))
        for stat, arr in la.criteria.items():
            out[f"{name}.{CRITERIA_KEY}.{stat}"] = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
    return out


def load_ranking(directory: str | os.PathLike) -> Ranking:
    """Reload a ranking written by the attribution stage (validates files, keys and shapes)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    summary_path = directory / SUMMARY_FILE
    arrays_path = directory / ARRAYS_FILE
    for p in (summary_path, arrays_path):
        if not p.is_file():
            raise AttributionError(f"ranking directory has no {p.name}", directory)
    summary = read_json_artefact(summary_path, what="ranking summary", format=RANKING_FORMAT, error=AttributionError)
    try:
        classes = tuple(summary["classes"])
        counts = tuple(int(c) for c in summary["class_counts"])
        fingerprint = str(summary["model_fingerprint"])
        layer_info = summary["layers"]
    except (KeyError, TypeError, ValueError) as exc:
        raise AttributionError(f"ranking summary is not valid: {exc}", summary_path) from exc
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AttributionError(f"ranking arrays are not valid safetensors: {exc}", arrays_path) from exc
    layers = {}
    # summary.json's keys are sorted; the ranking's own layer order (network order) is in its settings
    recorded = (summary.get("settings") or {}).get("layers") or []
    order = [n for n in recorded if n in layer_info] + sorted(n for n in layer_info if n not in recorded)
    for name, info in ((n, layer_info[n]) for n in order):
        try:
            got = {f: arrays[f"{name}.{f}"] for f in _FIELDS}
        except KeyError as exc:
            raise AttributionError(f"ranking arrays lack {exc.args[0]}", arrays_path) from exc
        m = got["rank"].shape[0]
        k = len(classes)
        expected = {"live": (m,), "activation_mean": (m,), "rank_class": (k, m), "ea": (m, k), "ea_class": (k, m, k)}
        for f, shape in expected.items():
            if tuple(got[f].shape) != shape:
                raise AttributionError(f"{name}.{f} has shape {tuple(got[f].shape)}, expected {shape}", arrays_path)
        prefix = f"{name}.{CRITERIA_KEY}."
        criteria = {key[len(prefix):]: arrays[key] for key in sorted(arrays) if key.startswith(prefix)}
        for stat, arr in criteria.items():
            if tuple(arr.shape) != (m,):
                raise AttributionError(f"{prefix}{stat} has shape {tuple(arr.shape)}, expected {(m,)}", arrays_path)
        layers[name] = LayerAttribution(layer=name, live=got["live"].astype(bool),
                                        activation_mean=got["activation_mean"], rank=got["rank"],
                                        rank_class=got["rank_class"], ea=got["ea"], ea_class=got["ea_class"],
                                        gap_mean=float(info.get("gap_mean", float("nan"))),
                                        gap_max=float(info.get("gap_max", float("nan"))),
                                        loss_gap_mean=_float_or_nan(info.get("loss_gap_mean")),
                                        loss_gap_max=_float_or_nan(info.get("loss_gap_max")), criteria=criteria)
    return Ranking(layers=layers, classes=classes, class_counts=counts, model_fingerprint=fingerprint,
                   settings=dict(summary.get("settings") or {}))


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _cell(value: float) -> str:
    """One CSV float cell: shortest round-trip repr; NaN (a missing class) as an empty cell."""
    value = float(value)
    if math.isnan(value):
        return ""
    return repr(value + 0.0)  # + 0.0 turns -0.0 into 0.0


def layer_csv_columns(num_classes: int) -> list[str]:
    """Columns of ``<layer>.csv``: layer, index, live, activation_mean, rank, rank_class_<k>, ea_<j>, ea_<k>_<j>."""
    k = range(num_classes)
    return (["layer", "index", "live", "activation_mean", "rank"] + [f"rank_class_{c}" for c in k]
            + [f"ea_{j}" for j in k] + [f"ea_{c}_{j}" for c in k for j in k])


def layer_csv_text(la: LayerAttribution, num_classes: int) -> str:
    """The per-neuron table of one layer as CSV text (``\\n`` line ends, byte-reproducible)."""
    lines = [",".join(layer_csv_columns(num_classes))]
    n = la.ea.shape[1]
    for i in range(la.width):
        cells = [la.layer, str(i), "1" if bool(la.live[i]) else "0", _cell(la.activation_mean[i]), _cell(la.rank[i])]
        cells += [_cell(la.rank_class[c, i]) for c in range(num_classes)]
        cells += [_cell(la.ea[i, j]) for j in range(n)]
        cells += [_cell(la.ea_class[c, i, j]) for c in range(num_classes) for j in range(n)]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def ranking_summary(ranking: Ranking) -> dict[str, Any]:
    """The ``summary.json`` content: classes, counts, fingerprint, settings and per-layer statistics."""
    layers = {}
    for name, la in ranking.layers.items():
        layers[name] = {"width": la.width, "live": la.n_live, "dead": la.width - la.n_live,
                        "gap_mean": la.gap_mean, "gap_max": la.gap_max,
                        "loss_gap_mean": la.loss_gap_mean, "loss_gap_max": la.loss_gap_max,
                        "csv": f"{name}.csv"}
    missing = [c for c, count in zip(ranking.classes, ranking.class_counts) if count == 0]
    return {"format": RANKING_FORMAT, "format_version": 1, "classes": list(ranking.classes),
            "class_counts": list(ranking.class_counts), "missing_classes": missing,
            "n_images": int(sum(ranking.class_counts)), "model_fingerprint": ranking.model_fingerprint,
            "settings": dict(ranking.settings), "seed": ranking.settings.get("seed"), "layers": layers,
            "arrays": ARRAYS_FILE}


def save_ranking(ranking: Ranking, directory: str | os.PathLike, force: bool = False) -> Path:
    """Write ``summary.json``, one ``<layer>.csv`` per layer and ``attributions.safetensors`` into a new
    directory (atomically; an existing non-empty one is refused unless ``force``). Returns the directory."""
    from safetensors.numpy import save

    from etdeploy.fileio import StagedDir, atomic_write_bytes, atomic_write_text, canonical_json

    directory = Path(directory)
    k = len(ranking.classes)
    with StagedDir(directory, force=force) as tmp:
        for name, la in ranking.layers.items():
            atomic_write_text(tmp / f"{name}.csv", layer_csv_text(la, k))
        atomic_write_bytes(tmp / ARRAYS_FILE, save(ranking_arrays(ranking)))
        atomic_write_text(tmp / SUMMARY_FILE, canonical_json(ranking_summary(ranking)))
    return directory
