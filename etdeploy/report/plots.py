"""Report plots (matplotlib, Agg backend) returned as PNG bytes. Every plot has a legend (or, for maps, a
colour bar)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from etdeploy.report.html import figure_png

if TYPE_CHECKING:
    from etdeploy.attribution.rank_dirs import ConditionalEA, RankedLayer


def training_curve(history: list[dict[str, Any]], title: str = "training") -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 3))
    epochs = [h["epoch"] for h in history]
    val = [h["val_accuracy"] for h in history]
    ax.plot(epochs, val, marker="o", ms=3, label="validation accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    loss = [(h["epoch"], h["train_loss"]) for h in history if h.get("train_loss") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if loss:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in loss], [v for _, v in loss], color="tab:orange", lw=1, label="train loss")
        ax2.set_ylabel("train loss")
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def rank_histograms(layers: tuple[RankedLayer, ...]) -> bytes:
    """Histogram of the ranks of the live neurons of each layer (precomputed bins, log counts)."""
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 2.8), squeeze=False)
    for ax, la in zip(axes[0], layers):
        h = la.histogram
        ax.hist(h.edges[:-1], bins=list(h.edges), weights=list(h.counts), color="tab:blue",
                label=f"live neurons of {la.name}")
        ax.set_title(f"{la.name}: {la.live} live neurons")
        ax.set_xlabel("rank = -E[attribution to loss]")
        ax.set_ylabel("neurons (log)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def conditional_ea_bars(c: ConditionalEA, classes: tuple[str, ...]) -> bytes:
    """``E^k_ij`` of one neuron: one group per true class k, one bar per output j."""
    import numpy as np

    ea = np.asarray(c.ea_class, dtype=np.float64)  # (K, n)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(6, 2.8))
    width = 0.8 / k
    for j in range(ea.shape[1]):
        ax.bar(np.arange(k) + j * width, np.nan_to_num(ea[:, j]), width, label=classes[j])
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(k) + 0.4 - width / 2)
    ax.set_xticklabels(classes, fontsize=7, rotation=15)
    ax.set_xlabel("images of true class k")
    ax.set_ylabel("E^k attribution")
    ax.set_title(f"{c.layer} neuron {c.index} ({c.role} live neuron)")
    ax.legend(fontsize=6, ncol=3, title="to output j", title_fontsize=6)
    return figure_png(fig)


def sweep_curves(curves: dict[str, Any], width: int, layer: str, names: list[str], title: str) -> bytes:
    """Accuracy vs neurons masked, one line per schedule."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name in names:
        c = curves[name]
        ax.plot(c["counts"], c["accuracy"], marker=".", label=name)
    ax.set_xlabel(f"neurons of {layer} masked (of {width})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return figure_png(fig)


def class_ea_curves(curve: dict[str, Any], classes: list[str], width: int, layer: str, title: str) -> bytes:
    """Per-class accuracy while pruning by one class's EA (paper Fig. 11)."""
    import numpy as np

    per = np.asarray([[np.nan if v is None else v for v in row] for row in curve["per_class_accuracy"]], dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    for k, name in enumerate(classes):
        ax.plot(curve["counts"], per[:, k], label=name, lw=1.2)
    ax.set_xlabel(f"{layer} neurons masked (of {width})")
    ax.set_ylabel("class accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def shared_scale_maps(maps: list[tuple[str, Any]], label: str, columns: int = 5) -> bytes:
    """Every occlusion map (``(title, 2-D array)``) on one colour scale (the min and max over all maps), with
    one colour bar: maps can be compared by colour across images and classes."""
    import numpy as np

    arrays = [np.asarray(a, dtype=np.float64) for _, a in maps]
    lo = min(float(np.nanmin(a)) for a in arrays)
    hi = max(float(np.nanmax(a)) for a in arrays)
    if hi <= lo:
        hi = lo + 1e-12
    cols = max(1, min(columns, len(maps)))
    rows = (len(maps) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 0.8, 2.2 * rows), squeeze=False)
    shown = None
    for ax, (title, a) in zip(axes.flat, zip([t for t, _ in maps], arrays)):
        shown = ax.imshow(a, cmap="jet", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=7, parse_math=False)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(maps):]:
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label=label)
    return figure_png(fig)
