"""The V&V report: self-contained HTML, a JSON twin with every figure, and CSV tables."""

from etdeploy.report.build import build_report

__all__ = ["build_report"]
