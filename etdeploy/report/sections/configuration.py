"""Configuration index (CM-01, LM-07): code version and run date, the versions of Python and of every package
the run depends on, platform, command line, configuration and its SHA-256, seeds, thread counts, the SHA-256
of every input and of every artefact. The code version and run date come from :attr:`RunRecord.stamp` and
appear in the HTML/PDF only (``report.json`` stays byte-reproducible); everything else is in ``report.json``'s
``provenance``."""

from __future__ import annotations

import json
from typing import Any

from etdeploy.report.html import Raw, join, markup, table
from etdeploy.report.record import RunRecord, Section


def seeds(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every key of the configuration whose name contains ``seed``, as ``(dotted key, value)``."""
    out = []
    for key, value in sorted(config.items()):
        if isinstance(value, dict):
            out += seeds(value, f"{prefix}{key}.")
        elif "seed" in key:
            out.append((f"{prefix}{key}", value))
    return out


def inputs(record: RunRecord) -> list[tuple[str, str]]:
    """The run's inputs and their SHA-256: the data manifest (every image's digest), an imported model file."""
    out = []
    data = record.stages.get("data") or {}
    if data.get("manifest_sha256"):
        out.append((f"data manifest ({data.get('name', '?')}: SHA-256 of every image, its split and class)",
                    data["manifest_sha256"]))
    imported = (record.stages.get("train") or {}).get("imported") or {}
    if isinstance(imported, dict) and imported.get("sha256"):
        out.append((f"imported model file {imported.get('file', '')}", imported["sha256"]))
    return out


def section(record: RunRecord) -> Section | None:
    p = record.provenance
    stamp = record.stamp
    seed_rows = seeds(p.config) or [("seed", p.seed)]
    facts = [["code version", stamp.get("code_version", "n/a")],
             ["run date (UTC)", stamp.get("run_date", "n/a")],
             ["command", " ".join(p.command) or "(Python API)"],
             ["configuration SHA-256", p.config_sha256 or "n/a (no run configuration)"],
             ["platform", " ".join(p.platform.get(k, "?") for k in ("system", "release", "machine"))],
             ["torch threads", "n/a" if p.torch_threads is None else p.torch_threads],
             ["ONNX Runtime threads", ("1 intra-op, 1 inter-op (etdeploy.ort_session, graph optimisations off for "
                                      "parity)")],
             *[[f"seed: {k}", v] for k, v in seed_rows]]
    versions = [[k, v] for k, v in sorted(p.versions.items(), key=lambda kv: (kv[0] != "python", kv[0].lower()))]
    arts = [[k, markup("<code>{}</code>", v)] for k, v in sorted(p.artefacts.items())]
    ins = [[k, markup("<code>{}</code>", v)] for k, v in inputs(record)]
    body = join([markup("<p>What identifies this run (CM-01, LM-07). The code version and run date are shown here "
                        "and kept out of report.json, which is byte-identical for the same configuration, seed and "
                        "thread count.</p>"),
                 table(["item", "value"], facts),
                 Raw("<h3>Inputs</h3>"), table(["input", "sha256"], ins) if ins else Raw("<p>none recorded</p>"),
                 markup("<h3>Packages ({})</h3>", len(versions)), table(["package", "version"], versions),
                 markup("<h3>Artefacts ({})</h3>", len(arts)), table(["artefact", "sha256"], arts),
                 Raw("<h3>Configuration</h3>"),
                 markup("<pre style='font-size:11px;white-space:pre-wrap'>{}</pre>",
                        json.dumps(p.config, indent=2, sort_keys=True))])
    return Section("provenance", "Configuration index (provenance)", body)
