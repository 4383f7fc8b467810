"""Occlusion on a classifier whose output is probabilities (a deployable that keeps a user's Softmax).

The maps must be those of the same network without the Softmax: the executor works on the logits
(softmax applied to probabilities would flatten every ``prob`` map and shift every ``logit`` map).
"""

import numpy as np
import pytest
import torch
from torch import nn

from etdeploy.occlusion import IncrementalOcclusionExecutor, NaiveOcclusionExecutor
from tests.test_occlusion import export_onnx, random_image


@pytest.mark.parametrize("activation, op", [(nn.Softmax(dim=1), "Softmax"), (nn.LogSoftmax(dim=1), "LogSoftmax")])
@pytest.mark.parametrize("executor, mode", [(NaiveOcclusionExecutor, "naive"), (IncrementalOcclusionExecutor, "exact")])
def test_a_probability_output_gives_the_maps_of_its_logits(activation, op, executor, mode, tmp_path):
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 5))
    logits_only = export_onnx(body, tmp_path / "logits.onnx", 16)
    with_output = export_onnx(nn.Sequential(body, activation), tmp_path / "probs.onnx", 16)
    image = random_image(16)
    plain = executor(logits_only, patch=4, stride=2)
    kept = executor(with_output, patch=4, stride=2)
    assert plain.output_activation is None and kept.output_activation == op
    want, got = plain.run(image, mode=mode), kept.run(image, mode=mode)
    for kind in ("logit", "prob"):
        assert np.abs(got.map(kind, 1) - want.map(kind, 1)).max() <= 1e-6
    # the probabilities are the network's own: softmax of the logits, once
    probs = torch.softmax(body(torch.as_tensor(image)[None]), 1).detach().numpy()[0]
    assert np.allclose(torch.softmax(torch.as_tensor(got.base_logits), 0).numpy(), probs, atol=1e-5)
