"""Save and load models: weights as safetensors plus a JSON spec describing the exact structure.

No pickle anywhere. The structure is stored layer by layer (only the layer types the model
contract allows), so sliced models with non-standard widths reload exactly and loading never runs
code from the model directory.

A feature extractor that is not a plain chain (:class:`~etdeploy.models.contract.OpaqueFeatures`:
residual blocks...) cannot be described layer by layer: the structure then stores
``"features": {"factory": "<spec.arch>"}`` and loading rebuilds it by calling that factory (an
importable Python function named by the spec, as given to ``train`` or ``import``; it must still be
importable, and a factory file inside the model directory is refused) and converting its result (:mod:`etdeploy.models.layouts`); every tensor name and shape
is then checked against the weights file as for any model. Its classifier is stored layer by layer
as usual, so sliced heads reload exactly.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from etdeploy.errors import ModelError
from etdeploy.fileio import StagedDir, atomic_write_bytes, canonical_json, read_json_artefact, sha256_bytes, sha256_file
from etdeploy.models.masks import NeuronMask
from etdeploy.models.paths import require_model_dir
from etdeploy.models.select import SelectFeatures
from etdeploy.models.zoo import ETModel, ModelSpec

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
MAX_WEIGHTS_BYTES = 4 * 1024**3


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _four(v: Any) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` non-negative integers, as nn.ZeroPad2d takes them."""
    values = tuple(int(x) for x in v)
    if len(values) != 4 or min(values) < 0:
        raise ValueError(f"padding must be 4 non-negative integers, got {list(v)}")
    return values  # type: ignore[return-value]


def _as_tuple(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def describe_module(m: nn.Module) -> dict[str, Any]:
    """One layer as a JSON-able dict; the inverse of :func:`build_module`."""
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str):
            raise ModelError(f"Conv2d with string padding {m.padding!r} is not supported")
        return {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
                "padding": _pair(m.padding), "dilation": _pair(m.dilation), "groups": m.groups,
                "bias": m.bias is not None}
    if isinstance(m, nn.MaxPool2d):
        return {"type": "MaxPool2d", "kernel_size": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _pair(m.padding), "dilation": _pair(m.dilation), "ceil_mode": bool(m.ceil_mode)}
    if isinstance(m, nn.AvgPool2d):
        return {"type": "AvgPool2d", "kernel_size": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _pair(m.padding), "ceil_mode": bool(m.ceil_mode),
                "count_include_pad": bool(m.count_include_pad)}
    if isinstance(m, nn.LocalResponseNorm):
        return {"type": "LocalResponseNorm", "size": m.size, "alpha": m.alpha, "beta": m.beta, "k": m.k}
    if isinstance(m, nn.BatchNorm2d):
        return {"type": "BatchNorm2d", "num_features": m.num_features, "eps": m.eps,
                "momentum": m.momentum, "affine": m.affine}
    if isinstance(m, nn.LeakyReLU):
        return {"type": "LeakyReLU", "negative_slope": m.negative_slope}
    if isinstance(m, nn.ReLU6):
        return {"type": "ReLU6"}
    if isinstance(m, nn.Hardtanh):
        return {"type": "Hardtanh", "min_val": m.min_val, "max_val": m.max_val}
    if isinstance(m, nn.ReLU):
        return {"type": "ReLU"}
    if isinstance(m, nn.Sigmoid):
        return {"type": "Sigmoid"}
    if isinstance(m, nn.Tanh):
        return {"type": "Tanh"}
    if isinstance(m, nn.ZeroPad2d):  # (left, right, top, bottom)
        return {"type": "ZeroPad2d", "padding": [int(v) for v in m.padding]}
    if isinstance(m, nn.Dropout2d):
        return {"type": "Dropout2d", "p": m.p}
    if isinstance(m, nn.Dropout):
        return {"type": "Dropout", "p": m.p}
    if isinstance(m, nn.Identity):
        return {"type": "Identity"}
    if isinstance(m, nn.Flatten):
        return {"type": "Flatten"}
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = _pair(m.output_size) if m.output_size is not None and None not in _as_tuple(m.output_size) else None
        if size is None:
            raise ModelError(f"AdaptiveAvgPool2d with output size {m.output_size} (None keeps an input side) is "
                             "not supported; give both sides")
        return {"type": "AdaptiveAvgPool2d", "output_size": size}
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                "bias": m.bias is not None}
    if isinstance(m, NeuronMask):
        return {"type": "NeuronMask", "width": m.width}
    if isinstance(m, SelectFeatures):  # the indices themselves are a buffer: they live in the safetensors
        return {"type": "SelectFeatures", "in_width": m.in_width, "out_width": m.out_width}
    raise ModelError(f"cannot serialise layer type {type(m).__name__}")


