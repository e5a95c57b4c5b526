"""What the Ray and Dask backends share: the task that runs one group inside a remote worker, and
the driver-side splitting of groups (by per-pset options, after a crash, for max_tasks_per_child).

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

Standard library only at import (plus paramsurvey's light ``_worker``): this module loads in every
Ray/Dask worker process.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from .. import _hashing, _pickling
from .. import _worker as _worker_module
from .._records import Failure, GroupDone, GroupResult, MapContext, PsetLost, Status, Task
from .._worker import InitializerFailed, Slot, encode_result, run_group
from ..exceptions import ArgumentTypeError, BackendError
from .base import THREADS_SET_BY_PARAMSURVEY

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Maps whose context a worker process keeps: the current one, and one more for a map that begins
# while stragglers of the previous one still run elsewhere.
CONTEXTS_KEPT = 2
# A group that took its worker down is split into this many pieces, each run again: the pieces
# without the killer pset finish, the one holding it is split again, down to the pset alone.
# 8 pieces: few rounds of crashes (each costs a worker restart), few extra tasks.
CRASH_SPLIT = 8
# A pset past its timeout gets SIGALRM (PsetTimeout), and again every second; one still running
# this much later is stuck where no signal handler runs (C code holding the GIL): the worker's
# watchdog process has the driver stop it.
HARD_TIMEOUT_GRACE = 5.0
# Marks a task's setup error as the per-worker initializer's (not the function's): the driver's
# message then names it rather than suggesting a missing module.
INITIALIZER = "initializer"

# map token -> (context, the driver's directory, the user's thread variables, timeout, where the
# driver hears of psets stuck past their timeout)
_Entry = tuple[MapContext, str, dict[str, str], "float | None", "tuple[str, int] | None"]
_contexts: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
_contexts_lock = threading.Lock()


# -- driver side -----------------------------------------------------------------------------------
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


def failed_group(positions: Sequence[int], psets: Sequence[dict[str, Any]],
                 message: str | Sequence[str]) -> GroupResult:
    """Every pset of a group that could not run (e.g. bad per-pset options) as an 'exception'
    failure, so the survey goes on and the reason lands in ``missing``. ``message``: one for all,
    or one per pset."""
    n = len(positions)
    messages = [message] * n if isinstance(message, str) else list(message)
    return GroupResult(list(positions), [0.0] * n, [0.0] * n, [], {}, {},
                       [Failure(p, Status.EXCEPTION, m, "") for p, m in zip(positions, messages)], {})


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


# -- worker side -----------------------------------------------------------------------------------
def run_task(token: str, fetch: Callable[[], bytes], packed: bytes, attempt: int, cores: int,
             view: SlotView | None = None) -> Any:
    """The body of every Ray/Dask task: run one group (``pack``ed), return it pickled (or a setup
    error). ``view``, if given, hears of each pset as it starts (see SlotView)."""
    try:
        ctx, home, user_threads, timeout, report_to = _context(token, fetch)
    except BaseException as exc:
        return ("setup_error", repr(exc), traceback.format_exc())
    try:
        positions, psets = pickle.loads(packed)
    except Exception as exc:  # e.g. a value of a class this node cannot import
        return ("psets_error", repr(exc), traceback.format_exc())
    threads = str(max(1, int(cores)))
    for var in THREAD_VARS:  # numeric libraries get the pset's cores unless the user said otherwise
        os.environ[var] = user_threads.get(var, threads)
    try:
        os.chdir(ctx.chdir or home)  # the driver's directory, where it exists on this node
    except OSError as exc:
        if ctx.chdir:  # asked for, and missing on this node: every pset fails the same way
            message = repr(OSError(f"chdir={ctx.chdir!r} is not usable on this node: {exc!r}"))
            return pickle.dumps(failed_group(positions, psets, message))
    alarm = None
    if timeout is not None:
        alarm = view = _Alarm(timeout, attempt, _watchdog_link.begin(token, report_to, timeout + HARD_TIMEOUT_GRACE))
    slot = Slot(view, timed=False) if view is not None else _worker_module.NO_SLOT
    try:
        result = run_group(ctx, positions, psets, attempt, slot)
    except InitializerFailed as exc:  # no pset can run here: the driver stops the map, naming it
        return ("setup_error", exc.message, exc.traceback, INITIALIZER)
    if alarm is not None and alarm.fired:
        result = _mark_timeouts(result, alarm.fired, alarm.timeout)
    return encode_result(result)  # a result value that cannot travel: that pset fails, the rest travel


def _context(token: str, fetch: Callable[[], bytes]) -> _Entry:
    with _contexts_lock:
        cached = _contexts.get(token)
        if cached is not None:
            _contexts.move_to_end(token)
            return cached
    sys_path, blob, user_threads, home, timeout, report_to = pickle.loads(fetch())
    for path in reversed(sys_path):  # before unpickling: functions of the user's modules load by name
        if path not in sys.path:
            sys.path.insert(0, path)
    ctx = pickle.loads(blob)
    entry: _Entry = (ctx, home, user_threads, timeout, report_to)
    with _contexts_lock:
        _contexts[token] = entry
        while len(_contexts) > CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return entry


class PsetTimeout(BaseException):
    """Raised inside a pset that ran past its timeout (a BaseException: ``except Exception`` in the
    user's code must not swallow it)."""


class SlotView:
    """Stands in for the shared memory a multiprocessing worker's ``Slot`` writes to: ``run_group``
    stores each pset's position in ``view[0]`` as the pset starts, and -1 when the group is done.
    Subclasses act on it in the worker itself."""

    def __setitem__(self, index: int, value: float) -> None:
        if index == 0:
            self.position(int(value))

    def position(self, position: int) -> None:
        raise NotImplementedError


class _Alarm(SlotView):
    """Per-pset timeout, in two layers. SIGALRM, in the worker process's main thread (where Ray
    runs tasks): the timer is armed as each pset starts; the handler raises PsetTimeout inside the
    pset, and the group goes on. A pset stuck where no signal handler runs (C code that holds the
    GIL) is for the worker's watchdog process, told of each pset as it starts (see _watchdog)."""

    def __init__(self, timeout: float, attempt: int, watchdog: _WatchdogLink | None) -> None:
        self.timeout = timeout
        self.attempt = attempt
        self.watchdog = watchdog
        self.current = -1
        self.fired: set[int] = set()
        self.signals = threading.current_thread() is threading.main_thread()  # only there
        if self.signals:
            _install_alarm(self)

    def position(self, position: int) -> None:
        if self.signals:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.current = position
        if self.watchdog is not None:
            self.watchdog.running(position, self.attempt)
        if position >= 0 and self.signals:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)


