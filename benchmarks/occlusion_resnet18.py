"""ResNet-18 factory for the trained-model occlusion benchmark (``etdeploy train --arch`` by path).

    etdeploy train --arch benchmarks/occlusion_resnet18.py:resnet18 --input-size 112 --out runs/resnet18-112

torchvision's ``resnet18`` module tree and layer geometry (7x7/2 stem, 3x3/2 max pool, four stages of two
BasicBlocks, global average pool, ``fc``; ``tests/dag_models.py``), so that torchvision is not a dependency; etdeploy's
``resnet`` layout (:mod:`etdeploy.models.layouts`) converts it. ``width`` scales the channel counts
(1.0 = torchvision's 64/128/256/512).
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dag_models import ResNet18  # the one ResNet-18 of the tests and benchmarks


def resnet18(num_classes: int, input_size: int = 112, width: float = 1.0) -> nn.Module:
    """torchvision-geometry ResNet-18 for ``num_classes`` (any ``input_size`` >= 32: the head pools globally)."""
    del input_size  # global pooling: the layer geometry does not depend on it
    return ResNet18(num_classes, width)


def resnet18_half(num_classes: int, input_size: int = 112) -> nn.Module:
    """:func:`resnet18` at half width (32/64/128/256 channels): a quarter of the MACs, trains on two cores."""
    return resnet18(num_classes, input_size, width=0.5)
