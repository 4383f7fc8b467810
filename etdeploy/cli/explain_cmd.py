"""``etdeploy explain``: occlusion maps of images on an ONNX model (naive, exact incremental, approximate).

Two forms: ``--image FILE`` (a few images, :func:`etdeploy.occlusion.explain_images`) and ``--data
bundled|PATH --split test`` (a whole split, resumable, in this process or on Ray:
:func:`etdeploy.archive.explain_archive`).
"""

from __future__ import annotations

from pathlib import Path

import click

from etdeploy.cli.archive_options import archive_options
from etdeploy.cli.options import model_data_options, progress_option, split_option
from etdeploy.vocab import MAP_KINDS, OCCLUSION_MODES


def _floats3(ctx, param, value):
    if value is None:
        return None
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three comma-separated numbers, e.g. 0.45,0.43,0.40") from None
    if len(parts) != 3:
        raise click.BadParameter("expected three comma-separated numbers, e.g. 0.45,0.43,0.40")
    return parts


@click.command()
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False), help="ONNX classifier.")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="Image (JPEG/PNG); repeat for several. Or give --data to explain a whole split.")
@model_data_options
@split_option("test", help="--data: the split to explain.")
@archive_options
@click.option("--patch", type=click.IntRange(min=1), default=16, show_default=True, help="Patch size P (pixels).")
@click.option("--stride", type=int, default=4, show_default=True, help="Stride S (pixels).")
@click.option("--mode", type=click.Choice(OCCLUSION_MODES), default="exact", show_default=True)
@click.option("--target-ssim", type=float, default=0.9, show_default=True,
              help="approx: SSIM the tuner must reach on the tuning images.")
@click.option("--tau", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
              help="approx: projective-field threshold (skips tuning together with --r-drill).")
@click.option("--r-drill", type=click.FloatRange(min=0, max=1), default=None,
              help="approx: fraction of positions recomputed in stage 2 (0: stage 1 alone, interpolated).")
@click.option("--ssim-margin", type=click.FloatRange(min=0, max=1, max_open=True), default=0.05, show_default=True,
              help="approx: the tuner asks the tuning maps for --target-ssim plus this margin (headroom for "
                   "images it did not see).")
@click.option("--stage1-stride", type=click.IntRange(min=2), default=None, help="approx: stage-1 stride (2 x S).")
@click.option("--tune-image", "tune_images", multiple=True, type=click.Path(dir_okay=False),
              help="approx: tuning image(s) (default: the first two --image).")
@click.option("--min-tune-maps", type=click.IntRange(min=1), default=1, show_default=True,
              help="approx: refuse (exit 2) to tune on fewer usable (non-flat) maps. Tuning on a single map, "
                   "which guards no other image, prints a WARNING on stderr and is recorded in summary.json.")
@click.option("--class", "classes", multiple=True, type=click.IntRange(min=0),
              help="Class index to explain; repeat for several (default: the predicted class).")
@click.option("--map-kind", type=click.Choice(MAP_KINDS), default="prob",
              show_default=True, help="Map value: class probability, its drop, logit or log-probability.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model directory whose export --onnx is (checked): mean/std and class names (else give --mean "
                   "and --std).")
@click.option("--mean", callback=_floats3, default=None, help="Per-channel mean on [0, 1], e.g. 0.45,0.43,0.40.")
@click.option("--std", callback=_floats3, default=None, help="Per-channel std on [0, 1].")
@click.option("--patch-value", type=float, default=0.0, show_default=True,
              help="Patch colour in normalised space (0 = the data set mean).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ORT intra-op threads (per worker with --data). [default: 2 with --image, 1 with --data]")
