"""Report plots (matplotlib, Agg backend) returned as PNG bytes."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from etdeploy.report.html import figure_png  # noqa: E402


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