_BUILDERS = {
    "Conv2d": lambda d: nn.Conv2d(d["in_channels"], d["out_channels"], tuple(d["kernel_size"]),
                                  stride=tuple(d["stride"]), padding=tuple(d["padding"]),
                                  dilation=tuple(d["dilation"]), groups=d["groups"], bias=d["bias"]),
    "MaxPool2d": lambda d: nn.MaxPool2d(tuple(d["kernel_size"]), tuple(d["stride"]), tuple(d["padding"]),
                                        tuple(d["dilation"]), ceil_mode=d["ceil_mode"]),
    "AvgPool2d": lambda d: nn.AvgPool2d(tuple(d["kernel_size"]), tuple(d["stride"]), tuple(d["padding"]),
                                        ceil_mode=d["ceil_mode"], count_include_pad=d["count_include_pad"]),
    "LocalResponseNorm": lambda d: nn.LocalResponseNorm(d["size"], d["alpha"], d["beta"], d["k"]),
    "BatchNorm2d": lambda d: nn.BatchNorm2d(d["num_features"], eps=d["eps"], momentum=d["momentum"],
                                            affine=d["affine"]),
    "ReLU": lambda d: nn.ReLU(),
    "LeakyReLU": lambda d: nn.LeakyReLU(d["negative_slope"]),
    "ReLU6": lambda d: nn.ReLU6(),
    "Hardtanh": lambda d: nn.Hardtanh(d["min_val"], d["max_val"]),
    "Sigmoid": lambda d: nn.Sigmoid(),
    "Tanh": lambda d: nn.Tanh(),
    "ZeroPad2d": lambda d: nn.ZeroPad2d(_four(d["padding"])),
    "Dropout": lambda d: nn.Dropout(d["p"]),
    "Dropout2d": lambda d: nn.Dropout2d(d["p"]),
    "Identity": lambda d: nn.Identity(),
    "Flatten": lambda d: nn.Flatten(),
    "AdaptiveAvgPool2d": lambda d: nn.AdaptiveAvgPool2d(tuple(int(v) for v in d["output_size"])),
    "Linear": lambda d: nn.Linear(d["in_features"], d["out_features"], bias=d["bias"]),
    "NeuronMask": lambda d: NeuronMask(d["width"]),
    "SelectFeatures": lambda d: SelectFeatures.placeholder(int(d["in_width"]), int(d["out_width"])),
}


def build_module(desc: dict[str, Any]) -> nn.Module:
    kind = desc.get("type") if isinstance(desc, dict) else None
    if kind not in _BUILDERS:
        raise ModelError(f"unknown layer type {kind!r} in model structure")
    try:
        return _BUILDERS[kind](desc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"bad {kind} layer description {desc}: {exc}") from exc


def model_structure(model: nn.Module, spec: ModelSpec | None = None) -> dict[str, Any]:
    """``{"features": [layer, ...] | {"factory": arch}, "classifier": [layer, ...]}`` (see the module doc)."""
    from etdeploy.models.contract import OpaqueFeatures

    if isinstance(model.features, OpaqueFeatures):
        spec = spec or getattr(model, "spec", None)
        if spec is None:
            raise ModelError("a model whose feature extractor is rebuilt through its factory needs a spec")
        features: Any = {"factory": spec.arch}
    else:
        features = [describe_module(m) for m in model.features]
    return {"features": features, "classifier": [describe_module(m) for m in model.classifier]}


