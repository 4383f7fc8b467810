"""Static analysis of an ONNX graph at batch 1 (after ST Edge AI's ``analyze``): per-node MACC and
parameters, weights bytes (fp32 as stored, int8 estimate), activation liveness peak. Pure.

What is counted (batch fixed to 1, shapes from ``onnx.shape_inference``, see
:func:`etdeploy.onnx_graph.infer_batch1`):

- **MACC** per node (:func:`etdeploy.onnx_graph.node_macs`): ``Conv`` = output elements x
  (C_in/groups x k_h x k_w); ``Gemm`` = M x N x K; ``MatMul`` = output elements x K. Every other op
  (pooling, LRN, BatchNormalization, activations, elementwise, reshapes) counts 0 MACC: their cost is
  O(output size) and they appear in the table with their output shape. ``Gather`` (a sliced model's
  feature selection after Flatten) is a copy: 0 MACC. MAC counts miss memory traffic and data
  movement, so a latency derived from them is a bound under stated assumptions, not a prediction.
- **Parameters** (:func:`etdeploy.onnx_graph.parameter_count`): elements of the floating-point
  initializers and Constant tensors; a row's ``params`` are those first consumed by its node.
- **Weights** (ROM): bytes of every initializer and Constant tensor, as stored (fp32). The int8
  estimate stores the rank >= 2 weight input of Conv/Gemm/MatMul as int8 (1 byte/element plus a
  per-tensor fp32 scale and int8 zero point, 5 bytes), keeps biases as int32 (4 bytes/element) and
  everything else as stored. The index tensor of a ``Gather`` is a constant the target must store
  too: it is counted in both weights figures as stored (int64: 8 bytes per index), but not in
  ``parameters``; its element count is ``index_elements``.
- **Activations** (RAM): tensor liveness over the graph's node order (ONNX requires it to be
  topological): a tensor is live from the step of its producer (graph inputs: step 0) to the step of
  its last consumer (graph outputs: the last step); at each step the live tensors are summed; the
  peak is the maximum over steps. Every tensor is assumed to have its own buffer (no in-place
  reuse, no operator scratch memory). Reported twice: ``peak_activation_bytes`` excludes the model
  input and output tensors, ``peak_ram_bytes`` includes them (ST's "RAM = activations + I/O").
- **int8 (QDQ) models** (``quantize``'s output; ``precision`` = ``int8``): sized as an int8 runtime
  executes them (:func:`fuse_qdq`). An op whose data inputs all come from ``DequantizeLinear`` and
  whose only consumer is a ``QuantizeLinear`` runs in integers: it reads the quantised tensors and
  writes the ``QuantizeLinear`` output (1 byte per element), and those Q/DQ nodes are not steps of
  their own. A ``DequantizeLinear`` of a constant is a weight (stored int8, counted as stored).
  Q/DQ nodes that remain (quantising the input, dequantising before an op that stays float, such as
  LRN) are real conversions with their real tensors. ``parameters`` counts the dequantised
  constants' elements plus the float constants that are not quantisation scales, so the int8 model
  has the fp32 model's parameter count; Q/DQ are not ops a target lacks (:mod:`.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etdeploy.errors import OnnxModelError
from etdeploy.onnx_graph import (
    MAC_OPS,
    constant_tensors,
    dtype_bytes,
    infer_batch1,
    is_float_tensor,
    node_macs,
    parameter_count,
    prod,
    static_shape,
)
from etdeploy.records import Record

__all__ = ["INT8_QPARAM_BYTES", "QDQ_OPS", "GraphAnalysis", "LayerRow", "analyse_graph", "fuse_qdq", "infer_batch1",
           "liveness_peak"]

INT8_QPARAM_BYTES = 5  # fp32 scale + int8 zero point per quantised tensor
#: The quantisation representation of a QDQ model (not compute ops of their own in an int8 runtime).
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class LayerRow(Record):
    """One node: ``params`` counts the floating-point constant elements first consumed by this node."""

    id: int
    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    param_bytes: int
    macc: int
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class GraphAnalysis(Record):
    layers: tuple[LayerRow, ...]
    total_macc: int
    parameters: int
    weights_bytes_fp32: int
    weights_bytes_int8: int
    peak_activation_bytes: int
    peak_activation_step: int
    peak_ram_bytes: int
    peak_ram_step: int
    input_bytes: int
    output_bytes: int
    ops: tuple[str, ...]
    index_elements: int = 0
    precision: str = "fp32"


def analyse_graph(model) -> GraphAnalysis:
    """Per-node MACC and parameters, weights bytes, activation liveness peak (batch 1). Pure."""
    inferred = infer_batch1(model)
    graph = inferred.graph
    nodes = list(graph.node)
    if not nodes:
        raise OnnxModelError("graph has no nodes")

    # weights: initializers and Constant outputs
    tensors = constant_tensors(graph)
    weight_shapes = {name: tuple(int(d) for d in t.dims) for name, t in tensors.items()}
    weight_bytes = {name: prod(t.dims) * dtype_bytes(t.data_type) for name, t in tensors.items()}

    # activation shapes and sizes
    shapes: dict[str, tuple[int, ...]] = {}
    sizes: dict[str, int] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.name in weight_shapes:
            continue
        shape = static_shape(value)
        if shape is None:
            continue
        shapes[value.name] = shape
        sizes[value.name] = prod(shape) * dtype_bytes(value.type.tensor_type.elem_type)

    graph_inputs = [v.name for v in graph.input if v.name not in weight_shapes]
    graph_outputs = [v.name for v in graph.output]
    for name in graph_inputs + graph_outputs:
        if name not in sizes:
            raise OnnxModelError(f"cannot determine the static shape of graph tensor {name!r} at batch 1")

    def shape_of(name: str) -> tuple[int, ...] | None:
        return shapes.get(name) or weight_shapes.get(name)

    # Gather index tensors: stored constants (weights bytes), integer, so not parameters
    index_names = {n.input[1] for n in nodes if n.op_type == "Gather" and len(n.input) > 1
                   and n.input[1] in weight_shapes}
    rows: list[LayerRow] = []
    claimed: set[str] = set()
    int8_bytes = 0
    for index, node in enumerate(nodes):
        if node.op_type == "Constant":
            continue
        outputs = [o for o in node.output if o]
        for o in outputs:
            if o not in sizes:
                raise OnnxModelError(f"cannot infer the shape of {o!r} produced by node {index} ({node.op_type})")
        params = 0
        pbytes = 0
        for position, name in enumerate(node.input):
            if name in weight_shapes and name not in claimed:
                claimed.add(name)
                params += prod(weight_shapes[name]) if is_float_tensor(tensors[name]) else 0
                pbytes += weight_bytes[name]
                quantised = node.op_type in MAC_OPS and position == 1 and len(weight_shapes[name]) >= 2
                is_bias = node.op_type in MAC_OPS and position == 2
                if quantised:
                    int8_bytes += prod(weight_shapes[name]) + INT8_QPARAM_BYTES
                elif is_bias:
                    int8_bytes += prod(weight_shapes[name]) * 4
                else:
                    int8_bytes += weight_bytes[name]
        rows.append(LayerRow(id=index, name=node.name or f"{node.op_type}_{index}", op=node.op_type,
                             output_shape=shapes[outputs[0]] if outputs else (), params=params, param_bytes=pbytes,
                             macc=node_macs(node, shape_of),
                             inputs=tuple(i for i in node.input if i and i not in weight_shapes)))
    unclaimed = [n for n in weight_shapes if n not in claimed]
    for name in unclaimed:  # weights nobody consumes (or only Constant outputs fed to nothing)
        int8_bytes += weight_bytes[name]

    precision = "int8" if any(n.op_type in QDQ_OPS for n in nodes) else "fp32"
    parameters = parameter_count(inferred)
    live_nodes, live_weights = nodes, dict(weight_shapes)
    if precision == "int8":
        live_nodes, dequantised = fuse_qdq(nodes, set(weight_shapes))
        live_weights.update(dict.fromkeys(dequantised, ()))
        scales = {n.input[i] for n in nodes if n.op_type in QDQ_OPS for i in (1, 2) if len(n.input) > i}
        parameters = sum(prod(weight_shapes[n.input[0]]) for n in nodes
                         if n.op_type == "DequantizeLinear" and n.input[0] in weight_shapes) + \
            sum(prod(weight_shapes[name]) for name, t in tensors.items()
                if is_float_tensor(t) and name not in scales and not any(
                    n.op_type == "DequantizeLinear" and n.input[0] == name for n in nodes))
    peak_act, step_act = liveness_peak(live_nodes, sizes, live_weights, graph_inputs, graph_outputs, include_io=False)
    peak_ram, step_ram = liveness_peak(live_nodes, sizes, live_weights, graph_inputs, graph_outputs, include_io=True)
    total_macc = sum(r.macc for r in rows)
    ops = tuple(sorted({n.op_type for n in nodes}))
    return GraphAnalysis(
        layers=tuple(rows), total_macc=total_macc, parameters=parameters,
        weights_bytes_fp32=sum(weight_bytes.values()), weights_bytes_int8=int8_bytes,
        peak_activation_bytes=peak_act, peak_activation_step=step_act, peak_ram_bytes=peak_ram,
        peak_ram_step=step_ram, input_bytes=sum(sizes[n] for n in graph_inputs),
        output_bytes=sum(sizes[n] for n in graph_outputs), ops=ops,
        index_elements=sum(prod(weight_shapes[n]) for n in index_names), precision=precision)


@dataclass(frozen=True)
class _Step:
    """A node as liveness sees it (``fuse_qdq`` rewrites inputs and outputs)."""

    op_type: str
    input: tuple[str, ...]
    output: tuple[str, ...]


def fuse_qdq(nodes, constants: set[str]) -> tuple[list[_Step], set[str]]:
    """The steps an int8 runtime executes for a QDQ graph (see the module docstring), and the outputs of
    ``DequantizeLinear`` nodes of constants (weights, not activations). Pure."""
    dequantised = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in constants}
    fixed = constants | dequantised
    producer = {o: n for n in nodes for o in n.output if o}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    fused: dict[int, _Step] = {}
    absorbed: set[int] = set()
    for n in nodes:
        if n.op_type in QDQ_OPS or n.op_type == "Constant" or len(n.output) != 1:
            continue
        data = [i for i in n.input if i and i not in fixed]
        sources = [producer.get(i) for i in data]
        after = consumers.get(n.output[0], [])
        if not data or any(p is None or p.op_type != "DequantizeLinear" for p in sources) \
                or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        fused[id(n)] = _Step(n.op_type, tuple(p.input[0] for p in sources), (after[0].output[0],))
        absorbed.add(id(after[0]))
    steps = []
    for n in nodes:
        if id(n) in fused:
            steps.append(fused[id(n)])
            continue
        if id(n) in absorbed or (n.op_type == "DequantizeLinear" and n.output[0] in dequantised):
            continue
        users = consumers.get(n.output[0], []) if n.output else []
        if n.op_type == "DequantizeLinear" and users and all(id(u) in fused for u in users):
            continue  # every consumer reads the quantised tensor directly
        steps.append(_Step(n.op_type, tuple(n.input), tuple(n.output)))
    return steps, dequantised


def liveness_peak(nodes, sizes: dict[str, int], weights: dict[str, Any], graph_inputs: list[str],
                  graph_outputs: list[str], *, include_io: bool) -> tuple[int, int]:
    """``(peak bytes, step)``: max over node steps of the bytes of live activation tensors. Pure."""
    last = len(nodes) - 1
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    for name in graph_inputs:
        start[name] = 0
        end[name] = 0
    for step, node in enumerate(nodes):
        for name in node.input:
            if name in start:
                end[name] = max(end[name], step)
        for name in node.output:
            if name and name not in weights:
                start[name] = step
                end[name] = step
    for name in graph_outputs:
        if name in end:
            end[name] = last
    io = set(graph_inputs) | set(graph_outputs)
    delta = [0] * (len(nodes) + 1)
    for name, s in start.items():
        if name not in sizes:
            continue
        if not include_io and name in io:
            continue
        delta[s] += sizes[name]
        delta[end[name] + 1] -= sizes[name]
    best, best_step, running = 0, 0, 0
    for step in range(len(nodes)):
        running += delta[step]
        if running > best:
            best, best_step = running, step
    return best, best_step
