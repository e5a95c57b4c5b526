"""backend.wakeup(): what the engine's SIGINT handler calls to make poll() return at once."""

from __future__ import annotations

import os
import threading
import time

import pytest

import paramsurvey
from paramsurvey import _api
from paramsurvey._worker import MapContext
from paramsurvey.backends.base import Task

# A deadlock guard, not a timing claim: poll() asked to wait this long must return far sooner.
POLL_WAIT = 60.0


def _sleep(pset, system_kwargs, user_kwargs):
    time.sleep(pset["s"])


@pytest.mark.timeout(60)
def test_wakeup_returns_poll_at_once_and_is_forgotten_at_the_maps_end():
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=1)
    backend = _api._current()
    ctx = MapContext(_sleep, None, "wakeup", backend.name)
    backend.begin_map(ctx, backend.settings)
    backend.submit(Task(0, [0], [{"s": 30}]))
    threading.Timer(0.5, backend.wakeup).start()
    t0 = time.monotonic()
    outcomes = backend.poll(POLL_WAIT)
    assert time.monotonic() - t0 < POLL_WAIT / 2
    assert list(outcomes) == []
    backend.cancel()
    backend.end_map()
    with pytest.raises(BlockingIOError):  # no stale byte left to wake the next map's poll()
        os.read(backend.wake_fd, 1)


def test_the_capability_table_refuses_what_a_backend_cannot_do_naming_it():
    from paramsurvey._config import resolve
    from paramsurvey._engine import refuse_unsupported
    from paramsurvey.backends.serial import SerialBackend

    with pytest.raises(paramsurvey.ArgumentError, match="timeout= is not supported by the serial backend"):
        refuse_unsupported(SerialBackend, resolve({"backend": "serial"}, {"timeout": 2}))
    # no worker process to replace: accepted in process, as 0.4.x scripts expect
    refuse_unsupported(SerialBackend, resolve({"backend": "serial", "max_tasks_per_child": 3}), at_init=True)
