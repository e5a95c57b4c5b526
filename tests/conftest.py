"""Shared fixtures: a fresh paramsurvey session per test, and no process left behind."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/workers.py for in-process backends

import paramsurvey  # noqa: E402


def _children() -> list[psutil.Process]:
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test runs in its own directory (logfiles land there) with no PARAMSURVEY_* variables,
    and must leave no child process behind once paramsurvey is finalized."""
    for key in list(os.environ):
        if key.startswith("PARAMSURVEY_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    before = {p.pid for p in _children()}  # e.g. a cluster started by a session fixture
    yield
    paramsurvey.finalize()

    def new_children() -> list[psutil.Process]:
        return [p for p in _children() if p.pid not in before]

    deadline = time.monotonic() + 5
    while new_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = new_children()
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"
