"""Per-neuron statistics behind the importance criteria other than the IG rank (docs/method.md §3).

:func:`~etdeploy.attribution.ranking.rank_model` computes them in the same pass as the integrated
gradients, on the same images (the ranking's split), and stores them with the ranking
(``LayerAttribution.criteria``; arrays ``<layer>.criteria.<name>`` in ``attributions.safetensors``),
so ``etdeploy prune``/``sweep`` reuse them. Each is ``(m,)`` float64 for a layer of ``m`` neurons:

- ``taylor``: first-order Taylor importance, ``mean_x |h_i(x) · ∂L(x)/∂h_i(x)|`` with ``L`` the
  cross-entropy of the true label (Molchanov et al. 2017, eq. 8, for a neuron with one value per
  image); the change of the loss when neuron ``i`` is zeroed, to first order;
- ``apoz``: average percentage of zeros, the fraction of images on which ``h_i = 0`` (Hu et al. 2016);
- ``weight_l1`` / ``weight_l2``: L1 / L2 norm of every weight tied to the neuron, i.e. the row and
  bias of the Linear producing it (none for ``flatten``) and the column of the Linear consuming it,
  the dependency group Torch-Pruning's ``MagnitudeImportance`` scores (its ``p=1``/``p=2`` with the
  group's entries pooled);
- ``ig_vote``: ``Σ_k P(y=k) E^k_ik``, the expected attribution to the probability of the image's own
  class: the paper's class-vote form of the IG rank (the loss form is ``rank``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: The statistics :func:`~etdeploy.attribution.ranking.rank_model` stores, with their definitions.
STATISTICS: dict[str, str] = {
    "taylor": "mean over images of |h_i * dL/dh_i| (L: cross-entropy of the true label)",
    "apoz": "fraction of images with h_i == 0",
    "weight_l1": "L1 norm of the weights tied to neuron i (producing row and bias, consuming column)",
    "weight_l2": "L2 norm of the weights tied to neuron i (producing row and bias, consuming column)",
    "ig_vote": "sum_k P(y=k) E^k_ik: expected attribution to the probability of the true class",
}


def loss_gradient(g: nn.Module, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``∂L_b/∂h_b`` for every image ``b`` (``L_b`` its cross-entropy): ``(B, m)``, dtype of ``h``.

    ``g``: ``(batch, m) -> (batch, n)`` logits in eval mode. Summing the per-image losses gives each
    image's own gradient, since image ``b``'s loss depends on ``h_b`` only.
    """
    x = h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(g(x), torch.as_tensor(labels, dtype=torch.long), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


class NeuronStatistics:
    """Streaming ``taylor`` and ``apoz`` of one layer (``m`` neurons), summed in float64."""

    def __init__(self, width: int):
        self.m = int(width)
        self.n = 0
        self.sum_taylor = torch.zeros(self.m, dtype=torch.float64)
        self.zeros = torch.zeros(self.m, dtype=torch.long)

    def update(self, h: torch.Tensor, grad: torch.Tensor) -> None:
        """Add a batch: activations ``h`` ``(B, m)`` and ``∂L/∂h`` ``(B, m)``."""
        self.n += int(h.shape[0])
        self.sum_taylor += (h.to(torch.float64) * grad.to(torch.float64)).abs().sum(dim=0)
        self.zeros += (h == 0).sum(dim=0)

    def result(self) -> dict[str, np.ndarray]:
        n = max(self.n, 1)
        return {"taylor": self.sum_taylor.numpy() / n, "apoz": self.zeros.numpy().astype(np.float64) / n}


def weight_norms(model: nn.Module, layer_name: str) -> dict[str, np.ndarray]:
    """``weight_l1`` and ``weight_l2`` ``(m,)`` of a dense layer's neurons (see the module docstring)."""
    from etdeploy.models import get_dense_layer

    layer = get_dense_layer(model, layer_name)
    consumer = model.classifier[layer.next_linear_index].weight.detach().to(torch.float64)  # (d, m)
    l1 = consumer.abs().sum(dim=0)
    sq = (consumer ** 2).sum(dim=0)
    if layer.linear_index is not None:
        producer = model.classifier[layer.linear_index]
        w = producer.weight.detach().to(torch.float64)  # (m, in)
        l1 = l1 + w.abs().sum(dim=1)
        sq = sq + (w ** 2).sum(dim=1)
        if producer.bias is not None:
            b = producer.bias.detach().to(torch.float64)
            l1 = l1 + b.abs()
            sq = sq + b ** 2
    return {"weight_l1": l1.numpy(), "weight_l2": sq.sqrt().numpy()}


def vote_scores(ea_class: np.ndarray, class_counts) -> np.ndarray:
    """``Σ_k P(y=k) E^k_ik`` over the classes with images: ``(K, m, K), (K,) -> (m,)``."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    diag = np.stack([ea_class[k, :, k] for k in range(ea_class.shape[0])])  # (K, m)
    prior = counts / counts.sum()
    return np.einsum("km,k->m", diag[present], prior[present])


__all__ = ["STATISTICS", "NeuronStatistics", "loss_gradient", "vote_scores", "weight_norms"]
