"""Model layouts real code uses, converted to etdeploy's contract (:mod:`etdeploy.models.contract`).

A model factory may return the contract's two parts, or a whole ``nn.Module`` in one of the layouts
below. :func:`contract_parts` turns it into ``(features, classifier)`` that *share* the original
modules (and so its parameters: load the weights into the original first, then convert).

======================  ==============================================  =================================
layout                  module tree                                     becomes
======================  ==============================================  =================================
``pair``                factory returns ``(features, classifier)``      as returned
``features-classifier`` ``features``, optional ``avgpool``,             ``classifier = [avgpool] +
                        ``classifier`` (torchvision AlexNet, VGG,       Flatten + classifier``
                        MobileNetV3; flatten in ``forward``)
``features-gap``        ``features``, ``classifier``, no ``avgpool``;   ``classifier =
                        ``forward`` pools globally (MobileNetV2)        AdaptiveAvgPool2d(1) + Flatten +
                                                                        classifier``
``resnet``              children ``...``, ``avgpool``, ``fc``           ``features`` = the children
                        (torchvision ResNet; flatten in ``forward``)    before ``avgpool``, in order;
                                                                        ``classifier = [avgpool,
                                                                        Flatten, fc]``
======================  ==============================================  =================================

A classifier that already starts with ``Flatten`` (or an adaptive pool then ``Flatten``) is kept as it
is. Features that are not a plain chain of local ops (:func:`etdeploy.models.contract.is_plain_chain`)
become an :class:`~etdeploy.models.contract.OpaqueFeatures` with the same children. The
``features-gap`` and ``resnet`` layouts read the order of ``forward`` from the order in which the
children were registered, which torchvision follows; the conversion is a claim about ``forward``
that code cannot read, so :func:`etdeploy.importing.import_torch_model` checks it: the converted model
must give the original module's logits (within 1e-5) on real or seeded images before anything is saved.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from etdeploy.errors import ContractError
from etdeploy.models.contract import POOL_TYPES, OpaqueFeatures, is_plain_chain

LAYOUTS: tuple[str, ...] = ("pair", "features-classifier", "features-gap", "resnet")


def _as_features(features: nn.Module) -> nn.Module:
    """A plain chain stays an ``nn.Sequential``; anything else becomes OpaqueFeatures (same children)."""
    if is_plain_chain(features):
        return nn.Sequential(*features)  # numbered like the saved structure (names 0, 1, ...)
    if isinstance(features, OpaqueFeatures):
        return features
    if isinstance(features, nn.Sequential):
        return OpaqueFeatures(OrderedDict(features.named_children()))
    return OpaqueFeatures(features)


def _head_modules(classifier: nn.Module) -> list[nn.Module]:
    if isinstance(classifier, nn.Sequential):
        return list(classifier)
    if isinstance(classifier, nn.Linear):
        return [classifier]
    raise ContractError(f"the classifier is a {type(classifier).__name__}; expected an nn.Sequential of "
                        "Dropout / Linear / activation layers or one nn.Linear")


def _classifier(pool: nn.Module | None, head: nn.Module) -> nn.Sequential:
    """``[pool] + Flatten + head`` unless ``head`` already starts with the Flatten (then kept as it is)."""
    modules = _head_modules(head)
    starts_flat = bool(modules) and (isinstance(modules[0], nn.Flatten) or (
        isinstance(modules[0], POOL_TYPES) and len(modules) > 1 and isinstance(modules[1], nn.Flatten)))
    if starts_flat:
        if pool is not None:
            raise ContractError("the model has an avgpool and its classifier starts with Flatten: pooling would "
                                "be applied twice")
        return nn.Sequential(*modules)
    if pool is not None and not isinstance(pool, POOL_TYPES):
        raise ContractError(f"the model's avgpool is a {type(pool).__name__}; expected nn.AdaptiveAvgPool2d")
    return nn.Sequential(*([pool] if pool is not None else []), nn.Flatten(), *modules)


def _first_linear(modules: list[nn.Module]) -> nn.Linear | None:
    return next((m for m in modules if isinstance(m, nn.Linear)), None)


def _needs_global_pool(features: nn.Module, head: nn.Module, input_size: int | None) -> bool:
    """``features-gap``: no avgpool child, and the channels (not the flattened map) fit the first Linear."""
    first = _first_linear(_head_modules(head))
    if first is None or input_size is None:
        return False
    try:
        with torch.no_grad():
            was = features.training
            features.eval()
            out = features(torch.zeros(1, 3, int(input_size), int(input_size)))
            features.train(was)
    except RuntimeError:
        return False
    return out.dim() == 4 and out.shape[2] * out.shape[3] > 1 and out.shape[1] == first.in_features


def contract_parts(built, *, input_size: int | None = None) -> tuple[nn.Module, nn.Sequential, str]:
    """``(features, classifier, layout)`` of what a factory returned (see the table above).

    ``built``: ``(features, classifier)`` or an ``nn.Module``; ``input_size`` lets the ``features-gap``
    layout be recognised (features run once on zeros). The returned modules share the originals.
    """
    if isinstance(built, tuple):
        if len(built) != 2 or not all(isinstance(m, nn.Module) for m in built):
            raise ContractError("a model factory must return (features, classifier) or one nn.Module")
        features, head = built
        return _as_features(features), _classifier(None, head), "pair"
    if not isinstance(built, nn.Module):
        raise ContractError(f"a model factory returned a {type(built).__name__}; expected (features, classifier) "
                            "or an nn.Module")
    children = OrderedDict(built.named_children())
    if "features" in children and "classifier" in children:
        pool = children.get("avgpool")
        features, head = children["features"], children["classifier"]
        if pool is None and _needs_global_pool(features, head, input_size):
            return _as_features(features), _classifier(nn.AdaptiveAvgPool2d(1), head), "features-gap"
        return _as_features(features), _classifier(pool, head), "features-classifier"
    if "fc" in children and "avgpool" in children:
        names = list(children)
        body = OrderedDict((name, children[name]) for name in names[:names.index("avgpool")])
        if not body:
            raise ContractError("the model registers no layer before its avgpool")
        trunk = nn.Sequential(body)
        return _as_features(trunk), _classifier(children["avgpool"], children["fc"]), "resnet"
    found = ", ".join(children) or "none"
    raise ContractError(f"cannot recognise the model's layout (children: {found}); expected features + classifier "
                        "[+ avgpool] (torchvision AlexNet, VGG, MobileNet), avgpool + fc (torchvision ResNet), or a "
                        "factory returning (features, classifier)")
