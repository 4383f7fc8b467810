"""Ranking section: live/dead neurons per layer, rank histograms, best and worst neurons (from ``RankRun``)."""

from __future__ import annotations

from etdeploy.attribution.rank_dirs import ConditionalEA, RankedLayer, RankRun
from etdeploy.report import plots
from etdeploy.report.html import Raw, figure_png, img, join, markup, table
from etdeploy.report.record import RunRecord, Section

SHOWN = 5  # best / worst neurons listed per layer


def rank_histograms(layers: tuple[RankedLayer, ...]) -> bytes:
    """Histogram of the ranks of the live neurons of each layer (precomputed bins, log counts)."""
    plt = plots.plt
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
    plt = plots.plt
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


def section(record: RunRecord) -> Section | None:
    r = record.stage("rank", RankRun)
    if r is None:
        return None
    rows = [[la.name, la.width, la.live, la.dead, la.gap_mean, la.gap_max] for la in r.layers]
    parts = [markup("<p>Integrated gradients at the input of each dense layer, {} {} steps, on {} {} images. "
                    "Rank = −E[attribution to the loss] (higher = more useful); dead neurons (never active) have "
                    "rank exactly 0 and are pruned first. Full per-neuron tables: "
                    "<code>rank/ranking/&lt;layer&gt;.csv</code>.</p>", r.steps, r.method, r.n_images, r.split),
             table(["layer", "neurons", "live", "dead", "completeness gap mean", "gap max"], rows),
             img(rank_histograms(r.layers), "ranks")]
    header = ["neuron", "rank", "activation mean"] + [f"E[A→{c}]" for c in r.classes]
    for la in r.layers:
        def rows_of(neurons):
            return [[n.index, n.rank, n.activation_mean, *n.ea] for n in neurons[:SHOWN]]

        parts += [markup("<h3>{}: top {} neurons</h3>", la.name, SHOWN), table(header, rows_of(la.top)),
                  markup("<h3>{}: bottom {} live neurons</h3>", la.name, SHOWN), table(header, rows_of(la.bottom_live))]
    if r.extremes:
        parts += [markup("<h3>Conditional expected attributions of the best and worst live neuron of {}</h3>",
                         r.extremes[0].layer),
                  Raw("<div class='grid'>"),
                  *(img(conditional_ea_bars(c, r.classes), f"EA {c.role}") for c in r.extremes),
                  Raw("</div>")]
    return Section("ranking", "Neuron attribution and ranking", join(parts))
