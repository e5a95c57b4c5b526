"""Worker functions for the tests, at module level so every backend can import them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Any


def double(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {"y": 2 * pset["x"]}


def echo_system(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {
        "pset_keys": ",".join(sorted(pset)),
        "pset_index": system_kwargs["pset_index"],
        "attempt": system_kwargs["attempt"],
        "seed": system_kwargs["seed"],
        "name": system_kwargs["name"],
        "out_subdir": system_kwargs.get("out_subdir"),
        "cwd": os.getcwd(),
        "user": None if user_kwargs is None else user_kwargs.get("tag"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
    }


def sleeper(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    time.sleep(pset["duration"])
    return {"slept": pset["duration"]}


def raise_on_odd(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] % 2:
        raise ValueError(f"odd x: {pset['x']}")
    return {"y": pset["x"]}


def crash(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any] | None:
    """Misbehaves as pset['how'] says; every other pset is healthy."""
    how = pset["how"]
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "os_exit":
        os._exit(3)
    elif how == "sys_exit":
        sys.exit(4)
    elif how == "keyboard_interrupt":
        raise KeyboardInterrupt
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "unpicklable":
        return {"f": lambda: None}
    elif how == "hang":
        time.sleep(3600)
    elif how == "raise":
        raise RuntimeError("raised on purpose")
    return {"ok": pset["i"]}


def timers(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    from paramsurvey import stats

    with stats.record_wallclock("phase_a", system_kwargs["raw_stats"]):
        time.sleep(0.01)
    with stats.record_iowait("phase_a_iowait", system_kwargs["raw_stats"]):
        time.sleep(0.01)
    return {"done": True}


def marker(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Leaves a file per call: lets tests count how often each pset ran."""
    directory = user_kwargs["dir"]
    with open(os.path.join(directory, f"{pset['x']}-{time.monotonic_ns()}-{os.getpid()}"), "w"):
        pass
    time.sleep(pset.get("sleep", 0))
    return {"y": pset["x"] * 10}


def crash_once(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Dies on its first attempt, succeeds on the retry."""
    if system_kwargs["attempt"] == 0 and pset["x"] == 1:
        os._exit(9)
    return {"attempt": system_kwargs["attempt"]}


def _refuse_to_load() -> None:
    raise RuntimeError("this worker cannot be loaded in a worker process")


class Unloadable:
    """A callable worker that pickles fine but cannot be unpickled in a worker process."""

    def __call__(self, pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
        return {}

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())
