"""The structural contract every etdeploy model follows, and the views later stages take of it.

A model has two children:

- ``features``, either
  - a *plain chain*: an ``nn.Sequential`` of local ops (Conv2d, ZeroPad2d (an ONNX import's asymmetric
    padding), pooling, LocalResponseNorm, ReLU and other pointwise activations, BatchNorm2d, Dropout);
    conv channels may be removed by slicing; or
  - an :class:`OpaqueFeatures` (an ``nn.Sequential`` of arbitrary modules, e.g. residual or inverted-
    residual blocks): etdeploy runs it but never looks inside, so only the dense head is ranked,
    masked and sliced, and no conv channel is ever removed;
- ``classifier``: an ``nn.Sequential``
  ``[AdaptiveAvgPool2d] -> Flatten -> [Dropout] -> (Linear -> act [-> Dropout])* -> Linear``: an
  optional adaptive average pool first (torchvision's ``avgpool``: ``(6, 6)`` for AlexNet, ``(7, 7)``
  for VGG, ``1`` for ResNet/MobileNet global pooling), optionally with :class:`NeuronMask` modules
  after the Flatten and after each hidden activation, and optionally one :class:`SelectFeatures`
  right after the Flatten (before its NeuronMask): a sliced model uses it to drop flattened
  positions; the ``flatten`` layer is then the selected features (its width = the first Linear's
  ``in_features``).

The ranked ("dense") layers are named from the classifier: ``flatten`` is the Flatten output (the
pooled features where the classifier starts with a pool), ``dense1``, ``dense2``... the outputs of
the hidden Linear+activation blocks. Splitting the network at one of them gives ``F(x) = G(H(x))``
(docs/method.md §1). Models in other layouts (torchvision AlexNet/VGG/ResNet/MobileNet module trees)
are converted to this one by :mod:`etdeploy.models.layouts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from etdeploy.errors import ContractError
from etdeploy.models.masks import NeuronMask
from etdeploy.models.select import SelectFeatures

LOCAL_FEATURE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.LocalResponseNorm,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.ZeroPad2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)
#: Hidden-layer activations of the classifier: each maps 0 to 0 (Hardtanh as an ONNX import makes it, from
#: a Clip whose range contains 0).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh)
PASS_THROUGH_TYPES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Identity)
#: Layers allowed before the classifier's Flatten (torchvision's ``avgpool``).
POOL_TYPES: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d,)


class OpaqueFeatures(nn.Sequential):
    """A feature extractor etdeploy runs but does not look inside: ``(batch, 3, S, S) -> (batch, C, h, w)``.

    An ``nn.Sequential`` of arbitrary modules (residual blocks, inverted residuals, squeeze-excite...),
    run in order. Ranking, masking and slicing act on the dense head only; no channel of it is ever
    removed (removing one is provably exact only through a plain chain of channel-wise layers).
    Structure serialisation cannot describe its modules: a saved model rebuilds it through the
    factory that made it (``spec.arch``) and checks every tensor name and shape against the file.
    """


@dataclass(frozen=True)
class DenseLayer:
    """One ranked layer of the classifier.

    ``split`` is the index in ``classifier`` where ``G`` starts (everything before it, including the
    layer's own mask, belongs to ``H``); ``mask_index`` is the classifier index of its NeuronMask
    (``None`` when the model carries no masks); ``linear_index`` the Linear producing it (``None``
    for ``flatten``); ``next_linear_index`` the Linear that consumes it; ``select_index`` the
    classifier index of the :class:`SelectFeatures` after the Flatten (``flatten`` only, else ``None``).
    """

    name: str
    width: int
    split: int
    mask_index: int | None
    linear_index: int | None
    next_linear_index: int
    select_index: int | None = None


def _types_text(types: tuple[type[nn.Module], ...]) -> str:
    return ", ".join(t.__name__ for t in types)


def is_plain_chain(features: nn.Module) -> bool:
    """True for an ``nn.Sequential`` (not :class:`OpaqueFeatures`) made of local ops only."""
    return type(features) is nn.Sequential and all(isinstance(m, LOCAL_FEATURE_TYPES) for m in features)


def has_plain_features(model: nn.Module) -> bool:
    """True when the model's conv channels may be removed by slicing (``features`` is a plain chain)."""
    return is_plain_chain(getattr(model, "features", None))


def _check_features(model: nn.Module) -> None:
    features = getattr(model, "features", None)
    if isinstance(features, OpaqueFeatures):
        return
    if type(features) is not nn.Sequential:
        raise ContractError("model has no nn.Sequential 'features' part (a feature extractor with residual "
                            "blocks is accepted through etdeploy import or a factory returning the whole model)")
    for index, module in enumerate(features):
        if not isinstance(module, LOCAL_FEATURE_TYPES):
            raise ContractError(
                f"features[{index}] is {type(module).__name__}; only local ops are supported "
                f"({_types_text(LOCAL_FEATURE_TYPES)}); an adaptive average pool belongs at the start of the "
                "classifier"
            )


def flatten_index(classifier: nn.Sequential) -> int:
    """Index of the classifier's Flatten: 0, or 1 after an adaptive average pool."""
    modules = list(classifier)
    start = 1 if modules and isinstance(modules[0], POOL_TYPES) else 0
    if len(modules) <= start or not isinstance(modules[start], nn.Flatten):
        raise ContractError(f"classifier must start with nn.Flatten (optionally after one "
                            f"{_types_text(POOL_TYPES)})")
    return start


def dense_layers(model: nn.Module) -> list[DenseLayer]:
    """Validate the classifier and list its ranked layers in order (``flatten``, ``dense1``...)."""
    _check_features(model)
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Sequential):
        raise ContractError("model has no nn.Sequential 'classifier' part")
    modules = list(classifier)
    i = flatten_index(classifier) + 1
    linears = [k for k, m in enumerate(modules) if isinstance(m, nn.Linear)]
    if not linears:
        raise ContractError("classifier has no nn.Linear layer")
    if linears[-1] != len(modules) - 1:
        raise ContractError("classifier must end with the output nn.Linear (no activation after it)")

    layers: list[DenseLayer] = []
    select_index = None
    if i < len(modules) and isinstance(modules[i], SelectFeatures):
        select_index = i
        i += 1
    mask_index = None
    if i < len(modules) and isinstance(modules[i], NeuronMask):
        mask_index = i
        i += 1
    first_linear = modules[linears[0]]
    layers.append(DenseLayer("flatten", first_linear.in_features, i, mask_index, None, linears[0], select_index))
    j = i
    while j < len(modules) and isinstance(modules[j], PASS_THROUGH_TYPES):
        j += 1
    if j != linears[0]:
        raise ContractError(f"classifier[{j}] must be the first nn.Linear (after optional Dropout), found "
                            f"{type(modules[j]).__name__}")
    if select_index is not None and modules[select_index].out_width != first_linear.in_features:
        raise ContractError(f"classifier[{select_index}] selects {modules[select_index].out_width} features but the "
                            f"first nn.Linear takes {first_linear.in_features}")
    if mask_index is not None and modules[mask_index].width != first_linear.in_features:
        raise ContractError(f"classifier[{mask_index}] (flatten NeuronMask) has width {modules[mask_index].width} "
                            f"but the first nn.Linear takes {first_linear.in_features}")

    for k, lin_idx in enumerate(linears[:-1], start=1):
        j = lin_idx + 1
        if j >= len(modules) or not isinstance(modules[j], ACTIVATION_TYPES):
            raise ContractError(
                f"classifier[{lin_idx}] (hidden nn.Linear) must be followed by an activation "
                f"({_types_text(ACTIVATION_TYPES)})"
            )
        j += 1
        mask_index = None
        if j < len(modules) and isinstance(modules[j], NeuronMask):
            mask_index = j
            j += 1
        split = j
        while j < len(modules) and isinstance(modules[j], PASS_THROUGH_TYPES):
            j += 1
        if j != linears[k]:
            raise ContractError(
                f"classifier[{j}] is {type(modules[j]).__name__}; expected Dropout or the next nn.Linear"
            )
        width = modules[lin_idx].out_features
        if modules[linears[k]].in_features != width:
            raise ContractError(f"classifier[{linears[k]}] in_features does not match dense{k} width {width}")
        layers.append(DenseLayer(f"dense{k}", width, split, mask_index, lin_idx, linears[k]))
    return layers


