"""Progress of one map(): the counters, their frozen snapshot, and where they are shown.

The engine owns one mutable :class:`Counters` and calls :meth:`ProgressReporter.tick` after every
poll, waiting at most until the clock's next report is due; the reporter decides, by the clock
and never by count, whether anything is shown (tqdm's rule: output throttled by time).

Where progress is shown depends on where stderr goes (:func:`choose_display`):

    terminal (stderr is a TTY), verbose >= 1  -> a tqdm bar; while it is open sys.stderr (and
                                                 sys.stdout, if it is a TTY too) are routed above
                                                 the bar, so failure notes, statistics and prints
                                                 never break its line
    Jupyter kernel with ipywidgets            -> tqdm's notebook widget
    anywhere else (file, pipe, CI)            -> plain lines ``<name> progress: total: T, ...``
    verbose 0                                 -> nothing

Whatever is shown, the same progress lines go to the hidden logfile (at least every
``LOG_INTERVAL`` seconds) and to graphite when it is set (at least every ``CARBON_INTERVAL``).
Every one of these cadences is a :class:`~paramsurvey._clock.Periodic` of the map's one
:class:`~paramsurvey._clock.ReportClock`, which the statistics report shares.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ._clock import BAR_DT, CARBON_INTERVAL, FAST_INTERVAL, FASTEST, LOG_INTERVAL, SLOW_INTERVAL, ReportClock
from ._clock import HEARTBEAT as HEARTBEAT  # the engine's longest wait, read with the reporter's cadence

log = logging.getLogger("paramsurvey.progress")

__all__ = ["Counters", "MapProgress", "ProgressReporter", "choose_display"]

# Seconds between progress lines by verbosity: 1 -> every 30 s, 2 -> every second, 3 -> on every
# change but still at most a few lines a second (FASTEST). The intervals and their reasons: _clock.py.
INTERVALS = {1: SLOW_INTERVAL, 2: FAST_INTERVAL}

SHOWN = ("total", "active", "finished", "failures", "exceptions")
# Shown on a live bar beside the counts of SHOWN, when not zero.
EXTRA = ("crashed", "timeouts", "cancelled", "retried")

LINES, BAR, NOTEBOOK, NONE = "lines", "bar", "notebook", "none"

# A backend whose workers live in batch jobs (backends/jobqueue.py) sets this to a callable that
# says how its jobs stand, e.g. ``worker jobs: 0 running, 2 pending (Resources)``: a survey waiting
# for the queue then says why it waits, instead of a bare ``active: 0``. It must answer at once
# (a cached text) and never raise; '' adds nothing.
_worker_state: Callable[[], str] | None = None


def set_worker_state(source: Callable[[], str] | None) -> None:
    """Add ``source()`` to every progress line and bar from now on (None: stop)."""
    global _worker_state
    _worker_state = source


def worker_state() -> str:
    source = _worker_state
    if source is None:
        return ""
    try:
        return source()
    except Exception:  # a progress line must never fail the survey
        return ""


@dataclass(frozen=True)
class MapProgress:
    """A snapshot of a map's progress. ``str()`` gives the 0.4.x line
    ``total: T, active: A, finished: F, failures: X, exceptions: E``; at the end of a map
    ``finished + failures == total``.

    Example
    -------
    >>> str(MapProgress(total=3, finished=2, failures=1, exceptions=1))
    'total: 3, active: 0, finished: 2, failures: 1, exceptions: 1'
    """

    total: int = 0
    active: int = 0
    finished: int = 0
    failures: int = 0
    exceptions: int = 0
    crashed: int = 0
    timeouts: int = 0
    cancelled: int = 0
    retried: int = 0

    def __str__(self) -> str:
        line = ", ".join(f"{k}: {getattr(self, k)}" for k in SHOWN)
        # psets an interrupted map never ran count among the failures (finished + failures ==
        # total, as 0.4.x's line promises): say how many of them were only cancelled
        return f"{line}, cancelled: {self.cancelled}" if self.cancelled else line

    def asdict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Counters:
    """The engine's mutable counters (a plain object: updated on the hot path)."""

    __slots__ = tuple(f.name for f in fields(MapProgress))
    total: int
    active: int
    finished: int
    failures: int
    exceptions: int
    crashed: int
    timeouts: int
    cancelled: int
    retried: int

    def __init__(self, total: int = 0) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.total = total

    def snapshot(self) -> MapProgress:
        return MapProgress(**{name: getattr(self, name) for name in self.__slots__})


