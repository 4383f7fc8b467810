"""The V&V report: ``render(RunRecord) -> files`` (HTML, JSON twin, CSV tables). Imports no pipeline."""

from etdeploy.report.record import Provenance, RunRecord, Section
from etdeploy.report.render import render, report_document, write_report

__all__ = ["Provenance", "RunRecord", "Section", "render", "report_document", "write_report"]