@click.option("--check-ssim", is_flag=True, help="approx: also compute exact maps and report each map's SSIM.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory (--image).")
@click.option("--resume", is_flag=True, help="--data: continue OUT, keeping the images whose files verify.")
@progress_option
def explain(onnx_path, images, data, grouping, recipe, cap, data_seed, allow_other_data, split, limit, class_filter,
            workers, ray_address, patch, stride, mode, target_ssim, tau, r_drill, ssim_margin, stage1_stride,
            tune_images, min_tune_maps, classes, map_kind, model_dir, mean, std, patch_value, batch_size, threads,
            check_ssim, out, force, resume, progress) -> None:
    """Occlusion maps (.npy + PNG overlay per image and class) in OUT.

    With --image: summary.json and timing.json. With --data: a whole split (--limit, --classes), in this
    process (--workers 1) or on Ray (--workers N, --ray-address), with index.csv, archive.json and --resume.
    """
    import time

    from etdeploy.errors import ConfigError
    from etdeploy.occlusion import ExplainInput, explain_images

    archive = data is not None
    if archive and images:
        raise ConfigError("give --image FILE(s) or --data (a whole split), not both")
    if not archive and not images:
        raise ConfigError("give --image FILE (repeat for several) or --data bundled|PATH to explain a split")
    if not archive:
        given = [name for name, value in (("--limit", limit), ("--classes", class_filter), ("--ray-address",
                 ray_address), ("--resume", resume)) if value] + (["--workers"] if workers != 1 else [])
        if given:
            raise ConfigError(f"{', '.join(given)} apply to --data only")
    elif tune_images or check_ssim or force:
        raise ConfigError("--tune-image, --check-ssim and --force apply to --image only (with --data, approx mode "
                          "tunes on the first two images; use a new --out or --resume)")
    class_names = None
    input_size = None
    if model_dir is not None:
        from etdeploy.export.match import check_export_of
        from etdeploy.models import load_model

        spec = load_model(model_dir).spec
        match = check_export_of(onnx_path, model_dir)  # the file must be this model's export (exit 2 if not)
        mean = mean or match.mean  # the ONNX input's normalisation (an imported model's export keeps the original's)
        std = std or match.std
        class_names = list(spec.class_names)
        input_size = spec.input_size
    if mean is None or std is None:
        raise ConfigError("give --model DIR (for mean/std and class names) or both --mean and --std")
    if mode != "approx" and (tau is not None or r_drill is not None or stage1_stride is not None or tune_images
                             or check_ssim):
        raise ConfigError("--tau, --r-drill, --stage1-stride, --tune-image and --check-ssim apply to "
                          "--mode approx only")

    started = time.perf_counter()
    if archive:
        _explain_archive(onnx_path, model_dir, data, grouping, recipe, cap, data_seed, allow_other_data, split,
                         limit, class_filter, workers, ray_address, mean=mean, std=std, out=out,
                         class_names=class_names, input_size=input_size, patch=patch, stride=stride, mode=mode,
                         map_kind=map_kind, classes=classes, target_ssim=target_ssim, ssim_margin=ssim_margin,
                         tau=tau, r_drill=r_drill, stage1_stride=stage1_stride, min_tuning_maps=min_tune_maps,
                         patch_value=patch_value, batch_size=batch_size, threads=threads or 1, resume=resume,
                         progress=progress)
        click.echo(f"maps: {out} ({time.perf_counter() - started:.1f} s)")
        return
    threads = threads or 2
    run = explain_images(
        onnx_path, [ExplainInput.from_file(p) for p in images], mean=mean, std=std, out=out, class_names=class_names,
        input_size=input_size, patch=patch, stride=stride, mode=mode, map_kind=map_kind, classes=classes,
        target_ssim=target_ssim, ssim_margin=ssim_margin, tau=tau, r_drill=r_drill, stage1_stride=stage1_stride,
        tune_images=[ExplainInput.from_file(p) for p in tune_images] or None, check_ssim=check_ssim,
        patch_value=patch_value, batch_size=batch_size, threads=threads, force=force, progress=progress,
        min_tuning_maps=min_tune_maps)

    t = run.tuning
    if t is not None:
        flat = f"; {len(t.flat_images)} flat map(s) left out" if t.flat_images else ""
        click.echo(f"tuned: tau={t.tau} r_drill={t.r_drill} stage1_stride={t.stage1_stride} min SSIM "
                   f"{t.min_ssim:.3f} (asked {t.required_ssim:.2f}) on {len(t.used_images)} '{t.map_kind}' map(s), "
                   f"modelled speedup {t.modelled_speedup:.1f}x{flat}")
        if t.fallback:
            click.echo(f"note: {t.fallback}", err=True)
        if t.warning:
            click.echo(f"WARNING: {t.warning}", err=True)
    for image in run.images:
        speedup = f", modelled speedup {image.modelled_speedup:.1f}x" if image.modelled_speedup else ""
        click.echo(f"{image.file}: predicted {run.classes[image.predicted]} ({image.probability:.3f}); "
                   f"{len(image.maps)} map(s) {image.map_shape[0]}x{image.map_shape[1]}{speedup}")
    click.echo(f"maps: {out} ({time.perf_counter() - started:.1f} s)")


def _explain_archive(onnx_path, model_dir, data, grouping, recipe, cap, data_seed, allow_other_data, split, limit,
                     class_filter, workers, ray_address, **options) -> None:
    from etdeploy.archive import explain_archive
    from etdeploy.cli.archive_options import open_archive_images

    images, dataset, described = open_archive_images(model_dir, data, grouping, recipe, cap, data_seed,
                                                     allow_other_data, split, limit, class_filter)
    if options["class_names"] is None:
        options["class_names"] = list(dataset.classes)
    run = explain_archive(onnx_path, images, workers=workers, address=ray_address, data=described, **options)
    backend = run.backend
    where = f"Ray at {backend['address']}" if backend["address"] else ("Ray (local)" if backend["kind"] == "ray"
                                                                       else "this process")
    click.echo(f"{run.images} image(s), {run.maps} map(s): {run.computed} computed, {run.reused} kept from the "
               f"earlier run; {backend['workers']} worker(s) x {backend['threads_per_worker']} thread(s) on {where}")
    for retried in run.retried:
        click.echo(f"retried: {retried.path} ({retried.attempts} attempts)", err=True)
    click.echo(f"index: {Path(options['out']) / 'index.csv'}")
