"""Window classes by patch alignment (docs/method.md §6.1): exact plans size each group's window for the
positions of one alignment class instead of the worst alignment of the grid.

Exact == naive with several classes on chains (pads, ceil-mode pools, odd patch/stride) and on DAGs
(residual, concat); each class's windows hold every member's changed region; classes never exceed the
requested number and reduce the MACs; results come back in the order asked for; approximate plans
(``tau < 1``) keep one class.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etdeploy.errors import OcclusionError
from etdeploy.models import build_model
from etdeploy.occlusion import IncrementalOcclusionExecutor
from etdeploy.occlusion.geometry import window_classes
from tests.dag_models import ResNet18, SqueezeNet11, randomise_bn
from tests.test_occlusion import export_onnx, random_image


def _all(plan):
    ny, nx = plan.grid_shape
    return np.divmod(np.arange(ny * nx), nx)


def _check_class_windows(ex: IncrementalOcclusionExecutor, plan) -> None:
    """Every class's windows hold the changed region of each of its starts and stay inside the map."""
    groups = ex.graph.groups
    for classes, class_steps, axis in ((plan.classes_y, plan.class_steps_y, 1),
                                       (plan.classes_x, plan.class_steps_x, 2)):
        assert len(class_steps) == int(classes.max()) + 1 <= ex.window_classes
        for c, steps in enumerate(class_steps):
            members = np.flatnonzero(classes == c)
            assert len(members)
            for g in plan.local:
                step, n_out = steps[g], groups[g].out_shape[axis]
                lo, hi, start = step.lo[members], step.hi[members], step.win_start[members]
                assert (start <= lo).all() and (hi <= start + step.win).all() and (start + step.win <= n_out).all()
                assert step.win <= max(1, int((hi - lo).max()))  # as small as its members allow


def test_window_classes_group_equal_signatures_and_respect_the_limit():
    lengths = np.array([[3, 4, 3, 4, 2], [5, 6, 5, 6, 5]])
    assert window_classes(lengths, np.ones(2), 8).tolist() == [0, 1, 0, 1, 2]
    two = window_classes(lengths, np.ones(2), 2)
    assert two.max() == 1 and two[0] == two[2] and two[1] == two[3]
    assert two[4] == two[0]  # the border start joins the class whose windows grow least
    assert window_classes(lengths, np.ones(2), 1).tolist() == [0] * 5
    with pytest.raises(OcclusionError, match="window classes"):
        window_classes(lengths, np.ones(2), 0)


def _chain(path, size=45):
    model = build_model("sequential-cnn", 4, input_size=size, seed=5,
                        layers="c6k3p1-r-c6k3s1p1-r-m3s2p1-c8k5s2p2-r-m2s2-c8k3p1-r-m3s2", hidden=(8,))
    return export_onnx(model, path, size)


@pytest.mark.parametrize("patch, stride", [(7, 3), (5, 5), (9, 2), (3, 11)])
def test_exact_equals_naive_with_window_classes_on_a_chain(tmp_path, patch, stride):
    """Padded convs, strided convs and pools with pads, odd patch/stride combinations, stride > patch."""
    path = _chain(tmp_path / "chain.onnx")
    image = random_image(45, 4)
    one = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=6, window_classes=1)
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=6, window_classes=4)
    plan = ex.plan()
    _check_class_windows(ex, plan)
    naive = ex.run(image, mode="naive", target_class=0)
    exact = ex.run(image, mode="exact", target_class=0)
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-5)
    iy, ix = _all(plan)
    assert plan.macs_at(iy, ix) == plan.mean_macs * len(iy) <= exact.macs == len(iy) * plan.macs_per_position
    assert plan.macs_per_position == one.plan().macs_per_position == one.plan().mean_macs  # the one-window model
    if max(plan.n_classes) > 1:
        assert plan.mean_macs < one.plan().mean_macs
    with pytest.raises(OcclusionError, match="window_classes"):
        IncrementalOcclusionExecutor(path, patch=patch, stride=stride, window_classes=0)


def test_classes_split_the_grid_by_alignment_and_results_keep_the_order_asked_for(tmp_path):
    path = _chain(tmp_path / "chain.onnx")
    ex = IncrementalOcclusionExecutor(path, patch=6, stride=1, batch_size=5, window_classes=6)
    plan = ex.plan()
    assert min(plan.n_classes) > 1  # stride 1 on a stride-16 chain: several alignments
    _check_class_windows(ex, plan)
    image = random_image(45, 1)
    base = ex.base(image)
    iy, ix = _all(plan)
    order = np.random.default_rng(0).permutation(len(iy))[:37]  # classes interleaved, one class partly
    got = ex.logits_at(base, iy[order], ix[order])
    np.testing.assert_allclose(got, ex.naive_logits_at(image, iy[order], ix[order]), atol=1e-4, rtol=1e-5)
    assert ex.logits_at(base, iy[:0], ix[:0]).shape == (0, 4)


def test_approximate_plans_keep_one_window_class(tmp_path):
    path = _chain(tmp_path / "chain.onnx")
    ex = IncrementalOcclusionExecutor(path, patch=6, stride=1, window_classes=6)
    assert ex.plan(1, 0.6).n_classes == (1, 1)
    assert max(ex.plan(1, 1.0).n_classes) > 1
    clipped = ex.plan(1, 0.6)
    assert clipped.class_steps_y[0] == clipped.steps_y


DAGS = {
    "resnet18": (lambda: ResNet18(10, width=0.125), 64),
    "squeezenet1_1": (lambda: SqueezeNet11(10, width=0.25), 66),  # ceil-mode pools
}


@pytest.mark.parametrize("name", list(DAGS))
@pytest.mark.parametrize("patch, stride", [(7, 3), (8, 2)])
def test_exact_equals_naive_with_window_classes_on_dags(tmp_path, name, patch, stride):
    factory, size = DAGS[name]
    torch.manual_seed(0)
    path = export_onnx(randomise_bn(factory()), tmp_path / f"{name}.onnx", size)
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=8, window_classes=5)
    one = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=8, window_classes=1)
    plan = ex.plan()
    assert max(plan.n_classes) > 1
    _check_class_windows(ex, plan)
    image = random_image(size, 2)
    iy, ix = _all(plan)
    pick = np.random.default_rng(1).choice(len(iy), size=min(len(iy), 60), replace=False)
    base = ex.base(image)
    got = ex.logits_at(base, iy[pick], ix[pick])
    np.testing.assert_allclose(got, ex.naive_logits_at(image, iy[pick], ix[pick]), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(got, one.logits_at(one.base(image), iy[pick], ix[pick]), atol=1e-5, rtol=1e-5)
    assert plan.mean_macs < one.plan().mean_macs


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(20, 40), patch=st.integers(1, 9), stride=st.integers(1, 6), k=st.integers(1, 7),
       seed=st.integers(0, 100))
def test_random_chains_with_window_classes(tmp_path, size, patch, stride, k, seed):
    model = build_model("sequential-cnn", 3, input_size=size, seed=seed,
                        layers="c4k3s1p1-r-m2s2p1-c4k3s2p1-r-m3s2", hidden=(6,))
    path = export_onnx(model, tmp_path / f"c{seed}.onnx", size)
    ex = IncrementalOcclusionExecutor(path, patch=patch, stride=stride, batch_size=7, window_classes=k)
    _check_class_windows(ex, ex.plan())
    image = random_image(size, seed)
    naive = ex.run(image, mode="naive", target_class=0)
    exact = ex.run(image, mode="exact", target_class=0)
    np.testing.assert_allclose(exact.map(), naive.map(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-4, rtol=1e-4)
