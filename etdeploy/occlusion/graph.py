"""ONNX graph analysis for the incremental executor: load, canonicalise, split, build sub-models.

* :func:`load_onnx` reads a file (or takes a ``ModelProto``) and refuses malformed graphs.
* :func:`fold_lrn` replaces the decomposition that ``torch.onnx.export`` (opset 17) emits for
  ``nn.LocalResponseNorm`` (Mul/Unsqueeze/Pad/AveragePool[5,1,1]/Squeeze/.../Mul/Add/Pow/Div, with
  Shape/If plumbing) by one ONNX ``LRN`` node with the same maths.
* :func:`analyse` walks the chain from the graph input through the local prefix (ops of
  :data:`~etdeploy.occlusion.ops.OP_HANDLERS`) up to the first global op, groups the prefix into
  fused sessions (a window op, then pointwise ops and unpadded pools) and cuts out the suffix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import OnnxModelError, UnsupportedOpError
from etdeploy.occlusion.geometry import AxisGeom
from etdeploy.occlusion.ops import GLOBAL_OPS, OP_HANDLERS, SUPPORTED_OPS, PrefixOp
from etdeploy.onnx_graph import batch1_macs, constant_values, data_inputs, image_input

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


@dataclass
class Group:
    """A fused run of prefix ops executed as one ORT session.

    ``gy``/``gx``: composite window geometry (padding = the first op's); ``pad_value``: what the cached base
    input is padded with; ``in_shape``/``out_shape``: ``(C, H, W)`` of the full (unoccluded) tensors.
    """

    ops: list[PrefixOp]
    gy: AxisGeom
    gx: AxisGeom
    pad_value: float
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    input_name: str
    output_name: str
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
    """Result of :func:`analyse`: the prefix ops (with their output shapes), groups, and the suffix model."""

    input_name: str
    input_shape: tuple[int, int, int]
    ops: list[PrefixOp]
    op_shapes: list[tuple[int, int, int]]
    groups: list[Group]
    split_name: str
    split_shape: tuple[int, int, int]
    suffix: Any
    suffix_macs: int
    output_name: str
    num_classes: int


def analyse(model, input_hw: tuple[int, int], split_before: frozenset[int] = frozenset()) -> PrefixGraph:
    """Split an (LRN-folded) ONNX classifier into local prefix ops, fused groups and a global suffix.

    A group is a window op (Conv, padded pool) followed by pointwise ops and unpadded pools; an unpadded
    pool whose prefix-op index is in ``split_before`` starts its own group instead (fusing a pool makes
    the conv compute the pool's whole input window, which can cost more than one more session call).
    """
    graph = model.graph
    consts = constant_values(graph)
    input_name, dims = image_input(model)
    if len(dims) != 4:
        raise OnnxModelError(f"the image input must be 4-D (N, C, H, W), got {len(dims)}-D")
    if not isinstance(dims[1], int) or dims[1] <= 0:
        raise OnnxModelError("the channel axis of the image input must be static")
    shape = (int(dims[1]), int(input_hw[0]), int(input_hw[1]))
    input_shape = shape
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ops: list[PrefixOp] = []
    shapes: list[tuple[int, int, int]] = []
    cur = input_name
    graph_outputs = {o.name for o in graph.output}
    while True:
        users = [n for n in consumers.get(cur, []) if n.op_type != "Constant"]
        if not users or cur in graph_outputs:
            raise UnsupportedOpError("the model has no global op (Flatten/Gemm/GlobalAveragePool...) after its "
                                     "convolutional part; it is not a classifier this executor can split")
        if any(n.op_type in GLOBAL_OPS for n in users):
            break
        if len(users) > 1:
            names = ", ".join(f"{n.op_type} ({n.name})" for n in users)
            raise UnsupportedOpError(f"tensor {cur!r} feeds {len(users)} nodes ({names}): branching / residual "
                                     "graphs are not supported by the incremental executor")
        node = users[0]
        handler = OP_HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedOpError(f"operator {node.op_type} (node {node.name or '?'}) in the local prefix is not "
                                     f"supported by the incremental occlusion executor; supported: "
                                     f"{', '.join(SUPPORTED_OPS)}")
        op = handler.parse(node, consts, shape)
        h, w = op.gy.out_len(shape[1]), op.gx.out_len(shape[2])
        if h <= 0 or w <= 0:
            raise UnsupportedOpError(f"input {input_hw[0]}x{input_hw[1]} is too small for {node.op_type} "
                                     f"({node.name})")
        shape = (op.c_out, h, w)
        ops.append(op)
        shapes.append(shape)
        outs = [o for o in node.output if o]
        cur = outs[0]
    groups = _make_groups(ops, shapes, input_shape, input_name, consts, model, split_before)
    suffix, suffix_macs = _suffix_model(model, cur, shape)
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    num_classes = int(out_dims[-1]) if out_dims and out_dims[-1] > 0 else -1
    return PrefixGraph(input_name, input_shape, ops, shapes, groups, cur, shape, suffix, suffix_macs,
                       graph.output[0].name, num_classes)


def _make_groups(ops, shapes, input_shape, input_name, consts, model, split_before) -> list[Group]:
    groups: list[Group] = []
    in_shape, in_name = input_shape, input_name
    current: list[tuple[PrefixOp, tuple[int, int, int]]] = []

    def close():
        nonlocal in_shape, in_name
        if not current:
            return
        first = current[0][0]
        gy, gx = first.gy, first.gx
        for op, _ in current[1:]:
            gy, gx = gy.then(op.gy), gx.then(op.gx)
        out_shape = current[-1][1]
        out_name = next(o for o in current[-1][0].node.output if o)
        group = Group([op for op, _ in current], gy, gx, first.pad_value, in_shape, out_shape, in_name, out_name)
        group.model = _group_model(group, consts, model)
        groups.append(group)
        in_shape, in_name = out_shape, out_name
        current.clear()

    for index, (op, shape) in enumerate(zip(ops, shapes)):
        joins = current and not op.is_conv and not op.padded and index not in split_before
        if not joins:
            close()
        current.append((op, shape))
    close()
    return groups


def _value_info(name: str, channels: int, spatial: tuple[Any, Any]):
    import onnx

    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", channels, spatial[0], spatial[1]])


def _group_model(group: Group, consts, model):
    import onnx
    from onnx import numpy_helper

    names = sorted({n for op in group.ops for n in op.const_inputs})
    inits = [numpy_helper.from_array(np.asarray(consts[n]), n) for n in names]
    graph = onnx.helper.make_graph(
        [op.node for op in group.ops], "occlusion_group",
        [_value_info(group.input_name, group.in_shape[0], ("H", "W"))],
        [_value_info(group.output_name, group.out_shape[0], ("Ho", "Wo"))], initializer=inits)
    sub = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    return sub


def _suffix_model(model, split: str, shape: tuple[int, int, int]) -> tuple[Any, int]:
    """The global suffix as its own model (input ``split``, ``(N, *shape)``) and its MACs at batch 1."""
    import onnx

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output if o}
    inits = {t.name: t for t in graph.initializer}
    input_name, _ = image_input(model)
    needed: list[Any] = []
    seen: set[int] = set()
    init_names: set[str] = set()
    stack = [graph.output[0].name]
    while stack:
        name = stack.pop()
        if name == split or not name:
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
    sub_graph = onnx.helper.make_graph(needed, "occlusion_suffix", [_value_info(split, shape[0], shape[1:])],
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
