"""Report sections, one module per pipeline stage, in report order.

A section module has ``section(record) -> Section | None`` (``None`` when the run lacks its stage)
and may have ``cards(record) -> list[Raw]`` for the summary at the top. Adding a stage's section
is one module and one line here.
"""

from __future__ import annotations

from etdeploy.report.sections import data, explain, fit, package, parity, prune, rank, sweep, train

SECTION_MODULES = (data, train, rank, sweep, prune, parity, explain, fit, package)

__all__ = ["SECTION_MODULES"]
