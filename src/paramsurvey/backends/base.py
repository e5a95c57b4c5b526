"""The small contract every backend keeps (cf. concurrent.futures' Executor).

The engine owns the survey: which psets run, in which groups, retries, results, journal, progress.
A backend only runs groups: it is started once, told about each map's function, handed groups
while it has free slots, and polled for outcomes. It knows nothing about DataFrames.

    start() -> begin_map(ctx) -> [submit(task) while free_slots()] / poll(timeout) -> end_map()
                                  ... -> cancel() on Ctrl-C ... -> shutdown()

On Ctrl-C the engine's signal handler calls ``wakeup()``: poll() waits on ``wake_fd`` beside its
workers, so it returns at once.

Outcomes are data: a finished group (``GroupDone``), or one pset that took its worker down
(``PsetLost``: crashed or timed out). Psets a dead worker had not finished are the backend's to run
again; the engine never sees them twice.
"""

from __future__ import annotations

import abc
import hashlib
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .._config import Settings

# The records a backend trades with the engine live in ``_records``; re-exported here for the
# package's own modules that name them through the backend contract.
from .._records import GroupDone, GroupResult, MapContext, Outcome, PsetLost, Task
from ..exceptions import ArgumentTypeError

__all__ = ["Backend", "GroupDone", "GroupResult", "MapContext", "Outcome", "PsetLost", "Task", "crash_message",
           "describe_wait_status", "CRASH_ISOLATION", "IN_PROCESS", "MAX_TASKS_PER_CHILD", "TIMEOUT",
           "THREADS_SET_BY_PARAMSURVEY"]

# Capability flags: what a backend can promise (the contract tests read them).
TIMEOUT = "timeout"                        # stops one pset past its timeout, records 'timeout'
CRASH_ISOLATION = "crash_isolation"        # a dying worker costs only the pset it ran
MAX_TASKS_PER_CHILD = "max_tasks_per_child"
IN_PROCESS = "in_process"                  # runs in the driver: Ctrl-C interrupts the worker itself

# Thread variables init() set in the driver's environment itself (name -> value): not the user's
# choice, so a Ray or Dask task still gets its own cores' worth of threads.
THREADS_SET_BY_PARAMSURVEY: dict[str, str] = {}


# Why a worker process most likely died of a signal, said beside its name: the signal alone means
# little to most users, and each has one usual culprit.
SIGNAL_CAUSES: dict[int, str] = {
    signal.SIGKILL: "often the out-of-memory killer (or someone's kill -9)",
    signal.SIGSEGV: "a crash in native code (a C extension)",
    signal.SIGBUS: "a crash in native code (a C extension)",
    signal.SIGFPE: "a crash in native code (a C extension)",
    signal.SIGILL: "a crash in native code (a C extension)",
    signal.SIGABRT: "a C library abort",
    signal.SIGTERM: "stopped from outside (a job scheduler's time limit, or someone's kill)",
}


def crash_message(signum: int | None = None, exit_code: int | None = None, when: str = "",
                  engine_says: str = "") -> str:
    """The one message for a worker process that died under a pset, on every backend: what ended it
    (a signal, by number and name, or an exit code) and its likely cause. ``when`` follows the event
    (e.g. " while sending its results"); ``engine_says`` is what Ray or Dask reported, appended."""
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "unknown signal"
        event = f"killed by signal {signum} ({name})"
        cause = SIGNAL_CAUSES.get(signum, "a signal from another process or the system")
    elif exit_code is not None:
        event = f"exited with code {exit_code}"
        cause = f"the worker called sys.exit/os._exit with code {exit_code}"
    else:
        event, cause = "died", "cause unknown"
    message = f"worker process {event}{when}: {cause}"
    return f"{message}; {engine_says}" if engine_says else message


def describe_wait_status(status: int | None, when: str = "") -> str:
    """crash_message for a status from os.waitpid() (None: never heard)."""
    if status is None:
        return crash_message(when=when)
    if os.WIFSIGNALED(status):
        return crash_message(signum=os.WTERMSIG(status), when=when)
    if os.WIFEXITED(status):
        return crash_message(exit_code=os.WEXITSTATUS(status), when=when)
    return crash_message(when=when, engine_says=f"wait status {status}")


