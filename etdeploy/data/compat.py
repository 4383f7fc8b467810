"""Is this data set the one a model was made for? One check, used by every command and stage.

A model's spec records the data it was trained on (:meth:`DataSet.training_record`: source,
resolved root, grouping, recipe, seed, cap; an imported model records the data it was evaluated on
at import, ``meta["evaluated_on"]``, the same way: commands default to them, but no leakage check
applies since its training data are unknown). Two things are checked against it:

- the classes, in the model's order (always: anything else is meaningless output);
- the split identity (:class:`~etdeploy.data.sources.DataIdentity`): a different source, grouping,
  recipe, seed or cap gives different train/val/test splits, so a "test" split may hold images the
  model was trained on (leakage: inflated accuracy) and a "train" split may hold its test images.
  The check refuses (:class:`OtherDataError`), naming what differs and how many images are shared,
  unless the caller allows other data; then it warns (:class:`OtherDataWarning`).

:func:`open_model_data` opens the data a model was trained on, with optional overrides: what the
CLI's data options default to.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from etdeploy.data.sources import DataIdentity, DataSet, Sample, load_dataset
from etdeploy.errors import DataError, EtdeployError
from etdeploy.vocab import SPLITS

#: What the refusal tells the user to do (the CLI flag; ``allow_other_data=True`` in the library).
ALLOW_HINT = "pass --allow-other-data to use these data anyway"
#: The data a model is given when its spec records none (a model built, not trained, by etdeploy).
DEFAULT_DATA = {"source": "bundled", "grouping": "paper5", "recipe": "paper", "seed": 0, "cap": None}


class OtherDataWarning(UserWarning):
    """Data other than the model's training data were used because the caller allowed it."""


class OtherDataError(DataError):
    """The data's splits are not the ones the model was trained on (and other data were not allowed).

    ``reason``: the message without the advice; ``differences``: ``(field, model's value, given
    value)``; ``shared``: images of the checked split that the model was trained on (for a train
    split: model validation/test images it holds), ``None`` when they could not be counted.
    """

    def __init__(self, reason: str, path: object | None = None, *, advice: str = ALLOW_HINT,
                 differences: tuple[tuple[str, str, str], ...] = (), shared: int | None = None):
        self.reason = reason
        self.differences = differences
        self.shared = shared
        super().__init__(f"{reason}; {advice}" if advice else reason, path)


def _spec_meta(model: Any) -> dict:
    """``spec.meta`` of an ``ETModel``, a ``ModelSpec`` or a model directory (only its ``spec.json`` is
    read: a missing or bad spec gives ``{}`` and is left for the model loader to report). A file given
    for a directory is refused with how to import it (:func:`etdeploy.models.paths.require_model_dir`)."""
    if isinstance(model, (str, os.PathLike)):
        from etdeploy.fileio import read_json_artefact
        from etdeploy.models.paths import require_model_dir
        from etdeploy.models.serialization import SPEC_FILE

        directory = require_model_dir(model)
        try:
            doc = read_json_artefact(directory / SPEC_FILE, what="model spec")
        except EtdeployError:
            return {}
        spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
        return spec.get("meta") if isinstance(spec.get("meta"), dict) else {}
    spec = getattr(model, "spec", model)
    return getattr(spec, "meta", None) or {}


def recorded_data(model: Any) -> DataIdentity | None:
    """The data a model was trained on, from its spec; ``None`` when the spec records none.

    ``model``: an ``ETModel``, a ``ModelSpec``, or a model directory (see :func:`_spec_meta`).
    """
    return DataIdentity.from_recorded(_spec_meta(model).get("trained_on"))


def default_data(model: Any) -> DataIdentity | None:
    """The data later commands default to: the training data, else the data an imported model was
    evaluated on at import (``meta["evaluated_on"]``; its training data are unknown, so no leakage
    check applies to them); ``None`` when the spec records neither."""
    meta = _spec_meta(model)
    return DataIdentity.from_recorded(meta.get("trained_on")) or DataIdentity.from_recorded(meta.get("evaluated_on"))


def open_model_data(model: Any, *, source: str | os.PathLike | None = None, grouping: str | None = None,
                    recipe: str | None = None, seed: int | None = None, cap: int | None = None) -> DataSet:
    """The data set a model was trained on; each argument that is not ``None`` overrides that part.

    ``model``: as for :func:`recorded_data`. A model whose spec records no data gets
    :data:`DEFAULT_DATA` (the bundled subset); an imported model, the data it was evaluated on at
    import (:func:`default_data`). Opening other data than the model's is allowed here; the use
    cases' :func:`check_compatible` decides whether it may be used.
    """
    recorded = default_data(model)
    base = dict(DEFAULT_DATA)
    if recorded is not None:
        base = {"source": recorded.location, "grouping": recorded.grouping, "recipe": recorded.recipe,
                "seed": recorded.seed, "cap": recorded.cap}
    if source is None and base["source"] is None:
        raise DataError(f"the model's spec names its training data {recorded.name!r} but not the folder it came "
                        "from (a spec written by an older etdeploy); give the data folder (--data)",
                        model if isinstance(model, (str, os.PathLike)) else None)
    given = {"source": source, "grouping": grouping, "recipe": recipe, "seed": seed}
    chosen = {k: (v if v is not None else base[k]) for k, v in given.items()}
    return load_dataset(chosen["source"], grouping=chosen["grouping"], recipe=chosen["recipe"], seed=chosen["seed"],
                        cap=cap if cap is not None else base["cap"])


