"""What every import route shares: its records, the class names, the check images, and the step that
saves the model, checks it as every later command loads it, and evaluates it.

An import route (:mod:`~etdeploy.importing.torch_weights`, :mod:`~etdeploy.importing.onnx_model`)
converts a user's model into an :class:`~etdeploy.models.ETModel`, computes the original's logits
on the check images (:func:`check_images`), then calls :func:`save_checked_import` inside the
staged output folder: the model is written, read back from disk and accepted only if its logits
match within the tolerance (:data:`DEFAULT_TOL`); with a data set it is evaluated on every split
and ``metrics.json`` is written next to it. The spec's ``meta["imported"]`` is the
:class:`ImportOrigin` (file name, SHA-256 and size of the user's file, route, arch, layout,
normalisation, the check); with a data set ``meta["evaluated_on"]`` is its provenance.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import ConfigError, DataError, ModelError
from etdeploy.importing.normalisation import Normalisation
from etdeploy.records import Record

#: Largest |logit difference| allowed between the original model and the imported one.
DEFAULT_TOL = 1e-5
#: Images the conversion is checked on (the data set's first test images).
CHECK_IMAGES = 32
#: Seeded random images the conversion is checked on without a data set.
RANDOM_CHECK_IMAGES = 8


@dataclass(frozen=True)
class LogitCheck(Record):
    """Original model vs imported model (reloaded from disk), same images, eval mode."""

    max_abs_logit_delta: float
    tolerance: float
    images: int
    inputs: str
    labels_agree: bool


@dataclass(frozen=True)
class ImportOrigin(Record):
    """Where an imported model came from; stored in its spec as ``meta["imported"]``.

    ``normalisation``: how the user's original model is fed (as given to the import); for the ONNX
    route the spec's own ``mean``/``std`` also absorb the input affine folded out of the graph.
    """

    route: str
    file: str
    sha256: str
    bytes: int
    arch: str
    layout: str
    normalisation: Normalisation
    check: LogitCheck


@dataclass(frozen=True)
class ImportRun(Record):
    """Result of an import. ``layers``: width of each ranked layer; ``channels_removable``: whether
    slicing may remove conv channels (a plain feature chain); ``accuracy``: per split, with data."""

    out: str
    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: int
    parameters: int
    layers: dict[str, int]
    channels_removable: bool
    weights_fingerprint: str
    origin: ImportOrigin
    accuracy: dict[str, float] | None = None


def resolve_class_names(class_names: Any, dataset: Any) -> tuple[str, ...]:
    """The given class names, else the data set's classes; both given: they must agree."""
    names = None if class_names is None else tuple(str(c).strip() for c in class_names)
    if names is not None:
        if len(names) < 2:
            raise DataError(f"a classifier needs at least 2 class names, got {len(names)}")
        if any(not n for n in names) or len(set(names)) != len(names):
            raise DataError(f"class names must be non-empty and distinct, got {list(names)}")
        if dataset is not None and tuple(dataset.classes) != names:
            raise DataError(f"class names {list(names)} differ from the data set's classes {list(dataset.classes)}",
                            getattr(dataset, "root", None))
        return names
    if dataset is None:
        raise DataError("give the class names (in the order of the model's outputs) or a data set whose classes "
                        "they are")
    return tuple(dataset.classes)


def check_request(out: Any, *, force: bool, tol: float, mean: Any, std: Any, scale: Any, class_names: Any,
                  dataset: Any) -> tuple[Path, Normalisation, tuple[str, ...]]:
    """What every import checks before reading the user's file: the output folder does not exist
    (unless ``force``), ``tol > 0``, the normalisation and the class names.
    Returns ``(out, normalisation, class names)``."""
    from etdeploy.fileio import refuse_existing_output
    from etdeploy.importing.normalisation import resolve_normalisation

    out = Path(out)
    refuse_existing_output(out, force=force)
    if not float(tol) > 0:
        raise ConfigError(f"the check tolerance must be > 0, got {tol!r}")
    return out, resolve_normalisation(mean, std, scale), resolve_class_names(class_names, dataset)


