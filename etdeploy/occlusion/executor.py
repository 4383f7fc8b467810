"""Incremental (KRYPTON) occlusion on ONNX Runtime, exact and approximate (docs/method.md §6.1-6.3).

:class:`IncrementalOcclusionExecutor` is built once per (model, input size, patch, stride) and reused
across images. The local part of the graph (everything between the image and the global ops) may be a
chain or a DAG (residual ``Add``, ``Concat`` of branches); it is fused into groups, each one ORT session
(:func:`~etdeploy.occlusion.graph.analyse`). Per image the executor caches the base activations of the
unoccluded image (each group's main input, padded once with that group's padding value, and every group
output), then for each batch of patch positions it propagates only the changed windows group by group, in
topological order: gather every position's input crop (base crop + the producing group's output window
pasted in) into one batch of equal-size crops, likewise the crops of a merge's other inputs aligned with
the output window, run the group's session on them without padding, and finally splice the windows of the
split tensors into copies of their base values and run the suffix session on the batch. Groups whose window
is their whole output map at every position run inside a per-plan suffix instead (:class:`Tail`).

Naive mode (full forwards) comes from :class:`~etdeploy.occlusion.naive.NaiveOcclusionExecutor`, which runs
any model; this executor refuses, with :class:`~etdeploy.errors.UnsupportedOpError` naming the operator, a
graph it cannot split.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.occlusion.drilldown import drill_down
from etdeploy.occlusion.geometry import (
    AxisStep,
    GroupAxis,
    class_steps,
    dag_redundancy_ratio,
    grid_starts,
    plan_dag_axis,
    validate_patch,
    window_classes,
)
from etdeploy.occlusion.graph import analyse, fold_lrn, suffix_model
from etdeploy.occlusion.naive import MODES, NaiveOcclusionExecutor
from etdeploy.occlusion.result import OcclusionResult
from etdeploy.progress import progress_bar

__all__ = ["MODES", "BaseActivations", "IncrementalOcclusionExecutor", "Plan"]


@dataclass(frozen=True)
class Plan:
    """Per-axis propagation plan of every group for the patch grid of one stride and threshold ``tau``.

    ``shared_crop[g]``: the first group whose main input crops are the same as group ``g``'s at every
    position (same tensor, padding and crop; e.g. the 1x1 convolutions that open the branches of an
    Inception block), so one gathered batch of crops feeds them all; ``g`` itself otherwise.

    ``local``: the groups run window by window, in order; the others compute their whole output map at
    every position (the patch's changed region covers it), so they run inside the plan's suffix
    (:class:`Tail`), one ORT session from the tensors ``tail.splits`` to the logits, as naive inference
    would (docs/method.md §6.1).

    ``steps_y``/``steps_x`` size every window for the worst start of the grid. Window classes (exact plans,
    ``tau = 1``): ``classes_y[i]`` is the class of start ``i`` on y (likewise x), ``class_steps_y[c]`` the steps
    with the windows of class ``c`` (:func:`~etdeploy.occlusion.geometry.window_classes`), and
    ``class_macs[cy, cx]`` the MACs of one position of class pair ``(cy, cx)`` (local windows + tail). A plan
    with a threshold (``tau < 1``) has one class, the worst-case steps: there the computed window is part of
    the approximation (docs/method.md §6.3). ``macs_per_position``: the MACs of one position with the
    worst-case windows, the cost model every MAC count of a run uses (an upper bound when there are several
    classes); ``mean_macs``: the exact mean over the grid with the class windows (a
    :class:`~fractions.Fraction`), :meth:`macs_at` the MACs of given positions.
    """

    stride: int
    tau: float
    starts_y: np.ndarray
    starts_x: np.ndarray
    steps_y: tuple[AxisStep, ...]
    steps_x: tuple[AxisStep, ...]
    macs_per_position: int
    shared_crop: tuple[int, ...] = ()
    local: tuple[int, ...] = ()
    tail: Tail | None = None
    classes_y: np.ndarray | None = None
    classes_x: np.ndarray | None = None
    class_steps_y: tuple[tuple[AxisStep, ...], ...] = ()
    class_steps_x: tuple[tuple[AxisStep, ...], ...] = ()
    class_macs: np.ndarray | None = None
    mean_macs: Fraction = Fraction(0)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.starts_y), len(self.starts_x)

    @property
    def n_classes(self) -> tuple[int, int]:
        """Number of window classes on ``(y, x)``."""
        return len(self.class_steps_y), len(self.class_steps_x)

    def macs_at(self, iy: np.ndarray, ix: np.ndarray) -> int:
        """MACs of the positions ``(iy[n], ix[n])`` (each at its class's windows)."""
        iy, ix = np.asarray(iy, dtype=np.int64), np.asarray(ix, dtype=np.int64)
        return int(self.class_macs[self.classes_y[iy], self.classes_x[ix]].sum())


@dataclass(frozen=True)
class Tail:
    """The global suffix of one plan: an ORT ``session`` reading the tensors ``splits`` (the outputs of local
    groups that full-map groups or the global ops read), ``macs`` per position (full-map groups + suffix) and
    ``last_use``: the index of the last local group that reads each tensor's window (``splits``: never)."""

    splits: tuple[str, ...]
    session: Any
    macs: int
    last_use: dict[str, int]


@dataclass
class BaseActivations:
    """Cached activations of one unoccluded image: ``padded[g]`` ``(C, Hp, Wp)`` main input of group ``g``
    padded with its padding value; ``values[name]`` ``(C, H, W)`` every group output (and the local input);
    ``logits`` ``(K,)``."""

    image: np.ndarray
    padded: list[np.ndarray]
    values: dict[str, np.ndarray]
    logits: np.ndarray


class IncrementalOcclusionExecutor(NaiveOcclusionExecutor):
    """Occlusion maps of one ONNX classifier at one patch size and stride (modes naive, exact, approx).

    Arguments as :class:`~etdeploy.occlusion.naive.NaiveOcclusionExecutor`; ``batch_size`` positions go
    through the group sessions at a time; the suffix runs on ``suffix_batch_size`` (default
    ``4 * batch_size``) positions at a time. ``window_classes``: at most this many window classes per axis
    for exact plans (:class:`Plan`; 1 = one window shape per group, sized for the worst patch alignment).
    """

    modes = MODES

    def __init__(self, onnx_model: Any, input_size: int | tuple[int, int] | None = None, patch: int = 16,
                 stride: int = 4, *, batch_size: int = 16, threads: int = 2, opt_level: str = "all",
                 patch_value: float | Sequence[float] = 0.0, suffix_batch_size: int | None = None,
                 window_classes: int = 6):
        self.suffix_batch_size = int(suffix_batch_size or 4 * batch_size)
        if int(window_classes) < 1:
            raise OcclusionError(f"window_classes must be >= 1, got {window_classes}")
        self.window_classes = int(window_classes)
        super().__init__(onnx_model, input_size, patch, stride, batch_size=batch_size, threads=threads,
                         opt_level=opt_level, patch_value=patch_value)

    # ----------------------------------------------------------------------------------------- setup
    def _prepare(self, model) -> None:
        """Analyse the (LRN-folded) graph, fuse its groups and open one session per group and the suffix."""
        self._folded = fold_lrn(model)
        self.graph = self._choose_grouping(self._folded)
        self._group_sessions = [self._session(g.model) for g in self.graph.groups]
        self._suffix_session = self._session(self.graph.suffix)
        self._plans: dict[tuple[int, float], Plan] = {}
        self._class_plans: dict[tuple[int, float, int, int], Plan] = {}
        self._tails: dict[tuple[int, ...], Tail] = {}

    def _count_naive_macs(self) -> int:
        """Naive MACs per position: the local ops on the whole image plus the suffix."""
        return self._full_macs() + self.graph.suffix_macs

    def _choose_grouping(self, folded):
        """Greedy: keep each unpadded pool fused into its conv's session unless splitting it off saves more
        than 1 % of the MACs per position at this patch and stride."""
        split: frozenset[int] = frozenset()
        graph = analyse(folded, self.input_hw, split, patch=self.patch)
        best = self._macs_per_position(graph)
        for index, op in enumerate(graph.ops):
            if op.op_type not in ("MaxPool", "AveragePool") or op.padded:
                continue
            trial = analyse(folded, self.input_hw, split | {index}, patch=self.patch)
            macs = self._macs_per_position(trial)
            if macs < 0.99 * best:
                split, graph, best = split | {index}, trial, macs
        return graph

    def _group_axes(self, graph) -> tuple[list[GroupAxis], list[GroupAxis]]:
        slot = {graph.local_input: 0}
        slot.update({g.output_name: i + 1 for i, g in enumerate(graph.groups)})
        ys, xs = [], []
        for g in graph.groups:
            sides = tuple(slot[t] for t in g.side_inputs)
            ys.append(GroupAxis(g.gy, slot[g.input_name], sides, g.in_shape[1]))
            xs.append(GroupAxis(g.gx, slot[g.input_name], sides, g.in_shape[2]))
        return ys, xs

    def _steps(self, graph, stride: int, tau: float = 1.0):
        h, w = self.input_hw
        ys, xs = grid_starts(h, self.patch, stride), grid_starts(w, self.patch, stride)
        axes_y, axes_x = self._group_axes(graph)
        return ys, xs, plan_dag_axis(ys, self.patch, axes_y, tau), plan_dag_axis(xs, self.patch, axes_x, tau)

    def _macs_per_position(self, graph) -> int:
        _, _, steps_y, steps_x = self._steps(graph, self.stride)
        return sum(g.crop_macs(sy.crop, sx.crop) for g, sy, sx in zip(graph.groups, steps_y, steps_x))

    def _full_macs(self) -> int:
        """MACs of the local part on the whole image (each op's full output)."""
        return sum(op.macs(shape[1], shape[2]) for op, shape in zip(self.graph.ops, self.graph.op_shapes))

    def _full_map_groups(self, steps_y, steps_x) -> frozenset[int]:
        """Groups to run in the suffix: those whose window is their whole output map and whose outputs only
        such groups or the global ops read (so the set is closed downstream); never one that reads the image.

        Moving them saves a session call each and, for a padded group, the copy of its whole padded input
        that windowed execution gathers per position; it costs splicing the tensors the moved groups read
        (instead of the old split tensors) into copies of their base values. The set is moved only when the
        copies saved are at least the copies added (per position, in elements): SqueezeNet's last 1x1 conv
        alone reads 512 channels where the old split has 5, and measured slower in the suffix."""
        groups = self.graph.groups
        readers: dict[str, list[int]] = {}
        for g, group in enumerate(groups):
            for name in (group.input_name, *group.side_inputs):
                readers.setdefault(name, []).append(g)
        full: set[int] = set()
        for g in reversed(range(len(groups))):
            group, sy, sx = groups[g], steps_y[g], steps_x[g]
            whole = sy.win == group.out_shape[1] and sx.win == group.out_shape[2]
            reads_image = self.graph.local_input in (group.input_name, *group.side_inputs)
            if whole and not reads_image and all(r in full for r in readers.get(group.output_name, [])):
                full.add(g)
        saved = sum(group.in_shape[0] * h * w for group in (groups[g] for g in full)
                    for h, w in [self._padded_hw(group)] if (h, w) != group.in_shape[1:])
        size = {group.output_name: int(np.prod(group.out_shape)) for group in groups}
        added = sum(size.get(t, 0) for t in self._tail_splits(full)) - sum(size.get(t, 0) for t in self.graph.splits)
        return frozenset(full) if full and saved >= added else frozenset()

    def _tail_splits(self, full) -> tuple[str, ...]:
        """The tensors a suffix that runs the groups ``full`` reads: their inputs from outside the set, then the
        original split tensors that no group in it produces."""
        groups = self.graph.groups
        in_tail = {groups[g].output_name for g in full}
        needed = [t for g in sorted(full) for t in (groups[g].input_name, *groups[g].side_inputs)]
        return tuple(dict.fromkeys(t for t in (*needed, *self.graph.splits) if t not in in_tail))

    def _tail(self, full: frozenset[int]) -> Tail:
        """The (cached) :class:`Tail` that runs the groups ``full`` and the global ops as one session."""
        groups = self.graph.groups
        local = tuple(g for g in range(len(groups)) if g not in full)
        if local not in self._tails:
            splits = self._tail_splits(full)
            session = self._suffix_session
            if full:
                shapes = {group.output_name: group.out_shape for group in groups}
                model, _ = suffix_model(self._folded, splits, tuple(shapes[t] for t in splits))
                session = self._session(model)
            full_macs = sum(groups[g].crop_macs(*self._padded_hw(groups[g])) for g in full)
            last: dict[str, int] = {}
            for g in local:
                for name in (groups[g].input_name, *groups[g].side_inputs):
                    last[name] = g
            last.update({name: len(groups) for name in splits})
            self._tails[local] = Tail(splits, session, int(full_macs + self.graph.suffix_macs), last)
        return self._tails[local]

    @staticmethod
    def _padded_hw(group) -> tuple[int, int]:
        """``(H, W)`` of a group's main input with its padding: the crop that computes its whole output."""
        return (group.in_shape[1] + group.gy.pb + group.gy.pe, group.in_shape[2] + group.gx.pb + group.gx.pe)

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
            ys, xs, steps_y, steps_x = self._steps(self.graph, stride, tau)
            full = self._full_map_groups(steps_y, steps_x)
            tail = self._tail(full)
            groups = self.graph.groups
            local = tuple(g for g in range(len(groups)) if g not in full)
            classes = self.window_classes if tau == 1.0 else 1
            axes_y, axes_x = self._group_axes(self.graph)
            cls_y, csteps_y = self._axis_classes(ys, steps_y, axes_y, local, steps_x, classes, 1)
            cls_x, csteps_x = self._axis_classes(xs, steps_x, axes_x, local, steps_y, classes, 2)
            class_macs = np.array([[sum(groups[g].crop_macs(sy[g].crop, sx[g].crop) for g in local) + tail.macs
                                    for sx in csteps_x] for sy in csteps_y], dtype=np.int64)
            macs = sum(groups[g].crop_macs(steps_y[g].crop, steps_x[g].crop) for g in local)
            mean = Fraction(int(class_macs[cls_y][:, cls_x].sum()), len(ys) * len(xs))
            self._plans[key] = Plan(stride, float(tau), ys, xs, tuple(steps_y), tuple(steps_x),
                                    int(macs + tail.macs), self._shared_crops(local, steps_y, steps_x), local, tail,
                                    cls_y, cls_x, csteps_y, csteps_x, class_macs, mean)
        return self._plans[key]

    def _axis_classes(self, starts, steps, axes, local, other_steps, max_classes: int, dim: int
                      ) -> tuple[np.ndarray, tuple[tuple[AxisStep, ...], ...]]:
        """Window classes of one axis (:func:`~etdeploy.occlusion.geometry.window_classes`): the class of each
        start and the steps of each class. A group's weight is its MACs per output row (column) at the
        worst-case windows; groups in the tail weigh nothing (their windows are never used)."""
        if max_classes == 1 or not local:
            return np.zeros(len(starts), dtype=np.int64), (tuple(steps),)
        groups = self.graph.groups
        weights = np.zeros(len(groups))
        for g in local:
            s, o = steps[g], other_steps[g]
            crop = (s.crop, o.crop) if dim == 1 else (o.crop, s.crop)
            weights[g] = groups[g].crop_macs(*crop) / s.win
        lengths = np.stack([s.hi - s.lo for s in steps])
        cls = window_classes(lengths, weights, max_classes)
        return cls, tuple(tuple(class_steps(steps, axes, np.flatnonzero(cls == c))) for c in range(int(cls.max()) + 1))

    def _shared_crops(self, local, steps_y, steps_x) -> tuple[int, ...]:
        """:attr:`Plan.shared_crop` for these steps."""
        groups = self.graph.groups
        first: dict[tuple, int] = {}
        shared = list(range(len(groups)))
        for g in local:
            group, sy, sx = groups[g], steps_y[g], steps_x[g]
            crop_key = (self._pad_key(group), sy.crop, sx.crop, sy.crop_start.tobytes(), sx.crop_start.tobytes())
            shared[g] = first.setdefault(crop_key, g)
        return tuple(shared)

    def _class_plan(self, plan: Plan, cy: int, cx: int) -> Plan:
        """The plan of window class pair ``(cy, cx)``: ``plan`` with that pair's steps (cached)."""
        key = (plan.stride, plan.tau, cy, cx)
        if key not in self._class_plans:
            sy, sx = plan.class_steps_y[cy], plan.class_steps_x[cx]
            self._class_plans[key] = dataclasses.replace(
                plan, steps_y=sy, steps_x=sx, shared_crop=self._shared_crops(plan.local, sy, sx))
        return self._class_plans[key]

    @staticmethod
    def _pad_key(group) -> tuple:
        """Groups with equal keys read the same padded copy of the same tensor."""
        return group.input_name, float(group.pad_value), group.gy.pb, group.gy.pe, group.gx.pb, group.gx.pe

    def redundancy_ratio(self, patch: int | None = None) -> dict[str, Any]:
        """KRYPTON's redundancy ratio R (eq. 10-14) for a centred patch (conv layers' MACs only), on the local
        DAG: a merge's changed region is the bounding box of its inputs' (docs/method.md §6.1)."""
        patch = self.patch if patch is None else int(patch)
        validate_patch(*self.input_hw, patch, 1)
        return dag_redundancy_ratio(self.graph.dag_layers(), self.input_hw[0], self.input_hw[1], patch)

    # ----------------------------------------------------------------------------------------- running
    def base(self, image: np.ndarray) -> BaseActivations:
        """Run the unoccluded ``(C, H, W)`` image through every group once and cache the activations."""
        image = self._check_image(image)
        padded: list[np.ndarray] = []
        by_key: dict[tuple, np.ndarray] = {}
        values = {self.graph.local_input: image}
        for group, session in zip(self.graph.groups, self._group_sessions):
            key = self._pad_key(group)
            if key not in by_key:
                by_key[key] = np.pad(values[group.input_name],
                                     ((0, 0), (group.gy.pb, group.gy.pe), (group.gx.pb, group.gx.pe)),
                                     constant_values=np.float32(group.pad_value))
            p = by_key[key]
            padded.append(p)
            feeds = {group.input_name: p[None]}
            feeds.update({f: values[t][None] for t, f in zip(group.side_inputs, group.side_feeds)})
            x = session.run(None, feeds)[0][0]
            if x.shape != group.out_shape:
                raise OcclusionError(f"internal: group output {x.shape} differs from the expected {group.out_shape}")
            values[group.output_name] = x
        logits = self._suffix_session.run(None, {s: values[s][None] for s in self.graph.splits})[0][0]
        return BaseActivations(image, padded, values, np.asarray(logits, dtype=np.float32))

    def logits_at(self, image: np.ndarray | BaseActivations, iy: np.ndarray, ix: np.ndarray, *,
                  stride: int | None = None, tau: float = 1.0, progress: bool = False) -> np.ndarray:
        """Incremental logits for positions ``(iy[n], ix[n])`` of the grid at ``stride``: ``(n,), (n,) -> (n, K)``."""
        base = image if isinstance(image, BaseActivations) else self.base(image)
        plan = self.plan(stride, tau)
        iy = np.asarray(iy, dtype=np.int64)
        ix = np.asarray(ix, dtype=np.int64)
        out: list[np.ndarray] = []
        pending: list[dict[str, np.ndarray]] = []
        n_pending = 0
        batches = self._class_batches(plan, iy, ix)
        for index, sub in progress_bar(batches, desc="occlusion", total=len(batches), enabled=progress,
                                       unit="batch"):
            pending.append(self._run_prefix(base, sub, iy[index], ix[index]))
            n_pending += len(index)
            if n_pending >= self.suffix_batch_size:
                out.append(self._run_suffix(plan.tail, pending))
                pending, n_pending = [], 0
        if pending:
            out.append(self._run_suffix(plan.tail, pending))
        if not out:
            return np.zeros((0, max(self.num_classes, 0)), dtype=np.float32)
        logits = np.concatenate(out, axis=0)
        order = np.concatenate([index for index, _ in batches])
        if np.array_equal(order, np.arange(len(iy))):
            return logits
        restored = np.empty_like(logits)  # batches follow the classes: back to the order asked for
        restored[order] = logits
        return restored

    def _class_batches(self, plan: Plan, iy: np.ndarray, ix: np.ndarray) -> list[tuple[np.ndarray, Plan]]:
        """The positions in batches of one window class pair each: ``[(indices into iy/ix, class plan)]``. A
        class's positions are split into ``ceil(n / batch_size)`` batches of nearly equal size (not full ones and
        a small remainder), in input order within the class."""
        if len(iy) == 0:
            return []
        ky, kx = plan.n_classes
        if ky * kx == 1:
            sub = self._class_plan(plan, 0, 0)
            return [(np.arange(start, min(start + self.batch_size, len(iy))), sub)
                    for start in range(0, len(iy), self.batch_size)]
        pair = plan.classes_y[iy] * kx + plan.classes_x[ix]
        batches = []
        for c in np.unique(pair):
            members = np.flatnonzero(pair == c)
            sub = self._class_plan(plan, *divmod(int(c), kx))
            batches.extend((chunk, sub) for chunk in np.array_split(members, math.ceil(len(members) / self.batch_size)))
        return batches

    @staticmethod
    def _run_suffix(tail: Tail, activations: list[dict[str, np.ndarray]]) -> np.ndarray:
        """The plan's suffix on the spliced split tensors, batched wider than the prefix: its dense weights are
        read once per call, so a wide batch amortises them (``{split: (n, C, H, W)} -> (n, K)``)."""
        feeds = {name: (activations[0][name] if len(activations) == 1
                        else np.concatenate([a[name] for a in activations], axis=0)) for name in tail.splits}
        return tail.session.run(None, feeds)[0]

    def _paste(self, dst: np.ndarray, y0: np.ndarray, x0: np.ndarray, src, ys: np.ndarray, xs: np.ndarray) -> None:
        """Copy the changed window ``src`` into each crop ``dst[b]`` whose top-left is ``(y0[b], x0[b])`` (unpadded
        coordinates of the same tensor). ``src`` is ``(values (n, C, h, w), wy (n,), wx (n,))``, or ``None`` for
        the image: the patch at ``(ys[b], xs[b])``."""
        if src is None:
            vals, wy, wx, hy, hx = None, ys, xs, self.patch, self.patch
        else:
            vals, wy, wx = src
            hy, hx = vals.shape[2], vals.shape[3]
        cy, cx = dst.shape[2], dst.shape[3]
        for b in range(dst.shape[0]):
            ya, yb = max(wy[b], y0[b]), min(wy[b] + hy, y0[b] + cy)
            xa, xb = max(wx[b], x0[b]), min(wx[b] + hx, x0[b] + cx)
            if yb <= ya or xb <= xa:
                continue
            target = dst[b, :, ya - y0[b]:yb - y0[b], xa - x0[b]:xb - x0[b]]
            if vals is None:
                target[...] = self.patch_value
            else:
                target[...] = vals[b, :, ya - wy[b]:yb - wy[b], xa - wx[b]:xb - wx[b]]

    @staticmethod
    def _gather(source: np.ndarray, y0: np.ndarray, x0: np.ndarray, hy: int, hx: int) -> np.ndarray:
        """``(C, H, W)`` -> ``(n, C, hy, hx)`` crops with top-left corners ``(y0[b], x0[b])``."""
        view = np.lib.stride_tricks.sliding_window_view(source, (hy, hx), axis=(1, 2))
        return np.ascontiguousarray(view.transpose(1, 2, 0, 3, 4)[y0, x0])

    def _assemble(self, padded: np.ndarray, pb: tuple[int, int], y0: np.ndarray, x0: np.ndarray, hy: int, hx: int,
                  src, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``(n, C, hy, hx)`` crops of a tensor with top-left ``(y0[b], x0[b])`` (unpadded coordinates; ``padded``
        is the base tensor padded by ``pb`` before): the base values with the changed window ``src`` pasted in
        (:meth:`_paste`). When ``src`` is exactly these crops (a 1x1 branch reading its producer's window, a
        merge of full-map windows) it is returned as is: no copy."""
        if src is not None:
            vals, wy, wx = src
            if vals.shape[2:] == (hy, hx) and np.array_equal(wy, y0) and np.array_equal(wx, x0):
                return vals
        crops = self._gather(padded, y0 + pb[0], x0 + pb[1], hy, hx)
        self._paste(crops, y0, x0, src, ys, xs)
        return crops

    def _run_prefix(self, base: BaseActivations, plan: Plan, iy: np.ndarray, ix: np.ndarray) -> dict[str, np.ndarray]:
        """Propagate one batch of positions through the groups: ``(n,), (n,) -> {split: (n, C, H, W)}``."""
        ys, xs = plan.starts_y[iy], plan.starts_x[ix]
        n = len(iy)
        windows: dict[str, Any] = {self.graph.local_input: None}
        shared: dict[int, np.ndarray] = {}  # crops assembled once for several groups (Plan.shared_crop)
        last_sharer = {plan.shared_crop[g]: g for g in plan.local}
        last_use = plan.tail.last_use
        for g in plan.local:
            group, session = self.graph.groups[g], self._group_sessions[g]
            sy, sx = plan.steps_y[g], plan.steps_x[g]
            first = plan.shared_crop[g]
            crops = shared.get(first)
            if crops is None:
                pb = (group.gy.pb, group.gx.pb)
                crops = self._assemble(base.padded[g], pb, sy.crop_start[iy] - pb[0], sx.crop_start[ix] - pb[1],
                                       sy.crop, sx.crop, windows[group.input_name], ys, xs)
                if last_sharer[first] != g:
                    shared[first] = crops
            elif last_sharer[first] == g:
                del shared[first]
            feeds = {group.input_name: crops}
            wy, wx = sy.win_start[iy], sx.win_start[ix]
            for name, feed in zip(group.side_inputs, group.side_feeds):
                feeds[feed] = self._assemble(base.values[name], (0, 0), wy, wx, sy.win, sx.win, windows[name], ys, xs)
            windows[group.output_name] = (session.run(None, feeds)[0], wy, wx)
            for name in dict.fromkeys((group.input_name, *group.side_inputs)):
                if last_use.get(name) == g:
                    del windows[name]
        zeros = np.zeros(n, dtype=np.int64)
        return {name: self._assemble(base.values[name], (0, 0), zeros, zeros, *base.values[name].shape[1:],
                                     windows[name], ys, xs) for name in plan.tail.splits}

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
        self._check_run(mode, tau, r_drill, map_kind)
        started = time.perf_counter()
        plan = self.plan(self.stride, tau)
        ny, nx = plan.grid_shape
        n_pos = ny * nx
        drilled = mode == "approx" and r_drill < 1.0
        if mode == "naive":
            base_logits, logits, mask, macs = self._naive_run(image, progress)
        else:
            base = self.base(image)
            base_logits = base.logits
            target = self._target(base_logits, target_class)
            if drilled:
                logits, mask, macs = drill_down(self, base, target, tau=tau, r_drill=r_drill,
                                                stage1_stride=stage1_stride or 2 * self.stride, map_kind=map_kind,
                                                progress=progress)
                logits = logits.reshape(n_pos, -1)
            else:
                iy, ix = np.divmod(np.arange(n_pos), nx)
                logits = self.logits_at(base, iy, ix, tau=tau, progress=progress)
                macs = n_pos * plan.macs_per_position
                mask = np.ones((ny, nx), dtype=bool)
        return self._result(mode=mode, logits=logits, base_logits=base_logits,
                            target=self._target(base_logits, target_class), tau=tau, r_drill=r_drill,
                            stage1_stride=(stage1_stride or 2 * self.stride) if drilled else None, mask=mask,
                            macs=macs, started=started)
