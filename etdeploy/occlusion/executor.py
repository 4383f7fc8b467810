"""Naive and incremental (KRYPTON) occlusion on ONNX Runtime (docs/method.md §6.1-6.3).

:class:`IncrementalOcclusionExecutor` is built once per (model, input size, patch, stride) and reused
across images. Per image it caches the base activations of the unoccluded image (each group's input,
padded once with that group's padding value, and the prefix output), then for each batch of patch
positions it propagates only the changed windows group by group: gather every position's input crop
(base crop + the previous group's output window pasted in) into one batch of equal-size crops, run the
group's session on it without padding, and finally splice the last windows into copies of the base
prefix output and run the suffix session on the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.occlusion.drilldown import drill_down
from etdeploy.occlusion.geometry import AxisStep, grid_starts, plan_axis, redundancy_ratio, validate_patch
from etdeploy.occlusion.graph import analyse, fold_lrn, load_onnx, with_dynamic_batch
from etdeploy.occlusion.result import MAP_KINDS, OcclusionResult
from etdeploy.onnx_graph import image_input
from etdeploy.ort_session import make_session
from etdeploy.progress import progress_bar
from etdeploy.vocab import OCCLUSION_MODES

MODES = OCCLUSION_MODES


@dataclass(frozen=True)
class Plan:
    """Per-axis propagation plan of every group for the patch grid of one stride and threshold ``tau``."""

    stride: int
    tau: float
    starts_y: np.ndarray
    starts_x: np.ndarray
    steps_y: tuple[AxisStep, ...]
    steps_x: tuple[AxisStep, ...]
    macs_per_position: int

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.starts_y), len(self.starts_x)


@dataclass
class BaseActivations:
    """Cached activations of one unoccluded image: ``padded[g]`` ``(C, Hp, Wp)`` input of group ``g`` padded
    with its padding value; ``last`` ``(C, H, W)`` prefix output; ``logits`` ``(K,)``."""

    image: np.ndarray
    padded: list[np.ndarray]
    last: np.ndarray
    logits: np.ndarray


class IncrementalOcclusionExecutor:
    """Occlusion maps of one ONNX classifier at one patch size and stride.

    ``onnx_model``: path or ``ModelProto`` (``(N, C, H, W) -> (N, K)`` logits); ``input_size``: ``S`` or
    ``(H, W)`` (default: the model's static input size); ``patch_value``: the occluding colour in the
    model's *normalised* input space, a scalar or one value per channel. The default 0 is the data set
    mean (inputs are ``(x - mean) / std``). ``threads`` and ``opt_level`` apply to every ORT session.
    ``batch_size`` positions go through the prefix sessions at a time; the suffix runs on
    ``suffix_batch_size`` (default ``4 * batch_size``) positions at a time.
    """

    def __init__(self, onnx_model: Any, input_size: int | tuple[int, int] | None = None, patch: int = 16,
                 stride: int = 4, *, batch_size: int = 16, threads: int = 2, opt_level: str = "all",
                 patch_value: float | Sequence[float] = 0.0, suffix_batch_size: int | None = None):
        raw = load_onnx(onnx_model)
        self.path = None if hasattr(onnx_model, "graph") else str(onnx_model)
        _, dims = image_input(raw)
        self.input_hw = self._input_hw(dims, input_size)
        validate_patch(*self.input_hw, patch, stride)
        if batch_size < 1:
            raise OcclusionError(f"batch size must be >= 1, got {batch_size}")
        self.patch, self.stride, self.batch_size = int(patch), int(stride), int(batch_size)
        self.suffix_batch_size = int(suffix_batch_size or 4 * batch_size)
        self.threads, self.opt_level = threads, opt_level
        self.reference_model = with_dynamic_batch(raw)
        folded = fold_lrn(raw)
        self.graph = self._choose_grouping(folded)
        self.channels = self.graph.input_shape[0]
        colour = np.asarray(patch_value, dtype=np.float32).reshape(-1)
        if colour.size not in (1, self.channels):
            raise OcclusionError(f"patch value needs 1 or {self.channels} numbers, got {colour.size}")
        self.patch_value = np.broadcast_to(colour, (self.channels,)).astype(np.float32).reshape(-1, 1, 1)
        self._group_sessions = [self._session(g.model) for g in self.graph.groups]
        self._suffix_session = self._session(self.graph.suffix)
        self._naive_session = None
        self._plans: dict[tuple[int, float], Plan] = {}
        self.naive_macs_per_position = self._full_macs() + self.graph.suffix_macs

    # ----------------------------------------------------------------------------------------- setup
    def _session(self, model):
        """Every session of this executor: ``threads`` intra-op threads, ``opt_level``, no thread spinning."""
        return make_session(model, threads=self.threads, opt_level=self.opt_level, allow_spinning=False)

    def _input_hw(self, dims, input_size) -> tuple[int, int]:
        static = tuple(d for d in dims[2:4]) if len(dims) == 4 else ()
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

    def _choose_grouping(self, folded):
        """Greedy: keep each unpadded pool fused into its conv's session unless splitting it off saves more
        than 1 % of the MACs per position at this patch and stride."""
        split: frozenset[int] = frozenset()
        graph = analyse(folded, self.input_hw, split)
        best = self._macs_per_position(graph)
        for index, op in enumerate(graph.ops):
            if op.op_type not in ("MaxPool", "AveragePool") or op.padded:
                continue
            trial = analyse(folded, self.input_hw, split | {index})
            macs = self._macs_per_position(trial)
            if macs < 0.99 * best:
                split, graph, best = split | {index}, trial, macs
        return graph

    def _macs_per_position(self, graph) -> int:
        h, w = self.input_hw
        groups = graph.groups
        ys, xs = grid_starts(h, self.patch, self.stride), grid_starts(w, self.patch, self.stride)
        steps_y = plan_axis(ys, self.patch, [g.gy for g in groups], [g.in_shape[1] for g in groups])
        steps_x = plan_axis(xs, self.patch, [g.gx for g in groups], [g.in_shape[2] for g in groups])
        return sum(g.crop_macs(sy.crop, sx.crop) for g, sy, sx in zip(groups, steps_y, steps_x))

    def _full_macs(self) -> int:
        """MACs of the prefix on the whole image (each op's full output)."""
        return sum(op.macs(shape[1], shape[2]) for op, shape in zip(self.graph.ops, self.graph.op_shapes))

    @property
    def num_classes(self) -> int:
        return self.graph.num_classes

    def plan(self, stride: int | None = None, tau: float = 1.0) -> Plan:
        """The (cached) propagation plan for the patch grid at ``stride`` with threshold ``tau``."""
        stride = self.stride if stride is None else int(stride)
        if not 0.0 < tau <= 1.0:
            raise OcclusionError(f"tau must be in (0, 1], got {tau}")
        key = (stride, float(tau))
        if key not in self._plans:
            h, w = self.input_hw
            ys, xs = grid_starts(h, self.patch, stride), grid_starts(w, self.patch, stride)
            groups = self.graph.groups
            steps_y = plan_axis(ys, self.patch, [g.gy for g in groups], [g.in_shape[1] for g in groups], tau)
            steps_x = plan_axis(xs, self.patch, [g.gx for g in groups], [g.in_shape[2] for g in groups], tau)
            macs = sum(g.crop_macs(sy.crop, sx.crop) for g, sy, sx in zip(groups, steps_y, steps_x))
            self._plans[key] = Plan(stride, float(tau), ys, xs, tuple(steps_y), tuple(steps_x),
                                    int(macs + self.graph.suffix_macs))
        return self._plans[key]

    def redundancy_ratio(self, patch: int | None = None) -> dict[str, Any]:
        """KRYPTON's redundancy ratio R (eq. 10-14) for a centred patch (conv layers' MACs only)."""
        patch = self.patch if patch is None else int(patch)
        validate_patch(*self.input_hw, patch, 1)
        layers = [(op.gy, op.gx, op.macs_per_output, op.c_out, op.is_conv) for op in self.graph.ops
                  if not op.pointwise]
        return redundancy_ratio(layers, self.input_hw[0], self.input_hw[1], patch)

    # ----------------------------------------------------------------------------------------- running
    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        expected = (self.channels, *self.input_hw)
        if image.shape != expected:
            raise OcclusionError(f"image shape {tuple(image.shape)} differs from the model input {expected}")
        return np.ascontiguousarray(image)

    def base(self, image: np.ndarray) -> BaseActivations:
        """Run the unoccluded ``(C, H, W)`` image through every group once and cache the activations."""
        image = self._check_image(image)
        padded: list[np.ndarray] = []
        x = image
        for group, session in zip(self.graph.groups, self._group_sessions):
            p = np.pad(x, ((0, 0), (group.gy.pb, group.gy.pe), (group.gx.pb, group.gx.pe)),
                       constant_values=np.float32(group.pad_value))
            padded.append(p)
            x = session.run(None, {group.input_name: p[None]})[0][0]
            if x.shape != group.out_shape:
                raise OcclusionError(f"internal: group output {x.shape} differs from the expected {group.out_shape}")
        logits = self._suffix_session.run(None, {self.graph.split_name: x[None]})[0][0]
        return BaseActivations(image, padded, x, np.asarray(logits, dtype=np.float32))

    def logits_at(self, image: np.ndarray | BaseActivations, iy: np.ndarray, ix: np.ndarray, *,
                  stride: int | None = None, tau: float = 1.0, progress: bool = False) -> np.ndarray:
        """Incremental logits for positions ``(iy[n], ix[n])`` of the grid at ``stride``: ``(n,), (n,) -> (n, K)``."""
        base = image if isinstance(image, BaseActivations) else self.base(image)
        plan = self.plan(stride, tau)
        iy = np.asarray(iy, dtype=np.int64)
        ix = np.asarray(ix, dtype=np.int64)
        out: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        n_pending = 0
        batches = range(0, len(iy), self.batch_size)
        for start in progress_bar(batches, desc="occlusion", total=len(batches), enabled=progress, unit="batch"):
            sl = slice(start, start + self.batch_size)
            pending.append(self._run_prefix(base, plan, iy[sl], ix[sl]))
            n_pending += len(pending[-1])
            if n_pending >= self.suffix_batch_size:
                out.append(self._run_suffix(pending))
                pending, n_pending = [], 0
        if pending:
            out.append(self._run_suffix(pending))
        if not out:
            return np.zeros((0, max(self.num_classes, 0)), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def _run_suffix(self, activations: list[np.ndarray]) -> np.ndarray:
        """Suffix on the spliced prefix outputs, batched wider than the prefix: its dense weights are read once
        per call, so a wide batch amortises them (``(n, C, H, W) -> (n, K)``)."""
        batch = activations[0] if len(activations) == 1 else np.concatenate(activations, axis=0)
        return self._suffix_session.run(None, {self.graph.split_name: batch})[0]

    def _run_prefix(self, base: BaseActivations, plan: Plan, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        """Propagate one batch of positions through the prefix: ``(n,), (n,) -> (n, C, H, W)`` spliced outputs."""
        patch = self.patch
        ys, xs = plan.starts_y[iy], plan.starts_x[ix]
        n = len(iy)
        if not self.graph.groups:
            return self._occlude(base.image, ys, xs)
        prev = None
        for g, (group, session) in enumerate(zip(self.graph.groups, self._group_sessions)):
            sy, sx = plan.steps_y[g], plan.steps_x[g]
            cy, cx = sy.crop_start[iy], sx.crop_start[ix]
            view = np.lib.stride_tricks.sliding_window_view(base.padded[g], (sy.crop, sx.crop), axis=(1, 2))
            crops = np.ascontiguousarray(view.transpose(1, 2, 0, 3, 4)[cy, cx])  # (n, C, crop_y, crop_x)
            pby, pbx = group.gy.pb, group.gx.pb
            if prev is None:
                src, oy, ox, hy, hx = None, ys + pby, xs + pbx, patch, patch
            else:
                src, wy, wx = prev
                oy, ox, hy, hx = wy + pby, wx + pbx, src.shape[2], src.shape[3]
            for b in range(n):
                y0, y1 = max(oy[b], cy[b]), min(oy[b] + hy, cy[b] + sy.crop)
                x0, x1 = max(ox[b], cx[b]), min(ox[b] + hx, cx[b] + sx.crop)
                if y1 <= y0 or x1 <= x0:
                    continue
                dst = crops[b, :, y0 - cy[b]:y1 - cy[b], x0 - cx[b]:x1 - cx[b]]
                if src is None:
                    dst[...] = self.patch_value
                else:
                    dst[...] = src[b, :, y0 - oy[b]:y1 - oy[b], x0 - ox[b]:x1 - ox[b]]
            result = session.run(None, {group.input_name: crops})[0]
            prev = (result, sy.win_start[iy], sx.win_start[ix])
        src, wy, wx = prev
        full = np.repeat(base.last[None], n, axis=0)
        hy, hx = src.shape[2], src.shape[3]
        for b in range(n):
            full[b, :, wy[b]:wy[b] + hy, wx[b]:wx[b] + hx] = src[b]
        return full

    def _occlude(self, image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        batch = np.repeat(image[None], len(ys), axis=0)
        for b, (y, x) in enumerate(zip(ys, xs)):
            batch[b, :, y:y + self.patch, x:x + self.patch] = self.patch_value
        return batch

    def naive_logits_at(self, image: np.ndarray, iy: np.ndarray, ix: np.ndarray, *, stride: int | None = None,
                        progress: bool = False) -> np.ndarray:
        """Reference: one full forward of the original ONNX graph per position: ``(n,), (n,) -> (n, K)``."""
        image = self._check_image(image)
        if self._naive_session is None:
            self._naive_session = self._session(self.reference_model)
        h, w = self.input_hw
        stride = self.stride if stride is None else int(stride)
        ys_all, xs_all = grid_starts(h, self.patch, stride), grid_starts(w, self.patch, stride)
        iy = np.asarray(iy, dtype=np.int64)
        ix = np.asarray(ix, dtype=np.int64)
        name = self.graph.input_name
        out = []
        batches = range(0, len(iy), self.batch_size)
        for start in progress_bar(batches, desc="occlusion (naive)", total=len(batches), enabled=progress,
                                  unit="batch"):
            sl = slice(start, start + self.batch_size)
            batch = self._occlude(image, ys_all[iy[sl]], xs_all[ix[sl]])
            out.append(self._naive_session.run(None, {name: batch})[0])
        return np.concatenate(out, axis=0)

    def unoccluded_logits(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W) -> (K,)`` logits of the original graph."""
        image = self._check_image(image)
        if self._naive_session is None:
            self._naive_session = self._session(self.reference_model)
        return self._naive_session.run(None, {self.graph.input_name: image[None]})[0][0]

    def run(self, image: np.ndarray, *, mode: str = "exact", target_class: int | None = None, tau: float = 1.0,
            r_drill: float = 1.0, stage1_stride: int | None = None, map_kind: str = "prob",
            progress: bool = False) -> OcclusionResult:
        """Occlusion map of one ``(C, H, W)`` normalised image.

        ``mode``: ``naive`` (full forward per position), ``exact`` (incremental), ``approx`` (incremental with
        projective-field threshold ``tau`` and adaptive drill-down: stage 1 at ``stage1_stride`` (default
        ``2 * stride``), stage 2 recomputes the fraction ``r_drill`` of the remaining positions with the
        largest stage-1 change of the ``map_kind`` map; ``r_drill = 0`` keeps stage 1 alone, interpolated).
        ``target_class`` defaults to the predicted class.
        """
        if mode not in MODES:
            raise OcclusionError(f"unknown occlusion mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode != "approx" and (tau != 1.0 or r_drill != 1.0):
            raise OcclusionError("tau and r_drill apply to mode='approx' only")
        if not 0.0 <= r_drill <= 1.0:
            raise OcclusionError(f"r_drill must be in [0, 1], got {r_drill}")
        if map_kind not in MAP_KINDS:
            raise OcclusionError(f"unknown map kind {map_kind!r}; choose one of {', '.join(MAP_KINDS)}")
        t0 = time.perf_counter()
        plan = self.plan(self.stride, tau)
        ny, nx = plan.grid_shape
        n_pos = ny * nx
        iy, ix = np.divmod(np.arange(n_pos), nx)
        if mode == "naive":
            image = self._check_image(image)
            base_logits = self.unoccluded_logits(image)
            logits = self.naive_logits_at(image, iy, ix, progress=progress)
            macs = n_pos * self.naive_macs_per_position
            mask = np.ones((ny, nx), dtype=bool)
        else:
            base = self.base(image)
            base_logits = base.logits
            target = self._target(base_logits, target_class)
            if mode == "approx" and r_drill < 1.0:
                logits, mask, macs = drill_down(self, base, target, tau=tau, r_drill=r_drill,
                                                stage1_stride=stage1_stride or 2 * self.stride, map_kind=map_kind,
                                                progress=progress)
                logits = logits.reshape(n_pos, -1)
            else:
                logits = self.logits_at(base, iy, ix, tau=tau, progress=progress)
                macs = n_pos * plan.macs_per_position
                mask = np.ones((ny, nx), dtype=bool)
        target = self._target(base_logits, target_class)
        seconds = time.perf_counter() - t0
        return OcclusionResult(
            logits=np.asarray(logits, dtype=np.float32).reshape(ny, nx, -1), base_logits=np.asarray(base_logits),
            target=target, patch=self.patch, stride=self.stride, starts_y=plan.starts_y, starts_x=plan.starts_x,
            image_hw=self.input_hw, mode=mode, tau=float(tau), r_drill=float(r_drill),
            stage1_stride=(stage1_stride or 2 * self.stride) if (mode == "approx" and r_drill < 1.0) else None,
            exact_mask=mask, macs=int(macs), naive_macs=int(n_pos * self.naive_macs_per_position), seconds=seconds)

    @staticmethod
    def _target(base_logits: np.ndarray, target_class: int | None) -> int:
        k = int(base_logits.shape[-1])
        if target_class is None:
            return int(np.argmax(base_logits))
        if not 0 <= int(target_class) < k:
            raise OcclusionError(f"class {target_class} is out of range for a model with {k} classes")
        return int(target_class)
