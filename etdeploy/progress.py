"""Progress bars (tqdm on stderr), off when asked or when stderr is not a terminal in CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(requested: bool = True) -> bool:
    if not requested:
        return False
    if os.environ.get("CI") and not sys.stderr.isatty():
        return False
    return True


def progress_bar(iterable: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool = True,
                 unit: str = "it", leave: bool = False) -> Iterable[T]:
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
