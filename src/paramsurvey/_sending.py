"""How a group's result travels back to the driver: pickled in the worker, and checked there, so
that a value that cannot travel fails its own pset rather than the driver's loading of the group.

Standard library only: worker processes load this module.
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Callable
from typing import Any

from ._records import Failure, GroupResult, Status

# Values of these types always load again once pickled: a result column of them needs no check.
_SURE_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})
# Containers whose items (one level down) are checked by type, as cheaply as a column.
_SEQUENCES = frozenset({list, tuple, set, frozenset})


def encode_result(result: GroupResult) -> bytes:
    """A group's result pickled for the driver. A value that cannot be pickled, or that pickles but
    does not load again (a class whose __init__ needs arguments pickle does not keep, say), makes
    its pset alone a failure naming the value's type; the other rows travel."""
    return encode_message(result, lambda r: r)


def encode_message(result: GroupResult, wrap: Callable[[GroupResult], Any]) -> bytes:
    """``wrap(result)`` pickled, after the checks of encode_result."""
    try:
        blob = pickle.dumps(wrap(result), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return pickle.dumps(wrap(scrub_unpicklable(result, exc)), protocol=pickle.HIGHEST_PROTOCOL)
    if all(map(_loads_surely, result.columns.values())):  # the common case: no load to pay
        return blob
    try:
        pickle.loads(blob)
    except Exception as exc:
        return pickle.dumps(wrap(scrub_unpicklable(result, exc)), protocol=pickle.HIGHEST_PROTOCOL)
    return blob


def _loads_surely(column: list[Any]) -> bool:
    """Do these values load again for sure once pickled? Judged by their types (and their items'
    types one level down); False means "load them to see", never "they fail"."""
    kinds = set(map(type, column))
    if kinds <= _SURE_TYPES:
        return True
    items: set[type] = set()
    for kind in kinds:
        if kind in _SURE_TYPES or _is_numpy_scalar(kind):
            continue
        if kind in _SEQUENCES:
            for value in column:
                if type(value) is kind:
                    items.update(map(type, value))
        elif kind is dict:
            for value in column:
                if type(value) is dict:
                    items.update(map(type, value))
                    items.update(map(type, value.values()))
        elif _is_ndarray(kind):  # an array of numbers is raw bytes; of objects, anything
            if any(_holds_objects(value) for value in column if type(value) is kind):
                return False
        else:
            return False
    return all(kind in _SURE_TYPES or _is_numpy_scalar(kind) for kind in items)


def _is_numpy_scalar(kind: type) -> bool:
    # numpy is never imported here (workers start without it): its types are known by module
    return getattr(kind, "__module__", None) == "numpy" and kind.__name__ not in ("ndarray", "object_", "void")


def _is_ndarray(kind: type) -> bool:
    return getattr(kind, "__module__", None) == "numpy" and kind.__name__ == "ndarray"


def _holds_objects(array_: Any) -> bool:
    return bool(array_.dtype.hasobject)


def scrub_unpicklable(result: GroupResult, error: BaseException) -> GroupResult:
    """Turn the rows whose values cannot travel (not pickled, or not loaded again) into failures,
    so the rest still travels."""
    bad_rows: dict[int, str] = {}
    for key, column in result.columns.items():
        if _travels(column) is None:
            continue
        for i, value in enumerate(column):
            problem = _travels(value)
            if problem is not None and i not in bad_rows:
                bad_rows[i] = _value_problem(key, value, problem)
    if not bad_rows:  # not a result value: something else is wrong; fail every row rather than hang
        message = repr(TypeError(f"the worker's result could not be pickled to send it back: {error!r}"))
        bad_rows = dict.fromkeys(range(len(result.ok)), message)
    keep = [i for i in range(len(result.ok)) if i not in bad_rows]
    failures = list(result.failures)
    for i in sorted(bad_rows):
        failures.append(Failure(result.ok[i], Status.EXCEPTION, bad_rows[i], ""))
    columns = {k: [v[i] for i in keep] for k, v in result.columns.items()}
    remap = {old: new for new, old in enumerate(keep)}
    absent = {k: [remap[i] for i in v if i in remap] for k, v in result.absent.items()}
    return result._replace(ok=array("q", [result.ok[i] for i in keep]), columns=columns,
                           absent={k: v for k, v in absent.items() if v}, failures=failures)


def _travels(value: Any) -> tuple[str, BaseException] | None:
    """None if ``value`` pickles and loads again, else which step failed and its error."""
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return "pickle", exc
    try:
        pickle.loads(blob)
    except Exception as exc:
        return "load", exc
    return None


def _value_problem(key: str, value: Any, problem: tuple[str, BaseException]) -> str:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    step, exc = problem
    if step == "pickle":
        text = f"the result {key!r} of type {name} could not be pickled to send it back: {exc!r}"
    else:
        text = f"the result {key!r} of type {name} pickles but cannot be loaded again to send it back: {exc!r}"
    return repr(TypeError(text))
