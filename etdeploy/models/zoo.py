"""Model zoo: AlexNet (the paper's geometry), a small AlexNet for the bundled data, VGG16, and a
compact text spec for small sequential CNNs (used by tests and user experiments).

Every model is an :class:`ETModel` (``features`` + ``classifier``, see :mod:`etdeploy.models.contract`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from etdeploy.errors import ContractError, ModelError


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed, beside the weights, to rebuild and use a model."""

    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)


class ETModel(nn.Module):
    """``(batch, 3, S, S) -> (batch, num_classes)`` logits; ``classifier(features(x))``."""

    def __init__(self, features: nn.Module, classifier: nn.Sequential, spec: ModelSpec | None = None):
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def feature_output_shape(features: nn.Sequential, in_channels: int, size: int) -> tuple[int, int, int]:
    """Shape ``(C, H, W)`` after ``features`` for a square input, computed from layer geometry."""
    c, h, w = in_channels, size, size
    for module in features:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            sh, sw = module.stride
            ph, pw = module.padding if isinstance(module.padding, tuple) else (0, 0)
            dh, dw = module.dilation
            h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            c = module.out_channels
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(module.kernel_size)
            s = _pair(module.stride if module.stride is not None else module.kernel_size)
            p = _pair(module.padding)
            d = _pair(getattr(module, "dilation", 1))
            h = _pool_len(h, k[0], s[0], p[0], d[0], module.ceil_mode)
            w = _pool_len(w, k[1], s[1], p[1], d[1], module.ceil_mode)
        if h <= 0 or w <= 0:
            raise ContractError(f"input size {size} is too small for the feature extractor")
    return c, h, w


def _pool_len(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def dense_classifier(flat: int, hidden: list[int], num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = flat
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=False)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def alexnet(num_classes: int, input_size: int = 227, lrn: bool = True, dropout: float = 0.5,
            hidden: tuple[int, ...] = (4096, 4096)) -> tuple[nn.Sequential, nn.Sequential]:
    """The paper's AlexNet: 227x227, conv 96/256/384/384/256 (ungrouped), dense 4096/4096/n."""
    f: list[nn.Module] = [nn.Conv2d(3, 96, 11, stride=4), nn.ReLU()]
    if lrn:
        f.append(_lrn())
    f += [nn.MaxPool2d(3, 2), nn.Conv2d(96, 256, 5, padding=2), nn.ReLU()]
    if lrn:
        f.append(_lrn())
    f += [
        nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2),
    ]
    features = nn.Sequential(*f)
    c, h, w = feature_output_shape(features, 3, input_size)
    return features, dense_classifier(c * h * w, list(hidden), num_classes, dropout)


def alexnet_mini(num_classes: int, input_size: int = 64, lrn: bool = True, dropout: float = 0.5,
                 hidden: tuple[int, ...] = (256, 256)) -> tuple[nn.Sequential, nn.Sequential]:
    """AlexNet's shape family scaled for 64-96 px inputs: conv 32/64/96/96/64, dense 256/256/n."""
    f: list[nn.Module] = [nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU()]
    if lrn:
        f.append(_lrn())
    f += [nn.MaxPool2d(3, 2), nn.Conv2d(32, 64, 5, padding=2), nn.ReLU()]
    if lrn:
        f.append(_lrn())
    f += [
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1), nn.ReLU(),
        nn.Conv2d(96, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2),
    ]
    features = nn.Sequential(*f)
    c, h, w = feature_output_shape(features, 3, input_size)
    return features, dense_classifier(c * h * w, list(hidden), num_classes, dropout)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes: int, input_size: int = 224, dropout: float = 0.5,
          hidden: tuple[int, ...] = (4096, 4096)) -> tuple[nn.Sequential, nn.Sequential]:
    """VGG16 (configuration D, no batch norm), 224x224 by default."""
    f: list[nn.Module] = []
    c = 3
    for v in VGG16_CFG:
        if v == "M":
            f.append(nn.MaxPool2d(2, 2))
        else:
            f += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
            c = int(v)
    features = nn.Sequential(*f)
    c, h, w = feature_output_shape(features, 3, input_size)
    return features, dense_classifier(c * h * w, list(hidden), num_classes, dropout)


_TOKEN = re.compile(
    r"^(?:c(?P<c>\d+)k(?P<ck>\d+)(?:s(?P<cs>\d+))?(?:p(?P<cp>\d+))?"
    r"|m(?P<mk>\d+)(?:s(?P<ms>\d+))?(?:p(?P<mp>\d+))?"
    r"|a(?P<ak>\d+)(?:s(?P<as>\d+))?(?:p(?P<ap>\d+))?"
    r"|(?P<r>r)|(?P<l>l)|(?P<b>b))$"
)


