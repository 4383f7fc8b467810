"""ONNX graph analysis for the incremental executor: load, canonicalise, split, build sub-models.

* :func:`load_onnx` reads a file (or takes a ``ModelProto``) and refuses malformed graphs.
* :func:`fold_lrn` replaces the decomposition that ``torch.onnx.export`` (opset 17) emits for
  ``nn.LocalResponseNorm`` (Mul/Unsqueeze/Pad/AveragePool[5,1,1]/Squeeze/.../Mul/Add/Pow/Div, with
  Shape/If plumbing) by one ONNX ``LRN`` node with the same maths.
* :func:`image_layout` finds how the image enters (NCHW, or NHWC followed by a Transpose).
* :func:`analyse` walks the graph from the image through the local part (ops of
  :data:`~etdeploy.occlusion.ops.OP_HANDLERS` and merges of
  :data:`~etdeploy.occlusion.ops.MERGE_HANDLERS`: a DAG) up to the global ops, groups it into fused
  sessions (a window op or a merge, then pointwise ops and unpadded pools; a merge may close the group
  of one of its inputs) and cuts out the suffix, which reads one or more split tensors.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import OnnxModelError, UnsupportedOpError
from etdeploy.occlusion.geometry import POINTWISE, AxisGeom, DagLayer, centred_regions
from etdeploy.occlusion.ops import GLOBAL_OPS, MERGE_HANDLERS, OP_HANDLERS, SUPPORTED_OPS, PrefixOp
from etdeploy.onnx_graph import batch1_macs, constant_values, data_inputs, final_activation, image_input

_LRN_PLUMBING = frozenset({
    "Mul", "Pow", "Unsqueeze", "Squeeze", "Pad", "AveragePool", "Reshape", "Shape", "Gather", "Constant", "Concat",
    "If", "Cast", "Equal", "Slice", "ConstantOfShape", "Identity", "Expand", "Range", "Sub", "Div", "Add", "Transpose",
})


def load_onnx(source: Any):
    """``path | bytes | ModelProto -> ModelProto`` (checked)."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        model = source
        path = None
    else:
        from etdeploy.onnx_safety import load_onnx_checked

        path = Path(os.fspath(source))
        model = load_onnx_checked(path)  # size limit, external data, IR version, full checker
    if path is None:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:
            raise OnnxModelError(f"ONNX model fails onnx.checker: {exc}", path) from exc
    if len(data_inputs(model)) != 1:
        raise OnnxModelError("the occlusion executor needs a model with exactly one image input", path)
    return model


def logits_model(model) -> tuple[Any, str | None]:
    """``(model, activation)``: a classifier whose output is ``Softmax``/``LogSoftmax`` of its logits
    (:func:`etdeploy.onnx_graph.final_activation`; a deployable that keeps a user's probability output)
    is cut before that activation, so occlusion always works on logits and derives probabilities once
    (applying softmax to probabilities would distort every map). ``activation``: the op removed, or
    ``None`` (the model is returned unchanged)."""
    import onnx

    found = final_activation(model)
    if found is None:
        return model, None
    op_type, logits = found
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producers = {o: i for i, node in enumerate(graph.node) for o in node.output}
    removed, name = set(), graph.output[0].name
    while name != logits:  # the activation and the Identity/Cast nodes after it
        removed.add(producers[name])
        name = graph.node[producers[name]].input[0]
    kept = [onnx.NodeProto() for _ in range(len(graph.node) - len(removed))]
    for copy, node in zip(kept, (n for i, n in enumerate(graph.node) if i not in removed), strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(kept)
    graph.output[0].name = logits
    return out, op_type


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    value = consts.get(name)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))


