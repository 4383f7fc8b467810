"""Naive occlusion, the reference (docs/method.md §6): one full forward of the original ONNX graph per position.

:class:`NaiveOcclusionExecutor` runs any classifier with one 4-D image input that ONNX Runtime can run,
chain or DAG, whatever its operators: it never splits the graph. The incremental executor
(:class:`~etdeploy.occlusion.executor.IncrementalOcclusionExecutor`) derives from it, so both share the
input checks, the patch grid, the occluded batches and the result.

Images are always given as ``(C, H, W)`` in the model's normalised input space; for an NHWC model (a
``Transpose`` right after the input, as Keras exports have) the batches are transposed before ORT.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError, OnnxModelError
from etdeploy.occlusion.geometry import grid_starts, validate_patch
from etdeploy.occlusion.graph import image_layout, load_onnx, logits_model, with_dynamic_batch
from etdeploy.occlusion.result import MAP_KINDS, OcclusionResult
from etdeploy.ort_session import make_session
from etdeploy.progress import progress_bar
from etdeploy.vocab import OCCLUSION_MODES

MODES = OCCLUSION_MODES


class NaiveOcclusionExecutor:
    """Occlusion maps of one ONNX classifier by full forwards (``mode='naive'`` only).

    ``onnx_model``: path or ``ModelProto`` (``(N, C, H, W)`` or ``(N, H, W, C)`` ``-> (N, K)`` logits);
    ``input_size``: ``S`` or ``(H, W)`` (default: the model's static input size); ``patch_value``: the
    occluding colour in the model's *normalised* input space, a scalar or one value per channel (the
    default 0 is the data set mean). ``threads`` and ``opt_level`` apply to every ORT session; ``batch_size``
    occluded images go through ORT at a time.
    """

    modes: tuple[str, ...] = ("naive",)

    def __init__(self, onnx_model: Any, input_size: int | tuple[int, int] | None = None, patch: int = 16,
                 stride: int = 4, *, batch_size: int = 16, threads: int = 2, opt_level: str = "all",
                 patch_value: float | Sequence[float] = 0.0):
        # a probability output (Softmax kept for flight software) is cut: maps come from the logits
        raw, self.output_activation = logits_model(load_onnx(onnx_model))
        self.path = None if hasattr(onnx_model, "graph") else str(onnx_model)
        self.layout = image_layout(raw)
        self.input_hw = self._input_hw(self.layout.spatial, input_size)
        validate_patch(*self.input_hw, patch, stride)
        if batch_size < 1:
            raise OcclusionError(f"batch size must be >= 1, got {batch_size}")
        self.patch, self.stride, self.batch_size = int(patch), int(stride), int(batch_size)
        self.threads, self.opt_level = threads, opt_level
        self.reference_model = with_dynamic_batch(raw)
        self.channels = self.layout.channels
        colour = np.asarray(patch_value, dtype=np.float32).reshape(-1)
        if colour.size not in (1, self.channels):
            raise OcclusionError(f"patch value needs 1 or {self.channels} numbers, got {colour.size}")
        self.patch_value = np.broadcast_to(colour, (self.channels,)).astype(np.float32).reshape(-1, 1, 1)
        self._naive_session = None
        self._naive_macs: int | None = None
        out_dims = [d.dim_value for d in raw.graph.output[0].type.tensor_type.shape.dim]
        self._num_classes = int(out_dims[-1]) if out_dims and out_dims[-1] > 0 else -1
        self._prepare(raw)

    def _prepare(self, model) -> None:
        """Hook for subclasses that analyse the loaded (checked) model; the naive executor needs nothing."""

    # ----------------------------------------------------------------------------------------- setup
    def _session(self, model):
        """Every session of this executor: ``threads`` intra-op threads, ``opt_level``, no thread spinning."""
        return make_session(model, threads=self.threads, opt_level=self.opt_level, allow_spinning=False)

    def _input_hw(self, static, input_size) -> tuple[int, int]:
        static = tuple(static)
        if input_size is not None:
            hw = (int(input_size), int(input_size)) if np.isscalar(input_size) else tuple(int(v) for v in input_size)
            if len(hw) != 2 or min(hw) < 1:
                raise OcclusionError(f"input size must be S or (H, W), got {input_size!r}")
            if all(isinstance(d, int) and d > 0 for d in static) and tuple(static) != hw:
                raise OcclusionError(f"the ONNX model's input is {static[0]}x{static[1]}, not {hw[0]}x{hw[1]}",
                                     self.path)
            return hw  # type: ignore[return-value]
        if len(static) == 2 and all(isinstance(d, int) and d > 0 for d in static):
            return int(static[0]), int(static[1])
        raise OcclusionError("the ONNX model has a dynamic spatial input size; pass input_size", self.path)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def naive_macs_per_position(self) -> int:
        """MACs of one full forward (:func:`etdeploy.onnx_graph.batch1_macs` at this input size; 0 when ONNX
        shape inference cannot size the graph)."""
        if self._naive_macs is None:
            self._naive_macs = int(self._count_naive_macs())
        return self._naive_macs

    def _count_naive_macs(self) -> int:
        import onnx

        from etdeploy.onnx_graph import batch1_macs

        model = onnx.ModelProto()
        model.CopyFrom(self.reference_model)
        h, w = self.input_hw
        dims = next(v for v in model.graph.input if v.name == self.layout.input_name).type.tensor_type.shape.dim
        for axis, size in zip((1, 2) if self.layout.layout == "NHWC" else (2, 3), (h, w)):
            dims[axis].Clear()
            dims[axis].dim_value = size
        try:
            return batch1_macs(model)
        except OnnxModelError:
            return 0

    def grid(self, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Patch top-left corners ``(starts_y, starts_x)`` at ``stride`` (default: the executor's)."""
        stride = self.stride if stride is None else int(stride)
        h, w = self.input_hw
        return grid_starts(h, self.patch, stride), grid_starts(w, self.patch, stride)

    # ----------------------------------------------------------------------------------------- running
    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        expected = (self.channels, *self.input_hw)
        if image.shape != expected:
            raise OcclusionError(f"image shape {tuple(image.shape)} differs from the model input {expected}")
        return np.ascontiguousarray(image)

    def _occlude(self, image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        batch = np.repeat(image[None], len(ys), axis=0)
        for b, (y, x) in enumerate(zip(ys, xs)):
            batch[b, :, y:y + self.patch, x:x + self.patch] = self.patch_value
        return batch

    def _reference(self, batch: np.ndarray) -> np.ndarray:
        """Full forwards of the original graph: ``(n, C, H, W) -> (n, K)``."""
        if self._naive_session is None:
            self._naive_session = self._session(self.reference_model)
        return self._naive_session.run(None, {self.layout.input_name: self.layout.to_model_layout(batch)})[0]

    def naive_logits_at(self, image: np.ndarray, iy: np.ndarray, ix: np.ndarray, *, stride: int | None = None,
                        progress: bool = False) -> np.ndarray:
        """Reference: one full forward of the original ONNX graph per position: ``(n,), (n,) -> (n, K)``."""
        image = self._check_image(image)
        ys_all, xs_all = self.grid(stride)
        iy = np.asarray(iy, dtype=np.int64)
        ix = np.asarray(ix, dtype=np.int64)
        out = []
        batches = range(0, len(iy), self.batch_size)
        for start in progress_bar(batches, desc="occlusion (naive)", total=len(batches), enabled=progress,
                                  unit="batch"):
            sl = slice(start, start + self.batch_size)
            out.append(self._reference(self._occlude(image, ys_all[iy[sl]], xs_all[ix[sl]])))
        if not out:
            return np.zeros((0, max(self.num_classes, 0)), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def unoccluded_logits(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W) -> (K,)`` logits of the original graph."""
        return self._reference(self._check_image(image)[None])[0]

    def _check_run(self, mode: str, tau: float, r_drill: float, map_kind: str) -> None:
        if mode not in MODES:
            raise OcclusionError(f"unknown occlusion mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode not in self.modes:
            raise OcclusionError(f"mode {mode!r} needs the incremental executor; this one runs naive occlusion only")
        if mode != "approx" and (tau != 1.0 or r_drill != 1.0):
            raise OcclusionError("tau and r_drill apply to mode='approx' only")
        if not 0.0 <= r_drill <= 1.0:
            raise OcclusionError(f"r_drill must be in [0, 1], got {r_drill}")
        if map_kind not in MAP_KINDS:
            raise OcclusionError(f"unknown map kind {map_kind!r}; choose one of {', '.join(MAP_KINDS)}")

    def _naive_run(self, image: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(base logits (K,), logits (n_pos, K), computed mask (ny, nx), MACs)`` of a naive map."""
        ys, xs = self.grid()
        ny, nx = len(ys), len(xs)
        iy, ix = np.divmod(np.arange(ny * nx), nx)
        image = self._check_image(image)
        base_logits = self.unoccluded_logits(image)
        logits = self.naive_logits_at(image, iy, ix, progress=progress)
        return base_logits, logits, np.ones((ny, nx), dtype=bool), ny * nx * self.naive_macs_per_position

    def _result(self, *, mode: str, logits, base_logits, target: int, tau: float, r_drill: float,
                stage1_stride: int | None, mask, macs: int, started: float) -> OcclusionResult:
        ys, xs = self.grid()
        ny, nx = len(ys), len(xs)
        return OcclusionResult(
            logits=np.asarray(logits, dtype=np.float32).reshape(ny, nx, -1), base_logits=np.asarray(base_logits),
            target=target, patch=self.patch, stride=self.stride, starts_y=ys, starts_x=xs, image_hw=self.input_hw,
            mode=mode, tau=float(tau), r_drill=float(r_drill), stage1_stride=stage1_stride, exact_mask=mask,
            macs=int(macs), naive_macs=int(ny * nx * self.naive_macs_per_position),
            seconds=time.perf_counter() - started)

    def run(self, image: np.ndarray, *, mode: str = "naive", target_class: int | None = None, tau: float = 1.0,
            r_drill: float = 1.0, stage1_stride: int | None = None, map_kind: str = "prob",
            progress: bool = False) -> OcclusionResult:
        """Naive occlusion map of one ``(C, H, W)`` normalised image (``target_class`` defaults to the
        predicted class)."""
        self._check_run(mode, tau, r_drill, map_kind)
        started = time.perf_counter()
        base_logits, logits, mask, macs = self._naive_run(image, progress)
        return self._result(mode=mode, logits=logits, base_logits=base_logits,
                            target=self._target(base_logits, target_class), tau=tau, r_drill=r_drill,
                            stage1_stride=None, mask=mask, macs=macs, started=started)

    @staticmethod
    def _target(base_logits: np.ndarray, target_class: int | None) -> int:
        k = int(base_logits.shape[-1])
        if target_class is None:
            return int(np.argmax(base_logits))
        if not 0 <= int(target_class) < k:
            raise OcclusionError(f"class {target_class} is out of range for a model with {k} classes")
        return int(target_class)
