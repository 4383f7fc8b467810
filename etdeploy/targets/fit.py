"""Fit analysis of an ONNX model against a target profile (after ST Edge AI's ``analyze``).

What is counted (batch fixed to 1, shapes from ``onnx.shape_inference``):

- **MACC** per node: ``Conv`` = output elements x (C_in/groups x k_h x k_w); ``Gemm`` = M x N x K;
  ``MatMul`` = output elements x K. Every other op (pooling, LRN, BatchNormalization, activations,
  elementwise, reshapes) counts 0 MACC: their cost is O(output size) and they appear in the table
  with their output shape. ``Gather`` (a sliced model's feature selection after Flatten) is a copy:
  0 MACC. MAC counts miss memory traffic and data movement, so the latency below
  is a bound under stated assumptions, not a prediction.
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
- **Latency**: ``MACC / sustained_macs_per_s`` (the estimate) and ``MACC / peak_macs_per_s`` (a lower
  bound), both with the profile's ``sustained_macs_basis``.
- **Verdict** per resource with the margin: RAM against the profile's ``model_ram_bytes`` budget
  (activations + I/O, plus the weights when the target loads them into RAM), non-volatile memory (weights), ops, precision, and latency when a
  deadline is given.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from etdeploy.errors import OnnxModelError
from etdeploy.targets.profile import TargetProfile, profile_to_dict

MAC_OPS = ("Conv", "Gemm", "MatMul")
INT8_QPARAM_BYTES = 5  # fp32 scale + int8 zero point per quantised tensor


@dataclass(frozen=True)
class LayerRow:
    """One node: ``params`` counts initializer elements first consumed by this node."""

    id: int
    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    param_bytes: int
    macc: int
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class GraphAnalysis:
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [{**asdict(r), "output_shape": list(r.output_shape), "inputs": list(r.inputs)}
                       for r in self.layers]
        d["ops"] = list(self.ops)
        return d


@dataclass(frozen=True)
class ResourceCheck:
    resource: str
    need: float
    available: float
    unit: str
    status: str  # "fits" | "does not fit" | "n/a"
    detail: str

    @property
    def margin(self) -> float:
        return self.available - self.need


@dataclass(frozen=True)
class FitReport:
    target: TargetProfile
    analysis: GraphAnalysis
    latency_s: float
    latency_lower_bound_s: float
    unsupported_ops: tuple[str, ...]
    checks: tuple[ResourceCheck, ...]
    int8_checks: tuple[ResourceCheck, ...]
    model_file: dict[str, Any]

    @property
    def fits(self) -> bool:
        return all(c.status != "does not fit" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        def check(c: ResourceCheck) -> dict[str, Any]:
            return {**asdict(c), "margin": c.margin}

        return {
            "target": profile_to_dict(self.target),
            "model_file": dict(self.model_file),
            "analysis": self.analysis.to_dict(),
            "latency_s": self.latency_s,
            "latency_lower_bound_s": self.latency_lower_bound_s,
            "latency_assumptions": (f"MACC / sustained_macs_per_s ({self.target.sustained_macs_per_s:.4g}/s); "
                                    f"lower bound MACC / peak_macs_per_s; basis: {self.target.sustained_macs_basis}; "
                                    "memory traffic and non-MAC ops ignored"),
            "unsupported_ops": list(self.unsupported_ops),
            "checks": [check(c) for c in self.checks],
            "int8_checks": [check(c) for c in self.int8_checks],
            "fits": self.fits,
        }

    def text(self, *, max_rows: int = 60) -> str:
        return format_fit_report(self, max_rows=max_rows)


def _dtype_bytes(elem_type: int) -> int:
    from onnx import helper

    try:
        return int(helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError) as exc:
        raise OnnxModelError(f"unsupported tensor element type {elem_type}") from exc


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def infer_batch1(model):
    """Copy of ``model`` with every graph input's first dim set to 1, shapes inferred (strict)."""
    import onnx

    work = onnx.ModelProto()
    work.CopyFrom(model)
    init_names = {t.name for t in work.graph.initializer}
    for value in list(work.graph.input) + list(work.graph.output):
        if value.name in init_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].Clear()
            dims[0].dim_value = 1
    del work.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(work, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise OnnxModelError(f"shape inference with batch 1 failed: {exc}") from exc


def analyse_graph(model) -> GraphAnalysis:
    """Per-node MACC and parameters, weights bytes, activation liveness peak (batch 1). Pure."""
    inferred = infer_batch1(model)
    graph = inferred.graph
    nodes = list(graph.node)
    if not nodes:
        raise OnnxModelError("graph has no nodes")

    # weights: initializers and Constant outputs
    weight_shapes: dict[str, tuple[int, ...]] = {}
    weight_bytes: dict[str, int] = {}
    for t in graph.initializer:
        weight_shapes[t.name] = tuple(int(d) for d in t.dims)
        weight_bytes[t.name] = _prod(t.dims) * _dtype_bytes(t.data_type)
    for node in nodes:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.HasField("t"):
                    weight_shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
                    weight_bytes[node.output[0]] = _prod(attr.t.dims) * _dtype_bytes(attr.t.data_type)

    # activation shapes and sizes
    shapes: dict[str, tuple[int, ...]] = {}
    sizes: dict[str, int] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.name in weight_shapes:
            continue
        ttype = value.type.tensor_type
        dims = []
        for d in ttype.shape.dim:
            if not d.HasField("dim_value"):
                dims = None
                break
            dims.append(int(d.dim_value))
        if dims is None or not ttype.HasField("shape"):
            continue
        shapes[value.name] = tuple(dims)
        sizes[value.name] = _prod(dims) * _dtype_bytes(ttype.elem_type)

    graph_inputs = [v.name for v in graph.input if v.name not in weight_shapes]
    graph_outputs = [v.name for v in graph.output]
    for name in graph_inputs + graph_outputs:
        if name not in sizes:
            raise OnnxModelError(f"cannot determine the static shape of graph tensor {name!r} at batch 1")

    # Gather index tensors: stored constants (weights bytes) but not parameters
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
                params += 0 if name in index_names else _prod(weight_shapes[name])
                pbytes += weight_bytes[name]
                quantised = node.op_type in MAC_OPS and position == 1 and len(weight_shapes[name]) >= 2
                is_bias = node.op_type in MAC_OPS and position == 2
                if quantised:
                    int8_bytes += _prod(weight_shapes[name]) + INT8_QPARAM_BYTES
                elif is_bias:
                    int8_bytes += _prod(weight_shapes[name]) * 4
                else:
                    int8_bytes += weight_bytes[name]
        rows.append(LayerRow(id=index, name=node.name or f"{node.op_type}_{index}", op=node.op_type,
                             output_shape=shapes[outputs[0]] if outputs else (), params=params, param_bytes=pbytes,
                             macc=_node_macc(node, shapes, weight_shapes),
                             inputs=tuple(i for i in node.input if i and i not in weight_shapes)))
    unclaimed = [n for n in weight_shapes if n not in claimed]
    for name in unclaimed:  # weights nobody consumes (or only Constant outputs fed to nothing)
        int8_bytes += weight_bytes[name]

    peak_act, step_act = _liveness_peak(nodes, sizes, weight_shapes, graph_inputs, graph_outputs, include_io=False)
    peak_ram, step_ram = _liveness_peak(nodes, sizes, weight_shapes, graph_inputs, graph_outputs, include_io=True)
    total_macc = sum(r.macc for r in rows)
    ops = tuple(sorted({n.op_type for n in nodes}))
    return GraphAnalysis(
        layers=tuple(rows), total_macc=total_macc,
        parameters=sum(_prod(s) for n, s in weight_shapes.items() if n not in index_names),
        weights_bytes_fp32=sum(weight_bytes.values()), weights_bytes_int8=int8_bytes,
        peak_activation_bytes=peak_act, peak_activation_step=step_act, peak_ram_bytes=peak_ram,
        peak_ram_step=step_ram, input_bytes=sum(sizes[n] for n in graph_inputs),
        output_bytes=sum(sizes[n] for n in graph_outputs), ops=ops,
        index_elements=sum(_prod(weight_shapes[n]) for n in index_names))


def _attr(node, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_macc(node, shapes: dict[str, tuple[int, ...]], weights: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one node (Conv, Gemm, MatMul; 0 otherwise). Pure."""
    def shape_of(name: str) -> tuple[int, ...] | None:
        return shapes.get(name) or weights.get(name)

    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if node.op_type == "Conv":
        w = shape_of(node.input[1])
        if w is None:
            raise OnnxModelError(f"Conv node {node.name!r}: weight shape unknown")
        return _prod(out) * _prod(w[1:])
    if node.op_type == "Gemm":
        a = shape_of(node.input[0])
        if a is None or len(a) != 2:
            raise OnnxModelError(f"Gemm node {node.name!r}: input A shape unknown")
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return _prod(out) * int(k)
    if node.op_type == "MatMul":
        a = shape_of(node.input[0])
        if a is None or not a:
            raise OnnxModelError(f"MatMul node {node.name!r}: input A shape unknown")
        return _prod(out) * int(a[-1])
    return 0


def _liveness_peak(nodes, sizes: dict[str, int], weights: dict[str, Any], graph_inputs: list[str],
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


def _mb(n: float) -> str:
    if n >= 1e8:
        return f"{n / 1e6:,.0f} MB"
    return f"{n / 1e6:.3g} MB" if n >= 1e5 else f"{n / 1e3:.3g} kB"


def _check(resource: str, need: float, available: float, unit: str, what: str, of: str) -> ResourceCheck:
    if available <= 0:
        return ResourceCheck(resource, need, available, unit, "n/a", f"{what}; {of}")
    status = "fits" if need <= available else "does not fit"
    share = 100.0 * need / available
    sign = "margin" if need <= available else "short by"
    return ResourceCheck(resource, need, available, unit, status,
                         f"{what} of {_mb(available)} {of} ({share:.3g} %): {status}, "
                         f"{sign} {_mb(abs(available - need))}")


def _memory_checks(a: GraphAnalysis, t: TargetProfile, weights_bytes: int, label: str) -> list[ResourceCheck]:
    checks = []
    if t.weights_in_ram:
        need = a.peak_ram_bytes + weights_bytes
        what = f"weights {_mb(weights_bytes)} ({label}) + activations/IO {_mb(a.peak_ram_bytes)} = {_mb(need)}"
    else:
        need = a.peak_ram_bytes
        what = f"activations/IO {_mb(need)} (weights stay in flash)"
    checks.append(_check("ram", need, t.model_ram_bytes, "bytes", what,
                         f"model RAM budget ({_mb(t.ram_bytes)} physical)"))
    if t.flash_bytes > 0:
        checks.append(_check("flash", weights_bytes, t.flash_bytes, "bytes",
                             f"weights {_mb(weights_bytes)} ({label})", "non-volatile memory"))
    else:
        checks.append(ResourceCheck("flash", weights_bytes, 0, "bytes", "n/a",
                                    "no on-device model storage in the profile: a host loads the weights"))
    return checks


def fit_analysis(model, target: TargetProfile, *, deadline_s: float | None = None,
                 model_file: dict[str, Any] | None = None) -> FitReport:
    """Analyse ``model`` (a checked ``onnx.ModelProto``) against ``target``."""
    a = analyse_graph(model)
    latency = a.total_macc / target.sustained_macs_per_s
    lower = a.total_macc / target.peak_macs_per_s
    unsupported = tuple(op for op in a.ops if op != "Constant" and not target.supports_op(op))
    checks = _memory_checks(a, target, a.weights_bytes_fp32, "fp32")
    checks.append(ResourceCheck("ops", float(len(unsupported)), 0.0, "ops",
                                "fits" if not unsupported else "does not fit",
                                "all ops supported" if not unsupported else
                                f"ops not in the target's list: {', '.join(unsupported)}"))
    checks.append(ResourceCheck("precision", 0.0, 0.0, "", "fits" if target.fp32 else "does not fit",
                                "fp32 runs on the target" if target.fp32 else
                                "target has no fp32 path: convert to fp16" + (" or int8" if target.int8 else "")))
    if deadline_s is not None:
        checks.append(ResourceCheck("latency", latency, float(deadline_s), "s",
                                    "fits" if latency <= deadline_s else "does not fit",
                                    f"estimated {latency:.3g} s (bound {lower:.3g} s) vs deadline {deadline_s:g} s"))
    int8_checks = tuple(_memory_checks(a, target, a.weights_bytes_int8, "int8 estimate"))
    return FitReport(target=target, analysis=a, latency_s=latency, latency_lower_bound_s=lower,
                     unsupported_ops=unsupported, checks=tuple(checks), int8_checks=int8_checks,
                     model_file=dict(model_file or {}))


def fit_onnx_file(path: str | os.PathLike, target: TargetProfile, *, deadline_s: float | None = None) -> FitReport:
    """Load ``path`` safely (checker first), then :func:`fit_analysis`."""
    from etdeploy.fileio import sha256_file
    from etdeploy.onnx_safety import load_onnx_checked

    path = Path(path)
    model = load_onnx_checked(path)
    try:
        return fit_analysis(model, target, deadline_s=deadline_s,
                            model_file={"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    except OnnxModelError as exc:
        raise OnnxModelError(exc.message, path) from exc


def format_fit_report(report: FitReport, *, max_rows: int = 60) -> str:
    """STM32Cube.AI-style text: header, per-layer table, totals, latency, verdict lines."""
    a, t = report.analysis, report.target
    total_rom = max(a.weights_bytes_fp32, 1)
    total_macc = max(a.total_macc, 1)
    lines = [f"target: {t.id} ({t.name}; {t.cores} core(s) @ {t.clock_hz / 1e6:.4g} MHz; confidence: {t.confidence})"]
    if report.model_file:
        mf = report.model_file
        lines.append(f"model: {mf.get('name')}  {mf.get('bytes')} bytes  sha256 {str(mf.get('sha256'))[:16]}...")
    header = ("id", "op", "output shape", "params", "MACC", "% MACC", "% ROM")
    body = []
    for r in a.layers:
        body.append((str(r.id), r.op, "x".join(str(d) for d in r.output_shape), f"{r.params:,}", f"{r.macc:,}",
                     f"{100.0 * r.macc / total_macc:.2f}", f"{100.0 * r.param_bytes / total_rom:.2f}"))
    shown = body if len(body) <= max_rows else body[:max_rows]
    widths = [max(len(h), *(len(row[i]) for row in shown)) if shown else len(h) for i, h in enumerate(header)]
    fmt = " | ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*header))
    lines.append("-+-".join("-" * w for w in widths))
    lines += [fmt.format(*row) for row in shown]
    if len(body) > len(shown):
        lines.append(f"... {len(body) - len(shown)} more rows (use --json for all)")
    lines += [
        f"total: {a.total_macc:,} MACC (Conv/Gemm/MatMul only), {a.parameters:,} parameters"
        + (f" (+ {a.index_elements:,} Gather indices, in the weights bytes)" if a.index_elements else ""),
        f"weights: {_mb(a.weights_bytes_fp32)} fp32, {_mb(a.weights_bytes_int8)} int8 estimate",
        (f"activations (batch 1, liveness, no in-place reuse): peak {_mb(a.peak_activation_bytes)} without I/O, "
         f"{_mb(a.peak_ram_bytes)} with input ({_mb(a.input_bytes)}) and output ({_mb(a.output_bytes)})"),
        (f"latency estimate: {report.latency_s:.3g} s = MACC / {t.sustained_macs_per_s:.3g} MAC/s sustained "
         f"(lower bound {report.latency_lower_bound_s:.3g} s at peak); basis: {t.sustained_macs_basis}"),
        ("  (a bound: ignores memory traffic, pooling/LRN/activations and data movement; "
         "approximate figures are not exact)"),
    ]
    lines.append("verdict (fp32):")
    lines += [f"  {c.resource:<9} {c.status:<12} {c.detail}" for c in report.checks]
    lines.append(f"  (model RAM budget: {t.model_ram_basis})")
    lines.append("with int8 weights (estimate):")
    lines += [f"  {c.resource:<9} {c.status:<12} {c.detail}" for c in report.int8_checks]
    lines.append(f"overall: {'FITS' if report.fits else 'DOES NOT FIT'} on {t.id} (MB = 10^6 bytes)")
    return "\n".join(lines)
