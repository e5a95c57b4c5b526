"""Worker functions for the journal's hostile-case tests (no tests here).

At module level, so that worker processes import them by name.
"""

from __future__ import annotations

import os
import time
from typing import Any

from journal_workers import markers  # noqa: F401 - the marker-file count, for the hostile tests

# A lone surrogate: what Python makes of a file name or an argument that is not valid UTF-8
# (surrogateescape), and what no UTF-8 encoder accepts.
LONE = "\udc80"


def _mark(directory: str, x: int) -> None:
    with open(os.path.join(directory, f"{x}-{time.monotonic_ns()}-{os.getpid()}"), "w"):
        pass


class SurrogateRepr(Exception):
    """An exception whose repr carries a lone surrogate (a custom __repr__ may return anything)."""

    def __repr__(self) -> str:
        return f"SurrogateRepr({LONE!s})"


def odd_strings(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Lone surrogates everywhere a string reaches the journal: a result value (x == 3), an
    exception message and so its traceback (x == 7), an exception's repr (x == 9); the psets
    carry one too (built by the test). Leaves a marker per call."""
    x = pset["x"]
    _mark(user_kwargs["dir"], x)
    if x == 7:
        raise ValueError(f"bad byte {LONE}")
    if x == 9:
        raise SurrogateRepr()
    return {"y": f"v{LONE}" if x == 3 else f"v{x}", "n": x}


def odd_keys(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Result keys and values that JSON and Parquet do not hold as such: tuples, a frozenset,
    bytes, numbers; and a tuple pset value handed back."""
    x = pset["x"]
    _mark(user_kwargs["dir"], x)
    return {("a", 1): x, "t": (x, "b"), 2: f"two{x}", 2.5: x / 2, frozenset({"f"}): x * 3, b"k": [x],
            ("nested", (1, 2)): None if x % 2 else x, "back": pset["tp"]}


def counted(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    _mark(user_kwargs["dir"], pset["x"])
    time.sleep(user_kwargs.get("sleep", 0))
    return {"y": pset["x"] * 10}
