"""Worker functions for the report tests (no tests here): at module level, so that worker processes
import them by name."""

from __future__ import annotations

import os
from typing import Any

# An exception text that is also HTML: the report must show it as text, never as markup.
HOSTILE = "<script>document.title='pwned'</script><b>bold</b> & more"


def flaky(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Fails for x % 5 == 1 (ValueError, with HOSTILE in its text) and x % 7 == 3 (KeyError); else
    returns two numbers."""
    x, a = pset["x"], pset["alpha"]
    if x % 5 == 1:
        raise ValueError(f"no convergence at x={x}: {HOSTILE}")
    if x % 7 == 3:
        raise KeyError(f"missing table {x}")
    return {"energy": a * x - x % 3, "steps": x % 11}


def crash_on_four(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] == 4:
        os._exit(3)
    return {"y": pset["x"]}
