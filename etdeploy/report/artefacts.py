"""Assemble a :class:`RunRecord` from artefact folders made by hand (``etdeploy report``).

Each artefact kind has one loader that turns a folder (or file) written by an etdeploy command into
the same stage result the pipeline stores, so one renderer serves both. Loaders read through the
library's artefact readers (typed errors naming the file); the renderer itself reads nothing.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from etdeploy.errors import ReportError
from etdeploy.fileio import sha256_file
from etdeploy.report.record import Provenance, RunRecord

PACKAGES = ("etdeploy", "torch", "numpy", "onnx", "onnxruntime", "onnxsim", "scikit-image", "matplotlib",
            "safetensors", "pillow", "click", "tqdm")
#: etdeploy's extras a pipeline run uses (the package stage's C generator); test/dev tools are not run inputs
RUN_EXTRAS = ("package",)
ASSET_SUFFIXES = (".csv", ".png")
#: further files a stage's section reads (the explain section draws every map on one colour scale)
STAGE_ASSET_SUFFIXES = {"explain": (".npy",)}


def _dependency_closure() -> dict[str, str]:
    """``{distribution: version}`` of etdeploy and every installed distribution it requires, recursively
    (its requirements, those of :data:`RUN_EXTRAS`, and theirs, markers evaluated)."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = ["etdeploy"]
    first = True
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[key] = dist.version
        extras = ("", *RUN_EXTRAS) if first else ("",)
        first = False
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                todo.append(req.name)
    return found


def package_versions() -> dict[str, str]:
    """Python and the versions of every distribution a run depends on: etdeploy's requirements, recursively
    (the configuration index, CM-01); the core packages are listed even where absent ("not installed")."""
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        closure = _dependency_closure()
    except ImportError:  # no 'packaging': the core list only
        closure = {}
    for key, version in closure.items():
        if key not in out:
            out[key] = version
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "python", kv[0])))


