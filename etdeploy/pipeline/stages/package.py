"""The package stage: the flight bundle of the pruned (``sliced``) export for the configured targets
(:func:`etdeploy.packaging.package_export`; docs/method.md §10), in ``bundle/``; the summary is its
``package.json`` (:class:`~etdeploy.packaging.PackageRun`).

``[package] vectors`` golden vectors (default two, which keeps the cross checks short: each vector runs under
qemu-user on every cross ISA whose toolchain is installed); ``[package] enabled = false`` turns the stage off. The ORT-format model is left out: its bytes are reproducible only where
address randomisation can be turned off (:mod:`etdeploy.packaging.ort_format`), and a run's artefacts
must be (``etdeploy package`` makes it). Without the ``package`` extra (emx-onnx-cgen) the stage records why it
made no bundle instead of failing the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext


def run_package_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from importlib.util import find_spec

    if not ctx.config.package.enabled:
        return {"skipped": "turned off in the configuration ([package] enabled = false)"}
    if find_spec("emx_onnx_cgen") is None:
        return {"skipped": "the C generator emx-onnx-cgen is not installed (pip install 'etdeploy[package]')"}
    from etdeploy.packaging import package_export

    run = package_export(ctx.stage_dir("export") / "sliced", dataset=ctx.dataset(), out=tmp / "bundle",
                         target_ids=ctx.config.targets.ids, vectors=ctx.config.package.vectors, ort_format=False)
    return run.to_dict()


def describe_package(s: dict[str, Any]) -> str:
    if "skipped" in s:
        return f"no bundle: {s['skipped']}"
    from etdeploy.packaging import PackageRun

    run = PackageRun.from_dict(s)
    checks = ", ".join(f"{k} {c.status}" for k, c in run.checks.items())
    return f"flight bundle ({run.interface.precision}, {run.vectors.count} golden vectors): {checks}"
