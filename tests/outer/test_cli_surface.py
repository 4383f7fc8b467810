"""The CLI's surface: every command's --help works without importing torch; choices come from vocab."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etdeploy.cli.main import COMMANDS

PROBE = r"""
import json, sys
import click
from etdeploy.cli.main import cli, main
paths = []
for name in sorted(%s):
    cmd = cli.get_command(None, name)
    paths.append([name])
    if isinstance(cmd, click.Group):
        paths += [[name, sub] for sub in cmd.list_commands(None)]
codes = {}
for path in paths:
    codes[" ".join(path)] = main(path + ["--help"])
heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "numpy", "matplotlib") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_every_help_works_without_heavy_imports():
    probe = PROBE % repr(list(COMMANDS))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert len(result["codes"]) >= len(COMMANDS) and set(result["codes"].values()) == {0}


def test_choices_are_the_library_vocabulary():
    import click

    from etdeploy.attribution.quadrature import QUADRATURE_RULES
    from etdeploy.cli.main import cli
    from etdeploy.occlusion.result import MAP_KINDS as RESULT_MAP_KINDS
    from etdeploy.pruning.schedules import SCHEDULES
    from etdeploy.vocab import MAP_KINDS, OCCLUSION_MODES, QUADRATURE_METHODS, SPLITS
    from etdeploy.vocab import SCHEDULES as SCHEDULE_NAMES

    assert set(QUADRATURE_METHODS) == set(QUADRATURE_RULES)
    assert set(SCHEDULE_NAMES) == set(SCHEDULES)
    assert RESULT_MAP_KINDS == MAP_KINDS
    seen = {}
    for name in COMMANDS:
        cmd = cli.get_command(None, name)
        commands = [cmd] if not isinstance(cmd, click.Group) else [cmd.get_command(None, s)
                                                                    for s in cmd.list_commands(None)]
        for c in commands:
            for p in c.params:
                if isinstance(p.type, click.Choice):
                    seen.setdefault(p.name, set()).add(tuple(p.type.choices))
    assert seen["split"] == {SPLITS}
    assert seen["mode"] == {OCCLUSION_MODES} and seen["map_kind"] == {MAP_KINDS}
    assert seen["method"] == {QUADRATURE_METHODS}


@pytest.mark.parametrize("env, tty, expected", [("0", True, False), ("1", False, True), ("", True, True),
                                               ("", False, False)])
def test_progress_only_on_a_terminal_unless_asked(monkeypatch, env, tty, expected):
    from etdeploy import progress

    monkeypatch.setenv(progress.ENV_VAR, env)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: tty)
    assert progress.progress_enabled() is expected
    assert progress.progress_enabled(False) is False


def test_global_no_progress_switch(monkeypatch):
    from etdeploy import progress
    from etdeploy.cli.main import main

    monkeypatch.setenv(progress.ENV_VAR, "1")
    assert main(["--no-progress", "targets", "list"]) == 0
    assert progress.progress_enabled() is False
