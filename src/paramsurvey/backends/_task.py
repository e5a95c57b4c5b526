"""The task body every Ray and Dask task runs, inside the remote worker process: run one group,
return it pickled; the worker's cache of map contexts; the per-pset alarm (timeouts, Ray only).

    run_task(token, fetch, packed group, attempt, cores, watch)
        context: cached by map token (fetch() only on this process's first group of a map)
        psets:   unpickled here (a pset this node cannot load: 'psets_error', each runs alone)
        run_group(ctx, ...) --> encode_result(GroupResult) --> bytes for the driver

Standard library only at import (plus paramsurvey's light ``_worker``, and cloudpickle to load the
function): this module loads in every Ray/Dask worker process. The driver's side is ``_remote``.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .. import _hashing
from .. import _worker as _worker_module
from .._records import GroupResult, MapContext, PsetWatch, Status, failed_group
from .._worker import InitializerFailed, encode_result, run_group

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Maps whose context a worker process keeps: the current one, and one more for a map that begins
# while stragglers of the previous one still run elsewhere.
CONTEXTS_KEPT = 2
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


def run_task(token: str, fetch: Callable[[], bytes], packed: bytes, attempt: int, cores: int,
             watch: PsetWatch | None = None) -> Any:
    """The body of every Ray/Dask task: run one group (``pack``ed), return it pickled (or a setup
    error). ``watch``, if given, hears of each pset as it starts (Dask's cancel-watch); with a
    timeout, the alarm does."""
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
        alarm = watch = _Alarm(timeout, attempt, _watchdog_link.begin(token, report_to, timeout + HARD_TIMEOUT_GRACE))
    try:
        result = run_group(ctx, positions, psets, attempt, watch)
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


class _Alarm:
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

    def starting(self, position: int) -> None:
        """A pset starts: its timer (and the watchdog's) starts now."""
        self._running(position)

    def finished(self) -> None:
        """The group is done: no timer runs until its next group."""
        self._running(-1)

    def _running(self, position: int) -> None:
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
