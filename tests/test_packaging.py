"""Packaging: the wheel ships the target profiles and the bundled data, and a regular (non-editable)
install of it finds its profiles from any working directory.

The wheel is built from a copy of the build inputs (``pyproject.toml``, ``README.md``, ``etdeploy/``)
so that the build's ``build/`` and ``*.egg-info`` folders never land in the checkout. The install goes
into a fresh venv without pip; the test interpreter's site-packages are appended to it with a plain
``.pth`` path line (that is how the venv sees click, numpy...): ``.pth`` files inside an appended folder
are not processed, so an editable install of etdeploy there stays invisible, and the venv's own
site-packages comes first anyway. The test checks ``etdeploy.__file__`` to be sure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.test_targets import EXPECTED_TARGETS

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "etdeploy")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(CI="true", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, src / name)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", str(dist)], cwd=work)
    wheels = sorted(dist.glob("etdeploy-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _source_files(folder: Path) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_wheel_ships_every_target_profile_and_the_bundled_data(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        profiles = {n for n in names if n.startswith("etdeploy/targets/profiles/")}
        assert sorted(Path(n).stem for n in profiles) == list(EXPECTED_TARGETS)
        assert profiles == _source_files(ROOT / "etdeploy" / "targets" / "profiles")
        for name in profiles:  # byte-identical to the checkout
            assert z.read(name) == (ROOT / name).read_bytes(), name
        bundled = {n for n in names if n.startswith("etdeploy/data/bundled/")}
        assert bundled == _source_files(ROOT / "etdeploy" / "data" / "bundled")
        assert len(bundled) > 100
    assert not any(n.startswith(("targets/", "tests/", "benchmarks/")) for n in names)


def test_installed_wheel_lists_every_target_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp_path)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).stdout.strip())
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (purelib / "_etdeploy_test_deps.pth").write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    probe = "import etdeploy, etdeploy.targets as t; print(etdeploy.__file__); print(t.default_targets_dir())"
    where = _run([str(python), "-c", probe], cwd=elsewhere).stdout.split("\n")
    package_file, targets_dir = Path(where[0]).resolve(), Path(where[1]).resolve()
    assert venv.resolve() in package_file.parents, f"imported {package_file}, not the installed wheel"
    assert targets_dir == package_file.parent / "targets" / "profiles"

    listed = _run([str(venv / "bin" / "etdeploy"), "targets", "list"], cwd=elsewhere).stdout
    rows = [line.split()[0] for line in listed.splitlines()[1:] if line.strip() and line.split()[0] in EXPECTED_TARGETS]
    assert rows == list(EXPECTED_TARGETS), listed
