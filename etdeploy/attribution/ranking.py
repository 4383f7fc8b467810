"""Rank the neurons of a model's dense layers on a data split (the public attribution API).

    from etdeploy.attribution import rank_model, save_ranking
    ranking = rank_model(model, split.images, split.labels, layers=["flatten", "dense1", "dense2"])
    save_ranking(ranking, "runs/rank")

:func:`rank_model` runs the feature extractor once per image, captures the input of every requested
dense layer in the same pass (``H(x)`` of each split), and feeds each layer's ``G`` with the batched
α-scaled copies (:func:`~etdeploy.attribution.integrated.neuron_integrated_gradients`), accumulating
expected attributions in constant memory (:class:`~etdeploy.attribution.expected.ExpectedAttribution`).
:func:`layer_attributions` does the same for precomputed activations of one layer.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from etdeploy.attribution.expected import ExpectedAttribution
from etdeploy.attribution.integrated import neuron_integrated_gradients
from etdeploy.attribution.neuron_stats import STATISTICS, NeuronStatistics, loss_gradient, vote_scores, weight_norms
from etdeploy.attribution.quadrature import DEFAULT_METHOD, DEFAULT_STEPS, quadrature
from etdeploy.attribution.result import LayerAttribution, Ranking
from etdeploy.errors import AttributionError
from etdeploy.progress import progress_bar

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_finite_parameters(model: nn.Module) -> None:
    """Raise :class:`AttributionError` naming the first parameter or buffer holding NaN/Inf."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise AttributionError(f"model weight {name!r} contains NaN or Inf values; "
                                   "retrain or reload a valid model before ranking")


def _check_activations(name: str, h: torch.Tensor, offset: int) -> None:
    if not bool(torch.isfinite(h).all()):
        bad = torch.nonzero(~torch.isfinite(h).all(dim=1)).reshape(-1) + offset
        raise AttributionError(f"activations of layer {name!r} are NaN or Inf for image(s) "
                               f"{bad[:10].tolist()} (check the input normalisation and weights)")


