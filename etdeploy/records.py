"""Typed results that serialise to JSON and back: the currency between use cases, pipeline and report.

A use case (``prune_dirs``, ``explain_images``, ``fit_targets``...) returns a frozen dataclass that
derives from :class:`Record`. The pipeline writes ``result.to_dict()`` into its stage manifest; the
report reads it back with ``ResultType.from_dict(d)`` and renders attributes, never string keys.

Field types allowed: ``bool``, ``int``, ``float``, ``str``, ``None`` unions, ``tuple[X, ...]``,
``list[X]``, ``dict[str, X]``, ``Any`` (kept as parsed JSON) and nested :class:`Record` classes (which
serialise with their own ``to_dict``, so an override that adds computed fields applies when nested). A
field named after a Python keyword ends in ``_`` (``class_``) and is ``class`` in JSON.
``to_dict`` turns tuples into lists and leaves floats as they are (``canonical_json`` rounds nothing
and writes non-finite floats as ``null``; ``from_dict`` reads ``null`` back as NaN for ``float`` fields).
"""

from __future__ import annotations

import dataclasses
import keyword
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from etdeploy.errors import EtdeployError

R = TypeVar("R", bound="Record")


class RecordError(EtdeployError, ValueError):
    """A serialised record (stage summary, run record) lacks a field or has a wrong type."""


def _json_name(field_name: str) -> str:
    """A field named after a Python keyword carries a trailing underscore (``class_``); JSON has ``class``."""
    return field_name[:-1] if field_name.endswith("_") and keyword.iskeyword(field_name[:-1]) else field_name


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()  # a nested record serialises itself (it may add or drop fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_plain(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if type(value).__module__ == "numpy":
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value.tolist()
    return value


def _fields_plain(value: Any) -> dict[str, Any]:
    return {_json_name(f.name): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}


def _build(annotation: Any, value: Any, where: str) -> Any:
    if annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _build(inner[0], value, where)
        for option in inner:
            try:
                return _build(option, value, where)
            except RecordError:
                continue
        raise RecordError(f"{where}: {value!r} matches none of {annotation}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where} must be a list, got {type(value).__name__}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise RecordError(f"{where} must have {len(args)} items, got {len(value)}")
            return tuple(_build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        built = [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(built) if origin is tuple else built
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be a table, got {type(value).__name__}")
        item = args[1] if len(args) == 2 else Any
        return {k: _build(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return annotation.from_dict(value, where=where)
    if annotation is float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise RecordError(f"{where} must be a string, got {value!r}")
        return value
    return value


class Record:
    """Mixin for frozen dataclasses: ``to_dict()`` (JSON-ready) and ``from_dict()`` (validated)."""

    def to_dict(self) -> dict[str, Any]:
        return _fields_plain(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str | None = None) -> typing.Self:
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where} must be a table, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = _json_name(f.name)
            if key not in data:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise RecordError(f"{where} lacks the field {key!r}")
            kwargs[f.name] = _build(hints[f.name], data[key], f"{where}.{key}")
        return cls(**kwargs)


def read_record(path: Any, record_type: type[R], *, what: str, format: str | None = None,
                versions: tuple[int, ...] = (1,), error: type[EtdeployError] = RecordError) -> R:
    """A JSON artefact read as a typed record: :func:`etdeploy.fileio.read_json_artefact` (exists, parses,
    format/version), then ``record_type.from_dict``; every failure is ``error`` naming the file."""
    from etdeploy.fileio import read_json_artefact

    doc = read_json_artefact(path, what=what, format=format, versions=versions, error=error)
    try:
        return record_type.from_dict(doc, where=Path(path).name)
    except RecordError as exc:
        raise error(f"not a {what}: {exc.message}", path) from exc
