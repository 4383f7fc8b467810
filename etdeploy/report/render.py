"""``render(record) -> files``: the V&V report as a pure function of a :class:`RunRecord`.

Files: ``report.html`` (self-contained: inline CSS, images as data URIs, no network),
``report.json`` (every figure: the stage results and the provenance) and ``tables/*.csv`` (every
CSV asset of the record). Same record, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_bytes, canonical_json
from etdeploy.report.html import Raw, card, join, markup, page, table
from etdeploy.report.record import RunRecord, Section
from etdeploy.report.sections import SECTION_MODULES
from etdeploy.report.sections import data as data_section
from etdeploy.report.sections import fit as fit_section
from etdeploy.report.sections import parity as parity_section
from etdeploy.report.sections import prune as prune_section
from etdeploy.report.sections import train as train_section

REPORT_FORMAT = "etdeploy-report"
# summary cards: model first, then what pruning did, then the verdicts, then the data
CARD_MODULES = (train_section, prune_section, parity_section, fit_section, data_section)


def report_document(record: RunRecord) -> dict[str, Any]:
    """``report.json``: name, every stage result, provenance."""
    return {"format": REPORT_FORMAT, "format_version": 1, "name": record.name, "stages": dict(record.stages),
            "provenance": record.provenance.to_dict()}


def _provenance(record: RunRecord) -> Section:
    p = record.provenance
    rows = [[k, v] for k, v in p.versions.items()]
    arts = [[k, markup("<code>{}</code>", v)] for k, v in sorted(p.artefacts.items())]
    command = " ".join(p.command) or "(Python API)"
    threads = markup(", torch threads {}", p.torch_threads) if p.torch_threads is not None else ""
    body = join([markup("<p>config sha256 <code>{}</code>, seed {}{}, platform {} {}; command: <code>{}</code></p>",
                        p.config_sha256, p.seed, threads, p.platform.get("system", "?"),
                        p.platform.get("machine", "?"), command),
                 table(["package", "version"], rows),
                 markup("<details><summary>SHA-256 of {} artefacts</summary>{}</details>", len(arts),
                        table(["artefact", "sha256"], arts)),
                 markup("<details><summary>configuration</summary><pre>{}</pre></details>",
                        json.dumps(p.config, indent=2, sort_keys=True))])
    return Section("provenance", "Provenance", body)


def render_html(record: RunRecord) -> str:
    cards = [c for module in CARD_MODULES if hasattr(module, "cards") for c in module.cards(record)]
    sections = [Section("summary", "Summary", markup("<div class='cards'>{}</div>", join(cards)))]
    sections += [s for s in (module.section(record) for module in SECTION_MODULES) if s is not None]
    sections.append(_provenance(record))
    train = record.stages.get("train", {})
    subtitle = f"model {train.get('arch', '?')} on {record.stages.get('data', {}).get('name', '?')} data"
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
