"""Worker functions for the SIGTERM and batch-driver tests (no tests here).

At module level, so that worker processes import them by name and the survey scripts the tests run
in subprocesses (and in Slurm jobs) can import them too (tests/ is on their PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from typing import Any


def marked_sleep(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Leaves a marker file ``start-<x>-<run>-<pid>`` as it starts (which run ran which pset, and
    how often), then sleeps ``user_kwargs['sleep']`` seconds."""
    with open(os.path.join(user_kwargs["dir"], f"start-{pset['x']}-{user_kwargs['run']}-{os.getpid()}"), "w"):
        pass
    time.sleep(user_kwargs["sleep"])
    return {"y": pset["x"] * 10}


def starts(directory: str) -> list[tuple[int, str]]:
    """(x, run) of every marker ``marked_sleep`` left in ``directory``."""
    found = []
    for name in os.listdir(directory):
        if name.startswith("start-"):
            _, x, run, _ = name.split("-")
            found.append((int(x), run))
    return found
