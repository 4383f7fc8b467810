"""Approximate occlusion on branching graphs (issue 16): tau, drill-down and the tuner on residual, depthwise and
multi-branch CNNs, and the tuner's defaults (map-kind fallback, the single-map refusal).

The approximate run has a precise meaning (docs/method.md §6.3): every group computes its planned output window
from inputs that are the base activations outside their producers' windows, and keeps the base values outside
its own window. :func:`_windowed_reference` computes exactly that with full-map forwards of each group, so
the crop gathering, the pasting and the merges' side inputs of the executor are checked on clipped windows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.errors import OcclusionError
from etdeploy.occlusion import IncrementalOcclusionExecutor, map_ssim, tune_approx
from etdeploy.occlusion.drilldown import coincident_mask
from etdeploy.occlusion.geometry import clip_region, grid_starts
from etdeploy.occlusion.tuner import SINGLE_MAP_WARNING
from tests.dag_models import InceptionV3, MobileNetV2, ResNet18, SqueezeNet11, randomise_bn
from tests.test_occlusion import export_onnx, random_image

MODELS = {
    "resnet18": (lambda: ResNet18(10, width=0.125), 64),
    "mobilenet_v2": (lambda: MobileNetV2(10, width=0.25, last_channel=64), 64),
    "squeezenet1_1": (lambda: SqueezeNet11(10, width=0.25), 66),
    "inception_v3_blocks": (lambda: InceptionV3(10, width=0.125, blocks="stack"), 64),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dag_approx")
    out = {}
    for name, (factory, size) in MODELS.items():
        torch.manual_seed(0)
        out[name] = (export_onnx(randomise_bn(factory(), 0), folder / f"{name}.onnx", size), size)
    return out


def _windowed_reference(ex: IncrementalOcclusionExecutor, image: np.ndarray, tau: float, iy: int, ix: int
                        ) -> np.ndarray:
    """Logits of position ``(iy, ix)`` at threshold ``tau`` by full-map forwards of every group: each group output
    is the base activation with the group's planned window (``Plan.steps``) replaced by the group applied to
    its inputs as the approximate run sees them."""
    plan = ex.plan(ex.stride, tau)
    base = ex.base(image)
    y, x = plan.starts_y[iy], plan.starts_x[ix]
    occluded = image.copy()
    occluded[:, y:y + ex.patch, x:x + ex.patch] = ex.patch_value
    values = {ex.graph.local_input: occluded}
    for g, (group, session) in enumerate(zip(ex.graph.groups, ex._group_sessions)):
        padded = np.pad(values[group.input_name], ((0, 0), (group.gy.pb, group.gy.pe), (group.gx.pb, group.gx.pe)),
                        constant_values=np.float32(group.pad_value))
        feeds = {group.input_name: padded[None]}
        feeds.update({f: values[t][None] for t, f in zip(group.side_inputs, group.side_feeds)})
        full = session.run(None, feeds)[0][0]
        sy, sx = plan.steps_y[g], plan.steps_x[g]
        wy, wx = int(sy.win_start[iy]), int(sx.win_start[ix])
        out = base.values[group.output_name].copy()
        out[:, wy:wy + sy.win, wx:wx + sx.win] = full[:, wy:wy + sy.win, wx:wx + sx.win]
        values[group.output_name] = out
    feeds = {s: values[s][None] for s in ex.graph.splits}
    return ex._suffix_session.run(None, feeds)[0][0]


@pytest.mark.parametrize("name", list(MODELS))
def test_approx_without_threshold_or_drill_down_equals_exact(exported, name):
    path, size = exported[name]
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=3)
    image = random_image(size, 1)
    exact = ex.run(image, mode="exact")
    approx = ex.run(image, mode="approx", tau=1.0, r_drill=1.0)
    np.testing.assert_array_equal(approx.logits, exact.logits)
    assert approx.macs == exact.macs < exact.naive_macs
    # stage 1 alone at twice the stride: the coarse positions are computed exactly, the others interpolated
    coarse = ex.run(image, mode="approx", tau=1.0, r_drill=0.0, stage1_stride=6)
    cy, cx = grid_starts(size, 8, 6), grid_starts(size, 8, 6)
    on_grid = coincident_mask(cy, cx, exact.starts_y, exact.starts_x)
    assert coarse.exact_mask.tolist() == on_grid.tolist()
    np.testing.assert_allclose(coarse.logits[on_grid], exact.logits[on_grid], atol=1e-4, rtol=1e-5)
    assert coarse.macs == len(cy) * len(cx) * ex.plan(6, 1.0).macs_per_position


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("tau", [0.8, 0.5])
def test_clipped_windows_through_merges_follow_the_windowed_reference(exported, name, tau):
    path, size = exported[name]
    ex = IncrementalOcclusionExecutor(path, patch=9, stride=5)
    plan = ex.plan(5, tau)
    full = ex.plan(5, 1.0)
    # tau really clips somewhere, including the output of a group that holds a merge
    clipped = [g for g, (a, b) in enumerate(zip(plan.steps_y, full.steps_y)) if a.win < b.win]
    assert clipped and any(ex.graph.groups[g].side_inputs for g in clipped)
    image = random_image(size, 2)
    ny, nx = plan.grid_shape
    positions = [(0, 0), (ny // 2, nx // 2), (ny - 1, nx - 1), (0, nx - 1), (ny // 3, 1)]
    iy = np.array([p[0] for p in positions])
    ix = np.array([p[1] for p in positions])
    got = ex.logits_at(image, iy, ix, tau=tau)
    for k, (py, px) in enumerate(positions):
        np.testing.assert_allclose(got[k], _windowed_reference(ex, image, tau, py, px), atol=1e-4, rtol=1e-5)
    exact = ex.logits_at(image, iy, ix)
    assert np.abs(got - exact).max() > 1e-4  # clipping really changed the result


@pytest.mark.parametrize("name", list(MODELS))
def test_threshold_plan_clips_every_group_output(exported, name):
    path, _ = exported[name]
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2)
    for tau in (0.8, 0.6, 0.4):
        plan = ex.plan(2, tau)
        for group, sy, sx in zip(ex.graph.groups, plan.steps_y, plan.steps_x):
            for step, n_out in ((sy, group.out_shape[1]), (sx, group.out_shape[2])):
                limit = max(1, int(np.ceil(tau * n_out - 1e-9)))
                assert (step.hi - step.lo).max() <= limit
                # the computed window holds the clipped region and stays inside the map
                assert (step.win_start <= step.lo).all() and (step.lo <= step.hi).all()
                assert (step.hi <= step.win_start + step.win).all() and (step.win_start + step.win <= n_out).all()
        assert plan.macs_per_position <= ex.plan(2, 1.0).macs_per_position
    assert ex.plan(2, 0.4).macs_per_position < ex.plan(2, 1.0).macs_per_position


def test_clip_region_of_a_merge_is_centred_on_its_bounding_box():
    lo, hi = clip_region(np.array([2, 0]), np.array([12, 3]), 10, 0.5)
    assert lo.tolist() == [4, 0] and hi.tolist() == [9, 3]  # [2, 12) -> 5 wide around 7; [0, 3) fits


def test_tuner_on_a_residual_network_predicts_its_real_run(exported):
    path, size = exported["resnet18"]
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=2, batch_size=32)
    images = [random_image(size, s) for s in (3, 4)]
    tune = tune_approx(ex, images, target_ssim=0.85, margin=0.05, map_kind="logit", taus=(1.0, 0.8),
                       r_drills=(0.5, 0.25), stage1_factors=(2,))
    assert tune.min_ssim >= 0.9 and tune.map_kind == "logit" and tune.fallback is None
    assert len(tune.used_images) == 2 and tune.modelled_speedup > 1.0
    assert any(c.tau == 0.8 and c.min_ssim >= 0.9 for c in tune.candidates)  # tau alone keeps a usable map
    for position, image in enumerate(images):
        exact = ex.run(image, mode="exact")
        approx = ex.run(image, **tune.run_kwargs())
        chosen = next(c for c in tune.candidates
                      if (c.tau, c.r_drill, c.stage1_stride) == (tune.tau, tune.r_drill, tune.stage1_stride))
        assert map_ssim(exact.map("logit"), approx.map("logit")) == pytest.approx(chosen.ssim[position], abs=1e-6)


# ------------------------------------------------------------------------------------------- tuner defaults
class Confident(nn.Module):
    """A small CNN whose class 0 wins by a margin of ~30 logits: probability maps are flat, logit maps are not."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8 * 8 * 8, 3)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@pytest.fixture(scope="module")