def _factory_features(spec: ModelSpec, structure: dict[str, Any], spec_path: Path) -> nn.Module:
    """Rebuild an OpaqueFeatures through ``spec.arch`` (its weights come from the weights file afterwards)."""
    from etdeploy.models.contract import OpaqueFeatures
    from etdeploy.models.factories import is_file_arch
    from etdeploy.models.layouts import contract_parts
    from etdeploy.models.zoo import call_factory

    factory = structure["features"].get("factory")
    if factory != spec.arch:
        raise ModelError(f"structure names the feature factory {factory!r} but the spec's arch is {spec.arch!r}",
                         spec_path)
    if is_file_arch(factory):
        source = Path(factory.rpartition(":")[0]).expanduser().resolve()
        if spec_path.parent.resolve() in source.parents:
            raise ModelError("the spec names a factory file inside the model directory; etdeploy never runs code "
                             "from a model directory (keep the factory with your code)", spec_path)
    try:
        built = call_factory(spec.arch, spec.num_classes, input_size=spec.input_size, **spec.kwargs)
        features, _, _ = contract_parts(built, input_size=spec.input_size)
    except ModelError as exc:
        raise ModelError(f"cannot rebuild the feature extractor through its factory: {exc.message}",
                         spec_path) from exc
    except Exception as exc:
        raise ModelError(f"cannot rebuild the feature extractor through its factory {spec.arch!r}: "
                         f"{type(exc).__name__}: {exc}", spec_path) from exc
    if not isinstance(features, OpaqueFeatures):
        raise ModelError(f"the factory {spec.arch!r} now builds a plain feature chain, not the block-structured "
                         "extractor this model was saved with", spec_path)
    return features


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    d = asdict(spec)
    d["class_names"] = list(spec.class_names)
    d["mean"] = list(spec.mean)
    d["std"] = list(spec.std)
    return d


def spec_from_dict(d: dict[str, Any], path: Path) -> ModelSpec:
    try:
        return ModelSpec(arch=str(d["arch"]), num_classes=int(d["num_classes"]),
                         class_names=tuple(str(c) for c in d["class_names"]),
                         input_size=int(d["input_size"]), mean=tuple(float(v) for v in d["mean"]),
                         std=tuple(float(v) for v in d["std"]),
                         seed=None if d.get("seed") is None else int(d["seed"]),
                         kwargs=dict(d.get("kwargs") or {}), meta=dict(d.get("meta") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model spec is missing or has a bad field: {exc}", path) from exc


def state_dict_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()
               if v.is_floating_point()}
    ints = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if not v.is_floating_point()}
    tensors.update(ints)
    return save(tensors)


def save_model(model: ETModel, out_dir: str | os.PathLike, *, force: bool = False,
               spec: ModelSpec | None = None) -> Path:
    """Write ``spec.json`` + ``model.safetensors`` into a fresh ``out_dir`` (atomically, as a folder)."""
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ModelError("model has no spec; pass spec=")
    out_dir = Path(out_dir)
    with StagedDir(out_dir, force=force) as tmp:
        write_model_files(model, tmp, spec=spec)
    return out_dir


def write_model_files(model: ETModel, folder: str | os.PathLike, *, spec: ModelSpec | None = None) -> None:
    """Write ``spec.json`` + ``model.safetensors`` into the existing ``folder`` (each file atomically).

    For callers that assemble a larger folder in a :class:`~etdeploy.fileio.StagedDir`;
    :func:`save_model` is this plus the staging.
    """
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ModelError("model has no spec; pass spec=")
    folder = Path(folder)
    weights = state_dict_bytes(model)
    doc = {"format": "etdeploy-model", "format_version": FORMAT_VERSION, "spec": spec_to_dict(spec),
           "structure": model_structure(model, spec), "weights_sha256": sha256_bytes(weights)}
    atomic_write_bytes(folder / WEIGHTS_FILE, weights)
    atomic_write_bytes(folder / SPEC_FILE, canonical_json(doc).encode())