def fold_lrn(model):
    """Copy of ``model`` with every decomposed LocalResponseNorm replaced by an ``LRN`` node.

    Pattern (``torch.nn.functional.local_response_norm``)::

        y = x / (k + alpha * AvgPool3d_(size,1,1)(pad_c(x*x)))^beta   ->   LRN(size, alpha, beta, bias=k)

    ONNX LRN divides the square sum by ``size`` exactly like the average pool, so ``alpha`` carries over.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    consts = constant_values(graph)
    while True:
        producers = {o: n for n in graph.node for o in n.output if o}
        consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        match = None
        for div in graph.node:
            if div.op_type != "Div" or len(div.input) != 2:
                continue
            match = _match_lrn(div, producers, consumers, consts, graph)
            if match is not None:
                break
        if match is None:
            return out
        removed, lrn = match
        ids = {id(n) for n in removed}
        position = min(i for i, n in enumerate(graph.node) if id(n) in ids)
        keep = [n for n in graph.node if id(n) not in ids]
        del graph.node[:]
        graph.node.extend(keep[:position] + [lrn] + keep[position:])


def _match_lrn(div, producers, consumers, consts, graph):
    import onnx

    x_name, den = div.input[0], div.input[1]
    pow_node = producers.get(den)
    if pow_node is None or pow_node.op_type != "Pow":
        return None
    beta = _scalar(consts, pow_node.input[1])
    add_node = producers.get(pow_node.input[0])
    if beta is None or add_node is None or add_node.op_type != "Add":
        return None
    a0, a1 = add_node.input
    bias, mul_in = (_scalar(consts, a1), a0) if _scalar(consts, a1) is not None else (_scalar(consts, a0), a1)
    mul_node = producers.get(mul_in)
    if bias is None or mul_node is None or mul_node.op_type != "Mul":
        return None
    m0, m1 = mul_node.input
    alpha, inner = (_scalar(consts, m1), m0) if _scalar(consts, m1) is not None else (_scalar(consts, m0), m1)
    if alpha is None:
        return None
    # every ancestor of `inner` back to x: the square / pad / average-pool plumbing
    chain = [div, pow_node, add_node, mul_node]
    seen: dict[int, Any] = {}
    stack = [inner]
    reached_x = False
    while stack:
        name = stack.pop()
        if name == x_name:
            reached_x = True
            continue
        node = producers.get(name)
        if node is None:
            if name in consts or not name:
                continue
            return None  # depends on another graph input
        if id(node) in seen:
            continue
        if node.op_type not in _LRN_PLUMBING:
            return None
        seen[id(node)] = node
        stack.extend(i for i in node.input if i)
    pools = [n for n in seen.values() if n.op_type == "AveragePool"]
    if not reached_x or len(pools) != 1:
        return None
    kernel = [a for a in pools[0].attribute if a.name == "kernel_shape"]
    ks = list(onnx.helper.get_attribute_value(kernel[0])) if kernel else []
    if len(ks) != 3 or ks[1:] != [1, 1] or ks[0] % 2 == 0:  # even sizes pad differently in ONNX LRN
        return None
    removed = chain + list(seen.values())
    for name in (pow_node.input[1], add_node.input[0], add_node.input[1], mul_node.input[0], mul_node.input[1]):
        node = producers.get(name)
        if node is not None and node.op_type == "Constant" and all(c in removed for c in consumers.get(name, [])):
            removed.append(node)
    removed_ids = {id(n) for n in removed}
    outputs = {o.name for o in graph.output}
    for node in removed:
        for o in node.output:
            if node is div:
                continue
            if o in outputs or any(id(c) not in removed_ids for c in consumers.get(o, [])):
                return None
    lrn = onnx.helper.make_node("LRN", [x_name], [div.output[0]], name=(div.name or "lrn") + "/LRN",
                                size=int(ks[0]), alpha=float(alpha), beta=float(beta), bias=float(bias))
    return removed, lrn


@dataclass(frozen=True)
class ImageLayout:
    """How the image enters the graph: ``input_name`` (fed by the naive reference), ``layout`` ``NCHW`` or
    ``NHWC`` (a ``Transpose`` with ``perm=[0, 3, 1, 2]`` right after the input, as Keras exports have),
    ``local_input`` = the ``(N, C, H, W)`` tensor the local part starts from, ``channels`` and the input's
    spatial dims (ints, or strings when symbolic)."""

    input_name: str
    layout: str
    local_input: str
    channels: int
    spatial: tuple[Any, Any]

    def to_model_layout(self, batch: np.ndarray) -> np.ndarray:
        """``(n, C, H, W)`` images in the layout the model's input expects."""
        return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if self.layout == "NHWC" else batch


