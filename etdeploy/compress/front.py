"""Pareto front of candidates: most accurate for the least flash, RAM and MACC (docs/method.md §13). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def objectives(candidate: Any) -> tuple[float, float, float, float]:
    """``(-accuracy, flash, RAM, MACC)``: every entry is to be minimised. Latency on one target is MACC
    over a constant, so MACC stands for it."""
    c = candidate.cost
    return (-candidate.accuracy, float(c.flash_bytes), float(c.ram_bytes), float(c.macc))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(candidates: Sequence[Any]) -> list[Any]:
    """The non-dominated candidates (those with a cost), most accurate first, then least flash; of
    candidates with equal objectives the first one given is kept."""
    costed = [c for c in candidates if c.cost is not None]
    points = [objectives(c) for c in costed]
    front, seen = [], set()
    for i, (cand, p) in enumerate(zip(costed, points)):
        if p in seen or any(dominates(q, p) for j, q in enumerate(points) if j != i):
            continue
        seen.add(p)
        front.append(cand)
    return sorted(front, key=objectives)


__all__ = ["dominates", "objectives", "pareto_front"]
