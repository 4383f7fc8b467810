"""Atomic, never-overwriting file output and hashing.

Every artefact is written to a temporary file in the destination folder and renamed into place, so
an interrupted write leaves either the complete file or nothing. Existing files are never replaced
unless the caller says so explicitly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from etdeploy.errors import EtdeployError, OutputExistsError


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


def csv_cell(value: Any) -> str:
    """One CSV cell: ``None`` -> empty, floats rounded to 9 decimals (stable text), the rest ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """Deterministic CSV text (``\\n`` line ends) of ``header`` and ``rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


def atomic_write_json(path: str | os.PathLike, obj: Any, *, overwrite: bool = False) -> Path:
    return atomic_write_text(path, canonical_json(obj), overwrite=overwrite)


def read_json_artefact(path: str | os.PathLike, *, what: str, format: str | None = None,
                       versions: tuple[int, ...] = (1,), error: type[EtdeployError] = EtdeployError) -> dict[str, Any]:
    """The one reader of etdeploy's JSON artefacts: exists -> parse -> format/version -> dict.

    ``what`` names the artefact in messages ("model spec", "run record"...). ``format`` is the
    artefact's ``"format"`` tag; ``format_version`` must be one of ``versions`` (a combined tag
    ``"<format>/<n>"``, as early rankings wrote, is read as version ``n``). Every failure raises
    ``error`` (a subclass of :class:`EtdeployError`) naming the file, so a damaged artefact is a user
    error with exit code 2, never an internal error.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} does not exist" if not path.exists() else f"{what} is not a file", path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} is not valid JSON: {exc}", path) from exc
    except OSError as exc:
        raise error(f"{what} cannot be read: {exc.strerror or exc}", path) from exc
    if not isinstance(doc, dict):
        raise error(f"not an etdeploy {what} (not a JSON object)", path)
    if format is not None:
        tag = doc.get("format")
        version = doc.get("format_version")
        if isinstance(tag, str) and tag.startswith(f"{format}/") and version is None:
            tag, _, number = tag.partition("/")
            version = int(number) if number.isdigit() else number
        if tag != format:
            raise error(f"not an etdeploy {what} (missing format: {format})", path)
        if version not in versions:
            raise error(f"unsupported {what} format_version {version!r} (this etdeploy reads "
                        f"{', '.join(map(str, versions))})", path)
    return doc


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
