"""Select a fixed subset of flattened features: how a sliced model drops masked flatten positions."""

from __future__ import annotations

import torch
from torch import nn


def _check_indices(indices: torch.Tensor, in_width: int) -> str | None:
    """Why ``indices`` is not a valid selection of ``in_width`` features (``None`` when it is). Pure."""
    if indices.dim() != 1:
        return f"indices must be one-dimensional, got shape {tuple(indices.shape)}"
    if indices.dtype != torch.int64:
        return f"indices must be int64, got {indices.dtype}"
    if indices.numel() == 0:
        return "indices select no feature"
    if in_width < 1:
        return f"in_width must be >= 1, got {in_width}"
    if int(indices.min()) < 0 or int(indices.max()) >= in_width:
        return f"indices must lie in [0, {in_width}), got [{int(indices.min())}, {int(indices.max())}]"
    if indices.numel() > 1 and not bool((indices[1:] > indices[:-1]).all()):
        return "indices must be strictly increasing (sorted, unique)"
    return None


class SelectFeatures(nn.Module):
    """``(batch, in_width) -> (batch, len(indices))``: keeps the features ``indices`` (sorted, unique).

    ``indices`` is an int64 buffer (saved with the weights); ``in_width`` is the expected input
    width. Exports to ONNX as one ``Gather(axis=1)`` with a constant index tensor.
    """

    def __init__(self, indices, in_width: int):
        super().__init__()
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).clone()
        self.in_width = int(in_width)
        problem = _check_indices(idx, self.in_width)
        if problem is not None:
            raise ValueError(f"SelectFeatures: {problem}")
        self.register_buffer("indices", idx)

    @classmethod
    def placeholder(cls, in_width: int, out_width: int) -> SelectFeatures:
        """A module of the right shapes (``indices = 0..out_width-1``) to load a state dict into."""
        if not 1 <= int(out_width) <= int(in_width):
            raise ValueError(f"SelectFeatures: out_width must be in [1, in_width={in_width}], got {out_width}")
        return cls(torch.arange(int(out_width)), in_width)

    @property
    def out_width(self) -> int:
        return int(self.indices.numel())

    def validate(self) -> str | None:
        """Why the current buffer is invalid (after loading weights), or ``None``."""
        return _check_indices(self.indices, self.in_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.indices)

    def extra_repr(self) -> str:
        return f"in_width={self.in_width}, out_width={self.out_width}"
