"""``etdeploy config init``, ``etdeploy run`` and ``etdeploy demo``."""

from __future__ import annotations

import sys
import time

import click

from etdeploy.cli.options import progress_option


@click.group()
def config() -> None:
    """Run configuration files."""


@config.command("init")
@click.argument("path", type=click.Path(dir_okay=False), default="etdeploy.toml")
def config_init(path: str) -> None:
    """Write the commented default configuration to PATH (never overwrites)."""
    from etdeploy.fileio import atomic_write_text
    from etdeploy.pipeline.config import DEFAULT_TOML

    atomic_write_text(path, DEFAULT_TOML)
    click.echo(f"wrote {path}")


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (must be new).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT (finished stages are reused).")
@progress_option
def run(config_path: str, out: str, resume: bool, progress: bool) -> None:
    """Run the whole pipeline described by CONFIG into OUT and write the V&V report."""
    from etdeploy.pipeline import load_config, run_pipeline

    cfg = load_config(config_path)
    start = time.perf_counter()
    report = run_pipeline(cfg, out, resume=resume, progress=progress, invocation=["etdeploy"] + sys.argv[1:])
    click.echo(f"done in {time.perf_counter() - start:.0f} s; report: {report}")


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: a new folder reports/demo-<n>).")
@progress_option
def demo(out: str | None, progress: bool) -> None:
    """The whole pipeline on the bundled MSL subset with alexnet-mini (about a minute on 2 free cores)."""
    from pathlib import Path

    from etdeploy.pipeline import demo_config, run_pipeline

    if out is None:
        base = Path("reports")
        n = 1
        while (base / f"demo-{n}").exists():
            n += 1
        out = str(base / f"demo-{n}")
    start = time.perf_counter()
    report = run_pipeline(demo_config(), out, progress=progress, invocation=["etdeploy"] + sys.argv[1:])
    click.echo(f"demo finished in {time.perf_counter() - start:.0f} s")
    click.echo(f"report: {report}")
