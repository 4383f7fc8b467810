"""Use case: occlusion maps of a whole split (an archive), in one process or on Ray, resumable (docs/method.md §14).

    from etdeploy.archive import explain_archive, select_images
    images = select_images(load_dataset("bundled"), "test", limit=12)
    run = explain_archive("model.onnx", images, mean=m, std=s, out="maps", workers=2)
    run.index_sha256             # the index is the same bytes for any number of workers

Each image is one task for a worker that holds one occlusion executor
(:func:`etdeploy.occlusion.explain.explain_one`, the step ``etdeploy explain --image`` runs per image);
the worker returns the map files' bytes and this process writes them: ``maps/<stem>.npy|png``
(atomic writes), then the image's record ``images/<image stem>.json`` with the files' SHA-256: the
record is written last, so an image counts as done only when all its files are. Output folder::

    settings.json    what the maps depend on (model digest, mode, patch, stride, kinds, normalisation, threads)
    maps/            .npy (float64 map) + .png (overlay) per image and class, named as etdeploy explain names them
    images/          one record per finished image (written last)
    index.csv        one row per map: image path, SHA-256, true/predicted class, probability, map statistics,
                     attempts (also index.parquet when pyarrow is installed); byte-identical for any worker count
    archive.json     the run: settings, backend (workers, threads per worker, CPUs, address), counts, retries
    timing.json      seconds per image, the worker (host:pid) that computed it and its peak memory (RSS)

``resume``: an existing folder made with the same settings keeps every image whose record verifies
(its files exist with the recorded SHA-256) and recomputes the rest; an interrupted run loses only the
images in flight. Without ``resume`` an existing non-empty folder is refused.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.archive.images import ArchiveImage
from etdeploy.errors import ConfigError, OcclusionError
from etdeploy.occlusion.explain import ExplainedImage, OnnxFile, Tuning
from etdeploy.records import Record

__all__ = ["ARCHIVE_FORMAT", "INDEX_HEADER", "ArchiveRun", "ExplainWorker", "RetriedImage", "explain_archive",
           "read_archive"]

ARCHIVE_FORMAT = "etdeploy-archive"
IMAGE_RECORD_FORMAT = "etdeploy-archive-image"
SETTINGS_FORMAT = "etdeploy-archive-settings"

INDEX_HEADER = ["image", "path", "sha256", "true_class", "true_name", "predicted", "predicted_name", "probability",
                "map_class", "map_name", "npy", "png", "map_min", "map_max", "map_mean", "map_std", "flat", "attempts"]


# ---------------------------------------------------------------------------------------------- worker
class ExplainWorker:
    """Holds one occlusion executor; ``worker(task)`` explains one image (task: index, name, file, sha256,
    true_class) and returns its record, the files' bytes, the seconds spent and who computed it.

    ``die_once``: test hook (a crashed worker): the first call that can create this file exits the
    process abruptly (``os._exit``) before computing; Ray restarts the actor and retries the image.
    """

    def __init__(self, onnx_path: str, mode: str, executor_options: dict[str, Any], run_kwargs: dict[str, Any],
                 classes: Sequence[int], names: Sequence[str], map_kind: str, mean: Sequence[float],
                 std: Sequence[float], threads: int, die_once: str | None = None):
        from etdeploy.occlusion.explain import open_executor

        self.executor = open_executor(onnx_path, mode, **executor_options, threads=threads)
        self.size = self.executor.input_hw[0]
        self.run_kwargs, self.classes, self.names, self.map_kind = run_kwargs, tuple(classes), tuple(names), map_kind
        self.mean, self.std, self.threads, self.die_once = tuple(mean), tuple(std), threads, die_once

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        from etdeploy.data.images import normalise
        from etdeploy.occlusion.explain import ExplainInput, explain_one

        if self.die_once is not None:
            try:
                os.close(os.open(self.die_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(17)
        item = ExplainInput(name=task["name"], sha256=task["sha256"], path=Path(task["file"]),
                            true_class=task["true_class"])
        raw = item.decoded(self.size)
        image = normalise(raw[None], self.mean, self.std).numpy()[0]
        record, files, seconds = explain_one(self.executor, item, raw, image, index=task["index"],
                                             run_kwargs=self.run_kwargs, classes=self.classes, names=self.names,
                                             map_kind=self.map_kind, check_ssim=False)
        import resource

        return {"record": record.to_dict(), "files": files, "seconds": seconds,
                "worker": f"{socket.gethostname()}:{os.getpid()}", "threads": self.threads,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RetriedImage(Record):
    path: str
    attempts: int


@dataclass(frozen=True)
class ArchiveRun(Record):
    """Result of :func:`explain_archive` (``to_dict()`` is ``archive.json``).

    ``settings``: what the maps depend on (``settings.json``; ``settings_sha256`` its digest);
    ``backend``: workers, threads per worker, CPUs, Ray address; ``images``: images in the index;
    ``computed``/``reused``: computed by this call / kept from an earlier one (``resume``); ``retried``:
    images whose worker died and that were computed again; ``index_sha256``: of ``index.csv``.
    """

    onnx: OnnxFile
    data: dict[str, Any]
    settings: dict[str, Any]
    settings_sha256: str
    redundancy_ratio: float | None
    tuning: Tuning | None
    backend: dict[str, Any]
    images: int
    maps: int
    computed: int
    reused: int
    retried: tuple[RetriedImage, ...]
    index_sha256: str
    index_files: tuple[str, ...]
    format: str = ARCHIVE_FORMAT
    format_version: int = 1


def read_archive(path: str | os.PathLike) -> ArchiveRun:
    """``archive.json`` of an archive folder (the folder or the file) as an :class:`ArchiveRun`."""
    from etdeploy.errors import ReportError
    from etdeploy.records import read_record

    path = Path(path)
    if path.is_dir():
        path = path / "archive.json"
    return read_record(path, ArchiveRun, what="archive run", format=ARCHIVE_FORMAT, error=ReportError)


# ---------------------------------------------------------------------------------------------- use case
def explain_archive(onnx_path: str | os.PathLike, images: Sequence[ArchiveImage], *, mean: Sequence[float],
                    std: Sequence[float], out: str | os.PathLike, class_names: Sequence[str] | None = None,
                    input_size: int | None = None, patch: int = 16, stride: int = 4, mode: str = "exact",
                    map_kind: str = "prob", classes: Sequence[int] = (), target_ssim: float = 0.9,
                    ssim_margin: float = 0.05, tau: float | None = None, r_drill: float | None = None,
                    stage1_stride: int | None = None, min_tuning_maps: int = 1, patch_value: float = 0.0,
                    batch_size: int = 16, workers: int = 1, address: str | None = None, threads: int = 1,
                    resume: bool = False, data: dict[str, Any] | None = None, progress: bool = True,
                    die_once: str | os.PathLike | None = None) -> ArchiveRun:
    """Occlusion maps of every image in ``images`` (:func:`~etdeploy.archive.select_images`) into ``out``.

    Map options as :func:`etdeploy.occlusion.explain_images` (approx mode tunes on the first two images
    unless ``tau``/``r_drill`` are given). ``workers``/``address``/``threads``: see
    :func:`etdeploy.archive.backend.open_backend` (1 worker, no address: this process). ``data``: what
    the images are (data set, split, filters), recorded in ``archive.json``. ``resume``: keep the verified
    images of an earlier run into ``out`` made with the same settings. ``die_once``: test hook of
    :class:`ExplainWorker`. The maps and ``index.csv`` do not depend on the number of workers; ``threads``
    (ORT intra-op threads per worker) changes them in the last bits, so it is one of the recorded settings.
    """
    from etdeploy.archive.backend import open_backend, require_backend, run_tasks
    from etdeploy.data.images import normalise
    from etdeploy.fileio import canonical_json, refuse_existing_output, sha256_bytes, sha256_file
    from etdeploy.occlusion.explain import ExplainInput, choose_approx, open_executor, redundancy_of, run_options
    from etdeploy.progress import progress_bar
    from etdeploy.vocab import MAP_KINDS, OCCLUSION_MODES, choices_text

    if mode not in OCCLUSION_MODES:
        raise OcclusionError(f"unknown occlusion mode {mode!r}; choose {choices_text(OCCLUSION_MODES)}")
    if map_kind not in MAP_KINDS:
        raise OcclusionError(f"unknown map kind {map_kind!r}; choose {choices_text(MAP_KINDS)}")
    if not images:
        raise OcclusionError("no images to explain")
    if len(mean) != 3 or len(std) != 3:
        raise OcclusionError(f"mean and std need 3 numbers each (RGB), got {len(mean)} and {len(std)}")
    out = Path(out)
    if not resume:
        refuse_existing_output(out)
    require_backend(workers, address)

    # settings and validation in this process (one executor, freed before the workers start)
    executor_options = {"input_size": input_size, "patch": patch, "stride": stride, "batch_size": batch_size,
                        "patch_value": patch_value}
    executor = open_executor(onnx_path, mode, **executor_options, threads=threads)  # tuning = the workers' maps
    redundancy = redundancy_of(executor)
    size = executor.input_hw[0]
    if executor.input_hw[0] != executor.input_hw[1]:
        raise OcclusionError(f"images are decoded square; the model input is {executor.input_hw}", onnx_path)
    k = executor.num_classes
    names = tuple(class_names) if class_names is not None else tuple(f"class{i}" for i in range(k))
    if len(names) != k:
        raise OcclusionError(f"{len(names)} class names for a model with {k} outputs", onnx_path)
    for c in classes:
        if not 0 <= int(c) < k:
            raise OcclusionError(f"class {c} is out of range for a model with {k} classes")
    for image in images:
        if not 0 <= image.label < k:
            raise OcclusionError(f"true class {image.label} is out of range for a model with {k} classes", image.file)

    def prepare(item: ExplainInput) -> np.ndarray:
        return normalise(item.decoded(size)[None], mean, std).numpy()[0]

    tune_items = [ExplainInput(name=Path(i.path).name, sha256=i.sha256, path=i.file) for i in images[:2]]
    approx, tuning, _ = choose_approx(executor, mode=mode, map_kind=map_kind, tau=tau, r_drill=r_drill,
                                      stage1_stride=stage1_stride, tune_images=tune_items, prepare=prepare,
                                      target_ssim=target_ssim, ssim_margin=ssim_margin,
                                      min_tuning_maps=min_tuning_maps, progress=progress)
    del executor
    run_kwargs = run_options(mode, approx)
    onnx = OnnxFile(file=Path(onnx_path).name, sha256=sha256_file(onnx_path))
    settings = {"format": SETTINGS_FORMAT, "format_version": 1, "onnx_sha256": onnx.sha256, "mode": mode,
                "patch": int(patch), "stride": int(stride), "map_kind": map_kind, "patch_value": float(patch_value),
                "batch_size": int(batch_size), "threads": int(threads), "input_size": int(size), "mean": [float(v) for v in mean],
                "std": [float(v) for v in std], "classes": list(names), "map_classes": [int(c) for c in classes],
                "run": None if approx is None else approx.to_dict()}
    settings_text = canonical_json(settings)
    settings_sha = sha256_bytes(settings_text.encode("utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    _settings_file(out, settings_text, resume)
    (out / "maps").mkdir(exist_ok=True)
    (out / "images").mkdir(exist_ok=True)

    tasks = [{"index": n, "name": Path(i.path).name, "file": str(i.file), "sha256": i.sha256, "true_class": i.label}
             for n, i in enumerate(images)]
    done: dict[int, dict[str, Any]] = {}
    if resume:
        for leftover in [*(out / "maps").glob(".*.tmp"), *(out / "images").glob(".*.tmp")]:
            leftover.unlink()  # a temporary file of a writer that died (fileio.atomic_write_bytes names them so)
        for n, image in enumerate(images):
            record = _verified_record(out, n, image, settings_sha)
            if record is not None:
                done[n] = record
    todo = [t for t in tasks if t["index"] not in done]
    reused = len(done)
    timing: list[dict[str, Any]] = []
    started = time.perf_counter()
    with open_backend(workers, address=address, threads=threads) as backend:
        if todo:
            worker_kwargs = {"onnx_path": str(Path(onnx_path).resolve()), "mode": mode,
                             "executor_options": executor_options, "run_kwargs": run_kwargs,
                             "classes": [int(c) for c in classes], "names": list(names), "map_kind": map_kind,
                             "mean": list(mean), "std": list(std),
                             "die_once": None if die_once is None else str(die_once)}
            results = run_tasks(ExplainWorker, worker_kwargs, todo, backend)
            for position, result in progress_bar(results, desc="explain", total=len(todo), enabled=progress,
                                                 unit="image"):
                n = todo[position]["index"]
                done[n] = _commit(out, n, images[n], result, settings_sha)
                timing.append({"image": n, "path": images[n].path, "seconds": result["seconds"],
                               "worker": result["worker"], "threads": result["threads"],
                               "attempt": result["attempt"], "max_rss_mb": result["max_rss_mb"]})
    rows = [row for n in range(len(images)) for row in _index_rows(n, images[n], done[n], names)]
    from etdeploy.fileio import atomic_write_json, atomic_write_text, csv_text

    index_text = csv_text(INDEX_HEADER, rows)
    atomic_write_text(out / "index.csv", index_text, overwrite=True)
    index_files = ["index.csv"]
    if _write_parquet(out / "index.parquet", rows):
        index_files.append("index.parquet")
    retried = tuple(RetriedImage(path=images[n].path, attempts=int(done[n]["attempts"]))
                    for n in range(len(images)) if int(done[n]["attempts"]) > 1)
    run = ArchiveRun(onnx=onnx, data=dict(data or {}), settings=settings, settings_sha256=settings_sha,
                     redundancy_ratio=redundancy, tuning=tuning, backend=backend.to_dict(), images=len(images),
                     maps=len(rows), computed=len(todo), reused=reused, retried=retried,
                     index_sha256=sha256_bytes(index_text.encode("utf-8")), index_files=tuple(index_files))
    atomic_write_json(out / "archive.json", run.to_dict(), overwrite=True)
    atomic_write_json(out / "timing.json", {"images": sorted(timing, key=lambda t: t["image"]),
                                            "total_seconds": time.perf_counter() - started,
                                            "backend": backend.to_dict()}, overwrite=True)
    return run


# ---------------------------------------------------------------------------------------------- files
def _settings_file(out: Path, text: str, resume: bool) -> None:
    from etdeploy.fileio import atomic_write_text

    path = out / "settings.json"
    if path.exists():
        if not resume:
            raise ConfigError("archive folder exists; pass --resume to continue it", out)
        if path.read_text(encoding="utf-8") != text:
            raise ConfigError("this archive folder was made with other settings (model, mode, patch, stride, map "
                              "kind, normalisation or classes); choose a new folder", path)
        return
    if resume and any(p.name != "settings.json" for p in out.iterdir()):
        raise ConfigError("folder to resume has no settings.json: not an etdeploy archive", out)
    atomic_write_text(path, text)


def _image_record_path(out: Path, n: int, image: ArchiveImage) -> Path:
    return out / "images" / f"img{n:02d}_{Path(image.path).stem}.json"


def _verified_record(out: Path, n: int, image: ArchiveImage, settings_sha: str) -> dict[str, Any] | None:
    """The image's record when it is complete: same image, same settings, every file with its SHA-256."""
    import json

    from etdeploy.fileio import sha256_file

    path = _image_record_path(out, n, image)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != IMAGE_RECORD_FORMAT \
            or record.get("settings_sha256") != settings_sha or record.get("path") != image.path \
            or record.get("sha256") != image.sha256 or not isinstance(record.get("files"), dict):
        return None
    for name, digest in record["files"].items():
        file = out / "maps" / name
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return record


