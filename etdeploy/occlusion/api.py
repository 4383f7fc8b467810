"""One-call occlusion map: build an executor and run it on one image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
from etdeploy.occlusion.naive import NaiveOcclusionExecutor
from etdeploy.occlusion.result import OcclusionResult


def occlusion_map(onnx_model: Any, image: np.ndarray, patch: int = 16, stride: int = 4, *, mode: str = "exact",
                  target_class: int | None = None, batch_size: int = 16, tau: float = 1.0, r_drill: float = 1.0,
                  stage1_stride: int | None = None, threads: int = 2, opt_level: str = "all",
                  patch_value: float | Sequence[float] = 0.0, progress: bool = False) -> OcclusionResult:
    """Occlusion map of one ``(C, H, W)`` normalised float image (``mode``: naive | exact | approx).

    The occluding patch is filled with ``patch_value`` in normalised space (0 = the data set mean).
    ``naive`` runs any classifier ONNX Runtime can run; ``exact`` and ``approx`` need a graph the incremental
    executor can split. See :class:`IncrementalOcclusionExecutor` to reuse one executor across images.
    """
    image = np.asarray(image, dtype=np.float32)
    cls = NaiveOcclusionExecutor if mode == "naive" else IncrementalOcclusionExecutor
    executor = cls(onnx_model, input_size=tuple(image.shape[-2:]), patch=patch, stride=stride,
                   batch_size=batch_size, threads=threads, opt_level=opt_level, patch_value=patch_value)
    return executor.run(image, mode=mode, target_class=target_class, tau=tau, r_drill=r_drill,
                        stage1_stride=stage1_stride, progress=progress)