def load_model(model_dir: str | os.PathLike) -> ETModel:
    """Load a model saved with :func:`save_model`. Validates spec, structure, keys, shapes, finiteness."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from etdeploy.errors import ContractError
    from etdeploy.models.contract import dense_layers

    model_dir = require_model_dir(model_dir)  # a model file is told how to import it
    spec_path = model_dir / SPEC_FILE
    weights_path = model_dir / WEIGHTS_FILE
    if not spec_path.is_file():
        raise ModelError(f"model directory has no {SPEC_FILE}", model_dir)
    if not weights_path.is_file():
        raise ModelError(f"model directory has no {WEIGHTS_FILE}", model_dir)
    doc = read_json_artefact(spec_path, what="model spec", format="etdeploy-model", versions=(FORMAT_VERSION,),
                             error=ModelError)
    spec = spec_from_dict(doc.get("spec") or {}, spec_path)
    structure = doc.get("structure")
    if not isinstance(structure, dict) or not isinstance(structure.get("features"), (list, dict)) \
            or not isinstance(structure.get("classifier"), list):
        raise ModelError("spec has no valid 'structure' (features, classifier)", spec_path)
    try:
        classifier = nn.Sequential(*[build_module(d) for d in structure["classifier"]])
        if isinstance(structure["features"], dict):
            features = _factory_features(spec, structure, spec_path)
        else:
            features = nn.Sequential(*[build_module(d) for d in structure["features"]])
    except ModelError as exc:
        raise ModelError(exc.message, spec_path) from exc
    model = ETModel(features, classifier, spec)
    try:
        dense_layers(model)
    except ContractError as exc:
        raise ContractError(exc.message, spec_path) from exc

    if weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ModelError("weights file is larger than the 4 GiB limit", weights_path)
    recorded = doc.get("weights_sha256")
    if recorded is not None and sha256_file(weights_path) != recorded:
        raise ModelError("weights file does not match the SHA-256 recorded in spec.json (corrupt or replaced)",
                         weights_path)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"weights file is not valid safetensors: {exc}", weights_path) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for key in sorted(set(expected) & set(tensors)):
        if tuple(tensors[key].shape) != tuple(expected[key].shape):
            problems.append(f"{key} has shape {tuple(tensors[key].shape)}, spec needs {tuple(expected[key].shape)}")
    if problems:
        raise ModelError("weights do not match the spec: " + "; ".join(problems[:6]), weights_path)
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"tensor {key} contains NaN or Inf", weights_path)
    for key, value in tensors.items():
        if key.endswith(".indices") and value.is_floating_point():
            raise ModelError(f"tensor {key} holds feature indices and must be an integer tensor, got {value.dtype}",
                             weights_path)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    for index, module in enumerate(model.classifier):
        problem = module.validate() if isinstance(module, SelectFeatures) else None
        if problem is not None:
            raise ModelError(f"classifier.{index} (SelectFeatures): {problem}", weights_path)
    model.eval()
    return model


def weights_sha256(model_dir: str | os.PathLike) -> str:
    return sha256_file(Path(model_dir) / WEIGHTS_FILE)




def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's layers in order (type, tensor names, shapes, float32 bytes), masks skipped.

    Identifies "the same trained model" whether or not masks are attached (mask insertion shifts
    classifier indices, so indices are not hashed), so a ranking can be checked against the model it
    is applied to.
    """
    import hashlib

    digest = hashlib.sha256()
    for part in ("features", "classifier"):
        position = 0
        for module in getattr(model, part):
            if isinstance(module, NeuronMask):
                continue
            digest.update(f"{part}.{position}.{type(module).__name__}".encode())
            for key, value in sorted(module.state_dict().items()):
                digest.update(key.encode())
                digest.update(str(tuple(value.shape)).encode())
                digest.update(value.detach().to(torch.float32).contiguous().numpy().tobytes())
            position += 1
    return digest.hexdigest()
