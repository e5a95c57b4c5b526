"""Worker functions of tests/test_jobqueue.py (module level: the subprocess drivers import them)."""

from __future__ import annotations

import os
import time
import uuid


def marked_sleep(pset, system_kwargs, user_kwargs):
    """Leaves a marker file per run (so a test sees each execution, re-runs included), sleeps
    ``pset['t']``, and says which Slurm job ran it."""
    with open(os.path.join(user_kwargs["dir"], f"{pset['i']}.{uuid.uuid4().hex}"), "w"):
        pass
    time.sleep(pset.get("t", 0))
    return {"job": os.environ.get("SLURM_JOB_ID", ""), "backend": system_kwargs["backend"],
            "env": os.environ.get("PS_TEST_ENV", "")}


def markers(d):
    """Executions seen so far: the marker files' count."""
    return sum(1 for name in os.listdir(d) if not name.startswith("."))


def kills_its_worker(pset, system_kwargs, user_kwargs):
    """The pset ``crash`` names kills the worker process running it (as a segfault would)."""
    import signal

    if pset["i"] == pset["crash"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"job": os.environ.get("SLURM_JOB_ID", "")}
