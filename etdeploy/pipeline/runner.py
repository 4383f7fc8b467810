"""The end-to-end pipeline: stages in order, each writing into its own folder of the run directory.

A stage folder appears atomically (built under a temporary name, renamed when complete) and holds a
``stage.json`` manifest with the SHA-256 of each artefact and the stage's summary figures. A run
that is interrupted is resumed with ``resume=True``: finished stages whose artefacts still match
their hashes are reused, the rest are recomputed. An existing run directory is never overwritten.
Timings go to ``timing.json`` only, so that ``report.json`` and the CSV tables are byte-identical
for the same configuration and seed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from etdeploy.errors import OutputExistsError, ReportError
from etdeploy.fileio import StagedDir, atomic_write_json, canonical_json, sha256_bytes, sha256_file
from etdeploy.pipeline.config import RunConfig

MANIFEST = "stage.json"
RUN_FILE = "run.json"


@dataclass
class RunContext:
    """What a stage sees: the configuration, the run directory and a cache of loaded objects."""

    config: RunConfig
    out: Path
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def summary(self, name: str) -> dict[str, Any]:
        return json.loads((self.stage_dir(name) / MANIFEST).read_text())["summary"]

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext, Path], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]


def config_hash(config: RunConfig) -> str:
    """SHA-256 of the canonical configuration; keys added later are left out while at their default."""
    from etdeploy.pipeline.config import LATER_KEYS_AT_DEFAULT

    raw = config.to_dict()
    for (section, key), default in LATER_KEYS_AT_DEFAULT.items():
        if raw.get(section, {}).get(key, object()) == default:
            del raw[section][key]
    return sha256_bytes(canonical_json(raw).encode())


def _manifest(tmp: Path, name: str, summary: dict[str, Any]) -> dict[str, Any]:
    artefacts = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        artefacts[path.relative_to(tmp).as_posix()] = sha256_file(path)
    return {"stage": name, "artefacts": artefacts, "summary": summary}


def stage_is_complete(directory: Path) -> bool:
    """True when the stage folder has a manifest and every listed artefact matches its hash."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        for rel, digest in manifest["artefacts"].items():
            path = directory / rel
            if not path.is_file() or sha256_file(path) != digest:
                return False
    except (json.JSONDecodeError, KeyError, OSError):
        return False
    return True


def run_pipeline(config: RunConfig, out: str | Path, *, stages: list[Stage] | None = None, resume: bool = False,
                 progress: bool = True, echo: Callable[[str], None] | None = None,
                 invocation: list[str] | None = None) -> Path:
    """Run every stage of ``config`` into ``out``; returns the path of ``report.html``."""
    from etdeploy.pipeline.stages import STAGES

    stages = STAGES if stages is None else stages
    echo = echo or (lambda line: click.echo(line, err=True))
    out = Path(out)
    chash = config_hash(config)
    if out.exists() and any(out.iterdir()):
        run_file = out / RUN_FILE
        if not resume:
            raise OutputExistsError("run directory exists; choose a new --out or pass --resume to continue it", out)
        if not run_file.is_file():
            raise ReportError("cannot resume: the directory is not an etdeploy run (no run.json)", out)
        previous = json.loads(run_file.read_text())
        if previous.get("config_sha256") != chash:
            raise ReportError("cannot resume: the run was started with a different configuration", out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / RUN_FILE, {"config": config.to_dict(), "config_sha256": chash,
                                           "stages": [s.name for s in stages]})
    for leftover in out.glob(".*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)

    ctx = RunContext(config=config, out=out, progress=progress)
    ctx.cache["invocation"] = invocation or []
    timing_path = out / "timing.json"
    timing: dict[str, Any] = json.loads(timing_path.read_text()) if timing_path.is_file() else {"stages": {}}
    total_start = time.perf_counter()
    for index, stage in enumerate(stages, 1):
        directory = ctx.stage_dir(stage.name)
        if stage_is_complete(directory):
            echo(f"[{index}/{len(stages)}] {stage.name}: reused (artefacts verified) - "
                 f"{stage.describe(ctx.summary(stage.name))}")
            continue
        if directory.exists():
            shutil.rmtree(directory)
        start = time.perf_counter()
        with StagedDir(directory) as tmp:
            summary = stage.run(ctx, tmp)
            manifest = _manifest(tmp, stage.name, summary)
            atomic_write_json(tmp / MANIFEST, manifest)
        seconds = time.perf_counter() - start
        timing["stages"][stage.name] = round(seconds, 3)
        atomic_write_json(timing_path, timing, overwrite=True)
        echo(f"[{index}/{len(stages)}] {stage.name} ({seconds:.1f} s): {stage.describe(summary)}")
    timing["last_invocation_seconds"] = round(time.perf_counter() - total_start, 3)
    atomic_write_json(timing_path, timing, overwrite=True)
    return out / "report" / "report.html"