def code_version() -> str:
    """``git describe --always --dirty --tags`` of the etdeploy source tree when it is a git checkout, else
    ``etdeploy <package version>``."""
    import subprocess

    source = Path(__file__).resolve().parents[2]
    try:
        if (source / ".git").exists():
            done = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty", "--tags"],
                                  capture_output=True, text=True, timeout=20, check=False)
            if done.returncode == 0 and done.stdout.strip():
                return f"git {done.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"etdeploy {metadata.version('etdeploy')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def platform_info() -> dict[str, str]:
    return {"system": platform.system(), "machine": platform.machine(), "release": platform.release()}


def _model_summary(path: Path) -> dict[str, Any]:
    from etdeploy.training import training_summary

    return training_summary(path)


def _rank_summary(path: Path) -> dict[str, Any]:
    from etdeploy.attribution.rank_dirs import read_rank_run

    return read_rank_run(path).to_dict()


def _sweep_summary(path: Path) -> dict[str, Any]:
    from etdeploy.pruning.sweep_dirs import read_sweep_run

    return read_sweep_run(path).to_dict()


def _prune_summary(path: Path) -> dict[str, Any]:
    from etdeploy.pruning.prune_dirs import read_prune_series

    return read_prune_series(path).to_dict()


def _explain_summary(path: Path) -> dict[str, Any]:
    from etdeploy.occlusion.explain import read_explain

    return read_explain(path).to_dict()


def _export_summary(path: Path) -> dict[str, Any]:
    """One export folder, or a folder of export folders (the pipeline's ``original/`` and ``sliced/``)."""
    from etdeploy.export import ExportSet, read_export

    if (path / "export.json").is_file():
        return ExportSet(exports={path.name: read_export(path)}).to_dict()
    variants = sorted(p for p in path.iterdir() if (p / "export.json").is_file())
    if not variants:
        raise ReportError("folder holds no export.json (give a folder written by etdeploy export)", path)
    return ExportSet(exports={p.name: read_export(p) for p in variants}).to_dict()


def _parity_summary(path: Path) -> dict[str, Any]:
    from etdeploy.export import read_parity

    return read_parity(path / "parity.json" if path.is_dir() else path).to_dict()


def _fit_summary(path: Path) -> dict[str, Any]:
    from etdeploy.targets import read_fit

    return read_fit(path / "fit.json" if path.is_dir() else path).to_dict()


def _package_summary(path: Path) -> dict[str, Any]:
    from etdeploy.packaging.bundle import read_package

    return read_package(path).to_dict()


# stage name -> (what the option names, loader of the stage result from a folder)
LOADERS: dict[str, tuple[str, Callable[[Path], dict[str, Any]]]] = {
    "train": ("model directory (etdeploy train)", _model_summary),
    "rank": ("ranking directory (etdeploy rank)", _rank_summary),
    "sweep": ("sweep directory (etdeploy sweep)", _sweep_summary),
    "prune": ("prune directory (etdeploy prune)", _prune_summary),
    "export": ("export directory (etdeploy export)", _export_summary),
    "parity": ("parity report (etdeploy parity --out)", _parity_summary),
    "explain": ("maps directory (etdeploy explain)", _explain_summary),
    "fit": ("fit report (etdeploy fit --out)", _fit_summary),
    "package": ("flight bundle (etdeploy package)", _package_summary),
}


def stage_assets(stage: str, root: Path, rels) -> dict[str, bytes]:
    """The files among ``rels`` (paths relative to ``root``) that a report embeds or copies, keyed
    ``<stage>/<rel>`` as :attr:`RunRecord.assets` expects."""
    suffixes = ASSET_SUFFIXES + STAGE_ASSET_SUFFIXES.get(stage, ())
    return {f"{stage}/{rel}": (root / rel).read_bytes() for rel in rels if rel.endswith(suffixes)}


def record_from_artefacts(name: str, folders: dict[str, str | Path], *, dataset=None, data_source: str = "",
                          command: tuple[str, ...] = (), progress: bool = True, criteria=None) -> RunRecord:
    """A run record from ``{stage: folder}`` (stages of :data:`LOADERS`) and an optional data set, judged by
    ``criteria`` (:class:`~etdeploy.assurance.acceptance.AcceptanceCriteria`; its defaults when ``None``)."""
    from etdeploy.assurance.acceptance import AcceptanceCriteria

    stages: dict[str, dict[str, Any]] = {}
    assets: dict[str, bytes] = {}
    artefacts: dict[str, str] = {}
    if dataset is not None:
        from etdeploy.data.manifest import data_summary, manifest_csv

        manifest = manifest_csv(dataset, progress=progress)
        stages["data"] = data_summary(dataset, data_source, manifest)
        assets["data/manifest.csv"] = manifest.encode("utf-8")
    for stage, folder in folders.items():
        if stage not in LOADERS:
            raise ReportError(f"no artefact loader for stage {stage!r}; known: {', '.join(LOADERS)}")
        path = Path(folder)
        if not path.exists():
            raise ReportError(f"{LOADERS[stage][0]} does not exist", path)
        stages[stage] = LOADERS[stage][1](path)
        if path.is_file():
            artefacts[f"{stage}/{path.name}"] = sha256_file(path)
            continue
        rels = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        assets.update(stage_assets(stage, path, rels))
        artefacts.update({f"{stage}/{rel}": sha256_file(path / rel) for rel in rels})
    order = ["data", *LOADERS]  # pipeline order
    stages = {k: stages[k] for k in sorted(stages, key=order.index)}
    provenance = Provenance(versions=package_versions(), platform=platform_info(), command=tuple(command),
                            artefacts=artefacts)
    return RunRecord(name=name, stages=stages, provenance=provenance, assets=assets,
                     criteria=AcceptanceCriteria() if criteria is None else criteria,
                     stamp={"code_version": code_version(), "run_date": utc_date()})


def utc_date(timestamp: float | None = None) -> str:
    """``YYYY-MM-DD`` (UTC) of ``timestamp`` (seconds since the epoch; now when ``None``)."""
    import datetime

    when = datetime.datetime.now(datetime.UTC) if timestamp is None else \
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return when.strftime("%Y-%m-%d")
