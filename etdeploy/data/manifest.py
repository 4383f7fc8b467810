"""A data set's manifest (every image's split, path, label and SHA-256) and its summary for reports."""

from __future__ import annotations

from typing import Any

from etdeploy.fileio import csv_text, sha256_bytes, sha256_file
from etdeploy.vocab import SPLITS

MANIFEST_HEADER = ["split", "path", "label", "class", "source_class", "sha256"]


def manifest_csv(dataset, *, progress: bool = True) -> str:
    """CSV text: one row per image of every split, with the image file's SHA-256."""
    from etdeploy.progress import progress_bar

    rows = []
    for split in SPLITS:
        for sample in progress_bar(dataset.split(split), desc=f"hash {split}", enabled=progress):
            rows.append([split, sample.path.relative_to(dataset.root).as_posix(), sample.label,
                         dataset.classes[sample.label], sample.source_class, sha256_file(sample.path)])
    return csv_text(MANIFEST_HEADER, rows)


def data_summary(dataset, source: str, manifest_text: str) -> dict[str, Any]:
    """The data stage's summary: name, source, classes, counts per split, citation, warnings, manifest hash."""
    return {"name": dataset.name, "source": source, "classes": list(dataset.classes), "counts": dataset.counts(),
            "citation": dataset.citation, "warnings": list(dataset.warnings),
            "manifest_sha256": sha256_bytes(manifest_text.encode("utf-8"))}
