"""Shared fixtures. Heavy ones are session-scoped: one trained alexnet-mini serves every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CI", "true")  # no progress bars in test output

MINI_EPOCHS = 20  # clearly-better-than-chance accuracy on the bundled data (~25 s on 2 cores)


@pytest.fixture(scope="session")
def bundled():
    from etdeploy.data import load_dataset

    return load_dataset("bundled")


@pytest.fixture(scope="session")
def bundled_splits(bundled):
    from etdeploy.data.images import load_split

    return {s: load_split(bundled.split(s), 64) for s in ("train", "val", "test")}


@pytest.fixture(scope="session")
def trained_mini_dir(tmp_path_factory, bundled) -> Path:
    """A saved alexnet-mini trained on the bundled data (seed 0). Read-only: copy before changing."""
    from etdeploy.api import train_model

    out = tmp_path_factory.mktemp("trained") / "alexnet-mini"
    train_model("alexnet-mini", bundled, epochs=MINI_EPOCHS, seed=0, out=out, progress=False)
    return out


@pytest.fixture()
def trained_mini(trained_mini_dir):
    """A fresh in-memory copy of the trained alexnet-mini (safe to modify)."""
    from etdeploy.models import load_model

    return load_model(trained_mini_dir)
