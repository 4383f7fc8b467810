"""Use case of ``etdeploy import --arch ... --weights ...``: a PyTorch model trained elsewhere becomes an
ordinary etdeploy model directory.

Steps (nothing is written unless all succeed; the output folder appears atomically):

1. the normalisation (:mod:`etdeploy.importing.normalisation`) and class names are checked: class
   names are given, or are the data set's classes when a data set is given (both: they must agree);
2. the weights file is read without unpickling objects (:func:`read_state_dict`);
3. the factory (``package.module:factory``) builds the original module for that many classes at
   ``input_size``; every missing, unexpected or wrongly shaped tensor is listed in one error; the
   weights are loaded into the *original* module (its own names), which is then converted to the
   contract (:func:`etdeploy.models.layouts.contract_parts`, sharing the loaded parameters);
4. the model is saved, reloaded from disk (as every later command will load it) and its logits are
   compared with the original module's on the check images: the data set's first
   :data:`CHECK_IMAGES` test images when a data set is given, else seeded random images; the
   conversion is accepted only within ``tol`` (1e-5), so a layout that does not describe the
   factory's ``forward`` is refused, never saved;
5. with a data set, the model is evaluated on every split and ``metrics.json`` (what ``etdeploy
   train`` writes, with ``"imported"`` in place of training history) is written next to it.

The spec records the origin (``meta["imported"]``: file name, SHA-256 and size of the weights file,
arch, layout, normalisation, the check) and, with a data set, ``meta["evaluated_on"]``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import ConfigError, ContractError, DataError, ModelError
from etdeploy.importing.normalisation import Normalisation, resolve_normalisation
from etdeploy.records import Record

#: Largest |logit difference| allowed between the original module and the imported model.
DEFAULT_TOL = 1e-5
#: Images the conversion is checked on.
CHECK_IMAGES = 32
RANDOM_CHECK_IMAGES = 8
ROUTES = {".safetensors": "safetensors", ".pt": "pytorch-state-dict", ".pth": "pytorch-state-dict",
          ".bin": "pytorch-state-dict"}


@dataclass(frozen=True)
class LogitCheck(Record):
    """Original module vs imported model (reloaded from disk), same float32 inputs, eval mode."""

    max_abs_logit_delta: float
    tolerance: float
    images: int
    inputs: str
    labels_agree: bool


@dataclass(frozen=True)
class ImportOrigin(Record):
    """Where an imported model came from; stored in its spec as ``meta["imported"]``."""

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
    """Result of :func:`import_torch_model`. ``layers``: width of each ranked layer; ``channels_removable``:
    whether slicing may remove conv channels (a plain feature chain); ``accuracy``: per split, with data."""

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


def _pair_module(features, classifier):
    """The module a ``(features, classifier)`` factory's weights were saved from: keys ``features.*``,
    ``classifier.*``; ``(batch, 3, S, S) -> (batch, K)`` = ``classifier(features(x))``."""
    from torch import nn

    class FeaturesClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.classifier = classifier

        def forward(self, x):
            return self.classifier(self.features(x))

    return FeaturesClassifier()


def check_state_dict(expected: dict, tensors: dict, path: Path, *, num_classes: int, input_size: int) -> None:
    """One :class:`ModelError` listing every missing, unexpected and wrongly shaped tensor."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [f"{k} is {tuple(tensors[k].shape)} in the file, the model needs {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(tensors)) if tuple(tensors[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} with another shape: {'; '.join(shapes)}")
    if problems:
        raise ModelError(f"the weights do not fit the model built for {num_classes} classes at {input_size} px: "
                         + " | ".join(problems), path)


def _check_inputs(dataset, size: int, norm: Normalisation, progress: bool):
    """``(x, description)``: float32 normalised check images ``(n, 3, size, size)``."""
    import numpy as np

    from etdeploy.data.images import load_split, normalise

    if dataset is not None:
        samples = dataset.split("test")[:CHECK_IMAGES] or dataset.split("val")[:CHECK_IMAGES]
        if samples:
            images = load_split(samples, size, progress=progress, desc="decode check images").images
            return normalise(images, norm.mean, norm.std), f"the first {len(samples)} test images of the data set"
    images = np.random.default_rng(0).integers(0, 256, (RANDOM_CHECK_IMAGES, 3, size, size), dtype=np.uint8)
    return (normalise(images, norm.mean, norm.std),
            f"{RANDOM_CHECK_IMAGES} random uint8 images (numpy default_rng(0)), normalised")


def _build_original(arch: str, num_classes: int, size: int, kwargs: dict):
    from etdeploy.models.zoo import call_factory

    try:
        return call_factory(arch, num_classes, input_size=size, **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the model factory {arch!r} failed for {num_classes} classes at {size} px: "
                         f"{type(exc).__name__}: {exc}") from exc


def _logits(module, x):
    import torch

    module.eval()
    with torch.no_grad():
        return module(x)


def import_torch_model(arch: str, weights: str | os.PathLike, out: str | os.PathLike, *, mean: Any = None,
                       std: Any = None, scale: float | None = None, class_names: Any = None, dataset: Any = None,
                       input_size: int | None = None, kwargs: dict | None = None, tol: float = DEFAULT_TOL,
                       force: bool = False, progress: bool = True) -> ImportRun:
    """Import ``weights`` for the model ``arch`` builds into the new model directory ``out`` (module doc).

    ``arch``: ``package.module:factory`` (called as ``factory(num_classes, input_size=..., **kwargs)``,
    returning ``(features, classifier)`` or a whole module in a layout of
    :mod:`etdeploy.models.layouts`) or a built-in architecture; ``mean``/``std`` or ``scale``: the
    normalisation (:func:`resolve_normalisation`); ``class_names`` and/or ``dataset`` (a
    :class:`~etdeploy.data.sources.DataSet`); ``input_size``: square input side (default per arch).
    """
    import torch

    from etdeploy.data.images import load_split_images
    from etdeploy.fileio import StagedDir, atomic_write_json, refuse_existing_output, sha256_file
    from etdeploy.importing.weights_file import read_state_dict
    from etdeploy.models import ETModel, ModelSpec, count_parameters, dense_layers, load_model, weights_fingerprint
    from etdeploy.models.contract import has_plain_features
    from etdeploy.models.factories import canonical_arch, check_head_width
    from etdeploy.models.layouts import contract_parts
    from etdeploy.models.serialization import write_model_files
    from etdeploy.models.zoo import default_input_size
    from etdeploy.training import evaluate
    from etdeploy.vocab import SPLITS

    out = Path(out)
    refuse_existing_output(out, force=force)
    if not float(tol) > 0:
        raise ConfigError(f"the check tolerance must be > 0, got {tol!r}")
    norm = resolve_normalisation(mean, std, scale)
    names = resolve_class_names(class_names, dataset)
    path = Path(weights)
    tensors = read_state_dict(path)
    size = int(input_size or default_input_size(arch))
    kwargs = dict(kwargs or {})

    built = _build_original(arch, len(names), size, kwargs)
    if isinstance(built, tuple) and len(built) == 2:
        original = _pair_module(*built)
    elif isinstance(built, torch.nn.Module):
        original = built
    else:
        raise ContractError(f"the model factory {arch!r} returned a {type(built).__name__}; expected (features, "
                            "classifier) or an nn.Module")
    expected = original.state_dict()
    check_state_dict(expected, tensors, path, num_classes=len(names), input_size=size)
    original.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    original.eval()
    features, classifier, layout = contract_parts(built, input_size=size)
    arch = canonical_arch(arch)  # a factory file is recorded by its absolute path
    spec = ModelSpec(arch=arch, num_classes=len(names), class_names=names, input_size=size, mean=norm.mean,
                     std=norm.std, seed=None, kwargs=kwargs)
    model = ETModel(features, classifier, spec).eval()
    try:
        layers = dense_layers(model)
    except ContractError as exc:
        raise ContractError(f"the model {arch!r} ({layout} layout) does not fit etdeploy's contract: {exc.message}",
                            path) from exc
    check_head_width(model, size)
    if classifier[-1].out_features != len(names):
        raise ModelError(f"the classifier has {classifier[-1].out_features} outputs for {len(names)} class names",
                         path)
    x, inputs = _check_inputs(dataset, size, norm, progress)
    try:
        want = _logits(original, x)
        _logits(model, x[:1])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"the model does not run on {size}x{size} inputs ({first}); check the input size", path) \
            from None

    digest = sha256_file(path)
    with StagedDir(out, force=force) as tmp:
        # the check runs on the model as every later command loads it: saved, then read back from disk
        scratch = tmp / ".check"
        scratch.mkdir()
        write_model_files(model, scratch, spec=spec)
        reloaded = load_model(scratch)
        shutil.rmtree(scratch)
        got = _logits(reloaded, x)
        delta = float((got.double() - want.double()).abs().max())
        if not delta <= tol:
            raise ModelError(f"the imported model's logits differ from the original module's by {delta:.3g} "
                             f"(tolerance {tol:g}) on {inputs}: the {layout} layout does not describe what this "
                             "model's forward computes; return (features, classifier) from the factory instead", path)
        check = LogitCheck(delta, tol, int(x.shape[0]), inputs, bool(torch.equal(got.argmax(1), want.argmax(1))))
        origin = ImportOrigin(route=ROUTES[path.suffix.lower()], file=path.name, sha256=digest,
                              bytes=path.stat().st_size, arch=arch, layout=layout, normalisation=norm, check=check)
        meta: dict[str, Any] = {"imported": origin.to_dict()}
        accuracy = None
        if dataset is not None:
            meta["evaluated_on"] = dataset.provenance()
            evals = {s: evaluate(reloaded, load_split_images(dataset, s, size, progress=progress), norm.mean,
                                 norm.std).to_dict() for s in SPLITS}
            accuracy = {s: evals[s]["accuracy"] for s in SPLITS}
        model.spec = spec.replace(meta=meta)
        write_model_files(model, tmp)
        if dataset is not None:
            atomic_write_json(tmp / "metrics.json", {
                "arch": arch, "parameters": count_parameters(model), "classes": list(names),
                "data": dataset.provenance(), "imported": origin.to_dict(), "evaluation": evals,
                "torch_threads": torch.get_num_threads()})
    return ImportRun(out=str(out), arch=arch, num_classes=len(names), class_names=names, input_size=size,
                     parameters=count_parameters(model), layers={la.name: la.width for la in layers},
                     channels_removable=has_plain_features(model), weights_fingerprint=weights_fingerprint(model),
                     origin=origin, accuracy=accuracy)
