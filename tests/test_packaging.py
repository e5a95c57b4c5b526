"""What pyproject.toml claims is what is tested: the oldest Python it admits is the one CI runs."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def claimed_floor() -> tuple[int, int]:
    spec = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert spec.startswith(">="), f"requires-python should name its floor as '>=X.Y', not {spec!r}"
    major, minor = spec[2:].split(".")[:2]
    return int(major), int(minor)


def test_this_python_is_admitted():
    assert sys.version_info[:2] >= claimed_floor()


def test_ci_runs_the_oldest_python_claimed():
    """Under CI the suite must run on the floor itself, or the claim goes untested: raise the floor
    (or run CI on it) rather than let them drift apart."""
    if os.environ.get("CI") != "true":
        assert sys.version_info[:2] >= claimed_floor()  # a newer Python is fine for a developer
        return
    assert sys.version_info[:2] == claimed_floor(), (
        f"CI runs Python {sys.version_info[0]}.{sys.version_info[1]} but pyproject.toml claims "
        f"{claimed_floor()[0]}.{claimed_floor()[1]}")


def test_mypy_checks_the_floor():
    mypy = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]["python_version"]
    assert tuple(map(int, mypy.split("."))) == claimed_floor()
