"""Progress of one map(): the counters, their frozen snapshot, and where they are shown.

The engine owns one mutable :class:`Counters` and calls :meth:`ProgressReporter.tick` as often as it
likes; the reporter decides, by the clock and never by count, whether anything is shown (tqdm's rule:
output throttled by time). Every report also goes to the hidden logfile and to graphite when set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

log = logging.getLogger("paramsurvey.progress")

__all__ = ["Counters", "MapProgress", "ProgressReporter"]

# Seconds between progress lines by verbosity (SPEC §3): 1 -> every 30 s, 2 -> every second,
# 3 -> on every change but still at most a few lines a second.
INTERVALS = {1: 30.0, 2: 1.0}
FASTEST = 0.25  # never more than 4 lines a second, whatever the level
LOG_INTERVAL = 30.0  # the logfile hears from a long survey at least this often

SHOWN = ("total", "active", "finished", "failures", "exceptions")


@dataclass(frozen=True)
class MapProgress:
    """A snapshot of a map's progress. ``str()`` gives the 0.4.x line
    ``total: T, active: A, finished: F, failures: X, exceptions: E``; at the end of a map
    ``finished + failures == total``."""

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
        return ", ".join(f"{k}: {getattr(self, k)}" for k in SHOWN)

    def asdict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Counters:
    """The engine's mutable counters (a plain object: updated on the hot path)."""

    __slots__ = tuple(f.name for f in fields(MapProgress))

    def __init__(self, total: int = 0) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.total = total

    def snapshot(self) -> MapProgress:
        return MapProgress(**{name: getattr(self, name) for name in self.__slots__})


def interval_for(verbose: int, progress_dt: float | None) -> float:
    if progress_dt is not None:
        return max(progress_dt, 0.0)
    if verbose >= 3:
        return FASTEST
    return INTERVALS.get(verbose, float("inf"))


class ProgressReporter:
    """Shows a map's progress: plain lines on stderr (via logging), the logfile, graphite."""

    def __init__(self, name: str, verbose: int, progress_dt: float | None = None,
                 carbon: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.verbose = verbose
        self.interval = interval_for(verbose, progress_dt) if verbose > 0 else float("inf")
        self.carbon = carbon
        self.clock = clock
        now = clock()
        self.last_shown = now
        self.last_logged = now
        self.last_line = ""

    def next_due(self) -> float | None:
        """Seconds until the next report may be due (for the engine's wait)."""
        due = min(self.last_shown + self.interval, self.last_logged + LOG_INTERVAL) - self.clock()
        return max(0.0, due)

    def tick(self, counters: Counters) -> None:
        now = self.clock()
        show = now - self.last_shown >= self.interval
        if not show and now - self.last_logged < LOG_INTERVAL:
            return
        self._report(counters.snapshot(), show, now)

    def _report(self, snap: MapProgress, show: bool, now: float) -> None:
        line = f"{self.name} progress: {snap}"
        if self.verbose >= 3 and not show and line == self.last_line:
            return
        self.last_logged = now
        if show:
            self.last_shown = now
        self.last_line = line
        log.info(line, extra={"ps_verbose": 1 if show else 99})
        if self.carbon is not None:
            self.carbon.send(self.name, snap)

    def close(self, counters: Counters) -> MapProgress:
        snap = counters.snapshot()
        self._report(snap, self.verbose > 0, self.clock())
        return snap
