"""``etdeploy prune`` (mask, fine-tune, slice a saved model) and ``etdeploy params`` (paper Table 3)."""

from __future__ import annotations

import json

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option
from etdeploy.cli.params import NUMBERS, STRINGS, schedule_help
from etdeploy.vocab import CRITERIA


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained model directory.")
@click.option("--ranking", "ranking_dir", required=True, type=click.Path(), help="Ranking directory of that model.")
@click.option("--schedule", default="bottom-first", show_default=True,
              help=f"{schedule_help()}; or an importance criterion: {', '.join(CRITERIA)}.")
@click.option("--percent", type=float, required=True, help="Masking percentage per layer, in [0, 100).")
@click.option("--layers", type=STRINGS, default=None,
              help="Comma-separated layers to mask (default: every layer the ranking covers).")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune with the masks held for this many epochs (best-on-validation).")
@click.option("--lr", type=float, default=1e-3, show_default=True,
              help="Adam learning rate for fine-tuning (the training default, as docs/method.md §3 asks).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of 'random' and of fine-tuning.")
@model_data_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def prune(model_dir, ranking_dir, schedule, percent, layers, finetune_epochs, lr, batch_size, seed, data, grouping,
          recipe, cap, data_seed, allow_other_data, out, force, progress) -> None:
    """Mask, optionally fine-tune, slice and save a pruned model.

    Writes OUT/sliced (smaller model), OUT/masked (masked checkpoint), OUT/record.json (replayable),
    OUT/params.json and OUT/prune.json (test accuracy before/after, parity of sliced vs masked).
    """
    from etdeploy.pruning import prune_dirs

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = prune_dirs(model_dir, ranking_dir, dataset=ds, schedule=schedule, percent=percent, out=out, layers=layers,
                     finetune_epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed, force=force,
                     progress=progress, allow_other_data=allow_other_data)
    acc = run.test_accuracy
    click.echo(f"{schedule} {percent:g} %: kept {run.kept_text()}")
    line = f"test accuracy: original {acc.original.accuracy:.4f}, masked {acc.masked.accuracy:.4f}"
    if acc.finetuned is not None:
        line += f", fine-tuned {acc.finetuned.accuracy:.4f}"
    click.echo(line)
    p = run.parameters
    click.echo(f"parameters: {p.original:,} -> {p.sliced:,} (cut {p.cut:,}, {p.percent_cut:.2f} %); "
               f"sliced vs masked max |logit diff| {run.parity.max_abs_logit_diff:.2e}")
    click.echo(f"out: {out}")


@click.command()
@click.option("--arch", default="alexnet", show_default=True)
@click.option("--num-classes", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--input-size", type=click.IntRange(min=8), default=None, help="Square input size (default per arch).")
@click.option("--percent", "percents", type=NUMBERS, default="50,55,60,65,70,75,80,85,90,95", show_default=True,
              help="Comma-separated masking percentages.")
@click.option("--layers", type=STRINGS, default=None, help="Layers masked (default: all ranked layers).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def params(arch, num_classes, input_size, percents, layers, as_json) -> None:
    """Parameters cut by masking q % of each dense layer (paper Table 3; dense parameters only)."""
    from etdeploy.pruning.params import params_table

    rows = params_table(arch, num_classes, percents, input_size=input_size, layers=layers)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    total = rows[0]["total"]
    click.echo(f"{arch}, {num_classes} classes, {total:,} parameters; dense parameters only "
               "(conv channel removal not counted)")
    names = list(rows[0]["kept"])
    click.echo(f"{'masking %':>9} {'parameters cut':>15} {'% of total':>10}  kept ({'/'.join(names)})")
    for r in rows:
        kept = "/".join(str(r["kept"][n]) for n in names)
        click.echo(f"{r['percent']:>9g} {r['params_cut']:>15,} {r['percent_of_total']:>10.1f}  {kept}")
