"""Data section: classes and split sizes, warnings, citation."""

from __future__ import annotations

from etdeploy.report.html import Raw, card, join, markup, table
from etdeploy.report.record import RunRecord, Section


def section(record: RunRecord) -> Section | None:
    d = record.stages.get("data")
    if d is None:
        return None
    rows = [[c, d["counts"]["train"][k], d["counts"]["val"][k], d["counts"]["test"][k]]
            for k, c in enumerate(d["classes"])]
    notes = join(markup("<p class='bad'>warning: {}</p>", w) for w in d["warnings"])
    body = join([markup("<p>source <code>{}</code>; every image's SHA-256 is in <code>data/manifest.csv</code> "
                        "(sha256 {}…).</p>", d["source"], d["manifest_sha256"][:16]),
                 table(["class", "train", "val", "test"], rows), notes,
                 markup("<p class='muted'>Cite: {}</p>", d["citation"]) if d.get("citation") else Raw("")])
    return Section("data", "Data", body)


def cards(record: RunRecord) -> list[Raw]:
    d = record.stages.get("data")
    if d is None:
        return []
    return [card("data", d["name"], f" {sum(sum(v) for v in d['counts'].values())} images")]
