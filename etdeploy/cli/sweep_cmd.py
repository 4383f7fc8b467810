"""``etdeploy sweep``: accuracy vs neurons masked, per schedule, without retraining."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option, split_option
from etdeploy.cli.params import INTS, NUMBERS, STRINGS


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained model directory.")
@click.option("--ranking", "ranking_dir", required=True, type=click.Path(), help="Ranking directory of that model.")
@click.option("--schedules", type=STRINGS, default="bottom-first,top-first,random", show_default=True,
              help="Comma-separated schedules (class-ea:<class index or name> for per-class pruning).")
@click.option("--layer", default="dense2", show_default=True, help="Layer to sweep.")
@split_option("test", "Split whose accuracy is measured.")
@click.option("--counts", type=INTS, default=None, help="Comma-separated numbers of neurons to mask.")
@click.option("--percents", type=NUMBERS, default=None, help="Comma-separated masking percentages.")
@click.option("--points", type=click.IntRange(min=2), default=21, show_default=True,
              help="Evenly spaced counts 0..width-1 when neither --counts nor --percents is given.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 'random' schedule.")
@model_data_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def sweep(model_dir, ranking_dir, schedules, layer, split, counts, percents, points, seed, data, grouping, recipe,
          cap, data_seed, allow_other_data, out, force, progress) -> None:
    """Accuracy vs neurons masked (no retraining) for several schedules: OUT/sweep.csv + sweep.json."""
    from etdeploy.pruning import sweep_dirs

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = sweep_dirs(model_dir, ranking_dir, dataset=ds, schedules=schedules, layer=layer, split=split, out=out,
                     counts=counts, percents=percents, points=points, seed=seed, force=force, progress=progress,
                     allow_other_data=allow_other_data)
    click.echo(f"{layer} ({run.width} neurons, {run.n_live} live), {split} split, {run.n_images} images")
    click.echo(f"{'schedule':<16} {'area':>7} {'acc@first':>9} {'acc@last':>9}")
    for name in run.schedules:
        curve = run.curves[name]
        click.echo(f"{name:<16} {curve.auc:>7.4f} {curve.accuracy[0]:>9.4f} {curve.accuracy[-1]:>9.4f}")
    click.echo(f"out: {out}")
