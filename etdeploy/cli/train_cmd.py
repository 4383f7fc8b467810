"""``etdeploy train`` and ``etdeploy evaluate``."""

from __future__ import annotations

import json

import click

from etdeploy.cli.archive_options import archive_options
from etdeploy.cli.options import (
    data_options,
    model_data_options,
    open_data_from_options,
    progress_option,
    split_option,
)


@click.command()
@click.option("--arch", default="alexnet-mini", show_default=True,
              help="alexnet, alexnet-mini, vgg16, sequential-cnn, package.module:factory or "
                   "path/to/file.py:factory (a function returning (features, classifier) or a model).")
@data_options
@click.option("--epochs", type=click.IntRange(min=0), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weight init, batch order, augmentation.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (the paper's 1e-3).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--input-size", type=click.IntRange(min=8), default=None, help="Square input size (default per arch).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def train(arch, data, grouping, recipe, cap, data_seed, epochs, seed, lr, batch_size, input_size, out, force,
          progress) -> None:
    """Train a model from scratch (deterministic, best-on-validation) and save it to OUT."""
    from etdeploy.training import train_model

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    _, metrics = train_model(arch, ds, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size,
                             input_size=input_size, out=out, force=force, progress=progress)
    ev = metrics["evaluation"]
    click.echo(f"trained {arch} ({metrics['parameters']:,} parameters), best epoch "
               f"{metrics['training']['best_epoch']}: train/val/test accuracy "
               f"{ev['train']['accuracy']:.3f}/{ev['val']['accuracy']:.3f}/{ev['test']['accuracy']:.3f}")
    click.echo(f"model: {out}")


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Model directory.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Evaluate this ONNX export of --model with ONNX Runtime (batch inference; --workers, "
                   "--ray-address) instead of the PyTorch model.")
@model_data_options
@split_option("test")
@archive_options
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="--onnx: ORT intra-op threads per worker.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="--onnx: images per inference batch (one task per batch).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="--onnx: new folder for predictions.csv and evaluation.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@progress_option
def evaluate(model_dir, onnx_path, data, grouping, recipe, cap, data_seed, allow_other_data, split, limit,
             class_filter, workers, ray_address, threads, batch_size, out, as_json, progress) -> None:
    """Accuracy, per-class accuracy and confusion matrix of a saved model (or its ONNX export) on one split."""
    if onnx_path is None:
        given = [name for name, value in (("--limit", limit), ("--classes", class_filter), ("--ray-address",
                 ray_address), ("--out", out)) if value] + (["--workers"] if workers != 1 else [])
        if given:
            from etdeploy.errors import ConfigError

            raise ConfigError(f"{', '.join(given)} apply to --onnx only")
        from etdeploy.models import load_model
        from etdeploy.training import evaluate_model

        ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
        model = load_model(model_dir)
        result = evaluate_model(model, ds, split, progress=progress, where=model_dir,
                                allow_other_data=allow_other_data)
    else:
        from etdeploy.archive import evaluate_archive
        from etdeploy.cli.archive_options import open_archive_images
        from etdeploy.export.match import check_export_of

        match = check_export_of(onnx_path, model_dir)  # the file must be this model's export (exit 2 if not)
        images, ds, described = open_archive_images(model_dir, data, grouping, recipe, cap, data_seed,
                                                    allow_other_data, split, limit, class_filter)
        from etdeploy.models import load_model

        spec = load_model(model_dir).spec
        run = evaluate_archive(onnx_path, images, mean=match.mean, std=match.std, input_size=spec.input_size,
                               class_names=list(spec.class_names), batch_size=batch_size, workers=workers,
                               address=ray_address, threads=threads, out=out, data=described, progress=progress)
        result = {**run.to_dict(), "split": split}
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(f"{split}: accuracy {result['accuracy']:.4f} on {result['n']} images, loss {result['loss']:.4f}")
    for name, acc in zip(result["classes"], result["per_class_accuracy"]):
        click.echo(f"  {name:<20} {'n/a' if acc is None else f'{acc:.4f}'}")
    click.echo("confusion (rows: true, columns: predicted):")
    for row in result["confusion"]:
        click.echo("  " + " ".join(f"{v:>5}" for v in row))
