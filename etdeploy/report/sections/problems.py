"""Problem reports: every warning, refusal, skipped check, flat map, leakage warning, parity near-miss and
failed acceptance criterion of the run in one table (:mod:`etdeploy.assurance.problems`)."""

from __future__ import annotations

from etdeploy.assurance.problems import NEAR_MISS_FRACTION
from etdeploy.report.html import Raw, join, markup, table
from etdeploy.report.record import RunRecord, Section

SEVERITY_CLASS = {"fail": "bad", "warning": "bad", "note": "muted"}


def section(record: RunRecord) -> Section | None:
    problems = record.problems()
    counts = {s: sum(1 for p in problems if p.severity == s) for s in ("fail", "warning", "note")}
    intro = markup("<p>{} failure(s), {} warning(s), {} note(s). A parity near-miss is a check that passed with a "
                   "max |Δ logit| above {:.0%} of its tolerance.</p>", counts["fail"], counts["warning"],
                   counts["note"], NEAR_MISS_FRACTION)
    if not problems:
        return Section("problems", "Problem reports", join([intro, Raw("<p>No problem was reported.</p>")]))
    rows = [[markup("<span class='{}'>{}</span>", Raw(SEVERITY_CLASS[p.severity]), p.severity), p.stage, p.kind,
             p.message] for p in problems]
    return Section("problems", "Problem reports", join([intro, table(["severity", "stage", "kind", "message"], rows,
                                                                     left=4)]))
