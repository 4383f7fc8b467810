"""The report stage: assemble the run record from the stage manifests, render it into the stage folder, and
print it to ``report.pdf`` with headless Chromium where one is installed (the summary says why not otherwise).

The record carries the ``[acceptance]`` criteria and a stamp (code version, run date) that the HTML and PDF
show. The run date is the UTC day the run started (``run.json``'s modification time), so a resumed run, or
the same configuration run twice on one day, gives the same bytes; the PDF's own dates are set to it.
"""

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
    from etdeploy.assurance.acceptance import AcceptanceCriteria
    from etdeploy.pipeline.runner import config_hash, read_run_file
    from etdeploy.report import Provenance, RunRecord
    from etdeploy.report.artefacts import code_version, package_versions, platform_info, stage_assets, utc_date

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
    a = ctx.config.acceptance
    criteria = AcceptanceCriteria(max_accuracy_drop=a.max_accuracy_drop, min_accuracy=a.min_accuracy,
                                  must_fit=tuple(a.must_fit), deadlines=tuple(a.deadlines),
                                  require_parity=a.require_parity)
    stamp = {"code_version": code_version(), "run_date": utc_date((ctx.out / "run.json").stat().st_mtime)}
    return RunRecord(name=ctx.config.name, stages={name: m["summary"] for name, m in manifests.items()},
                     provenance=provenance, assets=assets, criteria=criteria, stamp=stamp)


def run_report(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.errors import ReportError
    from etdeploy.pipeline.stages import stage_names
    from etdeploy.report import report_document, write_report
    from etdeploy.report.pdf import find_chromium, write_pdf

    record = assemble_run_record(ctx, [n for n in stage_names() if n != "report"])
    files = write_report(record, tmp)
    acceptance = record.acceptance()
    summary = {"csv_tables": sum(1 for rel in files if rel.startswith("tables/")),
               "report_json_sha256": sha256_bytes(canonical_json(report_document(record)).encode()),
               "verdict": acceptance.verdict, "failed_criteria": [r.criterion for r in acceptance.failed]}
    if find_chromium() is None:
        summary["pdf"] = None
        summary["pdf_missing"] = "no Chromium on PATH (install the Debian package 'chromium' to get report.pdf)"
        return summary
    try:
        write_pdf(tmp / "report.html", tmp / "report.pdf", date=record.stamp["run_date"])
        summary["pdf"] = "report.pdf"
    except ReportError as exc:
        summary["pdf"] = None
        summary["pdf_missing"] = exc.message
    return summary


def describe_report(s: dict[str, Any]) -> str:
    pdf = "report.pdf" if s.get("pdf") else f"no PDF ({s['pdf_missing']})" if "pdf_missing" in s else "no PDF"
    verdict = f"; acceptance {s['verdict']}" if "verdict" in s else ""
    failed = f" ({', '.join(s['failed_criteria'])})" if s.get("failed_criteria") else ""
    return f"report.html, report.json, {pdf} and {s['csv_tables']} CSV tables{verdict}{failed}"