def image_layout(model) -> ImageLayout:
    """The :class:`ImageLayout` of a classifier with one 4-D image input."""
    import onnx

    name, dims = image_input(model)
    if len(dims) != 4:
        raise OnnxModelError(f"the image input must be 4-D (N, C, H, W) or (N, H, W, C), got {len(dims)}-D")
    users = [n for n in model.graph.node if name in n.input]
    perm = None
    if len(users) == 1 and users[0].op_type == "Transpose":
        perm = [list(onnx.helper.get_attribute_value(a)) for a in users[0].attribute if a.name == "perm"]
    if perm == [[0, 3, 1, 2]]:
        layout, local, channels, spatial = "NHWC", users[0].output[0], dims[3], (dims[1], dims[2])
    else:
        layout, local, channels, spatial = "NCHW", name, dims[1], (dims[2], dims[3])
    if not isinstance(channels, int) or channels <= 0:
        raise OnnxModelError("the channel axis of the image input must be static")
    return ImageLayout(name, layout, local, int(channels), spatial)


@dataclass
class Group:
    """A fused run of local ops executed as one ORT session.

    The group's *main* input ``input_name`` goes through its ops' window geometry (``gy``/``gx``: composite,
    padding = the first op's; ``pad_value``: what the cached base input is padded with); merges inside the
    group read their other inputs (``side_inputs``, fed to the session as ``side_feeds``) aligned with the
    group's output window, so only pointwise ops follow a merge in a group. ``in_shape``/``out_shape``:
    ``(C, H, W)`` of the full (unoccluded) main input and output.
    """

    ops: list[PrefixOp]
    gy: AxisGeom
    gx: AxisGeom
    pad_value: float
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    input_name: str
    output_name: str
    side_inputs: tuple[str, ...] = ()
    side_feeds: tuple[str, ...] = ()
    model: Any = None

    def crop_macs(self, crop_h: int, crop_w: int) -> int:
        """MACs of running this group on one ``crop_h x crop_w`` crop: each op's
        :meth:`~etdeploy.occlusion.ops.PrefixOp.macs` on the (unpadded) window it computes."""
        h, w, total = crop_h, crop_w, 0
        for op in self.ops:
            h = (h - op.gy.k) // op.gy.s + 1
            w = (w - op.gx.k) // op.gx.s + 1
            total += op.macs(h, w)
        return total


@dataclass
class PrefixGraph:
    """Result of :func:`analyse`: the local ops in topological order (with their output shapes), the fused
    groups (in an order that runs every producer first), the split tensors where the global part starts and
    the suffix model that reads them."""

    layout: ImageLayout
    input_shape: tuple[int, int, int]
    ops: list[PrefixOp]
    op_shapes: list[tuple[int, int, int]]
    groups: list[Group]
    splits: tuple[str, ...]
    split_shapes: tuple[tuple[int, int, int], ...]
    suffix: Any
    suffix_macs: int
    output_name: str
    num_classes: int

    @property
    def input_name(self) -> str:
        """The graph's image input (what the naive reference feeds)."""
        return self.layout.input_name

    @property
    def local_input(self) -> str:
        return self.layout.local_input

    def dag_layers(self) -> list[DagLayer]:
        """The local ops as :class:`~etdeploy.occlusion.geometry.DagLayer` (inputs by op index, -1 = image)."""
        index = {op.output: i for i, op in enumerate(self.ops)}
        return [DagLayer(op.gy, op.gx, tuple(index.get(t, -1) for t in op.inputs), shape, op.macs_per_output,
                         op.is_conv) for op, shape in zip(self.ops, self.op_shapes)]


