"""Replay and validation of pruning records (the ``record`` of :func:`etdeploy.pruning.slicing.slice_model`).

:func:`validate_record` checks a record's structure (format tag, readable version, layer entries,
flatten selection); :func:`apply_record` replays it on the weights it was made from: set the recorded
masks, slice, and compare the removed conv channels, flatten selection and (version 2) the sliced
weights' fingerprint with the record.
"""

from __future__ import annotations

import copy
from typing import Any

from etdeploy.errors import PruningError
from etdeploy.pruning.slicing import READABLE_RECORD_VERSIONS, RECORD_FORMAT, slice_model

__all__ = ["apply_record", "validate_record"]


def validate_record(record: Any, path: Any = None) -> dict:
    """Check the structure of a pruning record (format, version, layer entries)."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise PruningError(f"not an etdeploy pruning record (missing format: {RECORD_FORMAT})", path)
    if record.get("format_version") not in READABLE_RECORD_VERSIONS:
        raise PruningError(f"unsupported pruning record version {record.get('format_version')!r}", path)
    layers = record.get("layers")
    if not isinstance(layers, dict) or not layers:
        raise PruningError("pruning record has no 'layers'", path)
    for name, entry in layers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kept"), list) \
                or not isinstance(entry.get("width"), int):
            raise PruningError(f"pruning record layer {name!r} needs 'width' (int) and 'kept' (list)", path)
        if not all(isinstance(i, int) for i in entry["kept"]):
            raise PruningError(f"pruning record layer {name!r}: kept indices must be integers", path)
    select = record.get("select")
    if select is not None and (not isinstance(select, dict) or not isinstance(select.get("in_width"), int)
                               or not isinstance(select.get("indices"), list)
                               or not all(isinstance(i, int) for i in select["indices"])):
        raise PruningError("pruning record 'select' must be null or {in_width: int, indices: [int, ...]}", path)
    return record


def apply_record(model, record: dict, *, check_fingerprint: bool = True):
    """Replay a pruning record on ``model`` (not changed) -> the sliced model.

    ``model`` must carry the same weights the record was made from (masks ignored) unless
    ``check_fingerprint=False``; widths must match. The replay's fingerprint and flatten selection must
    equal the record's (a version-1 record, made when masked flatten columns were only zeroed, replays
    to the physically smaller model, so its sliced fingerprint is not compared).
    """
    from etdeploy.models import dense_layers, weights_fingerprint
    from etdeploy.pruning.masking import set_layer_masks

    validate_record(record)
    if check_fingerprint and record.get("source_fingerprint") != weights_fingerprint(model):
        raise PruningError("the pruning record was made from other weights (source fingerprint differs); "
                           "apply it to the masked checkpoint it came from, or pass check_fingerprint=False")
    widths = {layer.name: layer.width for layer in dense_layers(model)}
    for name, entry in record["layers"].items():
        if name not in widths:
            raise PruningError(f"pruning record layer {name!r} is not in the model ({', '.join(widths)})")
        if entry["width"] != widths[name]:
            raise PruningError(f"pruning record layer {name!r} has width {entry['width']}, the model {widths[name]}")
    work = copy.deepcopy(model)
    set_layer_masks(work, {name: entry["kept"] for name, entry in record["layers"].items()})
    sliced, replay = slice_model(work, context=record.get("context"))
    want = (record.get("conv") or {}).get("removed_channels")
    got = (replay.get("conv") or {}).get("removed_channels")
    if want is not None and want != got:
        raise PruningError(f"replay removed conv channels {got}, the record says {want}")
    if "select" in record and record["select"] != replay["select"]:
        raise PruningError("replaying the record selected other flatten positions than recorded")
    if check_fingerprint and record["format_version"] >= 2 \
            and record.get("sliced_fingerprint") not in (None, replay["sliced_fingerprint"]):
        raise PruningError("replaying the record gave different sliced weights than recorded")
    return sliced
