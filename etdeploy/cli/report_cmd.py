"""``etdeploy report``: the V&V report from artefact folders made by hand (no pipeline run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from etdeploy.cli.options import model_data_options, progress_option


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New report directory.")
@click.option("--name", default="etdeploy-report", show_default=True, help="Report title.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model directory written by `etdeploy train` (training section).")
@click.option("--ranking", "ranking_dir", type=click.Path(file_okay=False), default=None,
              help="Ranking directory written by `etdeploy rank` (ranking section).")
@click.option("--sweep", "sweep_dir", type=click.Path(file_okay=False), default=None,
              help="Directory written by `etdeploy sweep` (sweep section).")
@click.option("--prune", "prune_dir", type=click.Path(file_okay=False), default=None,
              help="Directory written by `etdeploy prune`, or a folder of such directories (pruning section).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Directory written by `etdeploy export` (or a folder of several).")
@click.option("--parity", "parity_file", type=click.Path(), default=None,
              help="JSON written by `etdeploy parity --out` (parity section).")
@click.option("--fit", "fit_file", type=click.Path(), default=None,
              help="JSON written by `etdeploy fit --out` (flight-processor fit section).")
@click.option("--package", "package_dir", type=click.Path(file_okay=False), default=None,
              help="Flight bundle folder (etdeploy package --out).")
@click.option("--maps", "maps_dir", type=click.Path(file_okay=False), default=None,
              help="Directory written by `etdeploy explain` (explanations section).")
@click.option("--max-accuracy-drop", type=float, default=0.05, show_default=True,
              help="Acceptance: largest allowed drop of test accuracy, original to deployed (fraction; -1: none).")
@click.option("--min-accuracy", type=float, default=None, help="Acceptance: the deployed model's accuracy at least this.")
@click.option("--must-fit", multiple=True, help="Acceptance: a target id the deployed model must fit (repeatable).")
@click.option("--deadline", "deadlines", multiple=True,
              help="Acceptance: TARGET=SECONDS latency bound per image on that target (repeatable).")
@click.option("--pdf/--no-pdf", default=False, show_default=True,
              help="Also print report.pdf with headless Chromium (one section per page).")
@model_data_options
@click.option("--no-data", is_flag=True, help="Leave the data section out.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def report(out, name, model_dir, ranking_dir, sweep_dir, prune_dir, export_dir, parity_file, fit_file, package_dir,
           maps_dir, max_accuracy_drop, min_accuracy, must_fit, deadlines, pdf, data, grouping, recipe, cap, data_seed,
           allow_other_data, no_data, force, progress) -> None:
    """Render report.html, report.json and tables/ from existing artefact folders.

    Each folder must come from the etdeploy command named in its option's help; the report shows a
    section for each one given. The data section describes the model's training data unless data
    options are given (other data than the model's need --allow-other-data). `etdeploy run` writes
    the same report for a whole pipeline run.
    """
    from etdeploy.assurance.acceptance import AcceptanceCriteria, parse_deadlines
    from etdeploy.errors import ConfigError
    from etdeploy.fileio import StagedDir
    from etdeploy.report import write_report
    from etdeploy.report.artefacts import record_from_artefacts

    given = (("train", model_dir), ("rank", ranking_dir), ("sweep", sweep_dir), ("prune", prune_dir), ("export", export_dir),
             ("parity", parity_file), ("explain", maps_dir), ("fit", fit_file), ("package", package_dir))
    folders = {stage: path for stage, path in given if path is not None}
    dataset = None
    if not no_data:
        from etdeploy.cli.options import open_data_from_options

        dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
        if model_dir is not None:
            from etdeploy.data.compat import check_compatible, recorded_data

            if recorded_data(model_dir) is not None:
                from etdeploy.models import load_model

                check_compatible(load_model(model_dir), dataset, model_dir, allow_other_data=allow_other_data)
    try:
        parse_deadlines(deadlines)
    except ValueError as exc:
        raise ConfigError(f"--deadline: {exc}") from exc
    if min_accuracy is not None and not 0 <= min_accuracy <= 1:
        raise ConfigError("--min-accuracy must be in [0, 1]")
    if max_accuracy_drop > 1 or (max_accuracy_drop < 0 and max_accuracy_drop != -1):
        raise ConfigError("--max-accuracy-drop must be in [0, 1] (a fraction), or -1 for none")
    criteria = AcceptanceCriteria(max_accuracy_drop=None if max_accuracy_drop == -1 else max_accuracy_drop,
                                  min_accuracy=min_accuracy, must_fit=tuple(must_fit), deadlines=tuple(deadlines))
    record = record_from_artefacts(name, folders, dataset=dataset, data_source=dataset.source if dataset else "",
                                   progress=progress, command=("etdeploy", *sys.argv[1:]), criteria=criteria)
    with StagedDir(Path(out), force=force) as tmp:
        files = write_report(record, tmp)
        if pdf:
            from etdeploy.report.pdf import write_pdf

            write_pdf(tmp / "report.html", tmp / "report.pdf", date=record.stamp["run_date"])
            files["report.pdf"] = ""
    click.echo(f"report: {out}/report.html ({len(files)} files; sections: {', '.join(record.stages) or 'none'})")
