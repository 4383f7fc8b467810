"""``etdeploy export``: a saved model -> model.onnx, model.sim.onnx and export.json."""

from __future__ import annotations

import click

from etdeploy.vocab import EXPORT_MASK_MODES


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Saved (sliced) model directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--opset", type=click.IntRange(min=17), default=17, show_default=True)
@click.option("--masks", type=click.Choice(EXPORT_MASK_MODES), default="refuse", show_default=True,
              help="A model that still has pruning masks: refuse (export prune's sliced/ folder instead), keep "
                   "(export a Mul by a constant), drop (only if every mask is all ones).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def export(model_dir, out, opset, masks, force) -> None:
    """Export a saved model to OUT: model.onnx, model.sim.onnx (onnxsim) and export.json."""
    from etdeploy.export import ExportConfig, export_dir

    run = export_dir(model_dir, out, ExportConfig(opset=opset, masks=masks), force=force)
    for name, info in run.files.items():
        ops = ", ".join(f"{k} {v}" for k, v in info.op_histogram.items())
        click.echo(f"{name}: {info.bytes:,} bytes, {info.parameters:,} parameters, opset {info.opset}, "
                   f"IR {info.ir_version}, sha256 {info.sha256[:16]}...")
        click.echo(f"  ops: {ops}")
    if run.interface is not None:
        affine = "" if run.interface.input_affine is None else ", input scaling re-applied (Mul/Add)"
        click.echo(f"interface kept: input {run.input['name']!r} {run.interface.layout} {run.input['shape']}"
                   f"{affine}; output {run.output['name']!r} ({run.interface.output})")
    check = run.simplification_check
    click.echo(f"simplified vs exported: max |delta logit| {check.max_abs_logit_delta:.3g} "
               f"(tolerance {check.tolerance:g})")
    click.echo(f"export: {out}")
