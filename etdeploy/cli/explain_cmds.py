"""``etdeploy explain``: occlusion maps of images on an ONNX model (naive, exact incremental, approximate)."""

from __future__ import annotations

import click

from etdeploy.cli.options import progress_option


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
@click.option("--image", "images", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Image (JPEG/PNG); repeat for several.")
@click.option("--patch", type=click.IntRange(min=1), default=16, show_default=True, help="Patch size P (pixels).")
@click.option("--stride", type=int, default=4, show_default=True, help="Stride S (pixels).")
@click.option("--mode", type=click.Choice(["naive", "exact", "approx"]), default="exact", show_default=True)
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
@click.option("--class", "classes", multiple=True, type=click.IntRange(min=0),
              help="Class index to explain; repeat for several (default: the predicted class).")
@click.option("--map-kind", type=click.Choice(["prob", "drop", "logit", "logprob"]), default="prob",
              show_default=True, help="Map value: class probability, its drop, logit or log-probability.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model directory: mean/std and class names (else give --mean and --std).")
@click.option("--mean", callback=_floats3, default=None, help="Per-channel mean on [0, 1], e.g. 0.45,0.43,0.40.")
@click.option("--std", callback=_floats3, default=None, help="Per-channel std on [0, 1].")
@click.option("--patch-value", type=float, default=0.0, show_default=True,
              help="Patch colour in normalised space (0 = the data set mean).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="ORT intra-op threads.")
@click.option("--check-ssim", is_flag=True, help="approx: also compute exact maps and report each map's SSIM.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@progress_option
def explain(onnx_path, images, patch, stride, mode, target_ssim, tau, r_drill, ssim_margin, stage1_stride, tune_images,
            classes, map_kind, model_dir, mean, std, patch_value, batch_size, threads, check_ssim, out, force,
            progress) -> None:
    """Occlusion maps (.npy + PNG overlay per image and class) and a JSON summary in OUT."""
    import time
    from pathlib import Path

    import numpy as np

    from etdeploy.data.images import decode_image, normalise
    from etdeploy.errors import ConfigError, OcclusionError
    from etdeploy.fileio import StagedDir, atomic_write_json, sha256_file
    from etdeploy.occlusion import IncrementalOcclusionExecutor, map_ssim, tune_approx
    from etdeploy.occlusion.output import write_result

    if stride < 1:
        raise OcclusionError(f"stride must be a positive integer, got {stride}")
    class_names = None
    input_size = None
    if model_dir is not None:
        from etdeploy.models import load_model

        spec = load_model(model_dir).spec
        mean = mean or tuple(spec.mean)
        std = std or tuple(spec.std)
        class_names = list(spec.class_names)
        input_size = spec.input_size
    if mean is None or std is None:
        raise ConfigError("give --model DIR (for mean/std and class names) or both --mean and --std")
    if mode != "approx" and (tau is not None or r_drill is not None or stage1_stride is not None or tune_images):
        raise ConfigError("--tau, --r-drill, --stage1-stride and --tune-image apply to --mode approx only")

    executor = IncrementalOcclusionExecutor(onnx_path, input_size=input_size, patch=patch, stride=stride,
                                            batch_size=batch_size, threads=threads, patch_value=patch_value)
    size_h, size_w = executor.input_hw
    if size_h != size_w:
        raise OcclusionError(f"images are decoded square; the model input is {size_h}x{size_w}", onnx_path)
    k = executor.num_classes
    names = class_names or [f"class{i}" for i in range(k)]
    if len(names) != k:
        raise ConfigError(f"the model directory has {len(names)} class names, the ONNX model {k} outputs", model_dir)
    for c in classes:
        if c >= k:
            raise OcclusionError(f"class {c} is out of range for a model with {k} classes")

    def load(path):
        raw = decode_image(path, size_h)
        return raw, normalise(raw[None], mean, std).numpy()[0]

    decoded = [load(p) for p in images]
    started = time.perf_counter()
    timing: dict = {"images": []}
    tuning = None
    run_kwargs = {"mode": mode}
    if mode == "approx":
        if tau is not None or r_drill is not None:
            run_kwargs.update(tau=1.0 if tau is None else tau, r_drill=1.0 if r_drill is None else r_drill,
                              stage1_stride=stage1_stride, map_kind=map_kind)
        else:
            tune_paths = list(tune_images) or list(images[:2])
            t0 = time.perf_counter()
            tune = tune_approx(executor, [load(p)[1] for p in tune_paths], target_ssim=target_ssim,
                               map_kind=map_kind, margin=ssim_margin, progress=progress)
            timing["tuning_seconds"] = time.perf_counter() - t0
            run_kwargs.update(tune.run_kwargs())
            tuning = tune.as_dict() | {"images": [Path(p).name for p in tune_paths]}
            click.echo(f"tuned: tau={tune.tau} r_drill={tune.r_drill} stage1_stride={tune.stage1_stride} "
                       f"min SSIM {tune.min_ssim:.3f} (asked {tune.required_ssim:.2f}) on {len(tune.used_images)} "
                       f"map(s), modelled speedup "
                       f"{tune.modelled_speedup:.1f}x" + (f"; {len(tune.flat)} flat map(s) left out" if tune.flat else ""))

    summary: dict = {
        "onnx": {"file": Path(onnx_path).name, "sha256": sha256_file(onnx_path)},
        "mode": mode, "patch": patch, "stride": stride, "map_kind": map_kind, "patch_value": patch_value,
        "input_size": [size_h, size_w], "mean": list(mean), "std": list(std), "classes": names,
        "redundancy_ratio": executor.redundancy_ratio()["R"], "tuning": tuning,
        "run": {key: value for key, value in run_kwargs.items() if key != "mode"}, "images": [],
    }
    with StagedDir(Path(out), force=force) as tmp:
        for index, (path, (raw, image)) in enumerate(zip(images, decoded)):
            t0 = time.perf_counter()
            result = executor.run(image, progress=progress, **run_kwargs)
            elapsed = time.perf_counter() - t0
            exact = None
            if check_ssim and mode == "approx":
                exact = executor.run(image, mode="exact")
            probs = np.exp(result.base_logits - result.base_logits.max())
            probs = probs / probs.sum()
            entry = {"file": Path(path).name, "sha256": sha256_file(path), "predicted": int(np.argmax(probs)),
                     "probabilities": [float(p) for p in probs], "map_shape": list(result.shape),
                     "macs": result.macs, "naive_macs": result.naive_macs,
                     "modelled_speedup": result.naive_macs / result.macs if result.macs else None, "maps": []}
            for c in (classes or (result.target,)):
                stem = f"img{index:02d}_{Path(path).stem}_c{c}"
                files = write_result(tmp, stem, result, raw, map_kind, names[c], c)
                values = result.map(map_kind, c)
                value_range = float(values.max() - values.min())
                item = {"class": int(c), "name": names[c], **files, "min": float(values.min()),
                        "max": float(values.max()), "flat": value_range < 0.05}
                if exact is not None:
                    ref = exact.map(map_kind, c)
                    item["ssim_vs_exact"] = map_ssim(ref, values) if ref.max() > ref.min() else None
                entry["maps"].append(item)
            summary["images"].append(entry)
            timing["images"].append({"file": Path(path).name, "seconds": elapsed})
            click.echo(f"{Path(path).name}: predicted {names[entry['predicted']]} ({probs.max():.3f}); "
                       f"{len(entry['maps'])} map(s) {result.shape[0]}x{result.shape[1]} in {elapsed:.2f} s")
        timing["total_seconds"] = time.perf_counter() - started
        atomic_write_json(tmp / "summary.json", summary)
        atomic_write_json(tmp / "timing.json", timing)
    click.echo(f"maps: {out}")
