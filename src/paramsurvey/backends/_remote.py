"""The driver's side of the Ray and Dask backends' tasks: the map's setup, groups packed to send,
split (by per-pset options, after a crash, for max_tasks_per_child) and decoded when they return.
The task body itself, run in the remote worker, is ``_task``; the backends' shared logic is
``_cluster.ClusterBackend``.

    driver                                            remote worker process (Ray or Dask)
    ------                                            -----------------------------------
    begin_map: setup = pickle((sys.path, cloudpickle(ctx), thread env, cwd, timeout, report_to))
               stored once per map (ray.put / a Dask task) -------> fetched on the first group only,
                                                                   then cached by map token
    submit:    (token, setup, pack(group), attempt, cores) -------> run_task():
                                                                   run_group(ctx, ...) ->
    poll:      GroupResult <---- pickle.dumps(GroupResult) (bytes) <---'

A group is returned as bytes pickled in the worker (``encode_result``): a result that cannot be
pickled, or loaded again, is found there and made a failure of its pset alone, as the
multiprocessing backend does. A pset that cannot be pickled to send fails alone in the driver
(``pack``); a group whose results the driver cannot load fails its own psets (``decode``).

Runs in the driver only.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .. import _pickling
from .._records import GroupDone, GroupResult, MapContext, PsetLost, Status, Task, failed_group
from ..exceptions import ArgumentTypeError, BackendError
from ._task import INITIALIZER, THREAD_VARS
from .base import THREADS_SET_BY_PARAMSURVEY

# A group that took its worker down is split into this many pieces, each run again: the pieces
# without the killer pset finish, the one holding it is split again, down to the pset alone.
# 8 pieces: few rounds of crashes (each costs a worker restart), few extra tasks.
CRASH_SPLIT = 8


def make_setup(ctx: MapContext, timeout: float | None, report_to: tuple[str, int] | None = None) -> bytes:
    """Everything a worker needs for one map, pickled once (the context itself by value where it
    must be: lambdas, closures and functions of __main__, keeping their real file names so that a
    failed pset's traceback points at the user's code). The context is as the engine built it from
    the backend's needs: psets arrive as fresh copies (none to make), a KeyboardInterrupt in a
    remote worker is its pset's failure, and the alarm, not a slot, keeps each pset's time."""
    try:
        blob = _pickling.dumps_by_value(ctx)
    except Exception as exc:
        raise ArgumentTypeError(f"the worker function, user_kwargs or out_subdirs could not be pickled "
                        f"to send to remote workers: {exc!r}") from exc
    user_threads = {var: value for var in THREAD_VARS
                    if (value := os.environ.get(var)) and THREADS_SET_BY_PARAMSURVEY.get(var) != value}
    return pickle.dumps((list(sys.path), blob, user_threads, os.getcwd(), timeout, report_to),
                        protocol=pickle.HIGHEST_PROTOCOL)


class RunAlone(Exception):
    """A worker could not load a group's psets: run each pset of it alone, so that only the psets
    that cannot be loaded fail."""


def decode(payload: Any, task: Task) -> GroupResult:
    """A task's return value back to a GroupResult. A worker that could not load the map's function,
    or whose initializer failed, is the backend's failure. A group whose psets the worker could
    not load raises RunAlone (a pset alone fails); results this process cannot load fail the
    group's psets (the survey goes on)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            result = pickle.loads(payload)
        except Exception as exc:  # e.g. a result value of a class this process cannot import
            message = repr(RuntimeError(f"the group's results could not be loaded in the driver: {exc!r}"))
            return failed_group(task.positions, task.psets, message)
        assert isinstance(result, GroupResult)
        return result
    kind, error, tb = payload[:3]
    if kind == "psets_error":
        if len(task.positions) > 1:
            raise RunAlone(error)
        message = repr(RuntimeError(f"the worker could not load this pset: {error}"))
        return failed_group(task.positions, task.psets, message)
    if payload[3:] == (INITIALIZER,):
        raise BackendError(f"the per-worker initializer failed in a remote worker, so no pset can run: "
                           f"{error}\n{tb}")
    raise BackendError(f"a remote worker could not load the worker function: {error}\n{tb}"
                       "(Is it defined in a module the workers can import, with the same packages "
                       "installed on every node? Functions of __main__, lambdas and closures are "
                       "shipped by value.)")


