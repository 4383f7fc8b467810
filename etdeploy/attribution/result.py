"""Typed attribution results and their on-disk form (the contract between ranking and pruning).

A ranking directory holds ``summary.json`` (settings, counts, completeness gaps, model fingerprint),
one ``<layer>.csv`` per ranked layer (human-readable table, one row per neuron) and
``attributions.safetensors`` (the exact float64 arrays, reloaded by :func:`load_ranking`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import AttributionError

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
    - ``gap_mean`` / ``gap_max``: completeness gap ``|sum_i A_ij - (G_j(h) - G_j(0))|`` statistics.
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


def ranking_arrays(ranking: Ranking) -> dict[str, np.ndarray]:
    out = {}
    for name, la in ranking.layers.items():
        for f in _FIELDS:
            arr = getattr(la, f)
            out[f"{name}.{f}"] = np.ascontiguousarray(arr.astype(np.uint8 if f == "live" else np.float64))
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
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        classes = tuple(summary["classes"])
        counts = tuple(int(c) for c in summary["class_counts"])
        fingerprint = str(summary["model_fingerprint"])
        layer_info = summary["layers"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise AttributionError(f"ranking summary is not valid: {exc}", summary_path) from exc
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AttributionError(f"ranking arrays are not valid safetensors: {exc}", arrays_path) from exc
    layers = {}
    for name, info in layer_info.items():
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
        layers[name] = LayerAttribution(layer=name, live=got["live"].astype(bool),
                                        activation_mean=got["activation_mean"], rank=got["rank"],
                                        rank_class=got["rank_class"], ea=got["ea"], ea_class=got["ea_class"],
                                        gap_mean=float(info.get("gap_mean", float("nan"))),
                                        gap_max=float(info.get("gap_max", float("nan"))))
    return Ranking(layers=layers, classes=classes, class_counts=counts, model_fingerprint=fingerprint,
                   settings=dict(summary.get("settings") or {}))
