"""Atomic, never-overwriting file output and hashing.

Every artefact is written to a temporary file in the destination folder and renamed into place, so
an interrupted write leaves either the complete file or nothing. Existing files are never replaced
unless the caller says so explicitly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from etdeploy.errors import OutputExistsError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temp file + rename; refuse to replace unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("refusing to overwrite an existing file", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artefacts are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def _json_default(value: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        np = None
    if np is not None:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_floats(value: Any) -> Any:
    """Replace NaN/Inf (invalid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_floats(v) for v in value]
    return value


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, fixed indentation, NaN/Inf as null, trailing newline."""
    obj = json.loads(json.dumps(obj, default=_json_default, allow_nan=True))
    return json.dumps(_clean_floats(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any, *, overwrite: bool = False) -> Path:
    return atomic_write_text(path, canonical_json(obj), overwrite=overwrite)


def refuse_existing_output(path: str | os.PathLike, *, force: bool = False) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and is not an empty folder (unless ``force``).

    Called before expensive work so that a run into an existing output fails at once.
    """
    path = Path(path)
    if not force and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError("output directory exists and is not empty; choose a new one or pass --force", path)


def prepare_output_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Create a fresh output directory.

    An existing non-empty directory is an error unless ``force`` (then it is removed first).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputExistsError("output path exists and is not a directory", path)
        if any(path.iterdir()):
            if not force:
                raise OutputExistsError(
                    "output directory exists and is not empty; choose a new one or pass --force", path
                )
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def staged_output_dir(path: str | os.PathLike, *, force: bool = False) -> StagedDir:
    """Context manager: build a directory under a temporary name, rename into place on success."""
    return StagedDir(Path(path), force=force)


class StagedDir:
    """Write a whole output folder atomically: nothing appears at ``final`` unless all of it is done."""

    def __init__(self, final: Path, *, force: bool = False):
        self.final = final
        self.force = force
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        refuse_existing_output(self.final, force=self.force)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".partial", dir=self.final.parent))
        os.chmod(self.tmp, 0o755)  # mkdtemp creates 0700
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.final.exists():
            # keep the old folder until the new one is in place: a crash here leaves the old one (renamed)
            aside = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", suffix=".old", dir=self.final.parent))
            os.replace(self.final, aside / "old")
            os.replace(self.tmp, self.final)
            shutil.rmtree(aside, ignore_errors=True)
            return
        os.replace(self.tmp, self.final)
