"""``etdeploy import``: a model trained elsewhere -> an etdeploy model directory. Two routes: an ONNX
classifier (``--onnx``), or a PyTorch model (``--arch`` factory + ``--weights`` state dict)."""

from __future__ import annotations

import click

from etdeploy.cli.options import data_options, open_data_from_options, progress_option
from etdeploy.cli.params import NUMBERS, STRINGS


def _route(onnx, arch, weights, input_size) -> str:
    """``onnx`` or ``torch``; a mixed or incomplete set of route options is a usage error."""
    if onnx is not None:
        extra = [flag for flag, value in (("--arch", arch), ("--weights", weights), ("--input-size", input_size))
                 if value is not None]
        if extra:
            raise click.UsageError(f"--onnx imports the file as it is: drop {', '.join(extra)} (the input size is the "
                                   "file's)")
        return "onnx"
    if arch is None or weights is None:
        raise click.UsageError("give --onnx FILE, or --arch and --weights")
    return "torch"


@click.command("import")
@click.option("--onnx", "onnx", type=click.Path(dir_okay=False), default=None,
              help="An ONNX image classifier (opset 11+; Keras 3 model.export(format='onnx'), tf2onnx, torch.onnx): "
                   "converted op by op, NHWC input and a final Softmax kept as the model's interface.")
@click.option("--arch", default=None,
              help="The model's factory, package.module:factory (or path/to/file.py:factory), called as "
                   "factory(num_classes, input_size=N); it returns (features, classifier) or a whole module in "
                   "torchvision's AlexNet/VGG/ResNet/MobileNet layout.")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="State dict: .safetensors, or .pt/.pth saved with torch.save(model.state_dict(), path). "
                   "Pickled objects are refused.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New model directory.")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Square input side in pixels (default per arch; 224 for a factory).")
@click.option("--mean", type=NUMBERS, default=None, help="Per-channel RGB mean on the [0, 1] scale, e.g. "
              "0.485,0.456,0.406 (with --std); for --onnx, of the ONNX file's own input.")
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
def import_model(ctx, onnx, arch, weights, out, input_size, mean, std, scale, class_names, data, grouping, recipe, cap,
                 data_seed, force, progress) -> None:
    """Import a trained ONNX classifier or PyTorch weights as an etdeploy model directory.

    The normalisation is never guessed: give --mean and --std, or --scale (for --onnx: of the file's own
    input; a Keras model with a Rescaling(1/255) layer takes raw pixels, --scale 255). With --data the
    conversion is checked on the data set's test images and the model is evaluated on every split
    (metrics.json); without it, on seeded random images.
    """
    route = _route(onnx, arch, weights, input_size)
    given = ctx.get_parameter_source("data") not in (click.core.ParameterSource.DEFAULT, None)
    dataset = open_data_from_options(data, grouping, recipe, cap, data_seed) if given else None
    if route == "onnx":
        from etdeploy.importing import import_onnx_model

        run = import_onnx_model(onnx, out, mean=mean, std=std, scale=scale, class_names=class_names, dataset=dataset,
                                force=force, progress=progress)
    else:
        from etdeploy.importing import import_torch_model

        run = import_torch_model(arch, weights, out, mean=mean, std=std, scale=scale, class_names=class_names,
                                 dataset=dataset, input_size=input_size, force=force, progress=progress)
    o = run.origin
    click.echo(f"imported {o.file} (sha256 {o.sha256[:12]}...) for {run.arch}: {run.num_classes} classes, "
               f"{run.input_size} px, {run.parameters:,} parameters, {o.normalisation.describe()}")
    if route == "onnx":
        i = run.interface
        affine = "" if i.input_affine is None else "; its input affine (Rescaling/Normalization) folded into the " \
            "normalisation"
        click.echo(f"interface: {i.layout} input {i.input_name!r}, output {i.output_name!r} ({i.output}), opset "
                   f"{i.opset}{affine}; ops: {', '.join(f'{k} {v}' for k, v in run.ops.items())}")
    layers = ", ".join(f"{name} ({width})" for name, width in run.layers.items())
    channels = "conv channels removable" if run.channels_removable else "features kept whole (no conv channel removed)"
    prefix = "" if route == "onnx" else f"layout {o.layout}; "
    click.echo(f"{prefix}ranked layers: {layers}; {channels}")
    original = "the original ONNX file on ONNX Runtime" if route == "onnx" else "the original module"
    click.echo(f"check: max |delta logit| {o.check.max_abs_logit_delta:.3g} vs {original} on {o.check.inputs} "
               f"(tolerance {o.check.tolerance:g})")
    if run.accuracy is not None:
        a = run.accuracy
        click.echo(f"accuracy train/val/test {a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")
    click.echo(f"model: {out}")