def run_fields(out: Path, model, origin: ImportOrigin, accuracy: dict[str, float] | None) -> dict[str, Any]:
    """The :class:`ImportRun` fields of the imported ``model`` (as saved in ``out``)."""
    from etdeploy.models import count_parameters, dense_layers, weights_fingerprint
    from etdeploy.models.contract import has_plain_features

    spec = model.spec
    return {"out": str(out), "arch": spec.arch, "num_classes": spec.num_classes, "class_names": spec.class_names,
            "input_size": spec.input_size, "parameters": count_parameters(model),
            "layers": {la.name: la.width for la in dense_layers(model)},
            "channels_removable": has_plain_features(model), "weights_fingerprint": weights_fingerprint(model),
            "origin": origin, "accuracy": accuracy}


def check_images(dataset: Any, size: int, progress: bool):
    """``(images, description)``: uint8 check images ``(n, 3, size, size)``: the data set's first
    :data:`CHECK_IMAGES` test images (validation images if it has no test split), else
    :data:`RANDOM_CHECK_IMAGES` seeded random ones."""
    import numpy as np

    from etdeploy.data.images import load_split

    if dataset is not None:
        samples = dataset.split("test")[:CHECK_IMAGES] or dataset.split("val")[:CHECK_IMAGES]
        if samples:
            images = load_split(samples, size, progress=progress, desc="decode check images").images
            return images, f"the first {len(samples)} test images of the data set"
    images = np.random.default_rng(0).integers(0, 256, (RANDOM_CHECK_IMAGES, 3, size, size), dtype=np.uint8)
    return images, f"{RANDOM_CHECK_IMAGES} random uint8 images (numpy default_rng(0)), normalised"


def logits_of(module, x):
    """``module(x)`` in eval mode without gradients."""
    import torch

    module.eval()
    with torch.no_grad():
        return module(x)


def save_checked_import(tmp: Path, model, spec, *, x, want, inputs: str, tol: float, origin_fields: dict[str, Any],
                        dataset: Any, progress: bool, extra_meta: dict[str, Any] | None = None,
                        refusal: str, where: Path) -> tuple[ImportOrigin, dict[str, float] | None]:
    """Write the imported ``model`` into the staged folder ``tmp`` once its logits are checked.

    The check runs on the model as every later command loads it (written, then read back from disk):
    its logits on ``x`` (the imported model's normalised input) must be within ``tol`` of ``want``
    (the original's logits on the same images); otherwise :class:`ModelError` (``refusal`` says what
    to do about it, ``where`` is the user's file) and nothing is kept. ``origin_fields``: the
    :class:`ImportOrigin` fields other than ``check``. With ``dataset``, the model is evaluated on
    every split and ``metrics.json`` written. Returns ``(origin, accuracy per split or None)``.
    """
    import torch

    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import atomic_write_json
    from etdeploy.models import count_parameters, load_model
    from etdeploy.models.serialization import write_model_files
    from etdeploy.training import evaluate
    from etdeploy.vocab import SPLITS

    scratch = tmp / ".check"
    scratch.mkdir()
    write_model_files(model, scratch, spec=spec)
    reloaded = load_model(scratch)
    shutil.rmtree(scratch)
    got = logits_of(reloaded, x)
    want = torch.as_tensor(want)
    delta = float((got.double() - want.double()).abs().max())
    if not delta <= tol:
        raise ModelError(f"the imported model's logits differ from the original's by {delta:.3g} (tolerance "
                         f"{tol:g}) on {inputs}: {refusal}", where)
    check = LogitCheck(delta, tol, int(x.shape[0]), inputs, bool(torch.equal(got.argmax(1), want.argmax(1))))
    origin = ImportOrigin(**origin_fields, check=check)
    meta: dict[str, Any] = {"imported": origin.to_dict(), **(extra_meta or {})}
    accuracy = None
    evals: dict[str, Any] = {}
    if dataset is not None:
        meta["evaluated_on"] = dataset.training_record()  # later commands default to these data
        evals = {s: evaluate(reloaded, load_split_images(dataset, s, spec.input_size, progress=progress), spec.mean,
                             spec.std).to_dict() for s in SPLITS}
        accuracy = {s: evals[s]["accuracy"] for s in SPLITS}
    model.spec = spec.replace(meta=meta)
    write_model_files(model, tmp)
    if dataset is not None:
        atomic_write_json(tmp / "metrics.json", {
            "arch": spec.arch, "parameters": count_parameters(model), "classes": list(spec.class_names),
            "data": dataset.provenance(), "imported": origin.to_dict(), "evaluation": evals,
            "torch_threads": torch.get_num_threads()})
    return origin, accuracy
