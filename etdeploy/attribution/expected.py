"""Streaming expected attributions over a data set (docs/method.md §1, eq. 3-5).

:class:`ExpectedAttribution` keeps per-class float64 sums, so memory is constant in the number of
images and the result does not depend on batch size or image order (up to float64 summation order).
:meth:`ExpectedAttribution.result` turns the sums into a :class:`LayerAttribution`:

- ``E^k_ij`` = mean of ``A_ij`` over images of class ``k`` (NaN when class ``k`` has no image);
- ``E_ij = Σ_k E^k_ij P(y=k)`` over the classes present, ``P(y=k)`` = class frequency;
- ``rank_i = -E[A^L_i]``, ``rank_class[k]_i`` the same within class ``k``;
- a neuron is live when its activation is non-zero on at least one image (for post-ReLU layers:
  ``> 0``); dead neurons get rank and attributions exactly 0.
"""

from __future__ import annotations

import numpy as np
import torch

from etdeploy.attribution.integrated import NeuronIG
from etdeploy.attribution.result import LayerAttribution
from etdeploy.errors import AttributionError


class ExpectedAttribution:
    """Accumulator for one layer: ``m`` neurons, ``n`` outputs, ``K`` classes (labels in ``[0, K)``)."""

    def __init__(self, layer: str, width: int, num_outputs: int, num_classes: int):
        self.layer = layer
        self.m, self.n, self.k = int(width), int(num_outputs), int(num_classes)
        f64 = torch.float64
        self.count = torch.zeros(self.k, dtype=torch.long)
        self.sum_attr = torch.zeros(self.k, self.m, self.n, dtype=f64)
        self.sum_loss = torch.zeros(self.k, self.m, dtype=f64)
        self.sum_act = torch.zeros(self.m, dtype=f64)
        self.live = torch.zeros(self.m, dtype=torch.bool)
        self.gap_sum = 0.0
        self.gap_max = 0.0
        self.loss_gap_sum = 0.0
        self.loss_gap_max = 0.0

    def update(self, h: torch.Tensor, ig: NeuronIG, labels: torch.Tensor) -> None:
        """Add one batch: ``h`` ``(B, m)`` activations, its :class:`NeuronIG`, ``labels`` ``(B,)``."""
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if h.shape != (labels.shape[0], self.m):
            raise AttributionError(f"{self.layer}: activations of shape {tuple(h.shape)} for {labels.shape[0]} "
                                   f"labels and {self.m} neurons")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.k):
            raise AttributionError(f"labels must lie in [0, {self.k})")
        self.count += torch.bincount(labels, minlength=self.k)
        self.sum_attr.index_add_(0, labels, ig.attributions)
        self.sum_loss.index_add_(0, labels, ig.loss_attributions)
        self.sum_act += h.to(torch.float64).sum(dim=0)
        self.live |= (h != 0).any(dim=0)
        self.gap_sum += float(ig.gap.sum())
        self.gap_max = max(self.gap_max, float(ig.gap.max()) if ig.gap.numel() else 0.0)
        self.loss_gap_sum += float(ig.loss_gap.sum())
        self.loss_gap_max = max(self.loss_gap_max, float(ig.loss_gap.max()) if ig.loss_gap.numel() else 0.0)

    @property
    def n_images(self) -> int:
        return int(self.count.sum())

    def result(self) -> LayerAttribution:
        total = self.n_images
        if total == 0:
            raise AttributionError(f"{self.layer}: no images were attributed")
        count = self.count.numpy().astype(np.float64)
        present = count > 0
        live = self.live.numpy().copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            ea_class = self.sum_attr.numpy() / count[:, None, None]  # (K, m, n)
            loss_class = self.sum_loss.numpy() / count[:, None]  # (K, m)
        prior = count / total
        ea = np.einsum("kmn,k->mn", ea_class[present], prior[present])  # law of total expectation
        rank = -np.einsum("km,k->m", loss_class[present], prior[present])
        rank_class = -loss_class
        # dead neurons: exactly (+)0 everywhere a value exists; missing classes stay NaN
        ea = np.where(live[:, None], ea, 0.0)
        rank = np.where(live, rank, 0.0)
        ea_class = np.where(present[:, None, None] & ~live[None, :, None], 0.0, ea_class)
        rank_class = np.where(present[:, None] & ~live[None, :], 0.0, rank_class)
        return LayerAttribution(
            layer=self.layer, live=live, activation_mean=self.sum_act.numpy() / total, rank=rank,
            rank_class=rank_class, ea=ea, ea_class=ea_class,
            gap_mean=self.gap_sum / (total * self.n), gap_max=self.gap_max,
            loss_gap_mean=self.loss_gap_sum / total, loss_gap_max=self.loss_gap_max,
        )
