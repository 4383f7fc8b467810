"""What a stage sees (:class:`RunContext`) and what a stage is (:class:`Stage`).

A stage is ``run(ctx, tmp) -> summary``: it calls one library use case, writes that use case's
artefacts into ``tmp`` (its stage folder under construction) and returns the use case's typed
result serialised (``result.to_dict()``), which the runner stores in ``stage.json``. It reads
earlier stages' artefacts from the run directory only (so a resumed run needs nothing in memory),
and it declares those stages in ``inputs``: the runner records their manifests' digests, so a
changed upstream stage invalidates this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etdeploy.fileio import read_json_artefact
from etdeploy.pipeline.config import RunConfig

MANIFEST = "stage.json"
MANIFEST_FORMAT = "etdeploy-stage"
#: Folder of the compress stage's chosen model (``masked/``, ``sliced/``, export, front).
COMPRESS_MODEL = "model"


def percent_dir(percent: float) -> str:
    """Folder name of one masking percent in the prune stage (``p95``, ``p62_5``)."""
    return f"p{percent:g}".replace(".", "_")


@dataclass
class RunContext:
    """The configuration, the run directory and a cache of loaded objects (data set, decoded splits)."""

    config: RunConfig
    out: Path
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def manifest(self, name: str) -> dict[str, Any]:
        from etdeploy.errors import ReportError

        return read_json_artefact(self.stage_dir(name) / MANIFEST, what=f"stage manifest of {name!r}",
                                  format=MANIFEST_FORMAT, error=ReportError)

    def summary(self, name: str) -> dict[str, Any]:
        return self.manifest(name)["summary"]

    def pruned_dir(self) -> Path:
        """The folder (``masked/``, ``sliced/``) of the model that is exported and explained: the compress
        stage's chosen model when ``[compress] target`` is set, else the prune stage's ``export_percent``."""
        if self.config.compress.target is not None:
            return self.stage_dir("compress") / COMPRESS_MODEL
        return self.stage_dir("prune") / percent_dir(self.config.prune.export_percent)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def dataset(self):
        """The configured data set (opened once per run)."""
        from etdeploy.data import load_dataset

        d = self.config.data
        return self.cached("dataset", lambda: load_dataset(d.source, grouping=d.grouping, recipe=d.recipe,
                                                           seed=d.seed, cap=d.cap))

    def split_images(self, split: str, size: int):
        """One split decoded at ``size`` pixels (decoded once per run)."""
        from etdeploy.data.images import load_split_images

        return self.cached(f"images:{split}:{size}",
                           lambda: load_split_images(self.dataset(), split, size, progress=self.progress))


@dataclass(frozen=True)
class Stage:
    """``run(ctx, tmp) -> summary dict``; ``describe(summary) -> one line``; ``inputs``: upstream stage names."""

    name: str
    run: Callable[[RunContext, Path], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]
    inputs: tuple[str, ...] = ()
