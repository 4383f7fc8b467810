"""Report sections, one module per pipeline stage, in report order.

A section module has ``section(record) -> Section | None`` (``None`` when the run lacks its stage)
and may have ``cards(record) -> list[Raw]`` for the summary at the top. Adding a stage's section
is one module and one line here.
"""

from __future__ import annotations

from etdeploy.report.sections import (
    acceptance,
    compress,
    configuration,
    data,
    evaluate,
    explain,
    fit,
    package,
    parity,
    problems,
    prune,
    rank,
    robustness,
    stability,
    sweep,
    traceability,
    train,
)

# the verdict and the problems first, the stages in run order, then the matrix and the configuration index
SECTION_MODULES = (acceptance, problems,
                   data, train, rank, sweep, prune, compress, parity, evaluate, explain, stability, robustness, fit, package,
                   traceability, configuration)

__all__ = ["SECTION_MODULES"]
