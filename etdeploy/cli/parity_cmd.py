"""``etdeploy parity``: masked torch, sliced torch, model.onnx and model.sim.onnx (and an imported model's
original ONNX file) agree on one split."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option
from etdeploy.vocab import SPLITS


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Sliced (or unpruned) model directory.")
@click.option("--export", "export_dir", required=True, type=click.Path(), help="Directory written by `etdeploy export`.")
@click.option("--masked", "masked_dir", default=None, type=click.Path(),
              help="Masked model directory (before slicing); adds the masked torch model to the comparison.")
@click.option("--original", "original_dir", default=None, type=click.Path(),
              help="For an imported model: the directory `etdeploy import --onnx` wrote (it keeps original.onnx), "
                   "or the weights file given to `etdeploy import --arch`; adds the original model to the "
                   "comparison (default: --model itself when it holds original.onnx).")
@model_data_options
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True,
              help="Absolute tolerance on logits.")
@click.option("--reference-images", type=click.IntRange(min=0), default=2, show_default=True,
              help="Images also run through onnx.reference.ReferenceEvaluator (0 to skip).")
@click.option("--reference-tol", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Absolute tolerance between ReferenceEvaluator and ONNX Runtime.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the parity report as JSON to this new file (also when parity fails).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@progress_option
def parity(model_dir, export_dir, masked_dir, original_dir, data, grouping, recipe, cap, data_seed, allow_other_data,
           split, tol, reference_images, reference_tol, out_file, force, as_json, progress) -> None:
    """Compare masked torch, sliced torch, model.onnx and model.sim.onnx on one split (and, for a model
    imported from ONNX, the original ONNX file).

    Exits 2 with every mismatch listed when any two disagree on a top-1 label or by more than TOL.
    """
    from pathlib import Path

    from etdeploy.errors import OutputExistsError
    from etdeploy.export import parity_from_dirs
    from etdeploy.fileio import atomic_write_json, canonical_json

    if out_file is not None and Path(out_file).exists() and not force:
        raise OutputExistsError("refusing to overwrite an existing file; pass --force", out_file)
    dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = parity_from_dirs(model_dir, export_dir, masked_dir=masked_dir, dataset=dataset, split=split, tol=tol,
                           reference_images=reference_images, reference_tol=reference_tol, progress=progress,
                           raise_on_mismatch=False, allow_other_data=allow_other_data, original=original_dir)
    if out_file is not None:
        atomic_write_json(out_file, run.to_dict(), overwrite=force)
    if as_json:
        click.echo(canonical_json(run.to_dict()), nl=False)
    else:
        click.echo(run.table())
    if not run.passed:
        raise run.error()
    if not as_json and out_file:
        click.echo(f"report: {out_file}")
