"""Fine-tuning with the masks held (docs/method.md §3).

Training is :func:`etdeploy.training.train` (Adam, best-on-validation, deterministic) with an
``after_backward`` hook that zeroes the gradient of every weight tied to a masked neuron:

- masked output ``i`` of hidden ``Linear_k``: row ``i`` of its weight and entry ``i`` of its bias;
- masked input ``i`` of ``Linear_{k+1}`` (and of the first Linear for masked flatten positions):
  column ``i`` of its weight.

With a zero gradient from the start, Adam's moment estimates stay 0 and its step is exactly 0, so
those weights stay bit-identical (weight decay would break this and is refused). The masks keep the
masked neurons' outputs at exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from etdeploy.errors import PruningError


def frozen_slices(model) -> list[tuple[nn.Parameter, int, torch.Tensor]]:
    """``(parameter, dim, masked indices)`` for every weight tied to a masked neuron of ``model``."""
    from etdeploy.models import dense_layers, masks

    mods = masks(model)
    out = []
    for layer in dense_layers(model):
        mask = mods.get(layer.name)
        if mask is None:
            continue
        masked = torch.nonzero(mask.mask == 0, as_tuple=False).reshape(-1)
        if masked.numel() == 0:
            continue
        if layer.linear_index is not None:
            producer = model.classifier[layer.linear_index]
            out.append((producer.weight, 0, masked))
            if producer.bias is not None:
                out.append((producer.bias, 0, masked))
        out.append((model.classifier[layer.next_linear_index].weight, 1, masked))
    return out


def hold_masked_gradients(model) -> Callable[[nn.Module], None]:
    """An ``after_backward`` hook zeroing the gradients of weights tied to masked neurons (masks read now)."""
    slices = frozen_slices(model)

    def hook(_model: nn.Module) -> None:
        with torch.no_grad():
            for param, dim, idx in slices:
                if param.grad is not None:
                    param.grad.index_fill_(dim, idx, 0.0)

    return hook


def finetune_masked(model, train_split, val_split, config, *, progress: bool = True, desc: str = "fine-tune"):
    """Retrain ``model`` (in place) with its masks held; returns :class:`~etdeploy.training.TrainResult`.

    ``train_split`` / ``val_split``: :class:`~etdeploy.data.images.ImageSplit`; ``config``:
    :class:`~etdeploy.training.TrainConfig` (``weight_decay`` must be 0). Normalisation comes from the
    model's spec. Afterwards the weights of masked neurons are checked to be bit-identical, and
    :class:`PruningError` is raised if they are not.
    """
    from etdeploy.models import has_masks
    from etdeploy.training import train

    if not has_masks(model):
        raise PruningError("the model has no masks; apply a schedule (apply_percent) before fine-tuning")
    if config.weight_decay != 0:
        raise PruningError("fine-tuning with masks needs weight_decay=0 (decay would move masked weights)")
    slices = frozen_slices(model)
    before = [param.detach().index_select(dim, idx).clone() for param, dim, idx in slices]
    mask_state = {k: v.clone() for k, v in model.state_dict().items() if k.endswith(".mask")}
    result = train(model, train_split, val_split, config, mean=model.spec.mean, std=model.spec.std,
                   progress=progress, desc=desc, after_backward=hold_masked_gradients(model))
    for (param, dim, idx), old in zip(slices, before):
        if not torch.equal(param.detach().index_select(dim, idx), old):
            raise PruningError("fine-tuning changed weights of masked neurons (internal error)")
    for key, value in model.state_dict().items():
        if key in mask_state and not torch.equal(value, mask_state[key]):
            raise PruningError("fine-tuning changed a mask (internal error)")
    return result
