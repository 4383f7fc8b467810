import dataclasses
import json

import numpy as np

from etdeploy.api import train_model
from etdeploy.data.images import ImageSplit
from etdeploy.models import build_model
from etdeploy.training import TrainConfig, metrics_from_logits, train


def _tiny_split(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(n) % 3
    images[labels == 1, 0] = 255  # learnable signal
    return ImageSplit(images=images, labels=labels.astype(np.int64), paths=())


def test_same_seed_gives_byte_identical_safetensors(tmp_path, bundled):
    small = dataclasses.replace(bundled, splits={s: bundled.split(s)[::8] for s in ("train", "val", "test")})
    for name in ("a", "b"):
        train_model("alexnet-mini", small, epochs=2, seed=3, out=tmp_path / name, progress=False)
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a == b
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    train_model("alexnet-mini", small, epochs=2, seed=4, out=tmp_path / "c", progress=False)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != a


def test_best_on_validation_checkpoint_is_kept():
    model = build_model("sequential-cnn", 3, layers="c4k3p1-r-m2", hidden=(8,))
    tr, va = _tiny_split(48, 0), _tiny_split(24, 1)
    result = train(model, tr, va, TrainConfig(epochs=4, seed=0), mean=(0.5,) * 3, std=(0.25,) * 3, progress=False)
    accs = [h["val_accuracy"] for h in result.history]
    assert result.best_val_accuracy == max(accs)
    assert accs.index(max(accs)) == result.best_epoch


def test_trained_mini_is_clearly_better_than_chance(trained_mini_dir):
    metrics = json.loads((trained_mini_dir / "metrics.json").read_text())
    test_acc = metrics["evaluation"]["test"]["accuracy"]
    assert test_acc >= 0.6, test_acc  # chance is 0.2 with 5 balanced classes
    assert len(metrics["evaluation"]["test"]["confusion"]) == 5


def test_metrics_from_logits_per_class_and_confusion():
    import torch

    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0], [0, 0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    res = metrics_from_logits(logits, labels, 3)
    assert res.accuracy == 0.75
    assert res.per_class_accuracy == (1.0, 0.5, 1.0)
    assert res.confusion == ((1, 0, 0), (1, 1, 0), (0, 0, 1))
