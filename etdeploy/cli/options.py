"""Shared click options and parameter types."""

from __future__ import annotations

import click


def data_options(func):
    """``--data``, ``--grouping``, ``--recipe``, ``--cap``, ``--data-seed``."""
    func = click.option("--data-seed", type=int, default=0, show_default=True,
                        help="Seed of the 'paper' split recipe.")(func)
    func = click.option("--cap", type=click.IntRange(min=1), default=None,
                        help="At most this many images per class (paper recipe; the paper used ~300).")(func)
    func = click.option("--recipe", type=click.Choice(["paper", "sol"]), default="paper", show_default=True,
                        help="Split recipe: seeded stratified 80/10/10 ('paper') or the official sol split.")(func)
    func = click.option("--grouping", type=click.Choice(["paper5", "msl25"]), default="paper5",
                        show_default=True, help="Class grouping for MSL data.")(func)
    func = click.option("--data", "data", default="bundled", show_default=True,
                        help="'bundled' (MSL subset shipped with etdeploy) or a folder: MSL label-file "
                             "format or ImageFolder (root/<class>/*.jpg|png).")(func)
    return func


def open_data_from_options(data: str, grouping: str, recipe: str, cap: int | None, data_seed: int):
    from etdeploy.api import open_data

    return open_data(data, grouping=grouping, recipe=recipe, seed=data_seed, cap=cap)


def progress_option(func):
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show progress bars on stderr.")(func)
