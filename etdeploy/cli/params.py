"""click parameter types of the rank / prune / sweep / params commands (pure click: no heavy imports)."""

from __future__ import annotations

import click


class CsvList(click.ParamType):
    """A comma-separated list of values converted by ``convert_one`` (``ValueError``: not valid)."""

    def __init__(self, convert_one, what: str):
        self.convert_one = convert_one
        self.name = what

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail(f"empty {self.name} list", param, ctx)
        out = []
        for p in parts:
            try:
                out.append(self.convert_one(p))
            except ValueError:
                self.fail(f"{p!r} is not a valid {self.name}", param, ctx)
        return out


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


STRINGS = CsvList(str, "name")
NUMBERS = CsvList(_number, "number")
INTS = CsvList(int, "integer")


def parse_layers(ctx, param, value: str | None) -> list[str] | None:
    """``--layers`` callback: comma-separated layer names, or ``all`` (``None``: every dense layer)."""
    if value is None or value.strip().lower() == "all":
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give layer names separated by commas (e.g. flatten,dense1,dense2) or 'all'")
    return names


def schedule_help() -> str:
    """``bottom-first, top-first, random or class-ea:<class index or name>`` from the vocabulary."""
    from etdeploy.vocab import SCHEDULES, choices_text

    return choices_text(tuple(f"{s}:<class index or name>" if s == "class-ea" else s for s in SCHEDULES))
