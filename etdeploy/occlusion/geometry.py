"""Pure geometry of incremental occlusion (docs/method.md §6.1, KRYPTON eq. 8-14).

Everything here works on one spatial axis at a time (the two axes are independent) with
half-open integer ranges ``[a, b)``. A layer (or a fused group of layers) is described by an
:class:`AxisGeom`: effective kernel ``k``, stride ``s``, padding before ``pb`` and after ``pe``.

For a changed input range ``[a, b)`` the changed output range is::

    [max(0, ceil((a + pb - k + 1) / s)), min(n_out, floor((b - 1 + pb) / s) + 1))

and the input needed to compute output ``[o0, o1)`` is ``[o0*s - pb, (o1 - 1)*s - pb + k)``
(in unpadded coordinates; add ``pb`` for coordinates in the padded input).

A merge (residual ``Add``, channel ``Concat``) changes the bounding box of its inputs' changed ranges
(:func:`merge_ranges`; KRYPTON eq. 20); an empty input range (a strided op that skipped every changed
row) adds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from etdeploy.errors import OcclusionError
from etdeploy.onnx_graph import mac_count


@dataclass(frozen=True)
class AxisGeom:
    """One axis of a sliding-window op: effective kernel ``k`` (dilation folded in), stride ``s``,
    padding before ``pb`` and after ``pe``."""

    k: int
    s: int
    pb: int
    pe: int

    def out_len(self, n_in: int) -> int:
        return (n_in + self.pb + self.pe - self.k) // self.s + 1

    def then(self, other: AxisGeom) -> AxisGeom:
        """Composition ``other ∘ self`` (``other`` must not pad): one window op equivalent to both."""
        if other.pb or other.pe:
            raise ValueError("only an unpadded op can be folded into a group")
        return AxisGeom(k=self.k + (other.k - 1) * self.s, s=self.s * other.s, pb=self.pb, pe=self.pe)


POINTWISE = AxisGeom(1, 1, 0, 0)


def grid_starts(n: int, patch: int, stride: int) -> np.ndarray:
    """Top-left coordinates ``0, S, 2S, ...`` of every patch that fits: ``(n - P)//S + 1`` values."""
    validate_patch(n, n, patch, stride)
    return np.arange((n - patch) // stride + 1, dtype=np.int64) * stride


def validate_patch(h: int, w: int, patch: int, stride: int) -> None:
    if not isinstance(patch, (int, np.integer)) or patch < 1:
        raise OcclusionError(f"patch size must be a positive integer, got {patch!r}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise OcclusionError(f"stride must be a positive integer, got {stride!r}")
    if patch > min(h, w):
        raise OcclusionError(f"patch {patch} is larger than the {h}x{w} image; choose a patch <= {min(h, w)}")


def changed_output(a: np.ndarray, b: np.ndarray, g: AxisGeom, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Changed output range for changed input ranges ``[a, b)``: ``(n,), (n,) -> (n,), (n,)``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    o0 = np.maximum(0, -((-(a + g.pb - g.k + 1)) // g.s))
    o1 = np.minimum(n_out, (b - 1 + g.pb) // g.s + 1)
    return o0, np.maximum(o1, o0)


def needed_input(o0: np.ndarray, o1: np.ndarray, g: AxisGeom) -> tuple[np.ndarray, np.ndarray]:
    """Input range (unpadded coordinates) that output ``[o0, o1)`` reads: ``(n,), (n,) -> (n,), (n,)``."""
    o0 = np.asarray(o0, dtype=np.int64)
    o1 = np.asarray(o1, dtype=np.int64)
    return o0 * g.s - g.pb, (o1 - 1) * g.s - g.pb + g.k


def clip_region(o0: np.ndarray, o1: np.ndarray, n_out: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Projective-field threshold: clip ``[o0, o1)`` to at most ``ceil(tau * n_out)`` elements, centred on
    the region's centre (the patch's projection). ``tau = 1`` returns the range unchanged."""
    limit = max(1, math.ceil(tau * n_out - 1e-9))
    o0 = np.asarray(o0, dtype=np.int64)
    o1 = np.asarray(o1, dtype=np.int64)
    length = o1 - o0
    over = length > limit
    if not over.any():
        return o0, o1
    centre2 = o0 + o1  # twice the centre
    start = (centre2 - limit) // 2
    start = np.clip(start, o0, o1 - limit)
    return np.where(over, start, o0), np.where(over, start + limit, o1)


@dataclass(frozen=True)
class AxisStep:
    """Plan of one group on one axis for a set of patch starts (arrays indexed by start).

    ``changed`` = ``(lo, hi)`` changed (possibly clipped) output range; ``win_start`` / ``win`` = the
    constant-size output window actually computed (it contains ``changed``); ``crop_start`` / ``crop`` = the
    input crop in padded input coordinates (``crop = (win - 1)*s + k``).
    """

    lo: np.ndarray
    hi: np.ndarray
    win_start: np.ndarray
    win: int
    crop_start: np.ndarray
    crop: int


def merge_ranges(ranges: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of changed ranges ``[(lo, hi), ...]`` (each ``(n,)``), ignoring empty ones (``hi <= lo``);
    where every range is empty, the first one is returned."""
    lo, hi = (np.asarray(v, dtype=np.int64) for v in ranges[0])
    for a, b in ranges[1:]:
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        empty, other_empty = hi <= lo, b <= a
        lo, hi = (np.where(empty, a, np.where(other_empty, lo, np.minimum(lo, a))),
                  np.where(empty, b, np.where(other_empty, hi, np.maximum(hi, b))))
    return lo, hi


@dataclass(frozen=True)
class GroupAxis:
    """One axis of one fused group for :func:`plan_dag_axis`: the composite geometry ``geom`` applied to the
    tensor in slot ``main``, merged with the tensors in slots ``sides`` (already at the output's resolution).
    Slot 0 is the image; slot ``g + 1`` is the output of group ``g``. ``n_in``: unpadded input length."""

    geom: AxisGeom
    main: int
    sides: tuple[int, ...]
    n_in: int


def plan_dag_axis(starts: np.ndarray, patch: int, groups: list[GroupAxis], tau: float = 1.0) -> list[AxisStep]:
    """Propagate the patch ranges ``[start, start + P)`` through a DAG of groups (in topological order).

    A group's changed output range is the bounding box (:func:`merge_ranges`) of its main input's range
    mapped through ``geom`` and its side inputs' ranges, then clipped by ``tau`` (:func:`clip_region`).
    Window sizes are the maximum region length over ``starts`` so every position uses the same shapes
    (windows are shifted inward at the borders, never shrunk).
    """
    a = np.asarray(starts, dtype=np.int64)
    regions = [(a, a + patch)]
    steps: list[AxisStep] = []
    for spec in groups:
        g = spec.geom
        n_out = g.out_len(spec.n_in)
        lo, hi = changed_output(*regions[spec.main], g, n_out)
        if spec.sides:
            lo, hi = merge_ranges([(lo, hi)] + [regions[s] for s in spec.sides])
        lo, hi = clip_region(lo, hi, n_out, tau)
        win = int(max(1, int((hi - lo).max()) if len(lo) else 1))
        win = min(win, n_out)
        win_start = np.minimum(lo, n_out - win)
        crop = (win - 1) * g.s + g.k
        steps.append(AxisStep(lo=lo, hi=hi, win_start=win_start, win=win, crop_start=win_start * g.s, crop=crop))
        regions.append((lo, hi))
    return steps


def window_classes(lengths: np.ndarray, weights: np.ndarray, max_classes: int) -> np.ndarray:
    """Alignment classes of the patch starts on one axis (docs/method.md §6.1): ``(G, n)`` changed-region
    lengths of each group at each start and ``(G,)`` cost of one more output row (column) of each group ->
    ``(n,)`` class of each start, numbered ``0, 1, ...`` in order of first start.

    A region's length depends on the start's alignment modulo the strides before the group (and on the
    clipping at the image borders), so starts with equal lengths at every group form one class, whose windows
    are exactly as long as its regions. Then, while there are more than ``max_classes``, the two classes whose
    merge (windows: elementwise maximum) adds the least weighted cost ``members x sum(weights x window)`` are
    merged: each class is one more batch shape (and a partly filled batch) for every group.
    """
    if max_classes < 1:
        raise OcclusionError(f"the number of window classes must be >= 1, got {max_classes}")
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    if lengths.shape[1] == 0:
        return np.zeros(0, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    signatures, inverse = np.unique(lengths.T, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    wins = signatures.astype(np.float64)  # (k, G) window per class
    counts = np.bincount(inverse, minlength=len(signatures)).astype(np.float64)
    label = np.arange(len(signatures))  # class of each signature
    alive = list(range(len(signatures)))
    while len(alive) > max_classes:
        w, c = wins[alive], counts[alive]
        own = c * (w @ weights)
        merged = np.maximum(w[:, None, :], w[None, :, :]) @ weights * (c[:, None] + c[None, :])
        extra = merged - own[:, None] - own[None, :]
        extra[np.tril_indices(len(alive))] = np.inf
        a, b = np.unravel_index(int(np.argmin(extra)), extra.shape)
        keep, gone = alive[a], alive[b]
        wins[keep] = np.maximum(wins[keep], wins[gone])
        counts[keep] += counts[gone]
        label[label == gone] = keep
        alive.remove(gone)
    per_start = label[inverse].tolist()
    number = {cls: i for i, cls in enumerate(dict.fromkeys(per_start))}
    return np.array([number[c] for c in per_start], dtype=np.int64)


def class_steps(steps: list[AxisStep] | tuple[AxisStep, ...], groups: list[GroupAxis], members: np.ndarray
                ) -> list[AxisStep]:
    """``steps`` (of :func:`plan_dag_axis`) with every window sized for the starts ``members`` (indices) only:
    the longest changed region among them (at least 1), shifted inward at the border as there."""
    out = []
    for step, spec in zip(steps, groups):
        g = spec.geom
        n_out = g.out_len(spec.n_in)
        length = (step.hi - step.lo)[members]
        win = min(n_out, max(1, int(length.max()) if len(length) else 1))
        win_start = np.minimum(step.lo, n_out - win)
        out.append(AxisStep(lo=step.lo, hi=step.hi, win_start=win_start, win=win, crop_start=win_start * g.s,
                            crop=(win - 1) * g.s + g.k))
    return out


def plan_axis(starts: np.ndarray, patch: int, geoms: list[AxisGeom], n_ins: list[int], tau: float = 1.0,
              ) -> list[AxisStep]:
    """:func:`plan_dag_axis` for a chain: group ``i`` reads the output of group ``i - 1`` (``n_ins[i]`` is its
    unpadded input length)."""
    return plan_dag_axis(starts, patch, [GroupAxis(g, i, (), n) for i, (g, n) in enumerate(zip(geoms, n_ins))], tau)


@dataclass(frozen=True)
class DagLayer:
    """One op of a local DAG for :func:`dag_redundancy_ratio`: geometry, inputs (``-1`` = the image, ``i`` =
    the output of layer ``i``), output size ``(C, H, W)`` and MACs per output element (conv only)."""

    gy: AxisGeom
    gx: AxisGeom
    inputs: tuple[int, ...]
    out_shape: tuple[int, int, int]
    macs_per_output: int = 0
    is_conv: bool = False


def centred_regions(layers: list[DagLayer], h: int, w: int, patch: int
                    ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Changed ``((y0, y1), (x0, x1))`` of every layer's output for a patch centred in an ``h x w`` image."""
    y0, x0 = (h - patch) // 2, (w - patch) // 2
    image = ((np.array([y0]), np.array([y0 + patch])), (np.array([x0]), np.array([x0 + patch])))
    regions: list[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = []
    for layer in layers:
        ins = [image if i < 0 else regions[i] for i in layer.inputs]
        ry = merge_ranges([changed_output(*r[0], layer.gy, layer.out_shape[1]) for r in ins])
        rx = merge_ranges([changed_output(*r[1], layer.gx, layer.out_shape[2]) for r in ins])
        regions.append((ry, rx))
    return [((int(ry[0][0]), int(ry[1][0])), (int(rx[0][0]), int(rx[1][0]))) for ry, rx in regions]


def dag_redundancy_ratio(layers: list[DagLayer], h: int, w: int, patch: int) -> dict:
    """KRYPTON's redundancy ratio for a patch centred in an ``h x w`` image, on a DAG of layers.

    ``R = sum_l Q_l / sum_l Q_inc,l`` over the conv layers, ``Q_l = MACs per output x C_out x H_out x W_out``
    and ``Q_inc,l`` the same over the changed region (pools and merges grow the region but count 0 MACs).
    Returns ``{"R", "Q", "Q_inc", "per_layer"}``.
    """
    q_total = 0
    q_inc = 0
    per_layer = []
    for layer, ((ya, yb), (xa, xb)) in zip(layers, centred_regions(layers, h, w, patch)):
        if not layer.is_conv:
            continue
        c_out, ho, wo = layer.out_shape
        hp, wp = max(0, yb - ya), max(0, xb - xa)
        q = mac_count((c_out, ho, wo), layer.macs_per_output)
        qi = mac_count((c_out, hp, wp), layer.macs_per_output)
        q_total += q
        q_inc += qi
        per_layer.append({"out": [ho, wo], "changed": [hp, wp], "Q": q, "Q_inc": qi})
    return {"R": (q_total / q_inc) if q_inc else math.inf, "Q": q_total, "Q_inc": q_inc, "per_layer": per_layer}


def redundancy_ratio(layers: list[tuple[AxisGeom, AxisGeom, int, int, int]], h: int, w: int, patch: int) -> dict:
    """KRYPTON eq. 10-14 for a patch centred in an ``h x w`` image, on a chain of layers.

    ``layers`` = every spatial layer of the prefix in order as ``(gy, gx, macs_per_output, c_out, is_conv)``
    (pools carry MACs 0 but still grow the region). Returns ``{"R", "Q", "Q_inc", "per_layer"}``
    (:func:`dag_redundancy_ratio`).
    """
    dag: list[DagLayer] = []
    hh, ww = h, w
    for i, (gy, gx, macs, c_out, is_conv) in enumerate(layers):
        hh, ww = gy.out_len(hh), gx.out_len(ww)
        dag.append(DagLayer(gy, gx, (i - 1,), (int(c_out), hh, ww), int(macs), bool(is_conv)))
    return dag_redundancy_ratio(dag, h, w, patch)
