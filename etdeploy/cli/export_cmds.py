"""``etdeploy export``, ``etdeploy parity``, ``etdeploy targets list|show`` and ``etdeploy fit``."""

from __future__ import annotations

import click

from etdeploy.cli.options import data_options, open_data_from_options, progress_option

_TARGETS_DIR_HELP = "Folder of target profiles (*.toml); default: targets/ beside the etdeploy package."


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Saved (sliced) model directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New output directory.")
@click.option("--opset", type=click.IntRange(min=17), default=17, show_default=True)
@click.option("--masks", type=click.Choice(["refuse", "keep", "drop"]), default="refuse", show_default=True,
              help="A model with NeuronMask layers: refuse (slice it first), keep (export Mul by a "
                   "constant), drop (only if every mask is all ones).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def export(model_dir, out, opset, masks, force) -> None:
    """Export a saved model to OUT: model.onnx, model.sim.onnx (onnxsim) and export.json."""
    from etdeploy.export import ExportConfig, export_model
    from etdeploy.models import load_model

    model = load_model(model_dir)
    result = export_model(model, out, config=ExportConfig(opset=opset, masks=masks), force=force)
    for name, info in result.manifest["files"].items():
        ops = ", ".join(f"{k} {v}" for k, v in info["op_histogram"].items())
        click.echo(f"{name}: {info['bytes']:,} bytes, {info['parameters']:,} parameters, opset {info['opset']}, "
                   f"IR {info['ir_version']}, sha256 {info['sha256'][:16]}...")
        click.echo(f"  ops: {ops}")
    check = result.manifest["simplification_check"]
    click.echo(f"simplified vs exported: max |delta logit| {check['max_abs_logit_delta']:.3g} "
               f"(tolerance {check['tolerance']:g})")
    click.echo(f"export: {out}")


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Sliced (or unpruned) model directory.")
@click.option("--export", "export_dir", required=True, type=click.Path(), help="Directory written by `etdeploy export`.")
@click.option("--masked", "masked_dir", default=None, type=click.Path(),
              help="Masked model directory (before slicing); adds the masked torch model to the comparison.")
@data_options
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True,
              help="Absolute tolerance on logits.")
@click.option("--reference-images", type=click.IntRange(min=0), default=2, show_default=True,
              help="Images also run through onnx.reference.ReferenceEvaluator (0 to skip).")
@click.option("--reference-tol", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
              help="Absolute tolerance between ReferenceEvaluator and ONNX Runtime.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the parity report as JSON to this new file.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@progress_option
def parity(model_dir, export_dir, masked_dir, data, grouping, recipe, cap, data_seed, split, tol, reference_images,
           reference_tol, out_file, force, as_json, progress) -> None:
    """Compare masked torch, sliced torch, model.onnx and model.sim.onnx on one split.

    Exits 2 with every mismatch listed when any two disagree on a top-1 label or by more than TOL.
    """
    from pathlib import Path

    from etdeploy.api import load_split_images
    from etdeploy.errors import DataError, ParityError
    from etdeploy.export import ONNX_FILE, SIM_FILE, load_export_manifest
    from etdeploy.fileio import atomic_write_json, canonical_json
    from etdeploy.models import load_model, weights_fingerprint
    from etdeploy.parity import check_parity

    if out_file is not None and Path(out_file).exists() and not force:
        from etdeploy.errors import OutputExistsError

        raise OutputExistsError("refusing to overwrite an existing file; pass --force", out_file)
    model = load_model(model_dir)
    manifest = load_export_manifest(export_dir)
    if manifest["model"].get("weights_fingerprint") not in (None, weights_fingerprint(model)):
        raise DataError("the export was made from a different model (weights fingerprint differs)", export_dir)
    models = {}
    if masked_dir is not None:
        masked = load_model(masked_dir)
        if masked.spec.input_size != model.spec.input_size:
            raise DataError("masked and sliced models have different input sizes", masked_dir)
        models["masked-torch"] = masked
    models["sliced-torch" if masked_dir is not None else "torch"] = model
    models["onnx"] = Path(export_dir) / ONNX_FILE
    models["onnx-sim"] = Path(export_dir) / SIM_FILE
    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    if tuple(ds.classes) != tuple(model.spec.class_names):
        raise DataError(f"data classes {list(ds.classes)} differ from the model's {list(model.spec.class_names)}",
                        model_dir)
    images = load_split_images(ds, split, model.spec.input_size, progress=progress)
    try:
        report = check_parity(models, images.images, images.labels, model.spec.mean, model.spec.std, tol=tol,
                              reference_images=reference_images, reference_tol=reference_tol,
                              raise_on_mismatch=True)
        failure = None
    except ParityError as exc:
        report = getattr(exc, "report", None)
        failure = exc
        if report is None:
            raise
    doc = {"split": split, **report.to_dict()}
    if out_file is not None:
        atomic_write_json(out_file, doc, overwrite=force)
    if as_json:
        click.echo(canonical_json(doc), nl=False)
    else:
        click.echo(report.table())
    if failure is not None:
        raise failure
    if not as_json and out_file:
        click.echo(f"report: {out_file}")


@click.group()
def targets() -> None:
    """Flight-processor target profiles."""


@targets.command("list")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False), help=_TARGETS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets_list(targets_dir, as_json) -> None:
    """Table of every profile (validated on load)."""
    from etdeploy.fileio import canonical_json
    from etdeploy.targets import load_profiles, profile_to_dict

    profiles = load_profiles(targets_dir)
    if as_json:
        click.echo(canonical_json({k: profile_to_dict(p) for k, p in profiles.items()}), nl=False)
        return
    header = ("id", "processor", "cores", "clock MHz", "RAM MB", "model RAM MB", "NVM MB", "sust. GMAC/s", "fp32/16/i8", "ORT",
              "confidence")
    def mb(n: float) -> str:
        return f"{n / 1e6:,.0f}" if n >= 1e7 else f"{n / 1e6:.3g}"

    rows = []
    for p in profiles.values():
        prec = "/".join("y" if v else "-" for v in (p.fp32, p.fp16, p.int8))
        rows.append((p.id, p.name, str(p.cores), f"{p.clock_hz / 1e6:.4g}", mb(p.ram_bytes), mb(p.model_ram_bytes),
                     mb(p.flash_bytes) if p.flash_bytes else "host", f"{p.sustained_macs_per_s / 1e9:.3g}",
                     prec, "yes" if p.ort_supported else "no", p.confidence))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*header))
    for r in rows:
        click.echo(fmt.format(*r))
    click.echo("MB = 10^6 bytes; throughput figures are estimates (see each profile's sustained_macs_basis).")


