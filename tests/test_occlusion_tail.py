"""Full-map groups run inside the plan's suffix (docs/method.md §6.1): which groups move, and exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.occlusion import IncrementalOcclusionExecutor
from tests.dag_models import InceptionV3, randomise_bn
from tests.test_occlusion import export_onnx, random_image


class _Head(nn.Module):
    """3x3 conv on the image, then a second conv (``second``) and a global-average-pool classifier."""

    def __init__(self, second: nn.Conv2d):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = second
        self.fc = nn.Linear(second.out_channels, 3)

    def forward(self, x):
        y = self.b(torch.relu(self.a(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("second, moved", [
    # padded 3x3: running it windowed gathers its whole padded input (16 x 10 x 10) per position, more than the
    # wider split tensor adds (16 x 8 x 8 instead of 2 x 8 x 8): it moves into the suffix
    (lambda: nn.Conv2d(16, 2, 3, padding=1), True),
    # unpadded 1x1 stride 2: windowed, it reads its producer's window without a copy; in the suffix the split
    # tensor would grow from 2 x 4 x 4 to 16 x 8 x 8 values per position: it stays local
    (lambda: nn.Conv2d(16, 2, 1, stride=2), False),
])
def test_a_full_map_group_moves_only_when_it_saves_copies(tmp_path, second, moved):
    torch.manual_seed(0)
    model = _Head(second()).eval()
    path = export_onnx(model, tmp_path / "head.onnx", 8)
    ex = IncrementalOcclusionExecutor(path, patch=6, stride=1)
    plan = ex.plan()
    assert len(ex.graph.groups) == 2
    assert (plan.steps_y[1].win, plan.steps_x[1].win) == ex.graph.groups[1].out_shape[1:]  # a full-map window
    assert plan.local == ((0,) if moved else (0, 1))
    assert plan.tail.splits == ((ex.graph.groups[0].output_name,) if moved else ex.graph.splits)
    image = random_image(8, 1)
    naive = ex.run(image, mode="naive")
    exact = ex.run(image, mode="exact")
    np.testing.assert_allclose(exact.logits, naive.logits, atol=1e-5, rtol=1e-5)
    assert exact.macs == naive.macs  # every window is a full map here: the same MACs, counted the same way


def test_inception_full_map_groups_form_a_downstream_closed_suffix(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(randomise_bn(InceptionV3(10, width=0.125, blocks="stack"), 0), tmp_path / "inc.onnx", 64)
    ex = IncrementalOcclusionExecutor(path, patch=8, stride=7)
    groups = ex.graph.groups
    for tau in (1.0, 0.8):
        plan = ex.plan(7, tau)
        moved = [g for g in range(len(groups)) if g not in plan.local]
        assert moved and len(plan.local) + len(moved) == len(groups)
        inputs_of_moved = {t for g in moved for t in (groups[g].input_name, *groups[g].side_inputs)}
        for g in moved:
            assert (plan.steps_y[g].win, plan.steps_x[g].win) == groups[g].out_shape[1:]
        for g in plan.local:  # no local group reads a moved group's output
            assert not {groups[h].output_name for h in moved} & {groups[g].input_name, *groups[g].side_inputs}
        assert set(plan.tail.splits) <= inputs_of_moved | set(ex.graph.splits)
    assert len(ex.plan(7, 0.5).local) == len(groups)  # clipped windows are no full maps: nothing moves
    # a coarser (stage-1) grid has its own plan and suffix; both are exact
    image = random_image(64, 3)
    for stride, iy, ix in ((7, [0, 3, 8], [8, 2, 0]), (14, [0, 4], [4, 1])):
        iy, ix = np.array(iy), np.array(ix)
        got = ex.logits_at(image, iy, ix, stride=stride)
        np.testing.assert_allclose(got, ex.naive_logits_at(image, iy, ix, stride=stride), atol=1e-4, rtol=1e-5)
