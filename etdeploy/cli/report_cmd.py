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
@model_data_options
@click.option("--no-data", is_flag=True, help="Leave the data section out.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def report(out, name, model_dir, ranking_dir, sweep_dir, prune_dir, export_dir, parity_file, fit_file, package_dir,
           maps_dir, data, grouping, recipe, cap, data_seed, allow_other_data, no_data, force, progress) -> None:
    """Render report.html, report.json and tables/ from existing artefact folders.

    Each folder must come from the etdeploy command named in its option's help; the report shows a
    section for each one given. The data section describes the model's training data unless data
    options are given (other data than the model's need --allow-other-data). `etdeploy run` writes
    the same report for a whole pipeline run.
    """
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
    record = record_from_artefacts(name, folders, dataset=dataset, data_source=dataset.source if dataset else "",
                                   progress=progress, command=("etdeploy", *sys.argv[1:]))
    with StagedDir(Path(out), force=force) as tmp:
        files = write_report(record, tmp)
    click.echo(f"report: {out}/report.html ({len(files)} files; sections: {', '.join(record.stages) or 'none'})")