def sequential_cnn(num_classes: int, input_size: int = 32, layers: str = "c8k3p1-r-m2-c16k3p1-r-m2",
                   hidden: tuple[int, ...] = (32,), dropout: float = 0.0) -> tuple[nn.Sequential, nn.Sequential]:
    """A small CNN from a text spec, tokens joined by ``-``.

    ``c<out>k<k>[s<s>][p<p>]`` Conv2d, ``m<k>[s<s>][p<p>]`` MaxPool2d, ``a<k>[s<s>][p<p>]`` AvgPool2d,
    ``r`` ReLU, ``l`` LocalResponseNorm(5), ``b`` BatchNorm2d.
    """
    f: list[nn.Module] = []
    c = 3
    for token in layers.split("-"):
        m = _TOKEN.match(token.strip())
        if not m:
            raise ModelError(f"bad layer token {token!r} in sequential-cnn spec {layers!r}")
        g = m.groupdict()
        if g["c"]:
            out = int(g["c"])
            f.append(nn.Conv2d(c, out, int(g["ck"]), stride=int(g["cs"] or 1), padding=int(g["cp"] or 0)))
            c = out
        elif g["mk"]:
            k = int(g["mk"])
            f.append(nn.MaxPool2d(k, int(g["ms"] or k), int(g["mp"] or 0)))
        elif g["ak"]:
            k = int(g["ak"])
            f.append(nn.AvgPool2d(k, int(g["as"] or k), int(g["ap"] or 0)))
        elif g["r"]:
            f.append(nn.ReLU())
        elif g["l"]:
            f.append(_lrn())
        elif g["b"]:
            f.append(nn.BatchNorm2d(c))
    features = nn.Sequential(*f)
    ch, h, w = feature_output_shape(features, 3, input_size)
    return features, dense_classifier(ch * h * w, list(hidden), num_classes, dropout)


ARCHS: dict[str, tuple[Callable[..., tuple[nn.Sequential, nn.Sequential]], int]] = {
    "alexnet": (alexnet, 227),
    "alexnet-mini": (alexnet_mini, 64),
    "vgg16": (vgg16, 224),
    "sequential-cnn": (sequential_cnn, 32),
}


def default_input_size(arch: str) -> int:
    if arch in ARCHS:
        return ARCHS[arch][1]
    return 224


def _resolve_factory(arch: str) -> Callable[..., Any]:
    if arch in ARCHS:
        return ARCHS[arch][0]
    if ":" in arch:
        from etdeploy.models.factories import load_factory

        return load_factory(arch)
    valid = ", ".join(sorted(ARCHS))
    raise ModelError(f"unknown architecture {arch!r}; choose one of {valid}, 'package.module:factory' or "
                     "'path/to/file.py:factory'")


def call_factory(arch: str, num_classes: int, *, input_size: int, seed: int = 0, **kwargs: Any) -> Any:
    """What ``arch``'s factory returns for ``(num_classes, input_size=..., **kwargs)``, weights drawn from
    ``seed`` (the global RNG untouched): ``(features, classifier)`` or a whole module."""
    factory = _resolve_factory(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(num_classes, input_size=int(input_size), **kwargs)


def build_model(arch: str, num_classes: int, *, input_size: int | None = None, seed: int = 0,
                class_names: tuple[str, ...] | None = None, **kwargs: Any) -> ETModel:
    """Build a freshly initialised model (weights drawn from ``seed``, the global RNG untouched).

    A user factory (``package.module:factory``) is called as ``factory(num_classes, input_size=...,
    **kwargs)`` and returns ``(features, classifier)`` or a whole module in a layout
    :func:`etdeploy.models.layouts.contract_parts` converts (torchvision AlexNet/VGG/ResNet/MobileNet).
    """
    from etdeploy.models.contract import dense_layers
    from etdeploy.models.factories import canonical_arch, check_head_width

    if num_classes < 2:
        raise ModelError(f"num_classes must be >= 2, got {num_classes}")
    size = int(input_size or default_input_size(arch))
    built = call_factory(arch, num_classes, input_size=size, seed=seed, **kwargs)
    from etdeploy.models.layouts import contract_parts

    features, classifier, _ = contract_parts(built, input_size=size)
    names = tuple(class_names) if class_names else tuple(f"class{i}" for i in range(num_classes))
    if len(names) != num_classes:
        raise ModelError(f"{len(names)} class names for {num_classes} classes")
    spec = ModelSpec(arch=canonical_arch(arch), num_classes=num_classes, class_names=names, input_size=size,
                     seed=seed, kwargs=dict(kwargs))
    model = ETModel(features, classifier, spec)
    dense_layers(model)
    check_head_width(model, size)
    out = model.classifier[-1].out_features
    if out != num_classes:
        raise ContractError(f"classifier outputs {out} values for {num_classes} classes")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