@targets.command("show")
@click.argument("target_id")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False), help=_TARGETS_DIR_HELP)
def targets_show(target_id, targets_dir) -> None:
    """Every field of one profile."""
    from etdeploy.targets import get_profile, profile_to_dict

    for key, value in profile_to_dict(get_profile(target_id, targets_dir)).items():
        click.echo(f"{key}: {value}")


@click.command()
@click.option("--onnx", "onnx_file", required=True, type=click.Path(), help="ONNX model file.")
@click.option("--target", "target_ids", required=True, multiple=True,
              help="Target id (see `etdeploy targets list`) or a profile .toml; repeatable.")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False), help=_TARGETS_DIR_HELP)
@click.option("--deadline-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also check the latency estimate against this deadline (seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--max-rows", type=click.IntRange(min=1), default=60, show_default=True,
              help="Rows of the per-layer table to print.")
def fit(onnx_file, target_ids, targets_dir, deadline_s, as_json, max_rows) -> None:
    """Size an ONNX model against flight-processor profiles: memory, MACC, latency, ops, verdict."""
    from etdeploy.fileio import canonical_json
    from etdeploy.targets import fit_onnx_file, get_profile

    profiles = [get_profile(t, targets_dir) for t in target_ids]
    reports = [fit_onnx_file(onnx_file, p, deadline_s=deadline_s) for p in profiles]
    if as_json:
        doc = reports[0].to_dict() if len(reports) == 1 else {r.target.id: r.to_dict() for r in reports}
        click.echo(canonical_json(doc), nl=False)
        return
    click.echo("\n\n".join(r.text(max_rows=max_rows) for r in reports))


@click.command()
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False),
              help="fp32 ONNX model (e.g. an export's model.sim.onnx).")
@click.option("--model", "model_dir", required=True, type=click.Path(),
              help="Model directory of that ONNX model: input size, mean/std, class names.")
@data_options
@click.option("--calibration-images", type=click.IntRange(min=1), default=128, show_default=True,
              help="N training images, evenly spaced over the split, used for MinMax calibration.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Split on which fp32 and int8 are compared.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="New int8 ONNX file.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def quantize(onnx_path, model_dir, data, grouping, recipe, cap, data_seed, calibration_images, split, out_file,
             force, as_json) -> None:
    """Static int8 (QDQ) copy of an ONNX model, and how it compares with fp32 on one split.

    Per-channel symmetric int8 weights, uint8 activations, MinMax calibration on training images
    normalised as for inference. int8 is not expected to pass the fp32 parity tolerance: the command
    reports accuracy of both, top-1 agreement and logit deltas instead.
    """
    import json

    from etdeploy.data.images import load_split
    from etdeploy.errors import DataError
    from etdeploy.export.quantize import compare_int8, quantize_int8
    from etdeploy.models import load_model
    from etdeploy.onnx_safety import load_onnx_checked

    load_onnx_checked(onnx_path)  # fail fast, before the data set is read
    spec = load_model(model_dir).spec
    ds = open_data_from_options(data, grouping, recipe, cap, data_seed)
    if tuple(ds.classes) != tuple(spec.class_names):
        raise DataError(f"data classes {list(ds.classes)} differ from the model's {list(spec.class_names)}",
                        model_dir)
    train = ds.split("train")
    picks = train[::max(1, len(train) // calibration_images)][:calibration_images]  # spread over the classes
    calibration = load_split(picks, spec.input_size).images
    out = quantize_int8(onnx_path, out_file, calibration, spec.mean, spec.std, force=force)
    evaluation = load_split(ds.split(split), spec.input_size)
    result = compare_int8(onnx_path, out, evaluation.images, evaluation.labels, spec.mean, spec.std).to_dict()
    result |= {"split": split, "calibration_images": len(calibration), "int8": str(out)}
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(f"int8: {out} ({result['bytes_int8']:,} bytes, fp32 {result['bytes_fp32']:,}; "
               f"calibrated on {len(calibration)} training images)")
    click.echo(f"{split} ({result['n']} images): accuracy fp32 {result['accuracy_fp32']:.4f}, int8 "
               f"{result['accuracy_int8']:.4f}; top-1 agreement {result['top1_agreement']:.4f}; |delta logit| mean "
               f"{result['mean_abs_logit_delta']:.3g}, max {result['max_abs_logit_delta']:.3g}")