def layer_names(model: nn.Module) -> list[str]:
    return [layer.name for layer in dense_layers(model)]


def get_dense_layer(model: nn.Module, name: str) -> DenseLayer:
    layers = dense_layers(model)
    for layer in layers:
        if layer.name == name:
            return layer
    valid = ", ".join(layer.name for layer in layers)
    raise ContractError(f"unknown layer {name!r}; valid layers: {valid}")


class _Prefix(nn.Module):
    """``H``: features then the first ``split`` classifier modules. ``(batch, C, H, W) -> (batch, m)``."""

    def __init__(self, features: nn.Module, head: nn.Sequential):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x):
        return self.head(self.features(x))


def split_model(model: nn.Module, name: str) -> tuple[nn.Module, nn.Sequential]:
    """Return ``(H, G)`` sharing parameters with ``model`` such that ``model(x) == G(H(x))``.

    ``H``: ``(batch, C, H, W) -> (batch, m)`` ends with the layer's own mask if present;
    ``G``: ``(batch, m) -> (batch, n)`` logits, containing every later mask.
    """
    layer = get_dense_layer(model, name)
    modules = list(model.classifier)
    head = nn.Sequential(*modules[: layer.split])
    tail = nn.Sequential(*modules[layer.split :])
    return _Prefix(model.features, head), tail


def masks(model: nn.Module) -> dict[str, NeuronMask]:
    """The NeuronMask of each ranked layer that has one, by layer name."""
    out: dict[str, NeuronMask] = {}
    for layer in dense_layers(model):
        if layer.mask_index is not None:
            out[layer.name] = model.classifier[layer.mask_index]
    return out


def with_masks(model: nn.Module) -> nn.Module:
    """Insert an all-ones NeuronMask after every ranked layer that lacks one (in place); returns model."""
    layers = dense_layers(model)
    modules = list(model.classifier)
    inserts = [layer for layer in layers if layer.mask_index is None]
    for layer in sorted(inserts, key=lambda lay: lay.split, reverse=True):
        modules.insert(layer.split, NeuronMask(layer.width))
    model.classifier = nn.Sequential(*modules)
    dense_layers(model)
    return model


def without_masks(model: nn.Module) -> nn.Module:
    """Remove every NeuronMask from the classifier (in place); returns model. Use after slicing."""
    model.classifier = nn.Sequential(*[m for m in model.classifier if not isinstance(m, NeuronMask)])
    dense_layers(model)
    return model


def has_masks(model: nn.Module) -> bool:
    return any(isinstance(m, NeuronMask) for m in model.classifier)
