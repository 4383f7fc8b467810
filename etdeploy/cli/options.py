"""Shared click options and parameter types. Choices come from :mod:`etdeploy.vocab` (no copies)."""

from __future__ import annotations

import click

from etdeploy.vocab import SPLIT_RECIPES, SPLITS, USER_GROUPINGS


def data_options(func):
    """``--data``, ``--grouping``, ``--recipe``, ``--cap``, ``--data-seed``."""
    func = click.option("--data-seed", type=int, default=0, show_default=True,
                        help="Seed of the 'paper' split recipe.")(func)
    func = click.option("--cap", type=click.IntRange(min=1), default=None,
                        help="At most this many images per class (paper recipe; the paper used ~300).")(func)
    func = click.option("--recipe", type=click.Choice(sorted(SPLIT_RECIPES)), default="paper", show_default=True,
                        help="Split recipe: seeded stratified 80/10/10 ('paper') or the official sol split.")(func)
    func = click.option("--grouping", type=click.Choice(USER_GROUPINGS), default="paper5",
                        show_default=True, help="Class grouping for MSL data.")(func)
    func = click.option("--data", "data", default="bundled", show_default=True,
                        help="'bundled' (MSL subset shipped with etdeploy) or a folder: MSL label-file "
                             "format or ImageFolder (root/<class>/*.jpg|png).")(func)
    return func


def open_data_from_options(data: str, grouping: str, recipe: str, cap: int | None, data_seed: int):
    from etdeploy.data import load_dataset

    return load_dataset(data, grouping=grouping, recipe=recipe, seed=data_seed, cap=cap)


def split_option(default: str, help: str = "Data split."):
    """``--split`` over :data:`etdeploy.vocab.SPLITS`."""
    return click.option("--split", type=click.Choice(SPLITS), default=default, show_default=True, help=help)


def progress_option(func):
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Progress bars on stderr (drawn on a terminal only; see `etdeploy --help`).")(func)