def _check_labels(labels: np.ndarray, n: int, num_classes: int) -> torch.Tensor:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise AttributionError(f"labels must have shape ({n},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise AttributionError(f"labels must be integers, got {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise AttributionError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    return torch.as_tensor(labels.astype(np.int64))


def _eval_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """An eval-mode copy in ``dtype`` (the caller's model is left as it was)."""
    work = copy.deepcopy(model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    return work.to(dtype)


def _settings(steps: int, method: str, layers: Sequence[str], n_images: int, dtype: str, split: str | None,
              seed: int | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    settings = {"steps": int(steps), "method": method, "layers": list(layers), "n_images": int(n_images),
                "dtype": dtype, "split": split, "seed": seed, "baseline": "zero",
                "outputs": "softmax probability", "loss": "cross-entropy of the true label",
                "statistics": dict(STATISTICS)}
    settings.update(extra or {})
    return settings


def with_statistics(la: LayerAttribution, stats: NeuronStatistics, class_counts: Sequence[int],
                    norms: dict[str, np.ndarray] | None = None) -> LayerAttribution:
    """``la`` with its criteria statistics (:mod:`~etdeploy.attribution.neuron_stats`) attached."""
    criteria = {**stats.result(), "ig_vote": vote_scores(la.ea_class, class_counts), **(norms or {})}
    return dataclasses.replace(la, criteria={k: criteria[k] for k in sorted(criteria)})


def rank_model(model: nn.Module, images_uint8: np.ndarray, labels: np.ndarray, *,
               layers: Sequence[str] | None = None, steps: int = DEFAULT_STEPS, method: str = DEFAULT_METHOD,
               batch_size: int = 16, progress: bool = True, dtype: str = "float32", split: str | None = None,
               seed: int | None = None, extra_settings: dict[str, Any] | None = None) -> Ranking:
    """Integrated-gradients ranking of the neurons of ``layers`` (default: every dense layer).

    ``model``: an etdeploy model (``.spec`` gives the normalisation ``mean``/``std`` and class names;
    masks it carries are honoured); ``images_uint8``: ``(N, 3, S, S)`` uint8 with ``S =
    model.spec.input_size``; ``labels``: ``(N,)`` ints in ``[0, K)``. ``steps``/``method``: the
    quadrature (:data:`~etdeploy.attribution.quadrature.QUADRATURE_RULES`); ``batch_size``: images per
    ``G`` pass (``batch_size · steps`` points); ``dtype``: ``"float32"`` (the deployed precision; sums
    in float64) or ``"float64"``. ``split``/``seed`` are recorded in the settings. The model is
    copied, so its train/eval state and dtype are untouched.
    """
    from etdeploy.data.images import normalise
    from etdeploy.models import dense_layers, get_dense_layer, split_model, weights_fingerprint

    if dtype not in DTYPES:
        raise AttributionError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AttributionError(f"batch_size must be a positive integer, got {batch_size!r}")
    weights, alphas = quadrature(method, steps)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise AttributionError("model has no spec (normalisation and class names); build or load it with etdeploy")
    all_layers = dense_layers(model)
    names = [layer.name for layer in all_layers] if layers is None else list(layers)
    if not names:
        raise AttributionError("no layers to rank")
    if len(set(names)) != len(names):
        raise AttributionError(f"layers are repeated: {names}")
    chosen = {name: get_dense_layer(model, name) for name in names}  # ContractError lists the valid names
    check_finite_parameters(model)

    images = np.asarray(images_uint8)
    size = spec.input_size
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, size, size):
        raise AttributionError(f"images must be uint8 of shape (N, 3, {size}, {size}), got {images.dtype} "
                               f"{images.shape}")
    n_images = images.shape[0]
    if n_images == 0:
        raise AttributionError("no images to rank on")
    num_classes = spec.num_classes
    y = _check_labels(labels, n_images, num_classes)

    tdtype = DTYPES[dtype]
    work = _eval_copy(model, tdtype)
    tails = {name: split_model(work, name)[1] for name in names}
    split_at = {chosen[name].split: name for name in names}
    last = max(split_at)
    accs = {name: ExpectedAttribution(name, chosen[name].width, num_classes, num_classes) for name in names}
    stats = {name: NeuronStatistics(chosen[name].width) for name in names}

    starts = range(0, n_images, batch_size)
    for start in progress_bar(starts, desc="rank", total=len(starts), enabled=progress, unit="batch"):
        stop = min(start + batch_size, n_images)
        x = normalise(images[start:stop], spec.mean, spec.std).to(tdtype)
        yb = y[start:stop]
        with torch.no_grad():
            out = work.features(x)
            captured = {}
            for index, module in enumerate(work.classifier):
                if index in split_at:
                    captured[split_at[index]] = out
                if index >= last:
                    break
                out = module(out)
        for name in names:
            h = captured[name]
            _check_activations(name, h, start)
            ig = neuron_integrated_gradients(tails[name], h, yb, weights, alphas)
            accs[name].update(h, ig, yb)
            stats[name].update(h, loss_gradient(tails[name], h, yb))

    counts = tuple(int(c) for c in torch.bincount(y, minlength=num_classes).tolist())
    results = {name: with_statistics(accs[name].result(), stats[name], counts, weight_norms(model, name))
               for name in names}
    settings = _settings(steps, method, names, n_images, dtype, split, seed, extra_settings)
    return Ranking(layers=results, classes=tuple(spec.class_names), class_counts=counts,
                   model_fingerprint=weights_fingerprint(model), settings=settings)


def layer_attributions(activations: torch.Tensor | np.ndarray, g: nn.Module, labels: np.ndarray, *,
                       layer: str = "layer", num_classes: int | None = None, steps: int = DEFAULT_STEPS,
                       method: str = DEFAULT_METHOD, batch_size: int = 16,
                       progress: bool = False) -> LayerAttribution:
    """Expected attributions of one layer from precomputed activations.

    ``activations``: ``(N, m)`` ``H(x)`` of every image (float32 or float64; ``g`` must have the same
    dtype and be in eval mode); ``g``: ``(batch, m) -> (batch, n)`` logits; ``labels``: ``(N,)`` in
    ``[0, K)`` with ``K = num_classes`` (default ``n``). Returns a :class:`LayerAttribution` with the
    data-dependent criteria statistics (``taylor``, ``apoz``, ``ig_vote``; the weight norms need the
    model and come only from :func:`rank_model`).
    """
    weights, alphas = quadrature(method, steps)
    h_all = torch.as_tensor(activations)
    if h_all.ndim != 2 or h_all.shape[0] == 0:
        raise AttributionError(f"activations must have shape (N >= 1, m), got {tuple(h_all.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AttributionError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_finite_parameters(g)
    with torch.no_grad():
        n = g(h_all[:1]).shape[1]
    k = n if num_classes is None else int(num_classes)
    y = _check_labels(labels, h_all.shape[0], k)
    acc = ExpectedAttribution(layer, h_all.shape[1], n, k)
    stats = NeuronStatistics(h_all.shape[1])
    starts = range(0, h_all.shape[0], batch_size)
    for start in progress_bar(starts, desc=layer, total=len(starts), enabled=progress, unit="batch"):
        h = h_all[start:start + batch_size]
        _check_activations(layer, h, start)
        yb = y[start:start + batch_size]
        acc.update(h, neuron_integrated_gradients(g, h, yb, weights, alphas), yb)
        stats.update(h, loss_gradient(g, h, yb))
    counts = torch.bincount(y, minlength=k).tolist()
    return with_statistics(acc.result(), stats, counts)
