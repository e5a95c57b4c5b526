"""Worker functions and initializers for test_worker_side.py, at module level so that worker
processes import them by name (and so that their classes exist in the driver too)."""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

# Set by the initializer in each worker process: a pset reads it to prove set-up came first.
_initialized_in: int | None = None


def mark_init(directory: str, tag: str = "init") -> None:
    """An initializer that leaves one file per call, named after its process."""
    global _initialized_in
    _initialized_in = os.getpid()
    with open(os.path.join(directory, f"{tag}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass


def slow_init(seconds: float) -> None:
    time.sleep(seconds)


def failing_init(*args: Any) -> None:
    raise ValueError("no set-up today")


def exiting_init(*args: Any) -> None:
    os._exit(5)


def init_state(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset.get("how") == "os_exit":
        os._exit(3)
    return {"pid": os.getpid(), "initialized": _initialized_in == os.getpid()}


class TwoArgError(Exception):
    """Pickles (as the class and self.args), but loading calls TwoArgError(message) and fails."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def return_bad_value(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] == 2:
        return {"y": pset["x"], "extra": TwoArgError(7, "seven")}
    return {"y": pset["x"], "extra": ValueError(pset["x"])}


def exit_once(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """sys.exit() on the first attempt of pset x == 1 (on every attempt if pset['always'])."""
    if pset["x"] == 1 and (system_kwargs["attempt"] == 0 or pset.get("always")):
        sys.exit(4)
    return {"attempt": system_kwargs["attempt"]}


def ray_options(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {"has_ray": "ray" in system_kwargs, "sys_ray": repr(system_kwargs.get("ray")),
            "pset_ray": repr(pset.get("ray")), "keys": ",".join(sorted(pset))}


def abuse_process(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Does to its own process what pset['how'] says; then, like every pset, prints and reports."""
    how = pset["how"]
    if how == "close_std_fds":
        os.close(1)
        os.close(2)
    elif how == "low_address_space":
        resource.setrlimit(resource.RLIMIT_AS, (100 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    elif how == "low_hard_nofile":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), min(hard, 256)))
        if os.getuid() == 0:  # root could raise it again: drop the privilege, as a user would lack it
            os.setuid(65534)
    else:  # the psets after it: allocate, print
        block = bytearray(200 * 2**20)
        block[-1] = 1
        print(f"pset {pset['i']} prints", flush=True)
        print(f"pset {pset['i']} warns", file=sys.stderr, flush=True)
    return {"pid": os.getpid(), "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}
