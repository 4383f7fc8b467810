"""The typed run record the report renders: everything the report shows, nothing read from disk.

A :class:`RunRecord` is assembled by whoever has the results (the pipeline's report stage, or
``etdeploy report`` from artefact folders made by hand) and rendered by
:func:`etdeploy.report.render`. Stage results are the use cases' serialised typed results
(``result.to_dict()``), keyed by stage name; a section reads one back with
``record.stage("prune", PruneRun)``. ``assets`` holds the files the report embeds or copies
(``"explain/test0001_correct.png"``, ``"rank/ranking/dense1.csv"``): keyed ``<stage>/<path>``.

``criteria`` are the acceptance criteria the run is judged by (the run configuration's ``[acceptance]``;
the defaults of :class:`~etdeploy.assurance.acceptance.AcceptanceCriteria` for ``etdeploy report``).
``stamp`` holds what identifies the rendering but is not a result (``code_version``, ``run_date``): the
HTML and PDF show it, ``report.json`` leaves it out so that it stays byte-reproducible. The assurance
views (:meth:`RunRecord.acceptance`, :meth:`RunRecord.traceability`, :meth:`RunRecord.problems`) are
computed from the stage results; nothing is read from disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from etdeploy.assurance.acceptance import AcceptanceCriteria, AcceptanceResult, evaluate_acceptance
from etdeploy.assurance.problems import Problem, gather_problems
from etdeploy.assurance.traceability import Traceability, trace
from etdeploy.records import Record

T = TypeVar("T", bound=Record)


@dataclass(frozen=True)
class Provenance(Record):
    """Where the run came from: configuration, versions, platform, command, artefact digests."""

    config: dict[str, Any] = field(default_factory=dict)
    config_sha256: str = ""
    seed: int = 0
    torch_threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    artefacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """Name, stage results (serialised, by stage name, in pipeline order), provenance and assets."""

    name: str
    stages: dict[str, dict[str, Any]]
    provenance: Provenance
    assets: dict[str, bytes] = field(default_factory=dict)
    criteria: AcceptanceCriteria = field(default_factory=AcceptanceCriteria)
    stamp: dict[str, str] = field(default_factory=dict)

    def _memo(self, key: str, make):
        # the views are pure functions of the (frozen) record: computed once per record
        cache = self.__dict__.setdefault("_views", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def acceptance(self) -> AcceptanceResult:
        """Each acceptance criterion checked against the stage results, and the overall verdict."""
        return self._memo("acceptance", lambda: evaluate_acceptance(self.criteria, self.stages))

    def traceability(self) -> Traceability:
        """The objectives matrix (docs/method.md §12.4)."""
        return self._memo("traceability", lambda: trace(self.stages, self.provenance.artefacts, self.acceptance()))

    def problems(self) -> tuple[Problem, ...]:
        """Every warning, refusal, flat map, near-miss and failed criterion of the run."""
        return self._memo("problems", lambda: gather_problems(self.stages, self.acceptance()))

    def has(self, name: str) -> bool:
        return name in self.stages

    def stage(self, name: str, result_type: type[T]) -> T | None:
        """Stage ``name``'s result as ``result_type`` (``None`` when the run has no such stage)."""
        data = self.stages.get(name)
        return None if data is None else result_type.from_dict(data, where=f"stage {name!r}")

    def asset(self, key: str) -> bytes:
        from etdeploy.errors import ReportError

        try:
            return self.assets[key]
        except KeyError:
            raise ReportError(f"the run record has no asset {key!r} (a stage folder is incomplete?)") from None


@dataclass(frozen=True)
class Section:
    """One report section: anchor id, title and body markup (:class:`~etdeploy.report.html.Raw`)."""

    id: str
    title: str
    body: str