def _local_ops(model, consts, layout: ImageLayout, input_shape):
    """Walk the graph in (ONNX, topological) order from the image: every node reading an activation of the
    local part is a local op (:data:`OP_HANDLERS`, :data:`MERGE_HANDLERS`) or a global op (its activation
    inputs become split tensors). Returns ``(ops, shapes, splits)`` with dead branches removed."""
    shapes: dict[str, tuple[int, int, int]] = {layout.local_input: input_shape}
    ops: list[PrefixOp] = []
    splits: list[str] = []
    hw = input_shape[1:]
    for node in model.graph.node:
        if layout.layout == "NHWC" and layout.input_name in node.input:
            continue  # the input Transpose: the local part starts at its output
        local_in = [name for name in node.input if name in shapes]
        if not local_in:
            continue
        if node.op_type in GLOBAL_OPS:
            splits.extend(name for name in dict.fromkeys(local_in) if name not in splits)
            continue
        foreign = [name for name in node.input if name and name not in shapes and name not in consts]
        if foreign:
            raise UnsupportedOpError(
                f"operator {node.op_type} (node {node.name or '?'}) combines an activation of the convolutional "
                f"part with {foreign[0]!r}, which depends on the whole image (e.g. squeeze-and-excitation); "
                "the incremental occlusion executor cannot split this graph (naive mode can run it)")
        if node.op_type in MERGE_HANDLERS and (len(local_in) > 1 or node.op_type not in OP_HANDLERS):
            op = MERGE_HANDLERS[node.op_type].parse(node, consts, [shapes[name] for name in local_in])
            inputs = tuple(local_in)
            shape = (op.c_out, *shapes[local_in[0]][1:])
        else:
            handler = OP_HANDLERS.get(node.op_type)
            if handler is None:
                raise UnsupportedOpError(
                    f"operator {node.op_type} (node {node.name or '?'}) in the local part of the graph is not "
                    f"supported by the incremental occlusion executor (naive mode can run it); supported: "
                    f"{', '.join(SUPPORTED_OPS)}")
            in_shape = shapes[local_in[0]]
            op = handler.parse(node, consts, in_shape)
            inputs = (local_in[0],)
            h, w = op.gy.out_len(in_shape[1]), op.gx.out_len(in_shape[2])
            if h <= 0 or w <= 0:
                raise UnsupportedOpError(f"input {hw[0]}x{hw[1]} is too small for {node.op_type} ({node.name})")
            shape = (op.c_out, h, w)
        outs = [o for o in node.output if o]
        if len(outs) != 1:
            raise UnsupportedOpError(f"operator {node.op_type} (node {node.name or '?'}) has {len(outs)} outputs; "
                                     "the incremental occlusion executor needs one")
        ops.append(dataclasses.replace(op, inputs=inputs, output=outs[0]))
        shapes[outs[0]] = shape
    if not splits or model.graph.output[0].name in shapes:
        raise UnsupportedOpError("the model has no global op (Flatten/Gemm/GlobalAveragePool...) after its "
                                 "convolutional part; it is not a classifier this executor can split")
    # keep the ops that some split depends on
    producer = {op.output: op for op in ops}
    needed: set[str] = set()
    stack = list(splits)
    while stack:
        name = stack.pop()
        op = producer.get(name)
        if op is None or name in needed:
            continue
        needed.add(name)
        stack.extend(op.inputs)
    ops = [op for op in ops if op.output in needed]
    return ops, [shapes[op.output] for op in ops], splits, shapes


def _choose_main(op: PrefixOp, owner: dict[str, int], uses: dict[str, int], splits: set[str],
                 area: dict[str, int]) -> str | None:
    """The input of merge ``op`` whose group the merge joins: an open group's output read only here, with the
    largest changed region of a centred patch (the merge's window is the union, so the group whose window
    is largest anyway wastes least); ``None``: the merge starts its own group."""
    candidates = [t for t in dict.fromkeys(op.inputs)
                  if t in owner and uses[t] == 1 and t not in splits and op.inputs.count(t) == 1]
    if not candidates:
        return None
    return max(candidates, key=lambda t: (area.get(t, 0), -candidates.index(t)))


