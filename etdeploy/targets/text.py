"""Text rendering of a fit report (STM32Cube.AI-style table, totals, latency, verdict lines). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etdeploy.targets.fit import FitReport

__all__ = ["format_bytes", "format_fit_report"]


def format_bytes(n: float) -> str:
    """``n`` bytes as kB / MB with 10^3 / 10^6 (3 significant digits below 100 MB)."""
    if n >= 1e8:
        return f"{n / 1e6:,.0f} MB"
    return f"{n / 1e6:.3g} MB" if n >= 1e5 else f"{n / 1e3:.3g} kB"


def format_fit_report(report: FitReport, *, max_rows: int = 60) -> str:
    """STM32Cube.AI-style text: header, per-layer table, totals, latency, verdict lines."""
    mb = format_bytes
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
        (f"weights: {mb(a.weights_bytes_fp32)} int8 as stored (a quantised model)" if a.precision == "int8" else
         f"weights: {mb(a.weights_bytes_fp32)} fp32, {mb(a.weights_bytes_int8)} int8 estimate"),
        (f"activations (batch 1, liveness, no in-place reuse): peak {mb(a.peak_activation_bytes)} without I/O, "
         f"{mb(a.peak_ram_bytes)} with input ({mb(a.input_bytes)}) and output ({mb(a.output_bytes)})"),
        (f"latency estimate: {report.latency_s:.3g} s = MACC / {t.sustained_macs_per_s:.3g} MAC/s sustained "
         f"(lower bound {report.latency_lower_bound_s:.3g} s at peak); basis: {t.sustained_macs_basis}"),
        ("  (a bound: ignores memory traffic, pooling/LRN/activations and data movement; "
         "approximate figures are not exact)"),
    ]
    lines.append(f"verdict ({'int8 model, as stored' if a.precision == 'int8' else 'fp32'}):")
    lines += [f"  {c.resource:<9} {c.status:<12} {c.detail}" for c in report.checks]
    lines.append(f"  (model RAM budget: {t.model_ram_basis})")
    lines.append("with int8 weights (as stored):" if a.precision == "int8" else "with int8 weights (estimate):")
    lines += [f"  {c.resource:<9} {c.status:<12} {c.detail}" for c in report.int8_checks]
    if report.measured:
        lines.append(f"measured in the flight bundle (C, static activations; estimate: weights "
                     f"{mb(a.weights_bytes_fp32)}, activations peak {mb(a.peak_ram_bytes)}):")
        lines += [f"  {isa:<6} ROM {mb(m['rom'])} (text {mb(m['text'])}, rodata {mb(m['rodata'])}), RAM "
                  f"{mb(m['ram'])} (bss {mb(m['bss'])}), stack {m['stack_bytes']} B ({m['status']})"
                  for isa, m in report.measured.items()]
    lines.append(f"overall: {'FITS' if report.fits else 'DOES NOT FIT'} on {t.id} (MB = 10^6 bytes)")
    return "\n".join(lines)
