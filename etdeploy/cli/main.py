"""``etdeploy`` entry point: a lazy click group plus uniform error handling.

Sub-commands live in small modules (``etdeploy/cli/*_cmd.py``) that import only click at module
level; heavy imports (torch, onnx) happen inside each command so ``etdeploy --help`` is instant.
User errors (:class:`etdeploy.errors.EtdeployError`) print one line ``error: ...`` and exit 2;
anything else prints ``internal error: ...`` and exits 1. ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

# command name -> "module:attribute"; one line per command (keep sorted by pipeline order).
COMMANDS: dict[str, str] = {
    "data": "etdeploy.cli.data_cmd:data",
    "import": "etdeploy.cli.import_cmd:import_model",
    "train": "etdeploy.cli.train_cmd:train",
    "evaluate": "etdeploy.cli.train_cmd:evaluate",
    "rank": "etdeploy.cli.rank_cmd:rank",
    "prune": "etdeploy.cli.prune_cmd:prune",
    "sweep": "etdeploy.cli.sweep_cmd:sweep",
    "params": "etdeploy.cli.prune_cmd:params",
    "compress": "etdeploy.cli.compress_cmd:compress",
    "export": "etdeploy.cli.export_cmd:export",
    "parity": "etdeploy.cli.parity_cmd:parity",
    "quantize": "etdeploy.cli.quantize_cmd:quantize",
    "explain": "etdeploy.cli.explain_cmd:explain",
    "targets": "etdeploy.cli.targets_cmd:targets",
    "fit": "etdeploy.cli.targets_cmd:fit",
    "package": "etdeploy.cli.package_cmd:package",
    "config": "etdeploy.cli.run_cmd:config",
    "run": "etdeploy.cli.run_cmd:run",
    "report": "etdeploy.cli.report_cmd:report",
    "demo": "etdeploy.cli.run_cmd:demo",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--no-progress", "no_progress", is_flag=True,
              help="No progress bars in any command (same as ETDEPLOY_PROGRESS=0). Bars are drawn only on a "
                   "terminal anyway; ETDEPLOY_PROGRESS=1 forces them on.")
@click.version_option(package_name="etdeploy", prog_name="etdeploy")
@click.pass_context
def cli(ctx: click.Context, debug: bool, no_progress: bool) -> None:
    """etdeploy: rank, prune, slice, export, explain and size image classifiers for flight processors.

    Pipeline: data -> train -> rank -> prune/sweep -> export -> parity -> explain -> fit -> report.
    Run `etdeploy demo` for the whole pipeline on the bundled MSL subset.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if no_progress:
        import os

        from etdeploy.progress import ENV_VAR

        os.environ[ENV_VAR] = "0"


def main(argv: list[str] | None = None) -> int:
    from etdeploy.errors import EtdeployError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="etdeploy", standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            return 130
        click.echo("error: aborted", err=True)
        return 2
    except click.ClickException as exc:  # usage errors too: one line, like every other user error
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
        click.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except EtdeployError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.one_line()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        return 1
    return 0


def entry_point() -> None:
    sys.exit(main())
