"""``etdeploy quantize``: a static int8 (QDQ) copy of an ONNX model, compared with fp32 on one split."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options
from etdeploy.vocab import SPLITS


@click.command()
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False),
              help="fp32 ONNX model (e.g. an export's model.sim.onnx).")
@click.option("--model", "model_dir", required=True, type=click.Path(),
              help="Model directory of that ONNX model: input size, mean/std, class names.")
@model_data_options
@click.option("--calibration-images", type=click.IntRange(min=1), default=128, show_default=True,
              help="N training images, evenly spaced over the split, used for MinMax calibration.")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True,
              help="Split on which fp32 and int8 are compared.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="New int8 ONNX file.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def quantize(onnx_path, model_dir, data, grouping, recipe, cap, data_seed, allow_other_data, calibration_images,
             split, out_file, force, as_json) -> None:
    """Static int8 (QDQ) copy of an ONNX model, and how it compares with fp32 on one split.

    Per-channel symmetric int8 weights, uint8 activations, MinMax calibration on training images
    normalised as for inference. int8 is not expected to pass the fp32 parity tolerance: the command
    reports accuracy of both, top-1 agreement and logit deltas instead.
    """
    import json

    from etdeploy.export import quantize_model

    dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = quantize_model(onnx_path, model_dir, dataset=dataset, out=out_file, calibration_images=calibration_images,
                         split=split, force=force, allow_other_data=allow_other_data)
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"int8: {run.int8} ({run.bytes_int8:,} bytes, fp32 {run.bytes_fp32:,}; "
               f"calibrated on {run.calibration_images} training images)")
    click.echo(f"{split} ({run.n} images): accuracy fp32 {run.accuracy_fp32:.4f}, int8 "
               f"{run.accuracy_int8:.4f}; top-1 agreement {run.top1_agreement:.4f}; |delta logit| mean "
               f"{run.mean_abs_logit_delta:.3g}, max {run.max_abs_logit_delta:.3g}")