def extract_timeouts(result: GroupResult, task: Task) -> tuple[GroupResult, list[PsetLost]]:
    """Psets interrupted at their timeout, taken out of a group's result as PsetLost outcomes, so
    that the engine treats them as on every backend (``retries`` runs them again)."""
    timed_out = [f for f in result.failures if f.status == Status.TIMEOUT]
    if not timed_out:
        return result, []
    where = {position: i for i, position in enumerate(task.positions)}
    lost = [PsetLost(f.position, task.psets[where[f.position]], task.attempt, Status.TIMEOUT, f.exception)
            for f in timed_out]
    gone = {f.position for f in timed_out}
    keep = [i for i, p in enumerate(result.ran) if p not in gone]
    return result._replace(
        ran=[result.ran[i] for i in keep], wall=[result.wall[i] for i in keep],
        iowait=[result.iowait[i] for i in keep],
        failures=[f for f in result.failures if f.status != Status.TIMEOUT]), lost


def split_by(task: Task, key: str) -> list[tuple[Any, Task]]:
    """Cut a group where the psets' per-pset option dict (``pset[key]``) changes: a task's options
    apply to all of its psets. Returns (options or None, sub-task) pairs in order."""
    psets = task.psets
    if not any(key in pset for pset in psets):
        return [(None, task)]
    pieces: list[tuple[Any, Task]] = []
    start = 0
    current = _option(psets[0].get(key))
    for i in range(1, len(psets) + 1):
        value = _option(psets[i].get(key)) if i < len(psets) else None
        if i == len(psets) or value != current:
            pieces.append((current, sub_task(task, start, i)))
            start = i
            current = value
    return pieces


def _option(value: Any) -> Any:
    # psets from a DataFrame have the column in every row: NaN (or None) where a pset has no dict
    return None if value is None or (isinstance(value, float) and value != value) else value


def sub_task(task: Task, start: int, stop: int) -> Task:
    if start == 0 and stop == len(task.positions):
        return task
    return Task(task.task_id, task.positions[start:stop], task.psets[start:stop], task.attempt)


def chunks(task: Task, size: int) -> list[Task]:
    n = len(task.positions)
    return [sub_task(task, i, min(i + size, n)) for i in range(0, n, size)]


def split_after_crash(task: Task) -> list[Task]:
    n = len(task.positions)
    return chunks(task, -(-n // min(CRASH_SPLIT, n)))


def map_given(init_options: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a map's merged backend dict that map() gave (or gave another value): init's
    dict chose and started the cluster, map's sets the map's tasks."""
    return {k: v for k, v in options.items() if k not in init_options or _differs(init_options[k], v)}


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    absent = object()
    return sorted(str(k) for k in set(old) | set(new) if _differs(old.get(k, absent), new.get(k, absent)))


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # values that do not compare (arrays...): only the same object is unchanged
        return a is not b


def options_key(options: dict[str, Any]) -> Hashable:
    return repr(sorted(options.items()))


def pack(task: Task) -> tuple[Task, bytes | None, GroupDone | None]:
    """A group's positions and psets as one bytes object: the engines then carry it as is, rather
    than walking every pset (Dask looks for futures inside task arguments; Ray's cloudpickle calls
    back into Python for each dict), ~10x faster for a group of small psets.

    Returns (the task to send, its bytes or None when nothing is left to send, the failures of
    psets no pickler can send or None): such a pset fails alone, with a message naming the value
    and its type, and the rest of its group is sent."""
    try:
        return task, _dumps((task.positions, task.psets)), None
    except Exception as exc:
        group_error = exc
    problems = [_why_unpicklable(pset) for pset in task.psets]
    if not any(problems):  # each pset pickles alone but not the group: fail it whole, never loop
        problems = [_unpicklable_message(group_error)] * len(problems)
    bad = subset(task, [i for i, problem in enumerate(problems) if problem])
    failed = GroupDone(bad, failed_group(bad.positions, bad.psets, [p for p in problems if p]))
    good = [i for i, problem in enumerate(problems) if not problem]
    if not good:
        return task, None, failed
    rest = subset(task, good)
    return rest, _dumps((rest.positions, rest.psets)), failed


def subset(task: Task, indices: Sequence[int]) -> Task:
    return Task(task.task_id, [task.positions[i] for i in indices], [task.psets[i] for i in indices],
                task.attempt)


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a pset value that only cloudpickle handles (a lambda, a local class...)
        import cloudpickle

        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _why_unpicklable(pset: dict[str, Any]) -> str | None:
    """None if the pset can be sent, else a message naming the first value that cannot."""
    try:
        _dumps(pset)
        return None
    except Exception as exc:
        whole = exc
    for key, value in pset.items():
        try:
            _dumps(value)
        except Exception as exc:
            kind = type(value)
            return _unpicklable_message(exc, f"its value {key!r} of type {kind.__module__}.{kind.__qualname__} ")
    return _unpicklable_message(whole)


def _unpicklable_message(exc: BaseException, what: str = "") -> str:
    return repr(TypeError(f"the pset could not be pickled to send it to a worker: {what}({exc!r})"))
