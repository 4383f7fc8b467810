"""``etdeploy targets list|show`` and ``etdeploy fit``: flight-processor profiles and sizing against them."""

from __future__ import annotations

import click

_TARGETS_DIR_HELP = "Folder of target profiles (*.toml); default: the profiles shipped with etdeploy."


@click.group()
def targets() -> None:
    """Flight-processor target profiles."""


@targets.command("list")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False), help=_TARGETS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def targets_list(targets_dir, as_json) -> None:
    """Table of every profile (validated on load)."""
    from etdeploy.fileio import canonical_json
    from etdeploy.targets import load_profiles

    profiles = load_profiles(targets_dir)
    if as_json:
        click.echo(canonical_json({k: p.to_dict() for k, p in profiles.items()}), nl=False)
        return
    header = ("id", "processor", "cores", "clock MHz", "RAM MB", "model RAM MB", "NVM MB", "sust. GMAC/s", "fp32/16/i8",
              "ORT", "confidence")

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
    from etdeploy.targets import get_profile

    for key, value in get_profile(target_id, targets_dir).to_dict().items():
        click.echo(f"{key}: {value}")


@click.command()
@click.option("--onnx", "onnx_file", required=True, type=click.Path(), help="ONNX model file.")
@click.option("--target", "target_ids", required=True, multiple=True,
              help="Target id (see `etdeploy targets list`), a profile .toml, or 'all'; repeatable.")
@click.option("--targets-dir", default=None, type=click.Path(file_okay=False), help=_TARGETS_DIR_HELP)
@click.option("--deadline-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also check the latency estimate against this deadline (seconds).")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Also write every verdict as JSON (fit.json, as the pipeline's fit stage does) to this new file.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one target: its report; several: by target id).")
@click.option("--max-rows", type=click.IntRange(min=1), default=60, show_default=True,
              help="Rows of the per-layer table to print.")
def fit(onnx_file, target_ids, targets_dir, deadline_s, out_file, force, as_json, max_rows) -> None:
    """Size an ONNX model against flight-processor profiles: memory, MACC, latency, ops, verdict."""
    from pathlib import Path

    from etdeploy.errors import OutputExistsError
    from etdeploy.fileio import atomic_write_json, canonical_json
    from etdeploy.targets import fit_targets

    if out_file is not None and Path(out_file).exists() and not force:
        raise OutputExistsError("refusing to overwrite an existing file; pass --force", out_file)
    run = fit_targets(onnx_file, target_ids, targets_dir=targets_dir, deadline_s=deadline_s)
    if out_file is not None:
        atomic_write_json(out_file, run.to_dict(), overwrite=force)
    (model,) = run.models
    reports = [run.report(model, target_id) for target_id in run.ids]
    if as_json:
        doc = reports[0].to_dict() if len(reports) == 1 else {r.target.id: r.to_dict() for r in reports}
        click.echo(canonical_json(doc), nl=False)
        return
    click.echo("\n\n".join(r.text(max_rows=max_rows) for r in reports))
    if out_file is not None:
        click.echo(f"fit: {out_file}")
