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
from pathlib import Path
from typing import Any

from etdeploy.errors import ContractError, ModelError
from etdeploy.importing.common import (
    CHECK_IMAGES,
    DEFAULT_TOL,
    ImportOrigin,
    ImportRun,
    LogitCheck,
    check_images,
    check_request,
    logits_of,
    resolve_class_names,
    run_fields,
    save_checked_import,
)

__all__ = ["CHECK_IMAGES", "DEFAULT_TOL", "ROUTES", "ImportOrigin", "ImportRun", "LogitCheck", "check_state_dict",
           "import_torch_model", "resolve_class_names"]

ROUTES = {".safetensors": "safetensors", ".pt": "pytorch-state-dict", ".pth": "pytorch-state-dict",
          ".bin": "pytorch-state-dict"}


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


def _build_original(arch: str, num_classes: int, size: int, kwargs: dict):
    from etdeploy.models.zoo import call_factory

    try:
        return call_factory(arch, num_classes, input_size=size, **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the model factory {arch!r} failed for {num_classes} classes at {size} px: "
                         f"{type(exc).__name__}: {exc}") from exc


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

    from etdeploy.data.images import normalise
    from etdeploy.fileio import StagedDir, sha256_file
    from etdeploy.importing.weights_file import read_state_dict
    from etdeploy.models import ETModel, ModelSpec, dense_layers
    from etdeploy.models.factories import canonical_arch, check_head_width
    from etdeploy.models.layouts import contract_parts
    from etdeploy.models.zoo import default_input_size

    out, norm, names = check_request(out, force=force, tol=tol, mean=mean, std=std, scale=scale,
                                     class_names=class_names, dataset=dataset)
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
        dense_layers(model)
    except ContractError as exc:
        raise ContractError(f"the model {arch!r} ({layout} layout) does not fit etdeploy's contract: {exc.message}",
                            path) from exc
    check_head_width(model, size)
    if classifier[-1].out_features != len(names):
        raise ModelError(f"the classifier has {classifier[-1].out_features} outputs for {len(names)} class names",
                         path)
    images, inputs = check_images(dataset, size, progress)
    x = normalise(images, norm.mean, norm.std)
    try:
        want = logits_of(original, x)
        logits_of(model, x[:1])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"the model does not run on {size}x{size} inputs ({first}); check the input size", path) \
            from None

    origin_fields = {"route": ROUTES[path.suffix.lower()], "file": path.name, "sha256": sha256_file(path),
                     "bytes": path.stat().st_size, "arch": arch, "layout": layout, "normalisation": norm}
    refusal = (f"the {layout} layout does not describe what this model's forward computes; return (features, "
               "classifier) from the factory instead")
    with StagedDir(out, force=force) as tmp:
        origin, accuracy = save_checked_import(tmp, model, spec, x=x, want=want, inputs=inputs,
                                               tol=tol, origin_fields=origin_fields, dataset=dataset,
                                               progress=progress, refusal=refusal, where=path)
    return ImportRun(**run_fields(out, model, origin, accuracy))
