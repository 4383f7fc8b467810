"""``etdeploy compress``: the most accurate pruned (and quantised) model that fits a target, with the front."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options, open_data_from_options, progress_option
from etdeploy.cli.params import NUMBERS, STRINGS
from etdeploy.vocab import CRITERIA, SPLITS


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained model directory.")
@click.option("--ranking", "ranking_dir", required=True, type=click.Path(),
              help="Ranking directory of that model (etdeploy rank): orders and criteria statistics.")
@click.option("--target", required=True,
              help="One target profile id (etdeploy targets list) or the path of a .toml profile.")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of target profiles (default: the profiles shipped with etdeploy).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Least accuracy on --split, as a fraction (0.8 = 80 %).")
@click.option("--max-latency", "max_latency", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Latency limit per image in seconds (the fit's MACC / sustained MAC/s estimate).")
@click.option("--criteria", type=STRINGS, default=None,
              help=f"Comma-separated schedules/criteria searched (default: bottom-first and {', '.join(CRITERIA)}, "
                   "those the ranking has statistics for).")
@click.option("--precisions", type=STRINGS, default="fp32,int8", show_default=True,
              help="Precisions searched: fp32 and/or int8 (static QDQ, measured for the finalists).")
@click.option("--percents", type=NUMBERS, default="0,50,75,90,95,98", show_default=True,
              help="Coarse grid of masking percentages per layer (every combination over the layers).")
@click.option("--layers", type=STRINGS, default=None, help="Layers masked (default: every layer the ranking covers).")
@click.option("--refine-rounds", type=click.IntRange(min=0), default=2, show_default=True,
              help="Coarse-to-fine rounds around the best fitting point (midpoints per layer).")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune the finalists with the masks held for this many epochs.")
@click.option("--max-finetune", type=click.IntRange(min=1), default=3, show_default=True,
              help="Finalists: at most this many fitting candidates on the Pareto front.")
@click.option("--split", type=click.Choice(SPLITS), default="val", show_default=True,
              help="Split the search scores candidates on (test accuracy is reported for the chosen model).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of 'random' and of fine-tuning.")
@model_data_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def compress(model_dir, ranking_dir, target, targets_dir, min_accuracy, max_latency, criteria, precisions, percents,
             layers, refine_rounds, finetune_epochs, max_finetune, split, seed, data, grouping, recipe, cap,
             data_seed, allow_other_data, out, force, progress) -> None:
    """Search masking percent per layer, criterion and precision for the most accurate model that fits TARGET.

    Writes OUT/masked, OUT/sliced, OUT/export (ONNX), OUT/parity.json, OUT/fit.json, OUT/front.csv,
    OUT/candidates.csv, OUT/front.png and OUT/compress.json (the front, the chosen model and why).
    When nothing fits: exit 2, the closest candidate named, nothing written.
    """
    from etdeploy.compress import compress_dirs
    from etdeploy.targets.text import format_bytes

    ds = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    run = compress_dirs(model_dir, ranking_dir, dataset=ds, target=target, targets_dir=targets_dir, out=out,
                        min_accuracy=min_accuracy, max_latency_s=max_latency, criteria=criteria,
                        precisions=precisions, percents=percents, layers=layers, refine_rounds=refine_rounds,
                        finetune_epochs=finetune_epochs, max_finetune=max_finetune, split=split, seed=seed,
                        force=force, progress=progress, allow_other_data=allow_other_data)
    c = run.chosen
    click.echo(f"searched {run.evaluated} points x {len(run.precisions)} precisions on {run.target.id}: "
               f"{run.costed} structures costed, {run.bounded} ruled out by the bound; front of {len(run.front)}")
    click.echo(f"chosen: {c.label}: {run.split} accuracy {c.accuracy:.4f} [{c.ci_low:.3f}, {c.ci_high:.3f}], "
               f"flash {format_bytes(c.cost.flash_bytes)}, RAM {format_bytes(c.cost.ram_bytes)}, {c.cost.macc:,} MACC, "
               f"latency {c.cost.latency_s:.3g} s")
    click.echo(f"test accuracy: unpruned {run.test.original:.4f}, chosen {run.test.chosen:.4f} ({run.test.n} images)")
    click.echo(f"why: {run.reason}")
    click.echo(f"out: {out}")
