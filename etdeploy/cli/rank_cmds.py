"""``etdeploy rank``: integrated-gradients ranking of dense-layer neurons on one data split."""

from __future__ import annotations

import click

from etdeploy.cli.options import data_options, open_data_from_options, progress_option

# Must equal etdeploy.attribution.quadrature.QUADRATURE_RULES (checked by a test; kept here so that
# `--help` does not import numpy).
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def _parse_layers(ctx, param, value: str | None) -> list[str] | None:
    if value is None or value.strip().lower() == "all":
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give layer names separated by commas (e.g. flatten,dense1,dense2) or 'all'")
    return names


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Model directory.")
@data_options
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True,
              help="Split whose images rank the neurons.")
@click.option("--layers", default="all", show_default=True, callback=_parse_layers,
              help="Comma-separated dense layers (flatten,dense1,dense2,...) or 'all'.")
@click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True,
              help="Quadrature points of the integral (riemann_trapezoid needs >= 2).")
@click.option("--method", type=click.Choice(METHODS), default="gausslegendre", show_default=True,
              help="Quadrature rule.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per pass of the network tail (each carries --steps scaled copies).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Compute precision of the network (sums are always float64).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def rank(model_dir, data, grouping, recipe, cap, data_seed, split, layers, steps, method, batch_size, dtype, out,
         force, progress) -> None:
    """Rank the neurons of dense layers by integrated gradients (expected loss attribution).

    Writes OUT/summary.json (counts, completeness gaps, settings), OUT/<layer>.csv (one row per
    neuron: live flag, activation mean, rank, per-class rank, expected attributions) and
    OUT/attributions.safetensors (exact arrays, read back by the pruning commands).
    """
    from etdeploy.api import data_provenance, load_split_images
    from etdeploy.attribution import rank_model, save_ranking
    from etdeploy.errors import DataError
    from etdeploy.fileio import refuse_existing_output
    from etdeploy.models import load_model

    refuse_existing_output(out, force=force)
    model = load_model(model_dir)
    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    if tuple(ds.classes) != tuple(model.spec.class_names):
        raise DataError(f"data classes {list(ds.classes)} differ from the model's {list(model.spec.class_names)}",
                        model_dir)
    images = load_split_images(ds, split, model.spec.input_size, progress=progress)
    ranking = rank_model(model, images.images, images.labels, layers=layers, steps=steps, method=method,
                         batch_size=batch_size, progress=progress, dtype=dtype, split=split, seed=data_seed,
                         extra_settings={"data": data_provenance(ds)})
    save_ranking(ranking, out, force=force)
    missing = [c for c, n in zip(ranking.classes, ranking.class_counts) if n == 0]
    click.echo(f"ranked {len(images)} {split} images, {steps} steps ({method}), model {ranking.model_fingerprint[:12]}")
    if missing:
        click.echo(f"warning: no {split} images of class(es) {', '.join(missing)}: their per-class values are "
                   "missing (empty CSV cells)")
    for name, la in ranking.layers.items():
        click.echo(f"  {name:<10} {la.width:>6} neurons: {la.n_live:>6} live, {la.width - la.n_live:>6} dead; "
                   f"completeness gap mean {la.gap_mean:.3g} max {la.gap_max:.3g}")
    click.echo(f"ranking: {out}")