def _make_groups(ops, shapes, consts, model, splits, split_before, area) -> list[Group]:
    """Fuse the local ops into groups (see :func:`analyse`) and build each group's ONNX model."""
    uses: dict[str, int] = {}
    for op in ops:
        for name in op.inputs:
            uses[name] = uses.get(name, 0) + 1
    split_set = set(splits)
    members: list[list[int]] = []  # op indices per group
    mains: list[str] = []
    sides: list[list[str]] = []
    merged: list[bool] = []
    owner: dict[str, int] = {}  # open group whose current output is this tensor
    for index, op in enumerate(ops):
        if op.is_merge:
            main = _choose_main(op, owner, uses, split_set, area)
            if main is None:
                members.append([index])
                mains.append(op.inputs[0])
                sides.append(list(op.inputs[1:]))
                merged.append(True)
                g = len(members) - 1
            else:
                g = owner.pop(main)
                members[g].append(index)
                rest = list(op.inputs)
                rest.remove(main)
                sides[g].extend(rest)
                merged[g] = True
        else:
            t = op.inputs[0]
            g = owner.get(t)
            # a 1x1 stride-1 conv is pointwise in space: fusing it costs no extra MACs
            joins = (g is not None and uses[t] == 1 and t not in split_set and not op.padded
                     and (op.pointwise or (not op.is_conv and index not in split_before and not merged[g])))
            if joins:
                del owner[t]
                members[g].append(index)
            else:
                members.append([index])
                mains.append(t)
                sides.append([])
                merged.append(False)
                g = len(members) - 1
        owner[op.output] = g
    groups = []
    for idx, main, side in sorted(zip(members, mains, sides), key=lambda item: item[0][-1]):
        group_ops = [ops[i] for i in idx]
        first = group_ops[0]
        gy, gx = (first.gy, first.gx) if not first.is_merge else (POINTWISE, POINTWISE)
        for op in group_ops[1:]:
            gy, gx = gy.then(op.gy), gx.then(op.gx)
        side_inputs = tuple(dict.fromkeys(side))
        group = Group(group_ops, gy, gx, 0.0 if first.is_merge else first.pad_value, shapes[main],
                      shapes[group_ops[-1].output], main, group_ops[-1].output, side_inputs,
                      tuple(f"{name}::side" for name in side_inputs))
        group.model = _group_model(group, consts, model, shapes)
        groups.append(group)
    return groups


def analyse(model, input_hw: tuple[int, int], split_before: frozenset[int] = frozenset(),
            patch: int | None = None) -> PrefixGraph:
    """Split an (LRN-folded) ONNX classifier into local ops, fused groups and a global suffix.

    The local part is every op between the image and the first global op on each path; it may branch and
    merge (a DAG). Groups: a window op (Conv, padded pool) or a merge starts a group; a pointwise op (a 1x1
    stride-1 Conv included) or an unpadded pool joins the group of its input when that input is read by
    nothing else (an unpadded pool whose op index is in ``split_before`` starts its own group instead:
    fusing a pool makes the conv compute the pool's whole input window, which can cost more than one more
    session call); a merge joins the group of one of its inputs (the one with the largest changed region
    for a centred ``patch``, default a 1-pixel patch) and only pointwise ops may follow it there.
    """
    graph = model.graph
    consts = constant_values(graph)
    layout = image_layout(model)
    input_shape = (layout.channels, int(input_hw[0]), int(input_hw[1]))
    ops, op_shapes, splits, shapes = _local_ops(model, consts, layout, input_shape)
    prefix = PrefixGraph(layout, input_shape, ops, op_shapes, [], tuple(splits),
                         tuple(shapes[s] for s in splits), None, 0, graph.output[0].name, -1)
    regions = centred_regions(prefix.dag_layers(), input_shape[1], input_shape[2], patch or 1)
    area = {op.output: max(0, y1 - y0) * max(0, x1 - x0) for op, ((y0, y1), (x0, x1)) in zip(ops, regions)}
    prefix.groups = _make_groups(ops, shapes, consts, model, splits, split_before, area)
    prefix.suffix, prefix.suffix_macs = suffix_model(model, prefix.splits, prefix.split_shapes)
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    prefix.num_classes = int(out_dims[-1]) if out_dims and out_dims[-1] > 0 else -1
    return prefix


