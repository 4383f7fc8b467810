"""Acceptance section: each criterion of the run configuration's ``[acceptance]`` with the measured value
and pass/fail, and the overall verdict (also the first card of the summary). docs/method.md §12.4."""

from __future__ import annotations

from etdeploy.report.html import Raw, join, markup, table
from etdeploy.report.record import RunRecord, Section

STATUS_CLASS = {"pass": "ok", "fail": "bad", "not evaluated": "muted"}
VERDICT_TEXT = {"PASS": "every criterion passed", "FAIL": "at least one criterion failed",
                "INCOMPLETE": "no criterion failed, but at least one could not be evaluated",
                "NONE": "the run states no acceptance criteria"}


def status(text: str) -> Raw:
    return markup("<span class='{}'>{}</span>", Raw(STATUS_CLASS.get(text, "muted")), text)


def _origin(record: RunRecord) -> str:
    if record.provenance.config:
        return "the run configuration's [acceptance] section (defaults where a key is not set)"
    return "the defaults of etdeploy.assurance.acceptance (this report was not made from a pipeline run)"


def section(record: RunRecord) -> Section | None:
    a = record.acceptance()
    rows = [[r.criterion, r.requirement, r.measured, status(r.status), r.reason] for r in a.results]
    body = join([markup("<p>Overall verdict: <span class='{}' style='font-size:18px'>{}</span> ({}). Criteria from "
                        "{}.</p>", Raw("ok" if a.verdict == "PASS" else "bad"), a.verdict, VERDICT_TEXT[a.verdict],
                        _origin(record)),
                 table(["criterion", "requirement", "measured", "status", "source / reason"], rows, left=5)])
    return Section("acceptance", "Acceptance criteria", body)


def cards(record: RunRecord) -> list[Raw]:
    a = record.acceptance()
    failed = len(a.failed)
    note = f" {failed} of {len(a.results)} criteria failed" if failed else f" {len(a.results)} criteria"
    return [Raw(f"<div class='card verdict-{a.verdict.lower()}'><span class='muted'>overall verdict</span>"
                f"{markup('<b>{}</b>{}', a.verdict, note)}</div>")]
