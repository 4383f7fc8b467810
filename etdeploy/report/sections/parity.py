"""Export and parity section: ONNX files (export stage), four-way agreement (parity stage); an imported model's
exports keep its interface and its original ONNX file joins the comparison."""

from __future__ import annotations

from etdeploy.export import ExportSet, ParityRun
from etdeploy.report.html import Raw, card, join, markup, table, verdict
from etdeploy.report.record import RunRecord, Section


def _export_table(exports: ExportSet | None) -> Raw:
    rows = []
    kept = []
    for variant, e in ({} if exports is None else exports.exports).items():
        ops = ", ".join(f"{op}×{n}" for op, n in sorted(e.sim.op_histogram.items()))
        rows.append([variant, e.sim.bytes, e.sim.parameters, ops, markup("<code>{}…</code>", e.sim.sha256[:16])])
        if e.interface is not None:
            kept.append(markup("<p>{}: the original's interface is kept: input {} ({}, {}), output {} ({}).</p>",
                               variant, e.input["name"], e.interface.layout, e.input["shape"], e.output["name"],
                               e.interface.output))
    return join([table(["ONNX (simplified)", "bytes", "parameters", "ops", "sha256"], rows), *kept])


def section(record: RunRecord) -> Section | None:
    q = record.stage("parity", ParityRun)
    if q is None:
        return None
    acc_rows = [[n, q.kinds[n], q.accuracy[n], q.reference.get(n)] for n in q.names]
    pair_rows = [[f"{p.a} vs {p.b}", p.max_abs_logit_delta, p.label_disagreements,
                  verdict(p.label_disagreements == 0 and p.max_abs_logit_delta <= q.tolerance)] for p in q.pairs]
    body = join([_export_table(record.stage("export", ExportSet)),
                 markup("<p>{} {} images, tolerance {:g} (absolute, {}); ONNX Runtime CPU, graph optimisations "
                        "off, 1 thread; second opinion: onnx.reference.ReferenceEvaluator on {} images.</p>",
                        q.n, q.split, q.tolerance, q.compared_text, q.reference_images),
                 *[markup("<p>Note: {}</p>", note) for note in q.notes],
                 table(["implementation", "kind", "accuracy", "ReferenceEvaluator Δ"], acc_rows),
                 table(["pair", "max |Δ logit|", "top-1 disagreements", "verdict"], pair_rows),
                 markup("<p>Overall: {}</p>", verdict(q.passed))])
    return Section("parity", "Export and parity", body)


def cards(record: RunRecord) -> list[Raw]:
    q = record.stage("parity", ParityRun)
    if q is None:
        return []
    worst = max(p.max_abs_logit_delta for p in q.pairs)
    return [card(f"parity ({len(q.names)} implementations)", "PASS" if q.passed else "FAIL",
                 f" max |Δ| {worst:.1e}")]
