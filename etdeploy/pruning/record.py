"""Pruning records on disk and ranking provenance.

A record (``record.json``) is what :func:`etdeploy.pruning.slicing.slice_model` returns: format tag,
kept indices per layer, removed conv channels, fingerprints of the masked and sliced weights, and
a ``context`` (schedule, percent, seed, ranking hash). :func:`load_record` + ``apply_record``
replay it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from etdeploy.errors import PruningError
from etdeploy.fileio import atomic_write_json, read_json_artefact, sha256_file


def ranking_sha256(directory: str | os.PathLike) -> str:
    """SHA-256 over a ranking directory's ``summary.json`` and ``attributions.safetensors`` (name + file hash)."""
    from etdeploy.attribution.result import ARRAYS_FILE, SUMMARY_FILE

    directory = Path(directory)
    digest = hashlib.sha256()
    for name in (SUMMARY_FILE, ARRAYS_FILE):
        path = directory / name
        if not path.is_file():
            raise PruningError(f"ranking directory has no {name}", directory)
        digest.update(name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def save_record(record: dict, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    from etdeploy.pruning.replay import validate_record

    validate_record(record, path)
    return atomic_write_json(path, record, overwrite=overwrite)


def load_record(path: str | os.PathLike) -> dict:
    """Read and validate a ``record.json``."""
    from etdeploy.pruning.replay import validate_record

    return validate_record(read_json_artefact(path, what="pruning record", error=PruningError), path)
