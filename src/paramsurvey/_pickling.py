"""How the map's function travels to worker processes (every backend uses this one function).

Interface fixed for now; the real version keeps each code object's real file name (cloudpickle
writes ``<dynamic-code>``), so a failed pset's traceback names the user's file and line.
"""

from __future__ import annotations

from typing import Any


def dumps_by_value(obj: Any) -> bytes:
    """cloudpickle ``obj`` (functions of __main__, lambdas and closures by value)."""
    import cloudpickle

    return cloudpickle.dumps(obj)
