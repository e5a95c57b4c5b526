"""What the Dask backend's option dicts may hold, checked before any pset runs: init's
``dask={...}`` (the cluster, and task options for every map), map's and a pset's own (task
options). Dask itself would raise only when a task is submitted, mid-map."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._config import Settings
from ..exceptions import ArgumentError, ArgumentTypeError

# Options of a task (map-level dask={...} and a pset's own dask dict); the rest of init's dict
# chooses and sizes the cluster.
TASK_KEYS = frozenset({"resources", "priority", "workers", "allow_other_workers"})
CLUSTER_KEYS = frozenset({"address", "cluster", "n_workers", "threads_per_worker", "memory_limit"})
# ...of which these size paramsurvey's own cluster, and mean nothing for a given one.
OWN_CLUSTER_KEYS = frozenset({"n_workers", "threads_per_worker", "memory_limit"})


def check_settings(settings: Settings) -> None:
    """init()'s dask={...} (what Dask cannot do at all is refused by the engine's capability table)."""
    options = settings.backend_options
    unknown = set(options) - TASK_KEYS - CLUSTER_KEYS
    if unknown:
        raise ArgumentError(f"unknown dask option(s) {sorted(map(str, unknown))}: init() takes "
                         f"{sorted(CLUSTER_KEYS | TASK_KEYS)}, map() takes {sorted(TASK_KEYS)}")
    if options.get("address") is not None and options.get("cluster") is not None:
        raise ArgumentError("give dask={'address': ...} or dask={'cluster': ...}, not both")
    unused = sorted(OWN_CLUSTER_KEYS & set(options))
    if unused and (options.get("address") is not None or options.get("cluster") is not None):
        raise ArgumentError(f"dask options {unused} size paramsurvey's own cluster; they do nothing for a "
                         "cluster given by address or cluster")
    check_task_options({k: v for k, v in options.items() if k in TASK_KEYS}, "init")


def check_task_options(options: Any, where: str) -> None:
    """Dask task options (map's, init's, or a pset's own dict), checked as Dask would only when the
    task is submitted: an error naming the key."""
    if not isinstance(options, Mapping):
        raise ArgumentTypeError(f"{where} dask options must be a dict, not {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in TASK_KEYS)
    if unknown:
        also = " (an option of init(dask={...}))" if set(unknown) & CLUSTER_KEYS else ""
        raise ArgumentError(f"{where} dask options take the task options {sorted(TASK_KEYS)}, not "
                         f"{unknown}{also}")
    for key, value in options.items():
        if value is not None and not TASK_OPTION_CHECKS[key](value):
            raise ArgumentTypeError(f"{where} dask option {key!r} must be {TASK_OPTION_FORMS[key]}, not {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_resources(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and _is_number(v) for k, v in value.items())


def _is_workers(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple, set)) and all(isinstance(w, str) for w in value))


TASK_OPTION_CHECKS: dict[str, Callable[[Any], bool]] = {
    "resources": _is_resources, "priority": _is_number, "workers": _is_workers,
    "allow_other_workers": lambda value: isinstance(value, bool)}
TASK_OPTION_FORMS = {"resources": "a dict of resource name to amount, e.g. {'GPU': 1}", "priority": "a number",
                     "workers": "a worker address or a list of them", "allow_other_workers": "True or False"}