def interval_for(verbose: int, progress_dt: float | None) -> float:
    """Seconds between plain progress lines; ``progress_dt`` wins, but never below ``FASTEST``
    (``progress_dt=0``, 0.4.x's "on every change", is FASTEST, on change only)."""
    if progress_dt is not None:
        return max(progress_dt, FASTEST)
    if verbose >= 3:
        return FASTEST
    return INTERVALS.get(verbose, float("inf"))


def _in_jupyter_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an IPython too old or too odd to ask: plain lines are always safe
        return False


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def choose_display(verbose: int) -> str:
    """Where progress goes: ``'bar'`` (terminal), ``'notebook'`` (Jupyter widget), ``'lines'``
    (anywhere else) or ``'none'`` (verbose 0).

    Example
    -------
    >>> choose_display(0)
    'none'
    """
    if verbose <= 0:
        return NONE
    if _is_tty(sys.stderr):
        return BAR
    if _in_jupyter_kernel():
        try:
            import ipywidgets  # noqa: F401  (tqdm's widget needs it)
        except ImportError:
            return LINES
        return NOTEBOOK
    return LINES


def status_text(snap: MapProgress) -> str:
    """The counts by status shown beside a live bar, e.g. ``active 4, finished 38, failures 2, ...``."""
    parts = [f"{k} {getattr(snap, k)}" for k in SHOWN[1:]]
    parts += [f"{k} {getattr(snap, k)}" for k in EXTRA if getattr(snap, k)]
    jobs = worker_state()
    return ", ".join(parts) + (f"; {jobs}" if jobs else "")


class _AboveBar:
    """Stands in for sys.stderr / sys.stdout while a terminal bar is open: complete lines written
    to it appear above the bar (the bar is wiped, the lines written, and the bar redrawn at the
    next tick, so a burst of lines such as a traceback or the statistics costs one redraw).
    Partial lines wait for their newline, so a line is never split by the bar."""

    def __init__(self, target: Any, live: _LiveBar) -> None:
        self._target = target
        self._live = live
        self._pending = ""
        self._lock = threading.RLock()  # log lines may come from other threads (the carbon sender)

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" not in self._pending:
                return len(text)
            lines, _, self._pending = self._pending.rpartition("\n")
            bar = self._live.bar
            with bar.get_lock():
                if not self._live.hidden:
                    bar.clear(nolock=True)
                    self._live.hidden = True
                self._target.write(lines + "\n")
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def drain(self) -> None:
        """Write out a last partial line (the bar is closed by then)."""
        with self._lock:
            if self._pending:
                self._target.write(self._pending)
                self._pending = ""
            self._target.flush()

    def isatty(self) -> bool:
        return _is_tty(self._target)

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, ...
        return getattr(self._target, name)


def _done(snap: MapProgress) -> int:
    """Psets the bar counts as done: cancelled ones (Ctrl-C) were never run, so an interrupted
    map's bar stops where it was instead of jumping to 100%."""
    return snap.finished + snap.failures - snap.cancelled


_BAR_CLASSES: dict[bool, Any] = {}


def _bar_class(notebook: bool) -> Any:
    """tqdm's terminal bar or notebook widget, without tqdm's monitor thread (the reporter redraws
    on its own ticks, and a map must leave no thread behind) and with a thread lock of its own
    instead of tqdm's default, which adds a multiprocessing lock (a semaphore, and a
    resource-tracker process where multiprocessing does not fork)."""
    if notebook not in _BAR_CLASSES:
        if notebook:
            from tqdm.notebook import tqdm as base
        else:
            from tqdm import tqdm as base
        _BAR_CLASSES[notebook] = type("ParamsurveyBar", (base,),
                                      {"monitor_interval": 0, "_lock": threading.RLock()})
    return _BAR_CLASSES[notebook]