def confident(tmp_path_factory):
    torch.manual_seed(0)
    path = export_onnx(Confident(), tmp_path_factory.mktemp("confident") / "confident.onnx", 16)
    return IncrementalOcclusionExecutor(path, patch=4, stride=2)


GRID = {"taus": (1.0, 0.6), "r_drills": (0.5, 0.0), "stage1_factors": (2,)}


def test_flat_probability_maps_fall_back_to_logit_maps(confident):
    images = [random_image(16, s) for s in (0, 1)]
    assert all(np.ptp(confident.run(im).map("prob")) < 1e-6 < np.ptp(confident.run(im).map("logit")) for im in images)
    tune = tune_approx(confident, images, map_kind="prob", min_maps=2, **GRID)
    assert tune.map_kind == "logit" and tune.requested_map_kind == "prob"
    assert tune.fallback == "2 of 2 'prob' tuning maps are flat (range < 0.05); tuned on 'logit' maps"
    assert tune.run_kwargs()["map_kind"] == "logit" and tune.used_images == (0, 1) and tune.flat_images == ()
    assert tune.to_dict()["fallback"] == tune.fallback
    # a usable requested kind is kept
    kept = tune_approx(confident, images, map_kind="logit", min_maps=2, **GRID)
    assert kept.map_kind == "logit" and kept.fallback is None
    # no fallback kind: every map flat is an error
    with pytest.raises(OcclusionError, match="every tuning map is flat"):
        tune_approx(confident, images, map_kind="prob", fallback_map_kinds=(), **GRID)


def test_one_usable_tuning_map_is_refused_or_warned_about(confident):
    image = [random_image(16, 0)]
    with pytest.raises(OcclusionError, match=r"too few usable tuning maps: 2 needed.*'logit': 1 of 1 images"):
        tune_approx(confident, image, map_kind="prob", min_maps=2, **GRID)
    with pytest.warns(UserWarning, match="single map is only known to reach the SSIM bar on that one map"):
        tune = tune_approx(confident, image, map_kind="prob", min_maps=1, **GRID)
    assert tune.used_images == (0,) and tune.map_kind == "logit" and "single map" in tune.warning
    with pytest.raises(OcclusionError, match="must be >= 1"):
        tune_approx(confident, image, min_maps=0, **GRID)
    assert "single map" in SINGLE_MAP_WARNING
