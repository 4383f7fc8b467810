"""The Pareto-front plot of a compress run (matplotlib, Agg) as PNG bytes: accuracy with its Wilson 95 %
interval against flash and against MACC, budgets as lines, the chosen model marked."""

from __future__ import annotations

import io


def front_png(run) -> bytes:
    """``run``: a :class:`~etdeploy.compress.search.CompressRun`. Deterministic bytes (no metadata)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    costed = [c for c in run.candidates if c.cost is not None]
    for ax, attr, budget, xlabel in ((axes[0], "flash_bytes", run.target.flash_bytes, "flash (weights), MB"),
                                     (axes[1], "macc", None, "million MACC per image")):
        def x(c, attr=attr):
            return getattr(c.cost, attr) / 1e6

        for precision, marker in (("fp32", "o"), ("int8", "s")):
            pts = [c for c in costed if c.precision == precision]
            if pts:
                ax.scatter([x(c) for c in pts], [c.accuracy for c in pts], s=10, marker=marker,
                           alpha=0.35, color="tab:gray", label=f"candidates ({precision})")
        front = sorted(run.front, key=lambda c: getattr(c.cost, attr))
        if front:
            xs = [x(c) for c in front]
            ys = [c.accuracy for c in front]
            err = [[y - c.ci_low for y, c in zip(ys, front)], [c.ci_high - y for y, c in zip(ys, front)]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, lw=1, capsize=2, color="tab:blue",
                        label="Pareto front (Wilson 95 %)")
        ax.scatter([x(run.chosen)], [run.chosen.accuracy], s=120, marker="*", color="tab:red",
                   zorder=5, label=f"chosen: {run.chosen.label}")
        if run.original.cost is not None:
            ax.scatter([x(run.original)], [run.original.accuracy], s=50, marker="D",
                       color="black", zorder=4, label="unpruned")
        if budget:
            ax.axvline(budget / 1e6, color="tab:red", ls="--", lw=1, label=f"{run.target.id} flash budget")
        if run.min_accuracy is not None:
            ax.axhline(run.min_accuracy, color="tab:green", ls=":", lw=1, label="min accuracy")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"accuracy ({run.split})")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", ncol=3, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(f"compress to {run.target.name} ({run.target.id})", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


__all__ = ["front_png"]
