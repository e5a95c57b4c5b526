"""The scheduler of one map(): groups, the in-flight window, retries, results, progress, Ctrl-C.

    PsetSource --positions--> groups (Task) --submit--> Backend --poll--> GroupDone / PsetLost
        ^                                                                      |
        |   retries (a fresh attempt of a crashed or timed-out pset) <---------+
        |                                                                      v
    journal (done psets skipped) <---- records ----> ColumnAccumulator, failures, PerfStats,
                                                     Counters -> ProgressReporter, out_func, journal

Group size is automatic unless given: each group should run about ``backend.target_group_seconds``
(measured from the psets' own durations), and no group may be larger than a fair share of what is
left, so that every worker stays busy to the end (guided self-scheduling: no straggler at the tail).

The actors of one map in the driver process, and what each one touches:

The driver loop (:meth:`Survey._loop`, the thread that called ``map()``) is the only one that touches
the survey's state. It reads the backend's outcomes (``poll()``, which waits at most until the
:class:`~paramsurvey._clock.ReportClock` says the next report is due, never more than its heartbeat),
the interrupt flag, and the psets. It writes the tasks it submits, the counters, the result columns,
the failures, the statistics, the progress display and logfile (:meth:`ProgressReporter.tick`,
:meth:`PerfStats.report`), and calls ``out_func``; to the journal and to graphite it only hands
outcomes and points, never waiting on a disk or a network. It ends when every pset has an outcome
and the backend is idle; or at the interrupt flag (the backend cancels what runs, the rest is
``cancelled``, and :class:`Interrupted` carries the partial results); or on an error, after closing
the live bar and cancelling the backend. ``end_map()`` runs however it ends; unless by an error, the
results are then assembled from what it recorded.

The journal's writer thread (``paramsurvey-journal``, one per map with ``journal=``) reads the
outcomes the loop appends to its pending list (under its own mutex) and writes Parquet part files
and the journal's metadata, fsync'd: a finished pset is on disk within half a second (plus one
write). It ends at ``journal.close()`` (the loop's end, or ``map()`` when the survey failed): it
writes what is left, finishes the metadata and releases the journal's lock while the results are
assembled; ``map()`` waits for that last write before it returns. A journal never closed (a map that
failed before its loop) is closed by an atexit hook.

The carbon sender thread (``paramsurvey-carbon``, one per map with ``carbon_server=``) reads the
points each progress report queues (a bounded queue: the oldest make way, the loop never blocks)
and writes them to the carbon server's socket, reconnecting every 10 s after an outage. It ends when
``map()`` calls ``close()`` after the survey, whatever happened to it: the last points get at most
a second to leave, then a stuck socket is shut.

The SIGINT and SIGTERM handler (installed by :meth:`Survey._sigint_guard` around ``begin_map()`` and
the loop, in the main thread, for each signal that still has Python's default handler; SIGTERM is
what a batch system sends at a job's time limit, on preemption or scancel) reads only whether an
interrupt came before; it writes the interrupt flag and calls ``backend.wakeup()`` (one byte to the
backend's own pipe, which its ``poll()`` waits on beside its workers), so the loop wakes at once and
stops between two outcomes, never in the middle of recording one. A second signal, or one on an
in-process backend (serial: the psets run inside the loop's own ``poll()``), raises
``KeyboardInterrupt`` at once instead. It ends with the loop: the previous handlers are restored.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from . import _logfile
from ._clock import ReportClock
from ._columns import ColumnAccumulator
from ._config import Settings
from ._progress import Counters, ProgressReporter
from ._psets import PsetSource
from ._records import GroupDone, GroupInterrupted, GroupResult, JournalSink, MapContext, PsetLost, Status, Task
from ._results import MISSING_COLUMNS, MapResults
from .backends.base import IN_PROCESS, MAX_TASKS_PER_CHILD, TIMEOUT, Backend
from .exceptions import ArgumentError, Interrupted
from .stats import PerfStats

log = logging.getLogger("paramsurvey")

# Before any duration is measured, groups hold this many psets: small, so that slow psets spread
# over every worker at once; the next groups are sized from measurements.
FIRST_GROUP = 1
# A group never holds more than this: bounds one message's memory and keeps progress moving.
MAX_GROUP = 25_000
# Weight of the newest group in the moving average of pset duration.
EMA_WEIGHT = 0.3
# Driver-side cost of one pset (pickling, assembly), so trivial psets still form sane groups.
PSET_OVERHEAD = 2e-6


# What each setting needs of a backend, and why it is refused without it: (capability, the setting
# it enables, whether init() refuses it already, the message). A setting only init() takes is refused
# there; one a map may give or change (timeout) is refused by map(), as it always was. A backend may
# add a hint of its own (``Backend.refusal_hints``).
CAPABILITY_TABLE: tuple[tuple[str, str, bool, str], ...] = (
    (TIMEOUT, "timeout", False,
     "timeout= is not supported by the {backend} backend: it cannot stop one pset without stopping the "
     "survey (use the multiprocessing backend)"),
    (MAX_TASKS_PER_CHILD, "max_tasks_per_child", True,
     "max_tasks_per_child is not supported by the {backend} backend ({hint}); use the multiprocessing or "
     "ray backend"),
)
# An in-process backend has no worker process to replace: max_tasks_per_child means nothing there
# and was always accepted (0.4.x scripts pass it whatever the backend).
MEANINGLESS_IN_PROCESS = frozenset({MAX_TASKS_PER_CHILD})


def refuse_unsupported(backend: type[Backend] | Backend, settings: Settings, at_init: bool = False) -> None:
    """Raise ArgumentError, before any work, for a setting the backend lacks the capability for
    (``at_init``: only the settings init() refuses)."""
    capabilities = backend.capabilities
    for capability, setting, by_init, message in CAPABILITY_TABLE:
        if capability in capabilities or getattr(settings, setting) is None or (at_init and not by_init):
            continue
        if IN_PROCESS in capabilities and capability in MEANINGLESS_IN_PROCESS:
            continue
        hint = backend.refusal_hints.get(capability, "it cannot do that")
        raise ArgumentError(message.format(backend=backend.name, hint=hint))


class Survey:
    """Runs one map() on a started backend and returns its MapResults."""

    def __init__(self, backend: Backend, settings: Settings, func: Callable[..., Any], source: PsetSource,
                 todo: Sequence[int] | None = None, journal: JournalSink | None = None,
                 carbon: Any = None) -> None:
        self.backend = backend
        self.settings = settings
        self.func = func
        self.source = source
        self.todo: Sequence[int] = range(len(source)) if todo is None else todo
        self.cursor = 0
        self.retry_queue: deque[tuple[int, dict[str, Any], int]] = deque()
        self.journal = journal
        self.counters = Counters(total=len(source))
        # one clock for every periodic report: the loop waits until the next one is due
        self.clock = ReportClock()
        self.reporter = ProgressReporter(settings.name, settings.verbose, settings.progress_dt, carbon,
                                         clock=self.clock)
        self.stats = PerfStats(vstats=settings.vstats, verbose=settings.verbose, clock=self.clock)
        self.accumulator = ColumnAccumulator()
        self.failures: dict[int, tuple[str, str, str]] = {}  # position -> (status, exception, traceback)
        self.done = np.zeros(len(source), dtype=bool)
        self.mean_seconds: float | None = None
        self.task_ids = 0
        self.wall_name = f"{settings.name}_wallclock"
        self.iowait_name = f"{settings.name}_iowait"
        self.collision_logged = False
        self.traceback_hint_given = False
        self.interrupted = False

    # -- grouping -----------------------------------------------------------------------------
    def _group_size(self) -> int:
        if self.settings.group_size:
            return self.settings.group_size
        remaining = len(self.todo) - self.cursor
        fair_share = math.ceil(remaining / (2 * self.backend.worker_count()))
        if self.mean_seconds is None:
            return max(1, min(FIRST_GROUP, fair_share))
        per_pset = self.mean_seconds + PSET_OVERHEAD
        wanted = self.backend.target_group_seconds / per_pset
        # no smaller than the backend's round trip is worth (a tail of tiny groups is latency-bound)
        fair_share = max(fair_share, int(self.backend.min_group_seconds / per_pset))
        return max(1, min(int(wanted), fair_share, MAX_GROUP))

    def _next_task(self) -> Task | None:
        self.task_ids += 1
        if self.retry_queue:  # retries go first, alone: they may crash again
            position, pset, attempt = self.retry_queue.popleft()
            return Task(self.task_ids, [position], [pset], attempt)
        if self.cursor >= len(self.todo):
            return None
        size = self._group_size()
        start, stop = self.cursor, min(self.cursor + size, len(self.todo))
        self.cursor = stop
        if isinstance(self.todo, range) and self.todo.step == 1:
            first = self.todo.start
            positions = list(range(first + start, first + stop))
            psets = self.source.get_range(first + start, first + stop)
        else:
            positions = list(self.todo[start:stop])
            psets = self.source.get(positions)
        return Task(self.task_ids, positions, psets)

    def adopt(self, previous: Sequence[GroupResult]) -> None:
        """Outcomes a journal already holds (resume): counted and kept as if they had just
        finished, never run again, never handed to out_func or the journal a second time."""
        for result in previous:
            self._keep(result)
            for failure in result.failures:
                self._count_failure(failure.position, failure.status, failure.exception, failure.traceback)

    def _keep(self, result: GroupResult) -> None:
        """Count a group's successes and keep its rows and timings (fresh or from a journal)."""
        self.counters.finished += len(result.ok)
        if len(result.ran):
            self.done[result.ran] = True
            self.stats.add_many(self.wall_name, result.wall)
            self.stats.add_many(self.iowait_name, result.iowait)
        if result.raw:
            self.stats.combine_stats(result.raw)
        if len(result.ok) and self.settings.keep_results:
            self.accumulator.add_chunk(result.ok, result.columns, result.absent)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> MapResults:
        settings = self.settings
        ctx = self._map_context()
        log.info("%s: starting map of %d psets on the %s backend", settings.name, len(self.todo),
                 self.backend.name, extra={"ps_verbose": 2})
        with self._sigint_guard():
            completed = False
            try:
                self.backend.begin_map(ctx, settings)
                self._loop()
                completed = True
            except GroupInterrupted as exc:  # in-process psets: keep what the interrupted group finished
                self.interrupted = True
                if exc.task is not None:
                    self._on_group(exc.result, exc.task.attempt)
            except KeyboardInterrupt:
                self.interrupted = True
            except BaseException:
                self.reporter.release()  # a live progress bar must not outlive a failed map
                raise
            finally:
                if not completed:  # interrupted or failed: nothing of this map may run on
                    self.backend.cancel()
                self.backend.end_map()
        results = self._finish()
        if self.interrupted:
            raise Interrupted(results)
        return results

    def _map_context(self) -> MapContext:
        """The map's one context, from the settings and what the backend says its workers need."""
        settings, backend = self.settings, self.backend
        return MapContext(self.func, settings.user_kwargs, settings.name, backend.name, seed=settings.seed,
                          chdir=settings.chdir, out_subdirs=settings.out_subdirs,
                          copy_psets=backend.copies_psets, catch_interrupt=backend.catches_interrupt,
                          sys_path=list(sys.path) if backend.ships_sys_path else None,
                          timed=backend.times_psets and settings.timeout is not None,
                          initializer=settings.initializer, initargs=settings.initargs,
                          init_key=backend.init_key(settings.initializer, settings.initargs),
                          psets_have_ray="ray" in self.source.keys)

    def _loop(self) -> None:
        backend = self.backend
        while True:
            if self.interrupted:
                raise KeyboardInterrupt
            while backend.free_slots() > 0:
                task = self._next_task()
                if task is None:
                    break
                self.counters.active += len(task.positions)
                backend.submit(task)
            if not backend.busy() and not self.retry_queue and self.cursor >= len(self.todo):
                return
            for outcome in backend.poll(self.clock.next_due()):
                if isinstance(outcome, GroupDone):
                    self._on_group(outcome.result, outcome.task.attempt)
                else:
                    self._on_lost(outcome)
            self.reporter.tick(self.counters)
            self.stats.report()

    # -- outcomes -------------------------------------------------------------------------------
    def _on_group(self, result: GroupResult, attempt: int = 0) -> None:
        if result.failures and attempt < self.settings.retries:
            result = self._retry_crashed(result, attempt)
        n = len(result.ran)
        self.counters.active -= n
        self._keep(result)
        if n:  # group sizes follow the psets' measured durations
            mean = float(np.asarray(result.wall).mean())
            self.mean_seconds = mean if self.mean_seconds is None else (
                EMA_WEIGHT * mean + (1 - EMA_WEIGHT) * self.mean_seconds)
        for failure in result.failures:
            self._record_failure(*failure)
        if self.settings.out_func is not None:
            self._call_out_func(result)
        if self.journal is not None:
            self.journal.record_group(result)
        if self.settings.verbose >= 3:
            log.info("%s: group of %d psets finished, %d ok", self.settings.name, n, len(result.ok))

    def _retry_crashed(self, result: GroupResult, attempt: int) -> GroupResult:
        """A pset that ended its own run (sys.exit, KeyboardInterrupt) is reported inside its group
        as 'crashed': run it again like a pset whose worker died, and take it out of the group, so
        that only its last attempt is counted, kept and journaled."""
        crashed = {f.position: f for f in result.failures if f.status == Status.CRASHED}
        if not crashed:
            return result
        for failure, pset in zip(crashed.values(), self.source.get(list(crashed))):
            self._retry(failure.position, pset, attempt, failure.status, failure.exception)
        keep = [i for i, position in enumerate(result.ran) if position not in crashed]
        return result._replace(
            ran=array("q", [result.ran[i] for i in keep]), wall=array("d", [result.wall[i] for i in keep]),
            iowait=array("d", [result.iowait[i] for i in keep]),
            failures=[f for f in result.failures if f.position not in crashed])

    def _retry(self, position: int, pset: dict[str, Any], attempt: int, status: str, message: str) -> None:
        self.counters.retried += 1
        log.info("%s: pset %d %s (%s); retrying (attempt %d of %d)", self.settings.name, position,
                 status, message, attempt + 2, self.settings.retries + 1)
        self.retry_queue.append((position, pset, attempt + 1))
        if self.journal is not None:  # so that the retry's outcome is journaled with its attempt
            self.journal.note_retry(position, attempt + 1)

    def _on_lost(self, lost: PsetLost) -> None:
        if lost.attempt < self.settings.retries:  # still active: it runs again
            self._retry(lost.position, lost.pset, lost.attempt, lost.status, lost.message)
            return
        self.counters.active -= 1
        self.done[lost.position] = True
        self._record_failure(lost.position, lost.status, lost.message, "", lost)
        if self.journal is not None:
            self.journal.record_lost(lost)

    def _count_failure(self, position: int, status: str, exc: str, tb: str) -> None:
        counters = self.counters
        counters.failures += 1
        if status == Status.EXCEPTION:
            counters.exceptions += 1
        elif status == Status.CRASHED:
            counters.crashed += 1
        elif status == Status.TIMEOUT:
            counters.timeouts += 1
        self.failures[position] = (_plain(status), exc, tb)

    def _record_failure(self, position: int, status: str, exc: str, tb: str, lost: PsetLost | None = None) -> None:
        self._count_failure(position, status, exc, tb)
        name = self.settings.name
        log.info("%s: pset %d failed (%s): %s", name, position, status, exc)
        if tb and not self.traceback_hint_given and self.settings.verbose == 1:
            self.traceback_hint_given = True  # once per map: every note would say the same
            path = _logfile.logfile_path()
            where = f"in {path} and in" if path else "in"
            log.info("%s: each failure's traceback is %s results.missing['_traceback']", name, where)
        pset = lost.pset if lost is not None else None
        log.info("%s: pset %d was %r", name, position, pset if pset is not None else self.source.get([position])[0],
                 extra={"ps_verbose": 2})
        if tb:
            log.info("%s: traceback of pset %d:\n%s", name, position, tb.rstrip(), extra={"ps_verbose": 2})
        if self.settings.out_func is not None and lost is not None:
            self._out_func_call({"pset": lost.pset, "exception": exc, "traceback": tb, "status": _plain(status)},
                                position)

    def _call_out_func(self, result: GroupResult) -> None:
        psets = self.source.get(result.ok)
        keys = list(result.columns)
        absent = {k: set(v) for k, v in result.absent.items()}
        for i, (position, pset) in enumerate(zip(result.ok, psets)):
            row = {k: result.columns[k][i] for k in keys if i not in absent.get(k, ())}
            self._out_func_call({"pset": pset, "result": row}, position)
        if result.failures:
            failed = self.source.get([f.position for f in result.failures])
            for failure, pset in zip(result.failures, failed):
                self._out_func_call({"pset": pset, "exception": failure.exception, "traceback": failure.traceback,
                                     "status": _plain(failure.status)}, failure.position)

    def _out_func_call(self, user_ret: dict[str, Any], position: int) -> None:
        out_func = self.settings.out_func
        assert out_func is not None
        system_kwargs = {"name": self.settings.name, "pset_index": position, "backend": self.backend.name}
        try:
            out_func(user_ret, system_kwargs, self.settings.user_kwargs)
        except Exception as exc:  # the user's out_func failing is not the pset's failure
            import traceback

            log.warning("%s: out_func raised %r for pset %d (the pset's result is kept)\n%s",
                        self.settings.name, exc, position, traceback.format_exc().rstrip())

    # -- the end ------------------------------------------------------------------------------
    def _finish(self) -> MapResults:
        counters = self.counters
        todo = np.asarray(self.todo, dtype=np.int64)
        not_done = todo[~self.done[todo]] if len(todo) else todo
        for position in not_done.tolist():
            counters.cancelled += 1
            counters.failures += 1
            self.failures[position] = (Status.CANCELLED.value,
                                       "cancelled: the map was interrupted before this pset finished", "")
        counters.active = 0
        progress = self.reporter.close(counters)
        if self.journal is not None:
            self.journal.close()
        self.stats.report(final=True)
        frame = self._results_frame()
        missing = self._missing_frame()
        return MapResults(frame, missing, progress, self.stats, self.settings.verbose)

    def _results_frame(self) -> pd.DataFrame:
        results = self.accumulator.to_frame()
        if not self.settings.keep_results:
            return results
        positions = results.index.to_numpy() if len(results) else np.zeros(0, dtype=np.int64)
        psets = self.source.frame_for(positions)
        if not len(results):
            return psets
        clash = [c for c in results.columns if c in psets.columns]
        if clash:
            log.warning("%s: result key(s) %s also pset key(s): the result's value is kept in the row",
                        self.settings.name, ", ".join(map(repr, clash)))
            psets = psets.drop(columns=clash)
        psets.index = results.index
        try:
            return pd.concat([psets, results], axis=1)
        except UnicodeEncodeError:  # a result key holds a lone surrogate: pyarrow-backed labels refuse it
            columns = [frame.iloc[:, i] for frame in (psets, results) for i in range(frame.shape[1])]
            joined = pd.DataFrame(dict(enumerate(columns)), index=results.index, copy=False)
            joined.columns = pd.Index([*psets.columns, *results.columns], dtype=object)
            return joined

    def _missing_frame(self) -> pd.DataFrame:
        positions = sorted(self.failures)
        frame = self.source.frame_for(positions).copy()
        for i, column in enumerate(MISSING_COLUMNS):
            frame[column] = pd.Series([self.failures[p][i] for p in positions], index=frame.index, dtype=object)
        return frame

    # -- Ctrl-C and SIGTERM -----------------------------------------------------------------------
    @contextmanager
    def _sigint_guard(self) -> Iterator[None]:
        """Turn Ctrl-C, and SIGTERM, into a flag the loop checks, woken through ``backend.wakeup()``,
        so an interrupt never lands in the middle of recording a group. In-process backends
        (serial) and a second signal get a plain KeyboardInterrupt at once.

        SIGTERM is how batch systems stop a job (Slurm: the time limit, preemption, scancel), sent
        to every process of the job, with SIGKILL after a grace (Slurm's KillWait, 30 s by
        default): handled like Ctrl-C, the workers stop and the journal is written well inside that
        grace, and ``Interrupted`` carries what finished. Each signal is trapped only while it has
        Python's default handler (or one a library put in its place, see
        _LIBRARY_HANDLER_MODULES), so a program's own handler is left alone, and outside map()
        SIGTERM still ends the process at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        backend = self.backend
        in_process = IN_PROCESS in backend.capabilities
        received: list[int] = []

        def on_stop_signal(signum: int, frame: Any) -> None:
            received.append(signum)
            if self.interrupted or in_process:
                self.interrupted = True
                raise KeyboardInterrupt
            self.interrupted = True
            backend.wakeup()

        defaults = ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))
        previous = {signum: signal.signal(signum, on_stop_signal)
                    for signum, default in defaults if _is_default(signum, signal.getsignal(signum), default)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if signal.SIGTERM in received:  # said here, not in the handler: logging takes locks
                then = (f"resubmit the same script to resume from the journal {self.settings.journal}"
                        if self.settings.journal is not None else
                        "without a journal what finished is only in the paramsurvey.Interrupted exception "
                        "(give journal= to resume)")
                log.warning("%s: stopped by SIGTERM (a batch job's time limit, a preemption, scancel, or a kill): "
                            "the workers are stopped; %s", self.settings.name, then)


def _plain(status: str) -> str:
    """A status as the plain string users see (``_status``, out_func): a Status is a str subclass,
    whose type and repr would show."""
    return str(status)


# Handlers that libraries install in the program, standing in for the default one: treated as the
# default, so that Ctrl-C and SIGTERM still stop a map with its partial results and its journal.
# `import dask_jobqueue` puts a SIGINT handler that calls sys.exit() (exit status 0, nothing kept);
# ray.init() a SIGTERM handler that calls sys.exit() (a Ray driver under Slurm lost its stop).
_LIBRARY_HANDLER_MODULES: dict[int, frozenset[str]] = {
    signal.SIGINT: frozenset({"dask_jobqueue.runner"}),
    signal.SIGTERM: frozenset({"ray._private.worker"}),
}


def _is_default(signum: int, handler: Any, default: Any) -> bool:
    return handler is default or getattr(handler, "__module__", None) in _LIBRARY_HANDLER_MODULES[signum]
