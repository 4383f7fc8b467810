"""Accuracy of masked dense heads on cached conv features (docs/method.md §13).

Masking changes only the classifier: the feature extractor's output ``z = features(x)`` is the same for
every candidate. :class:`FeatureCache` computes ``z`` once per split, so scoring a candidate is one
classifier pass ``(N, C, H, W) -> (N, K)`` with its masks set: ``classifier(z)`` equals
``model(x)`` of the masked model exactly (same modules, same batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CachedSplit:
    """One split's conv features ``(N, C, H, W)`` float32 and labels ``(N,)``."""

    features: torch.Tensor
    labels: np.ndarray

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def cache_features(model, images_uint8: np.ndarray, labels: np.ndarray, *, batch_size: int = 128) -> CachedSplit:
    """``model.features`` of every image (eval mode, no grad), batched like :func:`etdeploy.training.predict_logits`."""
    from etdeploy.data.images import normalise

    model.eval()
    spec = model.spec
    outs = []
    with torch.no_grad():
        for start in range(0, len(images_uint8), batch_size):
            outs.append(model.features(normalise(images_uint8[start:start + batch_size], spec.mean, spec.std)))
    feats = torch.cat(outs) if outs else torch.zeros((0,))
    return CachedSplit(feats, np.asarray(labels, dtype=np.int64))


def head_correct(model, split: CachedSplit, plan: Mapping[str, Sequence[int]], *, batch_size: int = 128) -> int:
    """Images of ``split`` the model classifies correctly with the masks of ``plan`` (set in place)."""
    from etdeploy.pruning.masking import set_layer_masks

    set_layer_masks(model, plan)
    model.eval()
    correct = 0
    labels = torch.as_tensor(split.labels)
    with torch.no_grad():
        for start in range(0, split.n, batch_size):
            logits = model.classifier(split.features[start:start + batch_size])
            correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum().item())
    return correct


__all__ = ["CachedSplit", "cache_features", "head_correct"]
