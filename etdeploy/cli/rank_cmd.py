"""``etdeploy rank``: integrated-gradients ranking of dense-layer neurons on one data split."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option, split_option
from etdeploy.cli.params import parse_layers
from etdeploy.vocab import ATTRIBUTION_DTYPES, QUADRATURE_METHODS


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Model directory.")
@model_data_options
@split_option("train", "Split whose images rank the neurons.")
@click.option("--layers", default="all", show_default=True, callback=parse_layers,
              help="Comma-separated dense layers (flatten,dense1,dense2,...) or 'all'.")
@click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True,
              help="Quadrature points of the integral (riemann_trapezoid needs >= 2).")
@click.option("--method", type=click.Choice(QUADRATURE_METHODS), default="gausslegendre", show_default=True,
              help="Quadrature rule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per pass of the network tail (each carries --steps scaled copies).")
@click.option("--dtype", type=click.Choice(ATTRIBUTION_DTYPES), default="float32", show_default=True,
              help="Compute precision of the network (sums are always float64).")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="Rank on at most about this many images, keeping each class's share (default: all).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def rank(model_dir, data, grouping, recipe, cap, data_seed, allow_other_data, split, layers, steps, method, batch_size, dtype,
         max_images, out, force, progress) -> None:
    """Rank the neurons of dense layers by integrated gradients (expected loss attribution).

    Writes OUT/summary.json (counts, completeness gaps, settings), OUT/<layer>.csv (one row per
    neuron: live flag, activation mean, rank, per-class rank, expected attributions),
    OUT/attributions.safetensors (exact arrays, read back by the pruning commands, with the statistics
    of the other importance criteria: Taylor, APoZ, weight norms, IG class vote, from the same images)
    and OUT/rank.json (what a report shows: counts, best and worst neurons, rank histograms).
    """
    from etdeploy.attribution import rank_dirs

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = rank_dirs(model_dir, ds, split=split, layers=layers, steps=steps, method=method, batch_size=batch_size,
                    dtype=dtype, max_images=max_images, seed=ds.seed, out=out, force=force, progress=progress,
                    allow_other_data=allow_other_data)
    click.echo(f"ranked {run.n_images} {split} images, {steps} steps ({method}), model {run.model_fingerprint[:12]}")
    if run.missing_classes:
        click.echo(f"warning: no {split} images of class(es) {', '.join(run.missing_classes)}: their per-class "
                   "values are missing (empty CSV cells)")
    for la in run.layers:
        click.echo(f"  {la.name:<10} {la.width:>6} neurons: {la.live:>6} live, {la.dead:>6} dead; "
                   f"completeness gap mean {la.gap_mean:.3g} max {la.gap_max:.3g}")
    click.echo(f"ranking: {out}")
