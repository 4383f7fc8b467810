"""Flight bundle section (package stage): parity of the generated C per instruction set, measured sizes and
stack, the ORT-format check, and the SHA-256 of every bundle file."""

from __future__ import annotations

from etdeploy.packaging import PackageRun
from etdeploy.report.html import Raw, card, join, markup, table, verdict
from etdeploy.report.record import RunRecord, Section


def _run(record: RunRecord) -> PackageRun | None:
    data = record.stages.get("package")
    if data is None or "skipped" in data:
        return None
    return record.stage("package", PackageRun)


def section(record: RunRecord) -> Section | None:
    data = record.stages.get("package")
    if data is None:
        return None
    if "skipped" in data:
        return Section("package", "Flight bundle", markup("<p>No bundle: {}</p>", data["skipped"]))
    run = _run(record)
    i = run.interface
    rows = []
    for key, c in run.checks.items():
        if c.sizes is None:
            rows.append([key, c.title, c.status, c.detail, "", "", "", "", ""])
            continue
        rows.append([key, c.title, verdict(c.status == "passed", "passed", c.status),
                     f"{c.max_abs_logit_delta:.3g} ({c.max_ulp} ULP)", f"{c.vectors - c.label_mismatches}/{c.vectors}",
                     c.sizes.text, c.sizes.rodata, c.sizes.bss, c.stack_bytes])
    parts = [markup("<p>C99 from {} {} (entry point <code>{}</code>; const weights, {} static activation buffers, "
                    "no heap) of the sliced model ({}, input {} {} {}), checked on {} golden {} images against "
                    "ONNX Runtime (tolerance {:g} on logits, same labels).</p>",
                    run.generator["name"], run.generator["version"], run.generator["prototype"],
                    run.generator["static_activation_buffers"], i.precision, i.input_name, i.layout,
                    list(i.input_shape), run.vectors.count, run.vectors.split, run.vectors.tolerance),
             table(["ISA", "compiled for", "check", "max |Δ logit|", "labels equal", "text B", "rodata B", "bss B",
                    "stack B"], rows)]
    if run.ort is not None:
        parts.append(markup("<p>ORT format (ONNX Runtime {}): {} golden vectors, max |Δ logit| {:.3g}, {}; minimal "
                            "build operators: {}.</p>", run.ort.onnxruntime, run.ort.vectors,
                            run.ort.max_abs_logit_delta, run.ort.status, "; ".join(run.ort.operators)))
    parts.append(table(["bundle file", "sha256"], [[name, markup("<code>{}</code>", digest)]
                                                   for name, digest in sorted(run.files.items())]))
    return Section("package", "Flight bundle", join(parts))


def cards(record: RunRecord) -> list[Raw]:
    run = _run(record)
    if run is None:
        return []
    ran = [c for c in run.checks.values() if c.status != "not run"]
    return [card("flight bundle C checks", f"{len(run.passed)}/{len(ran)}", " ISAs pass")]
