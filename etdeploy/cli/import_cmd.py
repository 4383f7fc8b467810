"""``etdeploy import``: a PyTorch model trained elsewhere -> an etdeploy model directory."""

from __future__ import annotations

import click

from etdeploy.cli.options import data_options, open_data_from_options, progress_option
from etdeploy.cli.params import NUMBERS, STRINGS


@click.command("import")
@click.option("--arch", required=True,
              help="The model's factory, package.module:factory (or path/to/file.py:factory), called as "
                   "factory(num_classes, input_size=N); it returns (features, classifier) or a whole module in "
                   "torchvision's AlexNet/VGG/ResNet/MobileNet layout.")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="State dict: .safetensors, or .pt/.pth saved with torch.save(model.state_dict(), path). "
                   "Pickled objects are refused.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New model directory.")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Square input side in pixels (default per arch; 224 for a factory).")
@click.option("--mean", type=NUMBERS, default=None, help="Per-channel RGB mean on the [0, 1] scale, e.g. "
              "0.485,0.456,0.406 (with --std).")
@click.option("--std", type=NUMBERS, default=None, help="Per-channel RGB std on the [0, 1] scale (with --mean).")
@click.option("--scale", type=float, default=None,
              help="Instead of --mean/--std: the model takes RGB values in [0, SCALE] (255: raw pixels, 1: "
                   "pixels/255), i.e. mean 0 and std 1/SCALE.")
@click.option("--class-names", type=STRINGS, default=None,
              help="Class names in the order of the model's outputs (default: the classes of --data).")
@data_options
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
@click.pass_context
def import_model(ctx, arch, weights, out, input_size, mean, std, scale, class_names, data, grouping, recipe, cap,
                 data_seed, force, progress) -> None:
    """Import trained PyTorch weights as an etdeploy model directory.

    The normalisation is never guessed: give --mean and --std, or --scale. With --data the conversion is
    checked on the data set's test images and the model is evaluated on every split (metrics.json);
    without it, on seeded random images.
    """
    from etdeploy.importing import import_torch_model

    given = ctx.get_parameter_source("data") not in (click.core.ParameterSource.DEFAULT, None)
    dataset = open_data_from_options(data, grouping, recipe, cap, data_seed) if given else None
    run = import_torch_model(arch, weights, out, mean=mean, std=std, scale=scale, class_names=class_names,
                             dataset=dataset, input_size=input_size, force=force, progress=progress)
    o = run.origin
    click.echo(f"imported {o.file} (sha256 {o.sha256[:12]}...) for {run.arch}: {run.num_classes} classes, "
               f"{run.input_size} px, {run.parameters:,} parameters, {o.normalisation.describe()}")
    layers = ", ".join(f"{name} ({width})" for name, width in run.layers.items())
    channels = "conv channels removable" if run.channels_removable else "features kept whole (no conv channel removed)"
    click.echo(f"layout {o.layout}; ranked layers: {layers}; {channels}")
    click.echo(f"check: max |delta logit| {o.check.max_abs_logit_delta:.3g} vs the original module on "
               f"{o.check.inputs} (tolerance {o.check.tolerance:g})")
    if run.accuracy is not None:
        a = run.accuracy
        click.echo(f"accuracy train/val/test {a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")
    click.echo(f"model: {out}")
