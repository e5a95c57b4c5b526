"""Worker functions for the compatibility tests, at module level so every backend can import them."""

from __future__ import annotations

import os
import time
from typing import Any


def value_types(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """The type of each pset value, as the worker sees it."""
    return {f"type_{k}": f"{type(v).__module__}.{type(v).__name__}" for k, v in pset.items()}


def zygote_pid(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """The worker's parent: on the multiprocessing backend, the zygote of the backend that ran it."""
    return {"ppid": os.getppid(), "y": 2 * pset["x"]}


def slow_double(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    time.sleep(pset.get("sleep", 0.5))
    return {"y": 2 * pset["x"]}


def touch_then_double(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Leaves a file behind (a witness that a pset ran), then doubles x."""
    with open(os.path.join(user_kwargs["dir"], f"ran-{pset['x']}"), "w"):
        pass
    return {"y": 2 * pset["x"]}


def fail_with_traceback(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] == 1:
        raise ValueError(f"bad x {pset['x']}")
    return {"y": pset["x"]}
