"""Is this data set the one a model was made for? One check, used by every command and stage."""

from __future__ import annotations

from typing import Any

from etdeploy.errors import DataError


def check_compatible(model_or_spec: Any, dataset: Any, where: Any = None) -> None:
    """Raise :class:`DataError` unless ``dataset`` has the model's classes in the model's order.

    ``model_or_spec``: an ``ETModel`` or its ``ModelSpec``; ``where``: the path named in the error
    (the model directory, usually).
    """
    spec = getattr(model_or_spec, "spec", model_or_spec)
    model_classes = tuple(spec.class_names)
    data_classes = tuple(dataset.classes)
    if data_classes != model_classes:
        raise DataError(f"data classes {list(data_classes)} differ from the model's {list(model_classes)}", where)
