"""Worker functions and initializers for the Ray and Dask tests, at module level so that workers
import them by name."""

from __future__ import annotations

import os
import time
from typing import Any


def record_init(directory: str) -> None:
    """An initializer that leaves one file per call, named by the worker process's pid."""
    with open(os.path.join(directory, f"{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass


def failing_init(reason: str) -> None:
    raise ValueError(f"cannot set up: {reason}")


def pid(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    time.sleep(pset.get("sleep", 0))
    return {"pid": os.getpid()}


def _load_only_in(pid: int) -> str:
    if os.getpid() != pid:
        raise RuntimeError(f"this value loads only in process {pid}")
    return "loaded"


class LoadsOnlyWhereMade:
    """A value that pickles, and loads in the process that made it, but nowhere else (as a value of
    a class that exists on the worker's node but not on the driver's)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __reduce__(self) -> Any:
        return (_load_only_in, (self.pid,))


def unloadable_in_driver(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] == 1:
        return {"y": LoadsOnlyWhereMade()}
    return {"y": pset["x"]}


def stuck_in_c(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """pset['stuck']: a loop in C that holds the GIL for hours and never runs a signal handler."""
    if pset["stuck"]:
        sum(range(10**11))
    return {"ok": pset["x"]}


def busy_with_a_child(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Starts a long command, says so with a file named by the command's pid, and waits for it."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(user_kwargs["dir"], f"{pset['x']}-{child.pid}"), "w"):
        pass
    child.wait()
    return {"y": pset["x"]}