def _value_info(name: str, channels: int, spatial: tuple[Any, Any]):
    import onnx

    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", channels, spatial[0], spatial[1]])


def _group_model(group: Group, consts, model, shapes):
    import onnx
    from onnx import numpy_helper

    names = sorted({n for op in group.ops for n in op.const_inputs})
    inits = [numpy_helper.from_array(np.asarray(consts[n]), n) for n in names]
    feed = dict(zip(group.side_inputs, group.side_feeds))
    nodes = []
    for op in group.ops:
        node = op.node
        if op.is_merge:
            node = onnx.NodeProto()
            node.CopyFrom(op.node)
            main_seen = False
            for i, name in enumerate(node.input):
                # the main chain's tensor keeps its name (computed inside the group); every other activation
                # input is a side feed aligned with the output window
                is_chain = name == op.inputs[0] if op is group.ops[0] else name == _chain_tensor(group, op)
                if is_chain and not main_seen:
                    main_seen = True
                    continue
                if name in feed:
                    node.input[i] = feed[name]
        nodes.append(node)
    side_vis = [_value_info(f, shapes[t][0], ("Ho", "Wo")) for t, f in zip(group.side_inputs, group.side_feeds)]
    graph = onnx.helper.make_graph(
        nodes, "occlusion_group", [_value_info(group.input_name, group.in_shape[0], ("H", "W")), *side_vis],
        [_value_info(group.output_name, group.out_shape[0], ("Ho", "Wo"))], initializer=inits)
    sub = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    return sub


def _chain_tensor(group: Group, op: PrefixOp) -> str:
    """The tensor of the group's own chain that merge ``op`` (not the group's first op) reads: the output of
    the op before it in the group."""
    position = next(i for i, member in enumerate(group.ops) if member is op)
    return group.ops[position - 1].output


def suffix_model(model, splits: tuple[str, ...], shapes: tuple[tuple[int, int, int], ...]) -> tuple[Any, int]:
    """The global suffix as its own model (inputs ``splits``, ``(N, *shape)`` each) and its MACs at batch 1."""
    import onnx

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output if o}
    inits = {t.name: t for t in graph.initializer}
    input_name, _ = image_input(model)
    split_set = set(splits)
    needed: list[Any] = []
    seen: set[int] = set()
    init_names: set[str] = set()
    stack = [graph.output[0].name]
    while stack:
        name = stack.pop()
        if name in split_set or not name:
            continue
        if name == input_name:
            raise UnsupportedOpError("the global suffix reads the image input directly (a skip connection around "
                                     "the convolutional part); not supported")
        if name in inits:
            init_names.add(name)
            continue
        node = producers.get(name)
        if node is None:
            raise OnnxModelError(f"tensor {name!r} has no producer")
        if id(node) in seen:
            continue
        seen.add(id(node))
        needed.append(node)
        stack.extend(node.input)
        for attr in node.attribute:  # outer-scope names used by subgraphs
            if attr.type == onnx.AttributeProto.GRAPH:
                for sub in attr.g.node:
                    stack.extend(i for i in sub.input if i in inits or i in producers)
    order = {id(n): i for i, n in enumerate(graph.node)}
    needed.sort(key=lambda n: order[id(n)])
    out = graph.output[0]
    out_vi = onnx.helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type,
                                                ["N"] + [d.dim_value for d in out.type.tensor_type.shape.dim][1:])
    sub_graph = onnx.helper.make_graph(needed, "occlusion_suffix",
                                       [_value_info(s, shape[0], shape[1:]) for s, shape in zip(splits, shapes)],
                                       [out_vi], initializer=[inits[n] for n in sorted(init_names)])
    sub = onnx.helper.make_model(sub_graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    return sub, batch1_macs(sub)


def with_dynamic_batch(model):
    """Copy of ``model`` whose image input and first output have a symbolic batch axis ``N``."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    name, _ = image_input(out)
    for vi in list(out.graph.input) + [out.graph.output[0]]:
        if vi.name == name or vi is out.graph.output[0]:
            dims = vi.type.tensor_type.shape.dim
            if len(dims):
                dims[0].Clear()
                dims[0].dim_param = "N"
    return out
