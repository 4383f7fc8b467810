"""Flight-processor fit section: memory, MACs, latency bound and verdict per target, one column per model
(the pipeline's ``original`` and ``sliced``)."""

from __future__ import annotations

from etdeploy.report.html import Raw, card, join, markup, table, verdict
from etdeploy.report.record import RunRecord, Section
from etdeploy.targets import FitRun

FIGURES = ("parameters", "total_macc", "weights_bytes_fp32", "weights_bytes_int8", "peak_activation_bytes")


def why_not(v) -> list[str]:
    """Why a model does not fit a target: the detail of every check that failed (weights as stored)."""
    return [f"{c.resource}: {c.detail}" for c in v.checks if c.status == "does not fit"]


def _verdict_cell(v) -> Raw:
    if v.fits:
        return verdict(True, "fits", "does not fit")
    reasons = why_not(v) or ["a check failed"]
    return join([verdict(False, "fits", "does not fit"),
                 markup("<br><small class='muted'>{}</small>", "; ".join(reasons))])


def section(record: RunRecord) -> Section | None:
    f = record.stage("fit", FitRun)
    if f is None or not f.models:
        return None
    names = list(f.models)
    last = names[-1]  # the pruned model in a pipeline run
    rows = []
    for tid, target in f.targets.items():
        verdicts = [f.models[n].verdicts[tid] for n in names]
        ram = verdicts[-1].check("ram")
        rows.append([f"{target.name} ({tid})", target.confidence, *(_verdict_cell(v) for v in verdicts),
                     "" if ram is None else ram.detail, *(v.latency_s for v in verdicts),
                     ", ".join(verdicts[-1].unsupported_ops) or "none"])
    comp = [[k, *(getattr(f.models[n].analysis, k) for n in names)] for k in FIGURES]
    body = join([table(["figure", *names], comp),
                 Raw("<p>Latency estimates are MACC / sustained MAC/s (bounds; memory traffic and non-MAC ops "
                     "ignored). Pruning the dense layers cuts memory far more than compute: the convolutions "
                     "dominate MACs. Profiles tagged <i>approx</i> hold recalled figures, not datasheet values.</p>"),
                 table(["target", "confidence", *names, f"{last} RAM check", *(f"latency s ({n})" for n in names),
                        "unsupported ops"], rows)])
    return Section("fit", "Flight-processor fit", body)


def cards(record: RunRecord) -> list[Raw]:
    f = record.stage("fit", FitRun)
    if f is None or not f.models:
        return []
    n = len(f.ids)
    if {"original", "sliced"} <= set(f.models):
        return [card("targets the pruned model fits", f"{f.fit_count('sliced')}/{n}",
                     f" (unpruned {f.fit_count('original')})")]
    return [card(f"targets {name} fits", f"{f.fit_count(name)}/{n}") for name in f.models]
