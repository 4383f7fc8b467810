"""Which images of a data set an archive run covers: one split, optionally some classes, the first N."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from etdeploy.errors import DataError

__all__ = ["ArchiveImage", "select_images"]


@dataclass(frozen=True)
class ArchiveImage:
    """One image of an archive run: ``path`` relative to the data root (POSIX; recorded), ``file`` (read),
    its ``label`` index and ``sha256``."""

    path: str
    file: Path
    label: int
    sha256: str


def select_images(dataset, split: str, *, limit: int | None = None,
                  classes: Sequence[str] = ()) -> list[ArchiveImage]:
    """The images of ``split`` in the data set's order, kept when their class is in ``classes`` (names; empty:
    all), at most ``limit`` of them. Unknown class names and an empty selection raise :class:`DataError`."""
    from etdeploy.fileio import sha256_file

    unknown = [c for c in classes if c not in dataset.classes]
    if unknown:
        raise DataError(f"unknown class(es) {', '.join(map(repr, unknown))}; the data set has "
                        f"{', '.join(dataset.classes)}", dataset.root)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    wanted = {dataset.classes.index(c) for c in classes}
    samples = [s for s in dataset.split(split) if not wanted or s.label in wanted]
    samples = samples[:limit] if limit is not None else samples
    if not samples:
        raise DataError(f"no images in split {split!r}" + (f" of class(es) {', '.join(classes)}" if classes else ""),
                        dataset.root)
    root = Path(dataset.root)
    return [ArchiveImage(path=s.path.relative_to(root).as_posix(), file=s.path, label=int(s.label),
                         sha256=sha256_file(s.path)) for s in samples]