class _WatchdogLink:
    """This worker process's pipe to its watchdog process, started at its first timed group."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def begin(self, token: str, report_to: tuple[str, int] | None, limit: float) -> _WatchdogLink | None:
        """A timed group begins; None when no watchdog can run (the SIGALRM layer still does)."""
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.proc = subprocess.Popen([sys.executable, "-I", "-S", _WATCHDOG, str(os.getpid())],
                                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            except OSError:
                self.proc = None
                return None
        host, port = report_to if report_to is not None else ("-", 0)
        return self if self._say(f"map {token} {host} {port} {limit!r}\n".encode()) else None

    def running(self, position: int, attempt: int) -> None:
        self._say(b"run %d %d\n" % (position, attempt) if position >= 0 else b"idle\n")

    def _say(self, line: bytes) -> bool:
        proc = self.proc
        if proc is None or proc.stdin is None:
            return False
        try:
            os.write(proc.stdin.fileno(), line)  # a few bytes on a pipe: never blocks, ~1 us
            return True
        except OSError:  # the watchdog died: started again at the next group
            self.proc = None
            return False


_WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_watchdog.py")
_watchdog_link = _WatchdogLink()
_active_alarm: _Alarm | None = None
# Frames of paramsurvey's own bookkeeping around psets: an alarm landing there is retried shortly
# rather than raised outside the try block that records a pset's failure.
_OWN_FILES = frozenset({_worker_module.__file__, _hashing.__file__, __file__})


def _on_alarm(signum: int, frame: Any) -> None:
    alarm = _active_alarm
    if alarm is None or alarm.current < 0:
        return
    if frame is not None and frame.f_code.co_filename in _OWN_FILES:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    alarm.fired.add(alarm.current)
    signal.setitimer(signal.ITIMER_REAL, 1.0)  # again, should the pset's code swallow the first
    raise PsetTimeout(f"pset ran past its timeout of {alarm.timeout:g} s")


def _install_alarm(alarm: _Alarm) -> None:
    global _active_alarm
    _active_alarm = alarm
    if signal.getsignal(signal.SIGALRM) is not _on_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)


def _mark_timeouts(result: GroupResult, fired: set[int], timeout: float) -> GroupResult:
    message = f"pset ran past its timeout of {timeout:g} s and was interrupted"
    failures = [f._replace(status=Status.TIMEOUT, exception=message)
                if f.position in fired and f.status == Status.CRASHED else f for f in result.failures]
    return result._replace(failures=failures)


# A cluster's core count is asked of its scheduler at most this often (a round trip each time).
CORES_TTL = 1.0


def cached_worker_count(backend: Any) -> int:
    """``backend.core_count()`` at most once per CORES_TTL: the engine sizes every group with it."""
    now = time.monotonic()
    if now - backend.cores_at > CORES_TTL:
        backend.cores, backend.cores_at = backend.core_count(), now
    return max(1, backend.cores)
