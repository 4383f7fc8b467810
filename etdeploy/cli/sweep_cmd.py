"""``etdeploy sweep``: accuracy vs neurons masked, per schedule, without retraining."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option, split_option
from etdeploy.cli.params import INTS, NUMBERS, STRINGS
from etdeploy.vocab import CRITERIA, SWEEP_GRIDS


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained model directory.")
@click.option("--ranking", "ranking_dir", required=True, type=click.Path(), help="Ranking directory of that model.")
@click.option("--schedules", type=STRINGS, default="bottom-first,top-first,random", show_default=True,
              help="Comma-separated schedules (class-ea:<class index or name> for per-class pruning) and importance "
                   f"criteria ({', '.join(CRITERIA)}).")
@click.option("--layer", type=STRINGS, default="dense2", show_default=True,
              help="Layer to sweep, or several separated by commas (e.g. flatten,dense1,dense2), masked together "
                   "at shared percentages.")
@split_option("test", "Split whose accuracy is measured.")
@click.option("--splits", type=STRINGS, default=None,
              help="Several splits measured together, e.g. val,test (both held-out splits); replaces --split.")
@click.option("--counts", type=INTS, default=None, help="Comma-separated numbers of neurons to mask.")
@click.option("--percents", type=NUMBERS, default=None, help="Comma-separated masking percentages.")
@click.option("--points", type=click.IntRange(min=2), default=21, show_default=True,
              help="Grid points (spread by --grid) when neither --counts nor --percents is given.")
@click.option("--grid", type=click.Choice(SWEEP_GRIDS), default="uniform", show_default=True,
              help="Spacing of the --points grid: even, or dense-tail (a quarter of the points up to 80 %% masked, "
                   "the rest beyond, where accuracy falls).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the 'random' schedule and the bootstrap.")
@click.option("--random-seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run 'random' with this many seeds (seed, seed+1, ...): its curve is their mean, with a min/max band.")
@model_data_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def sweep(model_dir, ranking_dir, schedules, layer, split, splits, counts, percents, points, grid, seed, random_seeds, data,
          grouping, recipe, cap, data_seed, allow_other_data, out, force, progress) -> None:
    """Accuracy vs neurons masked (no retraining) for several schedules: OUT/sweep.csv + sweep.json.

    Areas and accuracies carry 95 % intervals from the number of images (bootstrap / Wilson).
    """
    from etdeploy.pruning import sweep_dirs

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    if splits:
        split = "+".join(splits)
    run = sweep_dirs(model_dir, ranking_dir, dataset=ds, schedules=schedules, layer=layer, split=split, out=out,
                     counts=counts, percents=percents, points=points, grid=grid, seed=seed, random_seeds=random_seeds,
                     force=force, progress=progress, allow_other_data=allow_other_data)
    click.echo(f"{run.layer} ({run.width} neurons, {run.n_live} live), {split} split, {run.n_images} images")
    click.echo(f"{'schedule':<16} {'area':>7} {'area 95% CI':>17} {'acc@first':>9} {'acc@last':>9}")
    for name in run.schedules:
        curve = run.curves[name]
        ci = curve.auc_ci95
        ci_text = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci is not None else ""
        click.echo(f"{name:<16} {curve.auc:>7.4f} {ci_text:>17} {curve.accuracy[0]:>9.4f} {curve.accuracy[-1]:>9.4f}")
        if curve.band is not None:
            click.echo(f"{'':<16} {len(curve.band.seeds)} seeds: area {curve.band.auc_min:.4f} .. {curve.band.auc_max:.4f}")
    click.echo(f"out: {out}")
