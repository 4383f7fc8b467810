"""Reference oracles for occlusion: a plain PyTorch full-forward loop and Captum ``Occlusion``."""

from __future__ import annotations

import numpy as np
import torch

from etdeploy.models import build_model
from etdeploy.occlusion import IncrementalOcclusionExecutor
from tests.test_occlusion import export_onnx, random_image


def _torch_occlusion(model, image: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """Plain loop: one forward of the PyTorch model per position -> ``(ny, nx, K)`` logits."""
    _, h, w = image.shape
    ys, xs = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
    out = np.zeros((len(ys), len(xs), model.spec.num_classes), dtype=np.float32)
    with torch.no_grad():
        for i, y in enumerate(ys):
            batch = np.repeat(image[None], len(xs), axis=0)
            for j, x in enumerate(xs):
                batch[j, :, y:y + patch, x:x + patch] = 0.0
            out[i] = model.eval()(torch.from_numpy(batch)).numpy()
    return out


def test_naive_and_exact_match_a_pytorch_occlusion_loop(tmp_path):
    model = build_model("alexnet-mini", 4, input_size=64, seed=11, hidden=(32, 32))
    path = export_onnx(model, tmp_path / "m.onnx", 64)
    image = random_image(64, 3)
    ref = _torch_occlusion(model, image, 12, 9)
    ex = IncrementalOcclusionExecutor(path, patch=12, stride=9, batch_size=8)
    for mode in ("naive", "exact"):
        result = ex.run(image, mode=mode)
        assert result.logits.shape == ref.shape == (6, 6, 4)
        np.testing.assert_allclose(result.logits, ref, atol=1e-4, rtol=1e-4)


def test_drop_map_matches_captum_occlusion_when_windows_do_not_overlap(tmp_path):
    """With stride == patch every pixel is covered by one window: Captum's attribution there is exactly the
    drop of the class probability (base - occluded), i.e. our 'drop' map."""
    from captum.attr import Occlusion

    model = build_model("sequential-cnn", 3, input_size=24, seed=5, layers="c6k3p1-r-m2-c8k3p1-r-l", hidden=(8,))
    path = export_onnx(model, tmp_path / "s.onnx", 24)
    image = random_image(24, 9)
    target = 1
    ex = IncrementalOcclusionExecutor(path, patch=6, stride=6)
    drop = ex.run(image, mode="exact", target_class=target).map("drop")

    def probs(x):
        return torch.softmax(model.eval()(x), dim=1)

    attr = Occlusion(probs).attribute(torch.from_numpy(image[None]), sliding_window_shapes=(3, 6, 6),
                                      strides=(3, 6, 6), baselines=0.0, target=target)[0].detach().numpy()
    assert drop.shape == (4, 4)
    np.testing.assert_allclose(attr[0, ::6, ::6], drop, atol=1e-5)
    np.testing.assert_allclose(attr[:, 5::6, 5::6], np.broadcast_to(drop, (3, 4, 4)), atol=1e-5)
    assert float(np.abs(drop).max()) > 1e-4
