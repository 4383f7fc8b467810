"""Report plots (matplotlib, Agg backend) returned as PNG bytes."""

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
    if loss:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in loss], [v for _, v in loss], color="tab:orange", lw=1, label="train loss")
        ax2.set_ylabel("train loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def rank_histograms(layers: tuple[RankedLayer, ...]) -> bytes:
    """Histogram of the ranks of the live neurons of each layer (precomputed bins, log counts)."""
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 2.8), squeeze=False)
    for ax, la in zip(axes[0], layers):
        h = la.histogram
        ax.hist(h.edges[:-1], bins=list(h.edges), weights=list(h.counts), color="tab:blue")
        ax.set_title(f"{la.name}: {la.live} live neurons")
        ax.set_xlabel("rank = -E[attribution to loss]")
        ax.set_yscale("log")
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