def check_compatible(model_or_spec: Any, dataset: Any, where: Any = None, *, split: str = "test",
                     allow_other_data: bool = False) -> str | None:
    """Raise :class:`DataError` unless ``dataset`` has the model's classes in the model's order, and
    :class:`OtherDataError` unless its splits are the ones the model was trained on.

    ``model_or_spec``: an ``ETModel`` or its ``ModelSpec``; ``where``: the path named in the error
    (the model directory, usually); ``split``: the split the caller uses (its shared images with the
    model's training split are counted; for ``train``, its shared images with the model's
    validation and test splits). ``allow_other_data``: warn (:class:`OtherDataWarning`) instead of
    refusing other splits. Returns the warning text, or ``None`` when the data are the model's (or
    the model records no data).
    """
    spec = getattr(model_or_spec, "spec", model_or_spec)
    model_classes = tuple(spec.class_names)
    data_classes = tuple(dataset.classes)
    if data_classes != model_classes:
        raise DataError(f"data classes {list(data_classes)} differ from the model's {list(model_classes)}", where)
    trained = recorded_data(spec)
    if trained is None or not isinstance(dataset, DataSet):
        return None
    given = dataset.identity()
    differences = trained.differences(given)
    if not differences:
        return None
    what, meaning, shared = _other_data_reason(trained, dataset, differences, split)
    if not allow_other_data:
        raise OtherDataError(f"these are not the data this model was trained on: {what}; {meaning}", where,
                             differences=differences, shared=shared)
    text = f"using other data than this model was trained on: {what}; {meaning}"
    warnings.warn(OtherDataWarning(f"{text} ({where})" if where is not None else text), stacklevel=2)
    return text


def _other_data_reason(trained: DataIdentity, dataset: DataSet, differences: tuple[tuple[str, str, str], ...],
                       split: str) -> tuple[str, str, int | None]:
    """``(what differs, what it means for split, shared images or None)``."""
    what = ", ".join(f"{name} {given} (the model's: {mine})" if name != "data" else
                     f"data {given} (the model's: {mine})" for name, mine, given in differences)
    label = ", ".join(given if name == "data" else f"{name} {given}" for name, _, given in differences)
    if split not in SPLITS:
        split = "test"
    ours = dataset.split(split)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_data = trained.open()
    except EtdeployError as exc:
        return what, f"the images shared with the model's training data could not be counted ({exc.one_line()})", None
    if split == "train":
        theirs = model_data.split("val") + model_data.split("test")
        shared = _shared_images(ours, dataset.root, theirs, model_data.root)
        meaning = (f"the train split of {label} holds {shared} images of this model's validation and test splits, "
                   "so a ranking or fine-tuning on it sees images the model is evaluated on (leakage)" if shared else
                   f"the train split of {label} holds none of the model's validation and test images, but it "
                   "is not the split the model was trained on")
    else:
        shared = _shared_images(ours, dataset.root, model_data.split("train"), model_data.root)
        meaning = (f"the {split} split of {label} shares {shared} of its {len(ours)} images with the images this "
                   "model was trained on, so results on it would be inflated (leakage)" if shared else
                   f"the {split} split of {label} shares none of its {len(ours)} images with the images this "
                   f"model was trained on, but it is not the model's own {split} split")
    return what, meaning, shared


def _shared_images(ours: tuple[Sample, ...], our_root: Path, theirs: tuple[Sample, ...], their_root: Path) -> int:
    """Images of ``ours`` that are also in ``theirs``: the same file, or (data in another folder) the
    same path relative to the data set root with the same bytes."""
    from etdeploy.fileio import sha256_file

    our_root, their_root = Path(our_root).resolve(), Path(their_root).resolve()
    if our_root == their_root:
        keys = {s.path.resolve() for s in theirs}
        return sum(1 for s in ours if s.path.resolve() in keys)
    by_relative: dict[Path, Path] = {}
    for s in theirs:
        try:
            by_relative[s.path.resolve().relative_to(their_root)] = s.path
        except ValueError:
            continue
    shared = 0
    for s in ours:
        try:
            other = by_relative.get(s.path.resolve().relative_to(our_root))
        except ValueError:
            continue
        if other is not None and sha256_file(other) == sha256_file(s.path):
            shared += 1
    return shared
