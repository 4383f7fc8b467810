"""``etdeploy package``: a verified flight bundle (C99 + golden vectors + interface document) of an ONNX model."""

from __future__ import annotations

import click

from etdeploy.cli.options import model_data_options
from etdeploy.vocab import PACKAGE_ISAS


@click.command()
@click.option("--export", "export_dir", default=None, type=click.Path(file_okay=False),
              help="Export folder (export.json + model.sim.onnx): the model and its interface.")
@click.option("--onnx", "onnx_path", default=None, type=click.Path(dir_okay=False),
              help="An ONNX file instead of an export (e.g. quantize's int8 file); needs --model.")
@click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False),
              help="Model directory of that ONNX file: input size, mean/std, class names, training data.")
@click.option("--target", "target_ids", required=True, multiple=True,
              help="Target id (see `etdeploy targets list`), a profile .toml, or 'all'; repeatable.")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False),
              help="Folder of target profiles (*.toml); default: the profiles shipped with etdeploy.")
@model_data_options
@click.option("--vectors", "vector_count", type=click.IntRange(min=1), default=16, show_default=True,
              help="Golden vectors: this many test images, evenly spaced over the test split.")
@click.option("--isa", "isas", multiple=True, type=click.Choice(PACKAGE_ISAS),
              help="Instruction sets to check (repeatable; host always) [default: every one whose cross compiler "
                   "and qemu-user are installed].")
@click.option("--timing", is_flag=True,
              help="Also time the host C build against ONNX Runtime (timing.json; not in the manifest).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New bundle folder (never overwritten).")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle record (package.json) as JSON.")
def package(export_dir, onnx_path, model_dir, target_ids, targets_dir, data, grouping, recipe, cap, data_seed,
            allow_other_data, vector_count, isas, timing, out_dir, as_json) -> None:
    """Flight bundle of a model: C99 source, golden vectors, per-ISA checks and an interface document.

    The C comes from emx-onnx-cgen (heap-free: const weights, static activations). Every instruction
    set whose toolchain is installed (host gcc; PowerPC 750, ARMv7-A, SPARC V8 under qemu-user) builds
    the C and must reproduce ONNX Runtime's logits on the golden vectors, or nothing is written.
    """
    from etdeploy.errors import ConfigError

    if (export_dir is None) == (onnx_path is None):
        raise ConfigError("give either --export DIR or --onnx FILE --model DIR")
    if onnx_path is not None and model_dir is None:
        raise ConfigError("--onnx needs --model (the model directory the ONNX file was exported from)")

    from etdeploy.cli.options import open_data_from_options
    from etdeploy.fileio import canonical_json
    from etdeploy.packaging import package_export, package_onnx, time_bundle

    common = {"out": out_dir, "target_ids": target_ids, "targets_dir": targets_dir, "vectors": vector_count,
              "isas": isas or None}
    if export_dir is not None:
        from etdeploy.export import read_export

        read_export(export_dir)  # a bad export fails before the data set is read
        dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
        run = package_export(export_dir, dataset=dataset, **common)
    else:
        dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
        run = package_onnx(onnx_path, model_dir, dataset=dataset, allow_other_data=allow_other_data, **common)
    timed = time_bundle(out_dir) if timing else None
    if as_json:
        click.echo(canonical_json(run.to_dict()), nl=False)
        return
    i = run.interface
    click.echo(f"bundle: {out_dir} ({i.arch}, {i.precision}, {run.macs:,} MACs; generator "
               f"{run.generator['name']} {run.generator['version']})")
    for check in run.checks.values():
        if check.status == "not run":
            click.echo(f"  {check.isa:<6} not run ({check.detail})")
            continue
        s = check.sizes
        click.echo(f"  {check.isa:<6} {check.status}: {check.vectors - check.label_mismatches}/{check.vectors} labels, "
                   f"max |delta logit| {check.max_abs_logit_delta:.3g} ({check.max_ulp} ULP); text {s.text:,} B, "
                   f"rodata {s.rodata:,} B, bss {s.bss:,} B, stack {check.stack_bytes:,} B")
    for tid, t in run.targets.items():
        click.echo(f"  target {tid}: {'fits' if t.fits else 'does not fit'} (int8 estimate: "
                   f"{'fits' if t.int8_fits else 'does not fit'}); check: {t.isa or 'none'}")
        if t.advice:
            click.echo(f"    advice: {t.advice}")
    if timed is not None:
        click.echo(f"  timing (this machine, batch 1): C {timed.c_seconds * 1e3:.3g} ms, ORT "
                   f"{timed.ort_seconds * 1e3:.3g} ms (C/ORT {timed.c_over_ort:.3g})")
