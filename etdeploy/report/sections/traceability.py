"""Traceability matrix: objective -> what etdeploy did -> evidence (stage, file, SHA-256, figure) -> verdict
(:mod:`etdeploy.assurance.traceability`), with the objectives' source and the NASA standards as context."""

from __future__ import annotations

from etdeploy.assurance.objectives import EASA_SOURCE, objective
from etdeploy.report.html import Raw, join, markup, table
from etdeploy.report.record import RunRecord, Section

VERDICT_CLASS = {"met": "ok", "partly": "muted", "not addressed": "bad"}


def _evidence(row) -> Raw:
    items = [markup("<li>{}: {}{}</li>", e.stage, e.figure,
                    markup(" (<code>{}</code>{})", e.file, markup(", sha256 <code>{}…</code>", e.sha256[:16])
                           if e.sha256 else "") if e.file else "")
             for e in row.evidence]
    return join([Raw("<ul style='margin:0;padding-left:16px'>"), join(items), Raw("</ul>")]) if items else Raw("none")


def section(record: RunRecord) -> Section | None:
    t = record.traceability()
    rows = [[markup("<b>{}</b><br>{}", r.objective, r.title),
             markup("<span class='muted'>{}</span>", objective(r.objective).statement), r.done, _evidence(r),
             markup("<span class='{}'>{}</span>", Raw(VERDICT_CLASS[r.verdict]), r.verdict), r.reason]
            for r in t.rows]
    refs = [[ref.id, ref.title, ref.relevance] for ref in t.references]
    body = join([markup("<p>{} objectives: {} met, {} partly, {} not addressed. Objective statements are "
                        "<b>paraphrased</b> from {}; check them against the published text. A verdict is about the "
                        "evidence this run holds; whether its results are acceptable is the acceptance verdict.</p>",
                        len(t.rows), t.count("met"), t.count("partly"), t.count("not addressed"), EASA_SOURCE),
                 table(["objective", "asks (paraphrased)", "what etdeploy did", "evidence", "verdict", "reason"],
                       rows, left=6),
                 Raw("<h3>Read in the context of</h3>"), table(["standard", "title", "relevance"], refs, left=3)])
    return Section("traceability", "Objectives traceability", body)
