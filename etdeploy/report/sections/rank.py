"""Ranking section: live/dead neurons per layer, rank histograms, best and worst neurons (from ``RankRun``)."""

from __future__ import annotations

from etdeploy.attribution.rank_dirs import RankRun
from etdeploy.report import plots
from etdeploy.report.html import Raw, img, join, markup, table
from etdeploy.report.record import RunRecord, Section

SHOWN = 5  # best / worst neurons listed per layer


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
             img(plots.rank_histograms(r.layers), "ranks")]
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
                  *(img(plots.conditional_ea_bars(c, r.classes), f"EA {c.role}") for c in r.extremes),
                  Raw("</div>")]
    return Section("ranking", "Neuron attribution and ranking", join(parts))
