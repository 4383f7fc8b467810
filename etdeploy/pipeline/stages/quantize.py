"""The quantize stage: the static int8 (QDQ) copy of the sliced export's ``model.sim.onnx``
(:func:`etdeploy.export.quantize_model`: MinMax calibration on training images, compared with fp32 on the
``[evaluate] split``), written to ``model.int8.onnx``; the summary is its :class:`~etdeploy.export.QuantizeRun`
(``int8``: the file's name in the stage folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.pipeline.context import RunContext

INT8_FILE = "model.int8.onnx"


def run_quantize_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    import dataclasses

    from etdeploy.export import SIM_FILE, quantize_model

    run = quantize_model(ctx.stage_dir("export") / "sliced" / SIM_FILE, ctx.pruned_dir() / "sliced",
                         dataset=ctx.dataset(), out=tmp / INT8_FILE, split=ctx.config.evaluate.split,
                         progress=ctx.progress)
    return dataclasses.replace(run, int8=INT8_FILE).to_dict()  # the stage folder's name, not the temporary path


def describe_quantize(s: dict[str, Any]) -> str:
    from etdeploy.export import QuantizeRun

    run = QuantizeRun.from_dict(s)
    return (f"int8 {run.bytes_int8 / 1e6:.2f} MB (fp32 {run.bytes_fp32 / 1e6:.2f} MB): {run.split} accuracy "
            f"{run.accuracy_int8:.3f} (fp32 {run.accuracy_fp32:.3f}), top-1 agreement {run.top1_agreement:.3f}")
