"""Shared by the Ray and Dask tests of Ctrl-C: interrupt a map once its psets have started their
commands (``workers_remote.busy_with_a_child`` leaves a marker ``<x>-<pid of its command>``), and
find which of those commands still run."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil
import pytest
import workers_remote

import paramsurvey

# a deadlock guard for the psets to start their commands on a loaded machine
START_TIMEOUT = 60.0


def interrupt_once_commands_run(marks, n_psets=4, running=2):
    """map() busy_with_a_child over ``n_psets`` psets, Ctrl-C once ``running`` commands have started;
    returns the pids of the commands the psets started."""

    def interrupt_when_they_run():
        deadline = time.monotonic() + START_TIMEOUT
        while len(os.listdir(marks)) < running and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_they_run)
    interrupter.start()
    with pytest.raises(paramsurvey.Interrupted):
        paramsurvey.map(workers_remote.busy_with_a_child, [{"x": i} for i in range(n_psets)], group_size=1,
                        user_kwargs={"dir": str(marks)})
    interrupter.join()
    return commands_started(marks)


def commands_started(marks):
    return [int(name.split("-")[1]) for name in os.listdir(marks)]


def still_running(pids, timeout):
    """The pids still alive after ``timeout`` seconds; those are killed, so a failed test leaves
    nothing running."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return [p.pid for p in alive]
