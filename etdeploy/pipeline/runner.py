"""The end-to-end pipeline: stages in order, each writing into its own folder of the run directory.

A stage folder appears atomically (built under a temporary name, renamed when complete) and holds a
``stage.json`` manifest: the SHA-256 of each artefact, the digests of its input stages' manifests and
the stage's summary (its use case's typed result, serialised). A run that is interrupted is resumed
with ``resume=True``: a finished stage is reused when its artefacts still match their hashes *and* its
inputs' manifests are the ones it was computed from, so a recomputed upstream stage whose artefacts
changed invalidates everything downstream (as Make or DVC would, by content). An existing run
directory is never overwritten.

The run's identity is the configuration hash plus the torch thread count (trained weights depend on
it, bit for bit): ``run.json`` records both, and resuming with either changed is refused.

Timings go to ``timing.json`` only, so that ``report.json`` and the CSV tables are byte-identical
for the same configuration, seed and thread count.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etdeploy.errors import OutputExistsError, ReportError
from etdeploy.fileio import (
    StagedDir,
    atomic_write_json,
    canonical_json,
    read_json_artefact,
    sha256_bytes,
    sha256_file,
)
from etdeploy.pipeline.config import RunConfig
from etdeploy.pipeline.context import MANIFEST, MANIFEST_FORMAT, RunContext, Stage

__all__ = ["MANIFEST", "RUN_FILE", "RunContext", "Stage", "config_hash", "read_run_file", "run_pipeline",
           "stage_is_complete"]

RUN_FILE = "run.json"
RUN_FORMAT = "etdeploy-run"


def config_hash(config: RunConfig) -> str:
    """SHA-256 of the canonical configuration; keys added later are left out while at their default."""
    from etdeploy.pipeline.config import LATER_KEYS_AT_DEFAULT

    raw = config.to_dict()
    for (section, key), default in LATER_KEYS_AT_DEFAULT.items():
        if raw.get(section, {}).get(key, object()) == default:
            del raw[section][key]
    return sha256_bytes(canonical_json(raw).encode())


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def read_run_file(out: Path) -> dict[str, Any]:
    """``run.json`` of a run directory, validated (a damaged file is a :class:`ReportError`, exit 2)."""
    doc = read_json_artefact(out / RUN_FILE, what="run record", format=RUN_FORMAT, error=ReportError)
    if not isinstance(doc.get("config_sha256"), str) or not isinstance(doc.get("torch_threads"), int):
        raise ReportError("run record lacks config_sha256 or torch_threads", out / RUN_FILE)
    return doc


def input_digests(out: Path, stage: Stage) -> dict[str, str]:
    """``{input stage: SHA-256 of its stage.json}`` (missing inputs are an error: stages run in order)."""
    digests = {}
    for name in stage.inputs:
        path = out / name / MANIFEST
        if not path.is_file():
            raise ReportError(f"stage {stage.name!r} needs stage {name!r}, which has not run", out)
        digests[name] = sha256_file(path)
    return digests


def _manifest(tmp: Path, stage: Stage, summary: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    artefacts = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        artefacts[path.relative_to(tmp).as_posix()] = sha256_file(path)
    return {"format": MANIFEST_FORMAT, "format_version": 1, "stage": stage.name, "inputs": inputs,
            "artefacts": artefacts, "summary": summary}


def stage_is_complete(directory: Path, inputs: dict[str, str] | None = None) -> bool:
    """True when the stage folder's manifest verifies: every artefact matches its hash and, if
    ``inputs`` is given, the manifest was computed from exactly those input manifests."""
    try:
        manifest = read_json_artefact(directory / MANIFEST, what="stage manifest", format=MANIFEST_FORMAT,
                                      error=ReportError)
        if inputs is not None and manifest.get("inputs") != inputs:
            return False
        for rel, digest in manifest["artefacts"].items():
            path = directory / rel
            if not path.is_file() or sha256_file(path) != digest:
                return False
    except (ReportError, KeyError, AttributeError, TypeError, OSError):
        return False
    return True


def _import_sha256(config: RunConfig) -> str | None:
    """SHA-256 of the file named by ``[model] import`` (``None``: no import, or no such file yet, which the
    train stage reports). The configuration names the file by path only; its content is part of the run."""
    name = getattr(config.model, "import_", None)
    if not name or not Path(name).is_file():
        return None
    return sha256_file(Path(name))


def _start_or_resume(config: RunConfig, out: Path, stages: list[Stage], resume: bool) -> None:
    chash = config_hash(config)
    threads = torch_threads()
    imported = _import_sha256(config)
    if out.exists() and not out.is_dir():
        raise OutputExistsError("run path exists and is not a directory", out)
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise OutputExistsError("run directory exists; choose a new --out or pass --resume to continue it", out)
        if not (out / RUN_FILE).exists():
            raise ReportError("cannot resume: the directory is not an etdeploy run (no run.json)", out)
        previous = read_run_file(out)
        if previous["config_sha256"] != chash:
            raise ReportError("cannot resume: the run was started with a different configuration", out)
        if previous["torch_threads"] != threads:
            raise ReportError(f"cannot resume: the run was started with {previous['torch_threads']} torch threads, "
                              f"this process has {threads} (trained weights depend on it); set "
                              f"OMP_NUM_THREADS={previous['torch_threads']} or start a new run", out)
        if previous.get("import_sha256") != imported:
            raise ReportError(f"cannot resume: the file named by [model] import ({config.model.import_}) is not the "
                              "one the run started with (its SHA-256 differs); start a new run", out)
        return
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": RUN_FORMAT, "format_version": 1, "config": config.to_dict(), "config_sha256": chash,
              "torch_threads": threads, "stages": [s.name for s in stages]}
    if imported is not None:
        record["import_sha256"] = imported
    atomic_write_json(out / RUN_FILE, record)


def run_pipeline(config: RunConfig, out: str | Path, *, stages: list[Stage] | None = None, resume: bool = False,
                 progress: bool = True, echo: Callable[[str], None] | None = None,
                 invocation: list[str] | None = None) -> Path:
    """Run every stage of ``config`` into ``out``; returns the path of ``report.html``."""
    from etdeploy.pipeline.stages import STAGES

    stages = STAGES if stages is None else stages
    if echo is None:
        import sys

        def echo(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    out = Path(out)
    _start_or_resume(config, out, stages, resume)
    for leftover in out.glob(".*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)

    ctx = RunContext(config=config, out=out, progress=progress)
    ctx.cache["invocation"] = invocation or []
    timing_path = out / "timing.json"
    timing: dict[str, Any] = {"stages": {}}
    if timing_path.is_file():
        try:
            timing = read_json_artefact(timing_path, what="timing record", error=ReportError)
            timing.setdefault("stages", {})
        except ReportError:
            pass  # timings are informative only; a damaged file is replaced
    total_start = time.perf_counter()
    for index, stage in enumerate(stages, 1):
        directory = ctx.stage_dir(stage.name)
        inputs = input_digests(out, stage)
        if stage_is_complete(directory, inputs):
            echo(f"[{index}/{len(stages)}] {stage.name}: reused (artefacts and inputs verified) - "
                 f"{stage.describe(ctx.summary(stage.name))}")
            continue
        if directory.exists():
            shutil.rmtree(directory)
        start = time.perf_counter()
        with StagedDir(directory) as tmp:
            summary = stage.run(ctx, tmp)
            atomic_write_json(tmp / MANIFEST, _manifest(tmp, stage, summary, inputs))
        seconds = time.perf_counter() - start
        timing["stages"][stage.name] = round(seconds, 3)
        atomic_write_json(timing_path, timing, overwrite=True)
        echo(f"[{index}/{len(stages)}] {stage.name} ({seconds:.1f} s): {stage.describe(summary)}")
    timing["last_invocation_seconds"] = round(time.perf_counter() - total_start, 3)
    atomic_write_json(timing_path, timing, overwrite=True)
    return out / "report" / "report.html"
