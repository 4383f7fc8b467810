"""Neuron masks: a 0/1 buffer multiplied into a layer's output, toggled in place."""

from __future__ import annotations

import torch
from torch import nn

from etdeploy.errors import PruningError


class NeuronMask(nn.Module):
    """``(batch, n) -> (batch, n)``: multiplies each neuron by a 0/1 entry of ``mask``.

    The buffer is saved with the model (key ``...mask``) and can be changed in place with
    :meth:`set_kept` / :meth:`set_mask` without rebuilding the model.
    """

    def __init__(self, width: int):
        super().__init__()
        self.width = int(width)
        self.register_buffer("mask", torch.ones(self.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def set_mask(self, values) -> None:
        values = torch.as_tensor(values, dtype=self.mask.dtype).reshape(-1)
        if values.numel() != self.width:
            raise PruningError(f"mask has {values.numel()} entries, layer has {self.width}")
        if not bool(((values == 0) | (values == 1)).all()):
            raise PruningError("mask entries must be 0 or 1")
        with torch.no_grad():
            self.mask.copy_(values)

    def set_kept(self, kept_indices) -> None:
        values = torch.zeros(self.width)
        idx = torch.as_tensor(list(kept_indices), dtype=torch.long)
        if idx.numel():
            values[idx] = 1.0
        self.set_mask(values)

    def reset(self) -> None:
        with torch.no_grad():
            self.mask.fill_(1.0)

    @property
    def kept(self) -> list[int]:
        return torch.nonzero(self.mask, as_tuple=False).reshape(-1).tolist()

    def extra_repr(self) -> str:
        return f"width={self.width}, kept={int(self.mask.sum().item())}"
