"""Shared click options and parameter types. Choices come from :mod:`etdeploy.vocab` (no copies).

Data options: commands without a model (``train``, ``data info``) take :func:`data_options`
(unset = the bundled subset, paper5, paper recipe, seed 0, no cap). Commands given a model take
:func:`model_data_options`: an unset option means "as the model was trained" (its spec records its
data), and ``--allow-other-data`` lets them use other splits with a one-line warning instead of
refusing (a different seed, cap or recipe can put training images in the "test" split).
"""

from __future__ import annotations

import functools
import warnings

import click

from etdeploy.vocab import SPLIT_RECIPES, SPLITS, USER_GROUPINGS

_DATA_HELP = ("'bundled' (MSL subset shipped with etdeploy) or a folder: MSL label-file format or ImageFolder "
              "(root/<class>/*.jpg|png).")
_FROM_MODEL = " [default: the data the model was trained on (its spec); bundled if it records none]"
_AS_MODEL = " [default: the model's]"


def _data_option_decorators(func, *, from_model: bool):
    def default(value):
        return {} if from_model else {"default": value, "show_default": True}

    suffix = _AS_MODEL if from_model else ""
    func = click.option("--data-seed", type=int, **default(0), help="Seed of the 'paper' split recipe." + suffix)(func)
    func = click.option("--cap", type=click.IntRange(min=1), default=None,
                        help="At most this many images per class (paper recipe; the paper used ~300)."
                             + (suffix or ""))(func)
    func = click.option("--recipe", type=click.Choice(sorted(SPLIT_RECIPES)), **default("paper"),
                        help="Split recipe: seeded stratified 80/10/10 ('paper') or the official sol split."
                             + suffix)(func)
    func = click.option("--grouping", type=click.Choice(USER_GROUPINGS), **default("paper5"),
                        help="Class grouping for MSL data." + suffix)(func)
    func = click.option("--data", "data", **default("bundled"),
                        help=_DATA_HELP + (_FROM_MODEL if from_model else ""))(func)
    return func


def data_options(func):
    """``--data``, ``--grouping``, ``--recipe``, ``--cap``, ``--data-seed`` (no model: bundled defaults)."""
    return _data_option_decorators(func, from_model=False)


def model_data_options(func):
    """The data options of a command given a model: unset = the model's training data; plus
    ``--allow-other-data``. Warnings that other data are used print as one ``warning: ...`` line."""
    func = click.option("--allow-other-data", is_flag=True,
                        help="Use data splits other than the ones the model was trained on (a different --data, "
                             "--grouping, --recipe, --data-seed or --cap): a warning instead of an error. Results "
                             "on a split that shares images with the model's training split are inflated.")(func)
    return _data_option_decorators(_one_line_data_warnings(func), from_model=True)


def _one_line_data_warnings(func):
    """Run ``func`` printing :class:`~etdeploy.data.compat.OtherDataWarning` as ``warning: <text>`` on stderr."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from etdeploy.data.compat import OtherDataWarning

        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, OtherDataWarning):
                    click.echo(f"warning: {' '.join(str(message).split())}", err=True)
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            warnings.simplefilter("always", OtherDataWarning)
            return func(*args, **kwargs)

    return wrapper


def open_data_from_options(data: str | None, grouping: str | None, recipe: str | None, cap: int | None,
                           data_seed: int | None, *, model_dir=None):
    """The data set the options name. With ``model_dir``, unset options (``None``) take the values the
    model's spec records (:func:`etdeploy.data.compat.open_model_data`); without it, the bundled defaults."""
    if model_dir is not None:
        from etdeploy.data.compat import open_model_data

        return open_model_data(model_dir, source=data, grouping=grouping, recipe=recipe, seed=data_seed, cap=cap)
    from etdeploy.data import load_dataset

    return load_dataset("bundled" if data is None else data, grouping=grouping or "paper5", recipe=recipe or "paper",
                        seed=0 if data_seed is None else data_seed, cap=cap)


def split_option(default: str, help: str = "Data split."):
    """``--split`` over :data:`etdeploy.vocab.SPLITS`."""
    return click.option("--split", type=click.Choice(SPLITS), default=default, show_default=True, help=help)


def progress_option(func):
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Progress bars on stderr (drawn on a terminal only; see `etdeploy --help`).")(func)
