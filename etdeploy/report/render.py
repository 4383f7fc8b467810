"""``render(record) -> files``: the V&V report as a pure function of a :class:`RunRecord`.

Files: ``report.html`` (self-contained: inline CSS, images as data URIs, no network; printable, one
section per page), ``report.json`` (every figure: the stage results, the provenance and the assurance
views: acceptance verdicts, traceability matrix, problem reports) and ``tables/*.csv`` (every CSV asset
of the record). Same record, same bytes (the record's ``stamp``, code version and run date, appears in the
HTML only). ``report.pdf`` is rendered from ``report.html`` by :mod:`etdeploy.report.pdf`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_bytes, canonical_json
from etdeploy.report.html import Raw, card, join, markup, page
from etdeploy.report.record import RunRecord, Section
from etdeploy.report.sections import SECTION_MODULES
from etdeploy.report.sections import acceptance as acceptance_section
from etdeploy.report.sections import data as data_section
from etdeploy.report.sections import evaluate as evaluate_section
from etdeploy.report.sections import fit as fit_section
from etdeploy.report.sections import parity as parity_section
from etdeploy.report.sections import prune as prune_section
from etdeploy.report.sections import train as train_section

REPORT_FORMAT = "etdeploy-report"
# summary cards: the overall verdict, the model, then what pruning did, then the verdicts, then the data
CARD_MODULES = (acceptance_section, train_section, prune_section, parity_section, evaluate_section, fit_section, data_section)


def report_document(record: RunRecord) -> dict[str, Any]:
    """``report.json``: name, every stage result, provenance, and the assurance views (acceptance criteria and
    verdicts, traceability matrix, problem reports). The record's ``stamp`` is left out (not reproducible)."""
    assurance = {"acceptance": record.acceptance().to_dict(), "traceability": record.traceability().to_dict(),
                 "problems": [p.to_dict() for p in record.problems()]}
    return {"format": REPORT_FORMAT, "format_version": 1, "name": record.name, "stages": dict(record.stages),
            "provenance": record.provenance.to_dict(), "assurance": assurance}


def render_html(record: RunRecord) -> str:
    cards = [c for module in CARD_MODULES if hasattr(module, "cards") for c in module.cards(record)]
    sections = [Section("summary", "Summary", markup("<div class='cards'>{}</div>", join(cards)))]
    sections += [s for s in (module.section(record) for module in SECTION_MODULES) if s is not None]
    train = record.stages.get("train", {})
    subtitle = f"model {train.get('arch', '?')} on {record.stages.get('data', {}).get('name', '?')} data"
    if record.stamp:
        subtitle += (f" · code version {record.stamp.get('code_version', 'n/a')}"
                     f" · run date {record.stamp.get('run_date', 'n/a')}")
    return page(f"etdeploy V&V report: {record.name}", subtitle,
                [(s.id, s.title, s.body if isinstance(s.body, Raw) else Raw(s.body)) for s in sections])


def render(record: RunRecord) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every report file."""
    files = {"report.json": canonical_json(report_document(record)).encode(),
             "report.html": render_html(record).encode()}
    for key in sorted(record.assets):
        if key.endswith(".csv"):
            files[f"tables/{key.replace('/', '__', 1).replace('/', '__')}"] = record.assets[key]
    return files


def write_report(record: RunRecord, out_dir: str | Path) -> dict[str, str]:
    """Render ``record`` into ``out_dir`` (files written atomically; existing files are refused)."""
    from etdeploy.fileio import sha256_bytes

    out_dir = Path(out_dir)
    digests = {}
    for rel, data in render(record).items():
        atomic_write_bytes(out_dir / rel, data)
        digests[rel] = sha256_bytes(data)
    return digests


__all__ = ["CARD_MODULES", "Raw", "card", "render", "render_html", "report_document", "write_report"]
