"""Captum as the oracle for etdeploy's neuron integrated gradients (tests only; etdeploy never imports Captum).

Captum's ``IntegratedGradients(G)`` on the precomputed layer input ``H(x)`` with baseline 0 is the same
quantity (docs/method.md §1). "Relative difference" here is ``max |ours - captum| / max |captum|``
over all neurons and images of one (layer, output) pair.
"""

from __future__ import annotations

import copy

import captum.attr as captum_attr  # a declared test dependency (pyproject [test])
import numpy as np
import pytest
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from etdeploy.attribution import QUADRATURE_RULES, neuron_integrated_gradients, quadrature, rank_model
from etdeploy.data.images import normalise
from etdeploy.models import build_model, masks, split_model, with_masks


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max())


def _captum_all(g, h, labels, steps, method):
    """``(B, m, n)`` class attributions and ``(B, m)`` loss attributions, one Captum call per output."""
    def prob(x):
        return torch.softmax(g(x), dim=1)

    def loss(x, y):
        return -torch.log_softmax(g(x), dim=1).gather(1, y.view(-1, 1)).squeeze(1)

    ig = captum_attr.IntegratedGradients(prob)
    n = g(h[:1]).shape[1]
    classes = torch.stack([ig.attribute(h, baselines=0, target=j, n_steps=steps, method=method)
                           for j in range(n)], dim=-1)
    loss_attr = captum_attr.IntegratedGradients(loss).attribute(h, baselines=0, additional_forward_args=(labels,),
                                                                n_steps=steps, method=method)
    return classes, loss_attr


@pytest.mark.parametrize("method", sorted(QUADRATURE_RULES))
def test_quadrature_matches_captum(method):
    for steps in (2, 5, 32):
        step_fn, alpha_fn = approximation_parameters(method)
        weights, alphas = quadrature(method, steps)
        np.testing.assert_allclose(weights, step_fn(steps), rtol=1e-14, atol=0)
        np.testing.assert_allclose(alphas, alpha_fn(steps), rtol=0, atol=1e-7)  # Captum: float32 linspace


@pytest.fixture(scope="module")
def masked_mini():
    model = with_masks(build_model("alexnet-mini", 4, seed=11)).eval()
    gen = torch.Generator().manual_seed(5)
    for mask in masks(model).values():
        mask.set_mask((torch.rand(mask.width, generator=gen) > 0.25).float())
    x = torch.randn(3, 3, 64, 64, generator=gen)
    return model, x, torch.tensor([2, 0, 3])


@pytest.mark.parametrize("layer", ["flatten", "dense1", "dense2"])
@pytest.mark.parametrize("method,steps", [("gausslegendre", 16), ("riemann_trapezoid", 7)])
def test_ig_matches_captum_float32(masked_mini, layer, method, steps):
    model, x, labels = masked_mini
    h_fn, g = split_model(model, layer)
    with torch.no_grad():
        h = h_fn(x)
    ref, ref_loss = _captum_all(g, h, labels, steps, method)
    w, a = quadrature(method, steps)
    ours = neuron_integrated_gradients(g, h, labels, w, a)
    for j in range(ref.shape[-1]):
        assert _rel(ours.attributions[..., j], ref[..., j]) <= 1e-6
    assert _rel(ours.loss_attributions, ref_loss) <= 1e-6
    masked_out = torch.nonzero(h.abs().sum(0) == 0).reshape(-1)  # masked or dead inputs
    assert masked_out.numel() > 0 and torch.count_nonzero(ours.attributions[:, masked_out]) == 0


@pytest.mark.parametrize("layer", ["flatten", "dense2"])
def test_ig_matches_captum_float64(masked_mini, layer):
    model, x, labels = masked_mini
    model64 = copy.deepcopy(model).double()
    h_fn, g = split_model(model64, layer)
    with torch.no_grad():
        h = h_fn(x.double())
    ref, ref_loss = _captum_all(g, h, labels, 24, "gausslegendre")
    w, a = quadrature("gausslegendre", 24)
    ours = neuron_integrated_gradients(g, h, labels, w, a)
    # Captum rounds its step weights to float32; everything else is float64
    assert _rel(ours.attributions, ref) <= 1e-7
    assert _rel(ours.loss_attributions, ref_loss) <= 1e-7


def test_rank_model_expected_attribution_matches_captum_means():
    model = build_model("alexnet-mini", 3, seed=2)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8)
    labels = np.array([0, 2, 2, 0, 2, 0])  # class 1 is missing
    ranking = rank_model(model, images, labels, layers=["dense1"], steps=8, batch_size=4, progress=False,
                         dtype="float64")
    model64 = copy.deepcopy(model).double().eval()
    h_fn, g = split_model(model64, "dense1")
    with torch.no_grad():
        h = h_fn(normalise(images, model.spec.mean, model.spec.std).double())
    ref, ref_loss = _captum_all(g, h, torch.as_tensor(labels), 8, "gausslegendre")
    la = ranking.layer("dense1")
    for k in (0, 2):
        sel = torch.as_tensor(labels == k)
        assert _rel(torch.as_tensor(la.ea_class[k]), ref[sel].mean(0)) <= 1e-7
        assert _rel(torch.as_tensor(la.rank_class[k]), -ref_loss[sel].mean(0)) <= 1e-7
    assert np.isnan(la.ea_class[1]).all()
    assert _rel(torch.as_tensor(la.ea), ref.mean(0)) <= 1e-7
    assert _rel(torch.as_tensor(la.rank), -ref_loss.mean(0)) <= 1e-7
