"""The report stage: assemble the run record from the stage manifests, render it into the stage folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import canonical_json, sha256_bytes
from etdeploy.pipeline.context import RunContext


def _normalised_invocation(argv: list[str], out: Path) -> list[str]:
    text_out = str(out)
    return ["<out>" if a in (text_out, str(out.resolve())) else a for a in argv]


def assemble_run_record(ctx: RunContext, stage_names: list[str]):
    """The :class:`~etdeploy.report.RunRecord` of the stages of ``ctx`` that have run."""
    from etdeploy.pipeline.runner import config_hash, read_run_file
    from etdeploy.report import Provenance, RunRecord
    from etdeploy.report.artefacts import package_versions, platform_info, stage_assets

    manifests = {name: ctx.manifest(name) for name in stage_names if (ctx.stage_dir(name) / "stage.json").is_file()}
    assets = {}
    for name, manifest in manifests.items():
        assets.update(stage_assets(name, ctx.stage_dir(name), manifest["artefacts"]))
    provenance = Provenance(
        config=ctx.config.to_dict(), config_sha256=config_hash(ctx.config), seed=ctx.config.seed,
        torch_threads=read_run_file(ctx.out)["torch_threads"], versions=package_versions(),
        platform=platform_info(),
        command=tuple(_normalised_invocation(list(ctx.cache.get("invocation") or []), ctx.out)),
        artefacts={f"{name}/{rel}": digest for name, m in manifests.items() for rel, digest in m["artefacts"].items()})
    return RunRecord(name=ctx.config.name, stages={name: m["summary"] for name, m in manifests.items()},
                     provenance=provenance, assets=assets)


def run_report(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.pipeline.stages import stage_names
    from etdeploy.report import report_document, write_report

    record = assemble_run_record(ctx, [n for n in stage_names() if n != "report"])
    files = write_report(record, tmp)
    return {"csv_tables": sum(1 for rel in files if rel.startswith("tables/")),
            "report_json_sha256": sha256_bytes(canonical_json(report_document(record)).encode())}


def describe_report(s: dict[str, Any]) -> str:
    return f"report.html, report.json and {s['csv_tables']} CSV tables"
