"""The one clock of a map's periodic reports: progress lines, the logfile, graphite, the live bar and
the statistics report.

Every periodic report is a :class:`Periodic` made by :meth:`ReportClock.every`; the reporter and the
statistics ask theirs whether it is due and restart it when they report. The clock knows them all, so
the engine waits exactly until the next one is due (:meth:`ReportClock.next_due`) and never longer
than ``HEARTBEAT``. Reports are throttled by time, never by count (tqdm's rule).

The time source is injectable: tests drive a fake one, as trio's ``MockClock`` does, and see the same
decisions a real survey makes, in no time.

Example
-------
>>> now = [100.0]
>>> clock = ReportClock(lambda: now[0])
>>> lines = clock.every(FAST_INTERVAL)
>>> lines.due(), clock.next_due()
(False, 0.5)
>>> now[0] += 1.0
>>> lines.due()
True

Standard library only: the statistics module, which loads in worker processes, imports this one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["BAR_DT", "CARBON_INTERVAL", "FASTEST", "FAST_INTERVAL", "HEARTBEAT", "LOG_INTERVAL",
           "SLOW_INTERVAL", "Periodic", "ReportClock"]

# verbose=1 and vstats=1 (the defaults) report every 30 s: a batch log of a day-long survey stays
# readable (under 3,000 lines a day) and a reader still sees it move (0.4.x's choice).
SLOW_INTERVAL = 30.0
# verbose=2 and vstats=2 or 3: every second, for a person watching a short survey (0.4.x's choice).
FAST_INTERVAL = 1.0
# Never more than 4 progress lines a second, whatever the level or progress_dt: a fast survey cannot
# flood a terminal or a log.
FASTEST = 0.25
# The hidden logfile hears from a long survey at least this often (progress and statistics), so that
# a killed run's log says how far it got, whatever the verbose level.
LOG_INTERVAL = 30.0
# graphite's finest common retention is 10 s: a dashboard gets a point per bucket even at verbose 1.
CARBON_INTERVAL = 10.0
# A live bar is redrawn this often: smooth to the eye, a negligible cost to the engine's loop.
BAR_DT = 0.2
# The engine never waits longer than this between ticks, so that a deadline set after its wait began
# (and anything else its loop does) is never more than this late.
HEARTBEAT = 0.5


class Periodic:
    """One periodic report: due at its deadline, then ``interval`` seconds after each report.
    An infinite interval is never due again."""

    __slots__ = ("interval", "deadline", "_clock")

    def __init__(self, clock: ReportClock, interval: float, first: float) -> None:
        self.interval = interval
        self.deadline = first
        self._clock = clock

    def __repr__(self) -> str:
        return f"Periodic(every {self.interval:g} s, due at {self.deadline:g})"

    def due(self, now: float | None = None) -> bool:
        return (self._clock() if now is None else now) >= self.deadline

    def restart(self, now: float) -> None:
        """Reported at ``now``: due again ``interval`` seconds later ("at least every")."""
        self.deadline = now + self.interval

    def advance(self, now: float, floor: float = 0.0) -> None:
        """Reported: due again one interval after the last deadline, so that reports stay on the
        interval's grid instead of drifting later by each wait's lateness; never sooner than
        ``floor`` seconds after ``now`` (a late report does not bring a burst of catch-up ones)."""
        self.deadline = max(self.deadline + self.interval, now + floor)

    def stop(self) -> None:
        """Never due again (a display that has ended)."""
        self.deadline = math.inf


class ReportClock:
    """Monotonic seconds for every periodic report of one map, and what is due next.

    Calling it gives the time, so it stands wherever a ``time.monotonic``-like callable is expected.

    Parameters
    ----------
    now : callable
        The time source, monotonic seconds; a fake one in tests.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._periodics: list[Periodic] = []

    @classmethod
    def of(cls, clock: Callable[[], float] | ReportClock) -> ReportClock:
        """``clock`` itself if it is a ReportClock (shared), else a ReportClock reading it."""
        return clock if isinstance(clock, ReportClock) else cls(clock)

    def __call__(self) -> float:
        return self._now()

    def every(self, interval: float, first: float | None = None) -> Periodic:
        """A new periodic report, first due at the time ``first`` (default: one interval from now)."""
        periodic = Periodic(self, interval, self() + interval if first is None else first)
        self._periodics.append(periodic)
        return periodic

    def next_due(self) -> float:
        """Seconds until the earliest report is due (0 if one is), at most ``HEARTBEAT``."""
        now = self()
        earliest = min((p.deadline for p in self._periodics), default=math.inf)
        return max(0.0, min(earliest, now + HEARTBEAT) - now)


def duration_text(seconds: float | None) -> str:
    """Seconds as people read them: ``1:02:03``, ``2d 3:04:05``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    import datetime

    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = str(datetime.timedelta(seconds=rest))
    return f"{days}d {text}" if days else text
