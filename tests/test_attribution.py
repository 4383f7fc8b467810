"""Neuron attribution engine: quadrature, closed-form golden models, streaming expectations, properties."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from etdeploy.attribution import (
    QUADRATURE_RULES,
    ExpectedAttribution,
    layer_attributions,
    neuron_integrated_gradients,
    quadrature,
    rank_model,
)
from etdeploy.attribution.integrated import split_leading_linear
from etdeploy.errors import AttributionError, ContractError
from etdeploy.models import NeuronMask, build_model, masks, split_model, with_masks

F64 = torch.float64


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _two_class_linear(dw: np.ndarray, db: float) -> nn.Sequential:
    """Logits ``z0 = 0``, ``z1 = dw·h + db``: ``p1 = σ(dw·h + db)``."""
    lin = nn.Linear(len(dw), 2).to(F64)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[1] = torch.as_tensor(dw, dtype=F64)
        lin.bias[1] = db
    return nn.Sequential(lin).eval()


def _closed_form_two_class(h: np.ndarray, dw: np.ndarray, db: float, y: int):
    """Exact IG of ``p1``, ``p0`` and the loss for ``p1 = σ(c α + db)``, ``c = dw·h`` (zero baseline)."""
    c = float(dw @ h)
    dp1 = (_sigmoid(c + db) - _sigmoid(db)) / c  # ∫_0^1 σ'(cα + db) dα · c / c
    a1 = h * dw * dp1
    a0 = -a1
    if y == 1:  # L = softplus(-(cα + db)); dL/dh = -σ(-(cα+db)) dw
        integral = (_softplus(-db) - _softplus(-(c + db))) / c
        loss = -h * dw * integral
    else:  # L = softplus(cα + db); dL/dh = σ(cα + db) dw
        integral = (_softplus(c + db) - _softplus(db)) / c
        loss = h * dw * integral
    return np.stack([a0, a1], axis=1), loss


# ---------------------------------------------------------------- quadrature


@pytest.mark.parametrize("method", sorted(QUADRATURE_RULES))
def test_every_quadrature_rule_has_the_contract_shape(method):
    for steps in (2, 3, 7, 32):
        weights, alphas = quadrature(method, steps)
        assert weights.shape == (steps,) and alphas.shape == (steps,)
        assert weights.dtype == np.float64 and alphas.dtype == np.float64
        assert np.all(weights > 0) and np.all((alphas >= 0) & (alphas <= 1))
        assert np.all(np.diff(alphas) > 0)
        expected_total = 1.0 - 1.0 / steps if method == "riemann_trapezoid" else 1.0  # Captum's convention
        assert weights.sum() == pytest.approx(expected_total, abs=1e-14)


def test_quadrature_rules_integrate_what_they_should_exactly():
    for n in (1, 4, 16):
        w, a = quadrature("gausslegendre", n)
        for degree in range(2 * n):  # exact up to degree 2n - 1
            assert float(w @ a**degree) == pytest.approx(1.0 / (degree + 1), rel=1e-12)
    w, a = quadrature("riemann_middle", 5)
    assert float(w @ a) == pytest.approx(0.5, abs=1e-15)
    w, a = quadrature("riemann_left", 4)
    assert a.tolist() == [0.0, 0.25, 0.5, 0.75]
    w, a = quadrature("riemann_right", 4)
    assert a.tolist() == [0.25, 0.5, 0.75, 1.0]
    w, a = quadrature("riemann_trapezoid", 3)
    assert a.tolist() == [0.0, 0.5, 1.0] and w.tolist() == pytest.approx([1 / 6, 1 / 3, 1 / 6])


@pytest.mark.parametrize("steps", [0, -3, 1.5, True])
def test_bad_steps_are_refused(steps):
    with pytest.raises(AttributionError, match="steps"):
        quadrature("gausslegendre", steps)


def test_trapezoid_needs_two_steps_and_unknown_method_lists_the_rules():
    with pytest.raises(AttributionError, match=">= 2"):
        quadrature("riemann_trapezoid", 1)
    with pytest.raises(AttributionError, match="gausslegendre"):
        quadrature("simpson", 8)


def test_cli_method_choices_cover_the_registry():
    from etdeploy.vocab import QUADRATURE_METHODS as METHODS

    assert sorted(METHODS) == sorted(QUADRATURE_RULES)


# ---------------------------------------------------------------- closed-form golden models


def test_two_class_linear_softmax_matches_closed_form_and_is_complete():
    dw = np.array([0.8, -1.3, 0.4, 2.0])
    db = -0.3
    g = _two_class_linear(dw, db)
    h = np.array([[1.0, 0.5, 0.0, 0.25], [0.2, 0.0, 1.5, 0.7], [0.0, 0.0, 0.0, 0.3]])
    y = np.array([1, 0, 1])
    w, a = quadrature("gausslegendre", 32)
    ig = neuron_integrated_gradients(g, torch.as_tensor(h), torch.as_tensor(y), w, a)
    for b in range(3):
        attr, loss = _closed_form_two_class(h[b], dw, db, int(y[b]))
        np.testing.assert_allclose(ig.attributions[b].numpy(), attr, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ig.loss_attributions[b].numpy(), loss, rtol=1e-12, atol=1e-15)
    assert float(ig.gap.max()) < 1e-13 and float(ig.loss_gap.max()) < 1e-13
    # zero activation -> exactly zero attribution
    assert torch.all(ig.attributions[:, 2][torch.as_tensor(h[:, 2] == 0)] == 0)


def test_relu_hidden_layer_with_mask_matches_the_effective_linear_model():
    # b1 = 0 keeps every pre-activation's sign constant along the path α h (α > 0), so G is the linear
    # model W2 · D · M · W1 on it (D: ReLU pattern at h, M: the mask inside G).
    torch.manual_seed(3)
    m, hidden = 6, 5
    lin1, lin2 = nn.Linear(m, hidden).to(F64), nn.Linear(hidden, 2).to(F64)
    with torch.no_grad():
        lin1.bias.zero_()
        lin2.bias.copy_(torch.tensor([0.1, -0.2], dtype=F64))
    mask = NeuronMask(hidden).to(F64)
    mask.set_kept([0, 2, 3])
    g = nn.Sequential(nn.Dropout(0.5), lin1, nn.ReLU(), mask, nn.Dropout(0.5), lin2).eval()
    h = torch.rand(4, m, dtype=F64)
    y = torch.tensor([0, 1, 1, 0])
    w, a = quadrature("gausslegendre", 32)
    ig = neuron_integrated_gradients(g, h, y, w, a)
    for b in range(4):
        d = ((lin1.weight @ h[b]) > 0).to(F64) * mask.mask
        eff = lin2.weight @ (d[:, None] * lin1.weight)  # (2, m)
        dw = (eff[1] - eff[0]).detach().numpy()
        db = float((lin2.bias[1] - lin2.bias[0]).detach())
        attr, loss = _closed_form_two_class(h[b].numpy(), dw, db, int(y[b]))
        np.testing.assert_allclose(ig.attributions[b].numpy(), attr, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(ig.loss_attributions[b].numpy(), loss, rtol=1e-10, atol=1e-14)


def test_fully_masked_tail_gives_exactly_zero_class_attributions():
    model = with_masks(build_model("alexnet-mini", 3, seed=1)).eval().to(F64)
    masks(model)["dense2"].set_kept([])
    _, g = split_model(model, "dense1")
    h = torch.rand(3, 256, dtype=F64)
    w, a = quadrature("gausslegendre", 4)
    ig = neuron_integrated_gradients(g, h, torch.tensor([0, 1, 2]), w, a)
    assert torch.count_nonzero(ig.attributions) == 0 and torch.count_nonzero(ig.loss_attributions) == 0


def test_linear_shortcut_equals_the_generic_path():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).to(F64).eval()

    class Opaque(nn.Module):  # not a Sequential: forces differentiation of all of g at every step
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    assert split_leading_linear(g)[0] is g[0] and split_leading_linear(Opaque(g))[0] is None
    h = torch.relu(torch.randn(5, 12, dtype=F64))
    y = torch.tensor([0, 1, 2, 0, 1])
    w, a = quadrature("riemann_middle", 9)
    fast = neuron_integrated_gradients(g, h, y, w, a)
    slow = neuron_integrated_gradients(Opaque(g), h, y, w, a)
    for f in ("attributions", "loss_attributions", "gap", "loss_gap"):
        torch.testing.assert_close(getattr(fast, f), getattr(slow, f), rtol=1e-11, atol=1e-14)


# ---------------------------------------------------------------- streaming expectations


def _random_tail(seed: int, m: int = 10, n: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(m, 7), nn.ReLU(), nn.Linear(7, n)).to(F64).eval()


def test_expected_attribution_by_hand_and_law_of_total_expectation():
    g = _random_tail(0)
    h = torch.relu(torch.randn(9, 10, dtype=F64, generator=torch.Generator().manual_seed(1)))
    h[:, 4] = 0.0  # a dead neuron
    labels = np.array([0, 1, 1, 0, 2, 1, 0, 1, 1])
    la = layer_attributions(h, g, labels, layer="x", steps=8, batch_size=4)
    w, a = quadrature("gausslegendre", 8)
    ig = neuron_integrated_gradients(g, h, torch.as_tensor(labels), w, a)
    counts = np.bincount(labels, minlength=3)
    for k in range(3):
        sel = labels == k
        np.testing.assert_allclose(la.ea_class[k], ig.attributions[sel].mean(0).numpy(), rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(la.rank_class[k], -ig.loss_attributions[sel].mean(0).numpy(), rtol=1e-12,
                                   atol=1e-16)
    np.testing.assert_allclose(la.ea, np.einsum("kmn,k->mn", la.ea_class, counts / counts.sum()), rtol=1e-12,
                               atol=1e-16)
    np.testing.assert_allclose(la.ea, ig.attributions.mean(0).numpy(), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(la.rank, -ig.loss_attributions.mean(0).numpy(), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(la.activation_mean, h.mean(0).numpy(), rtol=1e-15)
    assert la.live.tolist() == [i != 4 for i in range(10)]
    assert la.gap_mean == pytest.approx(float(ig.gap.mean()), rel=1e-12)
    assert la.gap_max == pytest.approx(float(ig.gap.max()), rel=1e-15)
    assert la.loss_gap_max == pytest.approx(float(ig.loss_gap.max()), rel=1e-15)


def test_empty_class_is_missing_and_does_not_poison_the_rest():
    g = _random_tail(2, n=4)
    h = torch.relu(torch.randn(6, 10, dtype=F64, generator=torch.Generator().manual_seed(2)))
    labels = np.array([0, 1, 3, 0, 1, 3])  # class 2 has no image
    la = layer_attributions(h, g, labels, steps=6)
    assert np.isnan(la.ea_class[2]).all() and np.isnan(la.rank_class[2]).all()
    for arr in (la.ea, la.rank, la.ea_class[[0, 1, 3]], la.rank_class[[0, 1, 3]], la.activation_mean):
        assert np.isfinite(arr).all()
    present = np.array([2, 2, 0, 2]) / 6
    np.testing.assert_allclose(la.ea, np.einsum("kmn,k->mn", la.ea_class[[0, 1, 3]], present[[0, 1, 3]]),
                               rtol=1e-12, atol=1e-16)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n_dead=st.integers(1, 4), steps=st.integers(1, 6))
def test_dead_neurons_get_exactly_zero(seed, n_dead, steps):
    gen = torch.Generator().manual_seed(seed)
    g = _random_tail(seed % 7)
    h = torch.relu(torch.randn(7, 10, dtype=F64, generator=gen))
    dead = torch.randperm(10, generator=gen)[:n_dead]
    h[:, dead] = 0.0
    labels = torch.randint(0, 3, (7,), generator=gen).numpy()
    la = layer_attributions(h, g, labels, steps=steps, method="riemann_middle", batch_size=3)
    assert not la.live[dead.numpy()].any() and la.n_live == 10 - n_dead
    d = dead.numpy()
    assert np.all(la.rank[d] == 0) and np.all(np.signbit(la.rank[d]) == False)
    assert np.all(la.ea[d] == 0)
    present = np.bincount(labels, minlength=3) > 0
    assert np.all(la.ea_class[present][:, d] == 0) and np.all(la.rank_class[present][:, d] == 0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 8), method=st.sampled_from(["gausslegendre", "riemann_middle"]))
def test_completeness_gap_shrinks_as_steps_grow(seed, steps, method):
    # b1 = 0: the integrand is smooth along the path, so the quadrature error is what the gap measures
    torch.manual_seed(seed)
    lin1 = nn.Linear(8, 6).to(F64)
    with torch.no_grad():
        lin1.bias.zero_()
    g = nn.Sequential(lin1, nn.ReLU(), nn.Linear(6, 3).to(F64)).eval()
    h = torch.rand(4, 8, dtype=F64) * 2
    y = torch.tensor([0, 1, 2, 1])
    gaps = []
    for n in (steps, 64):
        w, a = quadrature(method, n)
        ig = neuron_integrated_gradients(g, h, y, w, a)
        gaps.append((float(ig.gap.max()), float(ig.loss_gap.max())))
    (coarse, coarse_loss), (fine, fine_loss) = gaps
    assert fine <= coarse + 1e-15 and fine_loss <= coarse_loss + 1e-15
    assert fine < (1e-12 if method == "gausslegendre" else 1e-3 * max(coarse, 1e-9) + 1e-6)


# ---------------------------------------------------------------- rank_model


@pytest.fixture(scope="module")
def tiny():
    model = build_model("sequential-cnn", 3, input_size=16, seed=4, layers="c4k3p1-r-m2-c6k3s2p1-r",
                        hidden=(12, 10))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (11, 3, 16, 16), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 1])
    return model, images, labels


def test_rank_model_equals_split_model_h_then_layer_attributions(tiny):
    from etdeploy.data.images import normalise
    from etdeploy.models import weights_fingerprint

    model, images, labels = tiny
    ranking = rank_model(model, images, labels, steps=5, batch_size=4, progress=False, dtype="float64",
                         split="train", seed=7)
    assert list(ranking.layers) == ["flatten", "dense1", "dense2"]
    assert ranking.class_counts == (4, 4, 3) and ranking.model_fingerprint == weights_fingerprint(model)
    assert ranking.settings["steps"] == 5 and ranking.settings["seed"] == 7 and ranking.settings["n_images"] == 11
    ref_model = copy.deepcopy(model).double().eval()
    x = normalise(images, model.spec.mean, model.spec.std).double()
    for name, la in ranking.layers.items():
        h_fn, g = split_model(ref_model, name)
        with torch.no_grad():
            h = h_fn(x)
        ref = layer_attributions(h, g, labels, layer=name, steps=5, batch_size=11)
        for f in ("live", "activation_mean", "rank", "rank_class", "ea", "ea_class"):
            np.testing.assert_allclose(getattr(la, f), getattr(ref, f), rtol=1e-10, atol=1e-15)


def test_rank_model_leaves_the_model_untouched_and_honours_its_own_masks(tiny):
    _, images, labels = tiny
    model = with_masks(build_model("sequential-cnn", 3, input_size=16, seed=4, layers="c4k3p1-r-m2-c6k3s2p1-r",
                                   hidden=(12, 10)))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks(model)["dense1"].set_kept(range(0, 12, 2))
    ranking = rank_model(model, images, labels, layers=["dense1"], steps=3, progress=False)
    assert model.training and next(model.parameters()).dtype == torch.float32
    for k, v in model.state_dict().items():
        if not k.endswith("mask"):
            assert torch.equal(v, before[k])
    la = ranking.layer("dense1")
    assert not la.live[1::2].any() and np.all(la.rank[1::2] == 0)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), batch_a=st.integers(1, 11), batch_b=st.integers(1, 11))
def test_independent_of_batch_size_and_image_order(tiny, seed, batch_a, batch_b):
    model, images, labels = tiny
    order = np.random.default_rng(seed).permutation(len(labels))
    kw = {"steps": 4, "progress": False, "dtype": "float64", "layers": ["flatten", "dense2"]}
    a = rank_model(model, images, labels, batch_size=batch_a, **kw)
    b = rank_model(model, images[order], labels[order], batch_size=batch_b, **kw)
    for name in a.layers:
        x, z = a.layer(name), b.layer(name)
        assert np.array_equal(x.live, z.live)
        for f in ("activation_mean", "rank", "rank_class", "ea", "ea_class"):
            np.testing.assert_allclose(getattr(x, f), getattr(z, f), rtol=1e-9, atol=1e-14)
        assert x.gap_max == pytest.approx(z.gap_max, rel=1e-9, abs=1e-15)


def test_float32_and_float64_agree(tiny):
    model, images, labels = tiny
    a = rank_model(model, images, labels, steps=4, progress=False, dtype="float32", layers=["dense1"])
    b = rank_model(model, images, labels, steps=4, progress=False, dtype="float64", layers=["dense1"])
    x, z = a.layer("dense1"), b.layer("dense1")
    assert np.abs(x.ea - z.ea).max() <= 1e-5 * np.abs(z.ea).max()
    assert np.abs(x.rank - z.rank).max() <= 1e-5 * np.abs(z.rank).max()


# ---------------------------------------------------------------- bad input


def test_unknown_layer_lists_the_valid_ones(tiny):
    model, images, labels = tiny
    with pytest.raises(ContractError, match="flatten, dense1, dense2"):
        rank_model(model, images, labels, layers=["dense7"], progress=False)


def test_bad_steps_method_batch_and_dtype(tiny):
    model, images, labels = tiny
    with pytest.raises(AttributionError, match="steps"):
        rank_model(model, images, labels, steps=0, progress=False)
    with pytest.raises(AttributionError, match="quadrature method"):
        rank_model(model, images, labels, method="simpson", progress=False)
    with pytest.raises(AttributionError, match="batch_size"):
        rank_model(model, images, labels, batch_size=0, progress=False)
    with pytest.raises(AttributionError, match="dtype"):
        rank_model(model, images, labels, dtype="float16", progress=False)


def test_bad_images_and_labels(tiny):
    model, images, labels = tiny
    with pytest.raises(AttributionError, match="uint8"):
        rank_model(model, images.astype(np.float32), labels, progress=False)
    with pytest.raises(AttributionError, match=r"\(N, 3, 16, 16\)"):
        rank_model(model, images[:, :, :8], labels, progress=False)
    with pytest.raises(AttributionError, match="no images"):
        rank_model(model, images[:0], labels[:0], progress=False)
    with pytest.raises(AttributionError, match=r"\[0, 3\)"):
        rank_model(model, images, np.where(labels == 2, 3, labels), progress=False)
    with pytest.raises(AttributionError, match="shape"):
        rank_model(model, images, labels[:-1], progress=False)


def test_nan_weights_and_activations_are_refused(tiny):
    _, images, labels = tiny
    broken = build_model("sequential-cnn", 3, input_size=16, seed=4, layers="c4k3p1-r-m2-c6k3s2p1-r", hidden=(12, 10))
    with torch.no_grad():
        broken.classifier[3].weight[2, 1] = float("nan")
    with pytest.raises(AttributionError, match=r"classifier\.3\.weight.*NaN"):
        rank_model(broken, images, labels, progress=False)
    g = _random_tail(0)
    h = torch.rand(3, 10, dtype=F64)
    h[1, 2] = float("inf")
    with pytest.raises(AttributionError, match=r"image\(s\) \[1\]"):
        layer_attributions(h, g, np.array([0, 1, 2]), steps=2)


def test_accumulator_without_images_is_an_error():
    with pytest.raises(AttributionError, match="no images"):
        ExpectedAttribution("x", 4, 2, 2).result()