class _LiveBar:
    """A tqdm bar (terminal) or tqdm widget (notebook) for one map, and the stream routing that
    keeps a terminal bar intact. Open from the first tick to :meth:`close`."""

    def __init__(self, name: str, snap: MapProgress, notebook: bool) -> None:
        Bar = _bar_class(notebook)
        self.done = _done(snap)
        # the bar's own rate and time remaining count this run's psets only (not a resumed journal's)
        kwargs: dict[str, Any] = dict(total=snap.total, initial=self.done, desc=name, unit="pset",
                                      leave=True, mininterval=0, miniters=0, smoothing=0.1,
                                      postfix=status_text(snap))
        self.streams: list[tuple[str, _AboveBar]] = []
        self.hidden = False  # wiped by a line written above it; redrawn at the next update
        if notebook:
            self.bar = Bar(**kwargs)
        else:
            target = sys.stderr
            self.bar = Bar(file=target, dynamic_ncols=True, **kwargs)
            self._route("stderr", target)
            if _is_tty(sys.stdout):
                self._route("stdout", sys.stdout)

    def _route(self, which: str, target: Any) -> None:
        proxy = _AboveBar(target, self)
        setattr(sys, which, proxy)
        self.streams.append((which, proxy))

    def update(self, snap: MapProgress) -> None:
        done = _done(snap)
        with self.bar.get_lock():
            self.bar.set_postfix_str(status_text(snap), refresh=False)
            if done != self.done:
                self.bar.update(done - self.done)  # refreshes too (miniters=0, mininterval=0)
                self.done = done
            else:
                self.bar.refresh()  # elapsed time and time remaining move on
            self.hidden = False

    def close(self, snap: MapProgress | None) -> None:
        try:
            if snap is not None:
                self.update(snap)
            self.bar.close()  # leave=True: the final state stays on screen, the line ended
        finally:
            for which, proxy in reversed(self.streams):
                if getattr(sys, which) is proxy:  # someone replaced it since: leave theirs alone
                    setattr(sys, which, proxy._target)
                proxy.drain()
            self.streams = []


