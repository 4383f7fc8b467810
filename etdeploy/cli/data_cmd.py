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
@click.option("--files", is_flag=True,
              help="List every image instead: CSV (split, path, label, class, source_class, sha256), or JSON "
                   "rows with --json.")
def info(data: str, grouping: str, recipe: str, cap: int | None, data_seed: int, as_json: bool, files: bool) -> None:
    """Class counts per split (--files: each split's images with their class and SHA-256)."""
    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    if files:
        import csv
        import io

        from etdeploy.data.manifest import manifest_csv

        text = manifest_csv(ds, progress=False)
        if as_json:
            rows = list(csv.DictReader(io.StringIO(text)))
            for row in rows:
                row["label"] = int(row["label"])
            click.echo(json.dumps(rows, indent=2, sort_keys=True))
        else:
            click.echo(text, nl=False)
        return
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