def _commit(out: Path, n: int, image: ArchiveImage, result: dict[str, Any], settings_sha: str) -> dict[str, Any]:
    """Write one image's files, then its record (last: the image is done when the record exists)."""
    from etdeploy.fileio import atomic_write_bytes, atomic_write_json, sha256_bytes

    explained = ExplainedImage.from_dict(result["record"])
    stats = []
    for m in explained.maps:
        values = np.load(io.BytesIO(result["files"][m.npy]), allow_pickle=False)
        stats.append({"mean": float(values.mean()), "std": float(values.std())})
    for name, data in result["files"].items():
        atomic_write_bytes(out / "maps" / name, data, overwrite=True)  # a leftover of a dead worker is replaced
    record = {"format": IMAGE_RECORD_FORMAT, "format_version": 1, "settings_sha256": settings_sha,
              "path": image.path, "sha256": image.sha256, "image": explained.to_dict(), "stats": stats,
              "attempts": int(result["attempt"]),
              "files": {name: sha256_bytes(data) for name, data in sorted(result["files"].items())}}
    atomic_write_json(_image_record_path(out, n, image), record, overwrite=True)
    return record


def _index_rows(n: int, image: ArchiveImage, record: dict[str, Any], names: Sequence[str]) -> list[list[Any]]:
    explained = ExplainedImage.from_dict(record["image"])
    rows = []
    for m, stat in zip(explained.maps, record["stats"]):
        rows.append([n, image.path, image.sha256, image.label, names[image.label], explained.predicted,
                     names[explained.predicted], explained.probability, m.class_, m.name, f"maps/{m.npy}",
                     f"maps/{m.png}", m.min, m.max, stat["mean"], stat["std"], m.flat, int(record["attempts"])])
    return rows


def _write_parquet(path: Path, rows: list[list[Any]]) -> bool:
    """``index.parquet`` (same columns as the CSV) when pyarrow is installed; False when it is not."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    from etdeploy.fileio import atomic_write_bytes

    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(INDEX_HEADER)})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    atomic_write_bytes(path, buffer.getvalue().to_pybytes(), overwrite=True)
    return True

