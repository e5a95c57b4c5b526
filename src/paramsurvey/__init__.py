"""paramsurvey: one worker function over many parameter sets, in parallel, from a laptop to a cluster.

The public face only. Heavy modules (pandas, the engine) load on first use, so that worker processes,
which import ``paramsurvey._worker``, start in milliseconds.

Example
-------
>>> import paramsurvey
>>> paramsurvey.init(backend='serial', verbose=0)
>>> results = paramsurvey.map(lambda pset, sk, uk: {'y': 2 * pset['x']}, [{'x': 1}, {'x': 2}])
>>> results.results['y'].tolist()
[2, 4]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import (
    ArgumentError,
    ArgumentTypeError,
    BackendError,
    BackendNotInstalled,
    Interrupted,
    JournalError,
    ParamsurveyError,
    UsageError,
)

if TYPE_CHECKING:  # pragma: no cover
    from . import journal, params, stats, utils  # noqa: F401
    from ._api import backend, current_core_count, current_resources, finalize, init, map  # noqa: F401
    from ._progress import MapProgress  # noqa: F401
    from ._results import MapResults, MissingPsets  # noqa: F401
    from .stats import PerfStats  # noqa: F401

_LAZY = {
    "init": "._api", "map": "._api", "finalize": "._api", "backend": "._api",
    "current_core_count": "._api", "current_resources": "._api",
    "MapResults": "._results", "MissingPsets": "._results", "MapProgress": "._progress", "PerfStats": ".stats",
}
# The documented modules, loaded on first use, and the console entry point paramsurvey.cli:main.
# The other modules are internal (a leading underscore, but for the backends package).
_SUBMODULES = ("cli", "journal", "params", "report", "stats", "utils")

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "BackendError",
    "BackendNotInstalled",
    "Interrupted",
    "JournalError",
    "MapProgress",
    "MapResults",
    "MissingPsets",
    "ParamsurveyError",
    "PerfStats",
    "UsageError",
    "backend",
    "current_core_count",
    "current_resources",
    "finalize",
    "init",
    "journal",
    "map",
    "params",
    "report",
    "stats",
    "utils",
]


def _version() -> str:
    # importlib.metadata costs ~60 ms to import: too much for worker processes that never ask
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paramsurvey")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'paramsurvey' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