class ProgressReporter:
    """Shows a map's progress (a bar, a widget or plain lines), and records it in the logfile
    and on graphite.

    Parameters
    ----------
    name : str
        The map's name: the lines' prefix and the graphite path's middle.
    verbose : int
        0 shows nothing; 1 a line every 30 s; 2 every second; 3 on every change (at most 4 a
        second). A terminal shows a live bar instead of lines, Jupyter its widget.
    progress_dt : float, optional
        Seconds between lines, instead of the verbose level's (never below 0.25); 0 means a line
        on every change (at most 4 a second).
    carbon : object with ``send(name, MapProgress)``, optional
        A :class:`paramsurvey._carbon.CarbonSender`.
    clock : ReportClock or callable
        The map's report clock (shared with its statistics), or a time source of monotonic
        seconds for a clock of its own; injectable for tests.
    display : {'bar', 'notebook', 'lines', 'none'}, optional
        Where to show progress; by default :func:`choose_display` decides.

    Example
    -------
    >>> counters = Counters(total=2)
    >>> reporter = ProgressReporter('demo', verbose=0)
    >>> counters.finished = 2
    >>> str(reporter.close(counters))
    'total: 2, active: 0, finished: 2, failures: 0, exceptions: 0'
    """

    def __init__(self, name: str, verbose: int, progress_dt: float | None = None,
                 carbon: Any = None, clock: Callable[[], float] = time.monotonic,
                 display: str | None = None) -> None:
        self.name = name
        self.verbose = verbose
        self.display = (display or choose_display(verbose)) if verbose > 0 else NONE
        self.interval = interval_for(verbose, progress_dt) if verbose > 0 else float("inf")
        # 0.4.x reported on every change at verbose 3 and with progress_dt=0: here on every change
        # too, but at most one line per FASTEST
        self.on_change_only = (verbose >= 3 and progress_dt is None) or progress_dt == 0
        self.log_interval = min(LOG_INTERVAL, CARBON_INTERVAL) if carbon is not None else LOG_INTERVAL
        self.carbon = carbon
        self.clock = ReportClock.of(clock)
        now = self.clock()
        # a line on stderr; the logfile and graphite, whatever is shown; a redraw of the bar or widget
        self.line_due = self.clock.every(self.interval, first=now + self.interval)
        self.log_due = self.clock.every(self.log_interval, first=now + self.log_interval)
        self.bar_due = self.clock.every(BAR_DT, first=now)
        if self.display not in (BAR, NOTEBOOK):
            self.bar_due.stop()
        self.last_line = ""
        self.started = False
        self.live: _LiveBar | None = None
        self.released = False  # the live display has ended; it is never drawn again
        self.closed = False

    def next_due(self) -> float:
        """Seconds until the next report may be due (for the engine's wait): the clock's next
        deadline, this reporter's or the statistics' when they share it, at most ``HEARTBEAT``."""
        return self.clock.next_due()

    def tick(self, counters: Counters) -> None:
        if self.closed:
            return
        now = self.clock()
        if self.bar_due.due(now):
            self._draw(counters.snapshot(), now)
        if not self.started:  # the logfile and graphite see the survey start; so does a
            self.started = True  # reader who asked for every change (the start is one)
            self._report(counters.snapshot(), self.on_change_only and self.display == LINES, now)
        elif self.line_due.due(now):
            self.line_due.advance(now, FASTEST)
            snap = counters.snapshot()
            line = self._line(snap)
            if self.on_change_only and line == self.last_line:
                if self.log_due.due(now):
                    self._report(snap, False, now)
                return  # verbose 3 shows a line on change only
            self._report(snap, self.display == LINES, now)
        elif self.log_due.due(now):
            self._report(counters.snapshot(), False, now)

    def _line(self, snap: MapProgress) -> str:
        jobs = worker_state()
        return f"{self.name} progress: {snap}" + (f"; {jobs}" if jobs else "")

    def _draw(self, snap: MapProgress, now: float) -> None:
        self.bar_due.restart(now)
        try:
            if self.live is None:
                self.live = _LiveBar(self.name, snap, notebook=self.display == NOTEBOOK)
            else:
                self.live.update(snap)
        except Exception as exc:  # a display that cannot draw must not stop the survey: go plain
            log.debug("%s: progress bar disabled: %r", self.name, exc, extra={"ps_verbose": 99})
            live, self.live = self.live, None
            if live is not None:
                live.close(None)
            self.display = LINES
            self.bar_due.stop()

    def _report(self, snap: MapProgress, show: bool, now: float) -> None:
        """One progress line: on stderr if ``show``, always in the logfile, and on graphite."""
        line = self._line(snap)
        self.log_due.restart(now)
        self.last_line = line
        log.info(line, extra={"ps_verbose": 1 if show else 99})
        if self.carbon is not None:
            self.carbon.send(self.name, snap)

    def release(self) -> None:
        """End the live display now (bar closed, streams given back), showing the counts as they
        were at the last tick. Safe to call more than once; :meth:`close` calls it."""
        self.released = True
        self.bar_due.stop()
        live, self.live = self.live, None
        if live is not None:
            live.close(None)

    def close(self, counters: Counters) -> MapProgress:
        """The final report: the bar or widget shows the final counts and is closed, a plain
        final line goes to stderr (plain-lines display), the logfile and graphite."""
        snap = counters.snapshot()
        if self.closed:
            return snap
        self.closed = self.released = True
        self.bar_due.stop()
        live, self.live = self.live, None
        if live is not None:
            live.close(snap)
        self._report(snap, self.display == LINES, self.clock())
        return snap
