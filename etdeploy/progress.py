"""Progress bars (tqdm on stderr): on a terminal only, unless asked.

Whether bars are drawn, in order of precedence:

1. a caller passed ``enabled=False`` (``--no-progress`` of a command, ``progress=False`` in Python): off;
2. the environment variable ``ETDEPLOY_PROGRESS``: ``0``/``false``/``no``/``off`` turns every bar off,
   ``1``/``true``/``yes``/``on`` turns them on even when stderr is not a terminal (``etdeploy
   --no-progress ...`` sets it to ``0`` for the whole command);
3. otherwise bars are drawn only when stderr is a terminal, so log files and CI output get no
   megabytes of carriage-return lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "ETDEPLOY_PROGRESS"
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def progress_enabled(requested: bool = True) -> bool:
    if not requested:
        return False
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        return True
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool = True,
                 unit: str = "it", leave: bool = False) -> Iterable[T]:
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
