"""``etdeploy data ...``"""

from __future__ import annotations

import json

import click

from etdeploy.cli.options import data_options, open_data_from_options


@click.group()
def data() -> None:
    """Inspect data sets."""


@data.command("info")
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(data: str, grouping: str, recipe: str, cap: int | None, data_seed: int, as_json: bool) -> None:
    """Class counts per split."""
    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    counts = ds.counts()
    if as_json:
        click.echo(json.dumps(ds.describe(), indent=2, sort_keys=True))
        return
    click.echo(f"data: {ds.name} ({ds.root})  grouping: {ds.grouping}  recipe: {ds.recipe}  seed: {ds.seed}")
    width = max(len(c) for c in ds.classes)
    click.echo(f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}")
    for k, name in enumerate(ds.classes):
        click.echo(f"{name:<{width}}  {counts['train'][k]:>6} {counts['val'][k]:>6} {counts['test'][k]:>6}")
    click.echo(f"{'total':<{width}}  {sum(counts['train']):>6} {sum(counts['val']):>6} {sum(counts['test']):>6}")
    for note in ds.warnings:
        click.echo(f"warning: {note}", err=True)
    if ds.citation:
        click.echo(f"cite: {ds.citation}")