class Backend(abc.ABC):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # capability -> why this backend lacks it, said when a setting that needs it is refused
    refusal_hints: ClassVar[dict[str, str]] = {}
    # A group should run about this long: long enough that per-task overhead fades (a local task
    # costs microseconds, a Ray or Dask task a millisecond or more),
    # short enough that progress moves and a crash re-runs little.
    target_group_seconds: ClassVar[float] = 0.2
    # ...and never less than this while psets remain (0: split the tail as finely as fairness
    # wants): a group that runs shorter than one round trip to a worker only adds latency.
    min_group_seconds: ClassVar[float] = 0.0
    # What the backend needs of each map's MapContext, which the engine builds once from these
    # (frozen: no backend changes it). A worker running in the driver must copy each pset (else
    # the user's own dict is handed over) and let Ctrl-C through (it stops the map, it is not the
    # pset's failure); a worker whose slot the driver reads for timeouts needs each pset's start
    # time; a worker forked from a process started before the map needs the driver's sys.path.
    copies_psets: ClassVar[bool] = False
    catches_interrupt: ClassVar[bool] = True
    times_psets: ClassVar[bool] = False
    ships_sys_path: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # one per backend instance, i.e. per init() session: a long-lived worker process (an
        # existing Ray or Dask cluster's) runs the initializer again for the next session
        self.session_key = os.urandom(8).hex()
        self._init_digest: tuple[Any, Any, str] | None = None
        # Ctrl-C's way into poll(): the engine's SIGINT handler calls wakeup(), which writes a byte
        # here; poll() waits on wake_fd beside its workers, so the loop wakes at once
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    def wakeup(self) -> None:
        """Make poll() return now. Called from a signal handler: one write to a non-blocking pipe,
        nothing else (a full pipe is already due to wake poll())."""
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    def drain_wakeups(self) -> None:
        """Forget wakeups already seen (at a map's end): a byte left in the pipe would wake every
        poll() of the next map at once."""
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except OSError:  # BlockingIOError: empty
            pass

    def __del__(self) -> None:
        for fd in (getattr(self, "wake_fd", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def init_key(self, initializer: Callable[..., Any] | None, initargs: Any) -> str:
        """``MapContext.init_key``: the same for every map of this session with this initializer and
        initargs, different after finalize()/init() or with another initializer ('' for none).

        A digest of what workers receive; computed again only when the objects change (the cache
        holds them, so their ids cannot be reused). In-process backends never pickle them: their
        identity is the key."""
        if initializer is None:
            return ""
        cached = self._init_digest
        if cached is None or cached[0] is not initializer or cached[1] is not initargs:
            if IN_PROCESS in self.capabilities:
                # the settings rebuild the initargs tuple for every map: its items are what persist
                digest = ".".join(f"{id(x):x}" for x in (initializer, *initargs))
            else:
                digest = hashlib.sha256(_pickled_initializer(initializer, initargs)).hexdigest()[:16]
            self._init_digest = cached = (initializer, initargs, digest)
        return f"{self.session_key}.{cached[2]}"

    @abc.abstractmethod
    def start(self) -> None: ...

    def update_settings(self, settings: Settings) -> None:
        """init() called again with the same backend: take the new settings."""
        self.settings = settings

    @abc.abstractmethod
    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        """Ship the map's function and options to the workers; raise if they cannot load it."""

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more groups the backend wants now (to keep every worker busy, no more)."""

    def worker_count(self) -> int:
        return max(1, self.core_count())

    @abc.abstractmethod
    def submit(self, task: Task) -> None: ...

    @abc.abstractmethod
    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        """Wait up to timeout seconds (None: until something happens) for outcomes."""

    @abc.abstractmethod
    def busy(self) -> bool:
        """Is any group still submitted and not yet reported?"""

    def end_map(self) -> None:  # noqa: B027 - optional hook, most backends need nothing here
        """The map is over (normally or not)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop every running group now (Ctrl-C); the backend stays usable for the next map."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop everything this backend started. Safe to call twice."""

    @abc.abstractmethod
    def core_count(self) -> int: ...

    @abc.abstractmethod
    def resources(self) -> list[dict[str, Any]]: ...


def _pickled_initializer(initializer: Callable[..., Any], initargs: Any) -> bytes:
    from .. import _pickling
    from .._worker import callable_name

    try:
        return _pickling.dumps_by_value((initializer, initargs))
    except Exception as exc:
        raise ArgumentTypeError(f"init(initializer=...): the initializer {callable_name(initializer)} or its initargs "
                        f"could not be pickled to send to worker processes: {exc!r}") from exc
