"""Timing statistics: worker-side timers and a driver-side streaming summary.

Workers time their own phases with :func:`record_wallclock` / :func:`record_iowait`, which append
seconds to a plain ``raw_stats`` dict of lists. The driver folds those lists into a
:class:`PerfStats`, which keeps, per timer name, an exact count, total, min and max plus a
log-bucketed quantile sketch (the DDSketch idea): a value ``v`` lands in bucket
``ceil(log(v) / log(gamma))``, so every percentile is within ``RELATIVE_ACCURACY`` of the exact one
and memory depends on the *range* of the values, never on how many there are.

Workers import this module and must start fast, so only the standard library is imported here;
numpy, and the package's own modules, are imported inside the :class:`PerfStats` methods that need
them: the timers a worker uses load with this file alone.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from ._clock import ReportClock

__all__ = ["PerfStats", "TimerStats", "record_iowait", "record_wallclock"]

logger = logging.getLogger(__name__)

# 0.5% keeps the reported percentiles well inside the 1% the spec promises, at ~230 buckets per
# decade of durations: 1 ns .. 1 year is < 4,000 buckets (32 kB) whatever the sample count.
RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(_GAMMA)
# Durations at or below a nanosecond are timer noise; they are counted in a separate zero bucket
# (reported as 0) instead of stretching the log buckets down towards 1e-308.
ZERO_EPSILON = 1e-9
# Growing the bucket array by a little more than asked avoids reallocating on every new extreme.
_GROW_SLACK = 32
_PERCENTILES = (50, 90, 95, 99)
# 0.4.x's HdrHistogram recorded whole milliseconds, at least 1: its histogram's values never went lower.
_HDR_RESOLUTION_MS = 1.0
_HIST_BAR_WIDTH = 40
_HIST_ROWS = 15


def _append(raw_stats: dict[str, list[float]] | None, obj: PerfStats | None, name: str, value: float) -> None:
    if raw_stats is not None:
        raw_stats.setdefault(name, []).append(value)
    if obj is not None:
        obj.add(name, value)


@contextmanager
def record_wallclock(
    name: str, raw_stats: dict[str, list[float]] | None = None, obj: PerfStats | None = None
) -> Iterator[None]:
    """Time the body of a ``with`` block in wall-clock seconds.

    The elapsed time is appended to ``raw_stats[name]`` and, if given, added to ``obj``. It is
    recorded even when the body raises; the exception then propagates.

    Examples
    --------
    >>> raw = {}
    >>> with record_wallclock('phase1', raw):
    ...     pass
    >>> len(raw['phase1'])
    1
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        _append(raw_stats, obj, name, time.perf_counter() - start)


@contextmanager
def record_iowait(
    name: str, raw_stats: dict[str, list[float]] | None = None, obj: PerfStats | None = None
) -> Iterator[None]:
    """Time the part of a ``with`` block spent not using this process's CPU (I/O, sleep, waiting).

    Records elapsed wall-clock time minus process CPU time, floored at 0 (a multi-threaded body can
    use more CPU than wall-clock time). Recorded like :func:`record_wallclock`, even on exceptions.

    Like the original, this uses ``time.process_time()``, which counts every thread of the process:
    idle-spinning BLAS threads (numpy) count as CPU and hide wait time.

    Examples
    --------
    >>> raw = {}
    >>> with record_iowait('download', raw):
    ...     pass
    >>> raw['download'][0] >= 0
    True
    """
    start_t = time.perf_counter()
    start_c = time.process_time()
    try:
        yield
    finally:
        iowait = (time.perf_counter() - start_t) - (time.process_time() - start_c)
        _append(raw_stats, obj, name, max(iowait, 0.0))


class TimerHistogram:
    """One timer's frozen summary and distribution, in the shape 0.4.x's ``read_stats`` gave.

    0.4.x returned an ``HdrHistogram`` recording milliseconds, with a resolution of 1 ms (a value
    below 1 ms, zero or negative included, was recorded as 1 ms); the methods code written for it
    calls are here, in those units: :meth:`get_total_count`, :meth:`get_value_at_percentile`,
    :meth:`get_min_value`, :meth:`get_max_value`, :meth:`get_mean_value`. The attributes
    ``total``, ``min``, ``max``, ``p50``, ``p90``, ``p95``, ``p99`` are in seconds, exact or within
    0.5% like every percentile here.

    Example
    -------
    >>> count, mean, hist = PerfStats({'x': [0.1, 0.3]}).read_stats('x')
    >>> hist.get_total_count(), round(hist.get_value_at_percentile(100))
    (2, 300)
    """

    __slots__ = ("name", "total", "min", "max", "p50", "p90", "p95", "p99", "_sketch")

    def __init__(self, name: str, sketch: _Sketch) -> None:
        self.name = name
        self._sketch = sketch  # a copy: later adds to the timer do not move it
        self.total, self.min, self.max = sketch.total, sketch.min, sketch.max
        self.p50, self.p90, self.p95, self.p99 = sketch.quantiles(_PERCENTILES)

    def _summary(self) -> tuple[object, ...]:
        return (self.name, self._sketch.count, self.total, self.min, self.max, self.p50, self.p90, self.p95, self.p99)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TimerHistogram) and self._summary() == other._summary()

    def __hash__(self) -> int:
        return hash(self._summary())

    def __repr__(self) -> str:
        return (f"TimerHistogram({self.name!r}, count={self._sketch.count}, total={self.total!r}, "
                f"p50={self.p50!r}, p99={self.p99!r})")

    @staticmethod
    def _ms(seconds: float) -> float:
        return max(seconds * 1000.0, _HDR_RESOLUTION_MS)

    def get_total_count(self) -> int:
        return self._sketch.count

    def get_value_at_percentile(self, percentile: float) -> float:
        """The ``percentile`` (0-100) in milliseconds, never below 0.4.x's 1 ms resolution. As an
        HdrHistogram does: the smallest sample that at least ``percentile``% of samples do not
        exceed (no interpolation), so 100 is the largest sample and 0 the smallest."""
        import numpy as np

        count = self._sketch.count
        rank = min(max(int(float(percentile) / 100.0 * count + 0.5), 1), count)  # 1-based, HdrHistogram's
        return self._ms(float(self._sketch.at_ranks(np.asarray([rank - 1], dtype=np.float64))[0]))

    def get_min_value(self) -> float:
        return self._ms(self.min)

    def get_max_value(self) -> float:
        return self._ms(self.max)

    def get_mean_value(self) -> float:
        return self._ms(self.total / self._sketch.count)


class TimerStats(NamedTuple):
    """A frozen summary of one timer: ``(count, mean, histogram)`` as 0.4.x's ``read_stats``
    returned, so ``count, mean, hist = stats.read_stats(name)`` keeps working; the mean is in
    seconds and ``histogram`` is a :class:`TimerHistogram`. The summary is also here by name, in
    seconds: ``total``, ``min``, ``max``, ``p50``, ``p90``, ``p95``, ``p99``, and ``name``.
    """

    count: int  # type: ignore[assignment]  # shadows tuple.count(), for the original's order
    mean: float
    histogram: TimerHistogram

    @property
    def total(self) -> float:
        return self.histogram.total

    @property
    def min(self) -> float:
        return self.histogram.min

    @property
    def max(self) -> float:
        return self.histogram.max

    @property
    def p50(self) -> float:
        return self.histogram.p50

    @property
    def p90(self) -> float:
        return self.histogram.p90

    @property
    def p95(self) -> float:
        return self.histogram.p95

    @property
    def p99(self) -> float:
        return self.histogram.p99

    @property
    def name(self) -> str:
        return self.histogram.name


class _Sketch:
    """Exact count/total/min/max plus log-bucket counts ``counts[i]`` for key ``offset + i``."""

    __slots__ = ("count", "total", "min", "max", "zeros", "offset", "counts")

    def __init__(self) -> None:
        import numpy as np

        self.count = self.zeros = self.offset = 0
        self.total = 0.0
        self.min, self.max = math.inf, -math.inf
        self.counts: np.ndarray = np.zeros(0, dtype=np.int64)

    def _grow(self, kmin: int, kmax: int) -> None:
        import numpy as np

        n = len(self.counts)
        if n and self.offset <= kmin and kmax < self.offset + n:
            return
        lo = min(kmin, self.offset) if n else kmin
        hi = max(kmax, self.offset + n - 1) if n else kmax
        if n:  # only pad once the array has had to grow, towards the side that grew
            lo -= _GROW_SLACK if lo < self.offset else 0
            hi += _GROW_SLACK if hi > self.offset + n - 1 else 0
        new = np.zeros(hi - lo + 1, dtype=np.int64)
        new[self.offset - lo : self.offset - lo + n] = self.counts
        self.counts, self.offset = new, lo

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= ZERO_EPSILON:
            self.zeros += 1
            return
        key = math.ceil(math.log(value) * _INV_LOG_GAMMA)
        if not 0 <= key - self.offset < len(self.counts):
            self._grow(key, key)
        self.counts[key - self.offset] += 1

    def add_many(self, a: np.ndarray, lo: float, hi: float) -> None:
        """Add finite samples ``a`` whose min and max, already computed by the caller, are lo, hi."""
        import numpy as np

        self.count += a.size
        self.total += float(a.sum())
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        if lo <= ZERO_EPSILON:
            positive = a > ZERO_EPSILON
            a = a[positive]
            self.zeros += int(positive.size - a.size)
            if not a.size:
                return
            lo = float(a.min())
        keys = np.log(a)
        keys *= _INV_LOG_GAMMA
        np.ceil(keys, out=keys)
        # Key range from the scalar extremes instead of two more passes over the keys: math.log and
        # np.log differ by an ulp or two at most, which can move a key by one, hence the margin.
        kmin = math.ceil(math.log(lo) * _INV_LOG_GAMMA) - 2
        kmax = math.ceil(math.log(hi) * _INV_LOG_GAMMA) + 2
        self._grow(kmin, kmax)
        start = kmin - self.offset
        span = kmax - kmin + 1
        self.counts[start : start + span] += np.bincount(keys.astype(np.int64) - kmin, minlength=span)

    def copy(self) -> _Sketch:
        new = _Sketch.__new__(_Sketch)
        for k in self.__slots__:
            setattr(new, k, getattr(self, k))
        new.counts = self.counts.copy()
        return new

    def merge(self, other: _Sketch) -> None:
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.zeros += other.zeros
        if other.counts.any():
            nz = other.counts.nonzero()[0]
            first, last = int(nz[0]), int(nz[-1])
            self._grow(other.offset + first, other.offset + last)
            start = other.offset + first - self.offset
            self.counts[start : start + last - first + 1] += other.counts[first : last + 1]

    def bucket_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Representative value (clamped to [min, max]) and count of each non-empty log bucket."""
        import numpy as np

        idx = self.counts.nonzero()[0]
        # the midpoint, in relative terms, of (gamma**(k-1), gamma**k]: at most alpha from any member
        values = 2.0 * np.power(_GAMMA, (self.offset + idx).astype(np.float64)) / (_GAMMA + 1.0)
        return np.clip(values, self.min, self.max), self.counts[idx]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Estimate ``numpy.percentile(data, q)`` (linear interpolation) for each q in 0..100."""
        import numpy as np

        ranks = np.asarray(qs, dtype=np.float64) / 100.0 * (self.count - 1)
        lo_rank, hi_rank = np.floor(ranks), np.ceil(ranks)
        at = self.at_ranks
        # interpolating between estimates of the two neighbours keeps numpy's relative error bound
        out = at(lo_rank) + (ranks - lo_rank) * (at(hi_rank) - at(lo_rank))
        out = np.where(ranks <= 0, self.min, np.where(ranks >= self.count - 1, self.max, out))
        return [float(v) for v in out]

    def at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """Estimates of the rank-th smallest samples (0-based): zero bucket first, then the log buckets;
        the smallest and the largest are exact."""
        import numpy as np

        values, counts = self.bucket_values()
        idx = np.searchsorted(np.cumsum(counts), ranks - self.zeros, side="right")
        est = values[np.minimum(idx, len(values) - 1)] if len(values) else np.zeros(len(ranks))
        est = np.where(ranks < self.zeros, min(max(0.0, self.min), self.max), est)
        return np.where(ranks <= 0, self.min, np.where(ranks >= self.count - 1, self.max, est))


def _fmt(seconds: float) -> str:
    # the original's "%.2fs" shows 0.00s for every sub-10ms timer; keep 3 significant digits there
    if seconds == 0 or abs(seconds) >= 0.1:
        return f"{seconds:.2f}s"
    return f"{seconds:.3g}s"


class PerfStats:
    """Streaming per-timer statistics: count, total, mean, min, max and percentiles.

    Percentiles are within 0.5% (relative) of ``numpy.percentile`` on the same samples, for
    non-negative samples; values at or below ``ZERO_EPSILON`` are reported as 0. Memory depends on
    the range of the values (about 230 buckets per decade), not on their number.

    Parameters
    ----------
    raw_stats : dict of str to list of float, optional
        Initial samples, as produced by :func:`record_wallclock`.
    vstats : int
        Statistics verbosity for :meth:`report`: >1 prints every second, 1 every 30 s, 0 only at
        the end.
    verbose : int
        The run's verbosity; 0 means :meth:`report` writes to the logger only, never to stderr.
    clock : ReportClock or callable
        The map's report clock (shared with its progress reporter), or a time source of monotonic
        seconds for a clock of its own; injectable for tests.

    Examples
    --------
    >>> s = PerfStats({'load': [1.0, 2.0, 3.0]})
    >>> s.add_many('load', [4.0])
    >>> s.read_stats('load').count, s.read_stats('load').mean
    (4, 2.5)
    """

    def __init__(
        self,
        raw_stats: dict[str, list[float]] | None = None,
        vstats: int = 1,
        *,
        verbose: int = 1,
        clock: Callable[[], float] | ReportClock = time.monotonic,
    ) -> None:
        from ._clock import FAST_INTERVAL, LOG_INTERVAL, SLOW_INTERVAL, ReportClock

        self._timers: dict[str, _Sketch] = {}
        self.vstats = vstats
        self.verbose = verbose
        self._clock = ReportClock.of(clock)
        self.stats_dt = FAST_INTERVAL if vstats > 1 else SLOW_INTERVAL if vstats == 1 else math.inf
        now = self._clock()
        self._print_due = self._clock.every(self.stats_dt, first=now + self.stats_dt)  # stderr
        # the logfile, whatever vstats says (0.4.x's choice)
        self._log_due = self._clock.every(LOG_INTERVAL, first=now + LOG_INTERVAL)
        if raw_stats:
            self.combine_stats(raw_stats)

    def __repr__(self) -> str:
        samples = sum(t.count for t in self._timers.values())
        return f"PerfStats({len(self._timers)} timers, {samples} samples)"

    def _timer(self, name: str) -> _Sketch:
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = _Sketch()
        return timer

    def add(self, name: str, value: float) -> None:
        """Add one sample, in seconds. NaN and infinite values are dropped with a warning.

        Examples
        --------
        >>> s = PerfStats(); s.add('x', 0.5); s.read_stats('x').count
        1
        """
        if not math.isfinite(value):
            logger.warning("timer %s: dropped a non-finite value %r", name, value)
            return
        (self._timers.get(name) or self._timer(name)).add(float(value))

    def add_many(self, name: str, values: Sequence[float] | np.ndarray) -> None:
        """Add many samples at once, vectorised; NaN and infinite values are dropped with a warning.

        Examples
        --------
        >>> s = PerfStats(); s.add_many('x', [0.5, 0.25]); s.read_stats('x').total
        0.75
        """
        import numpy as np

        a = np.asarray(values, dtype=np.float64).ravel()
        if not a.size:
            return
        lo, hi = float(a.min()), float(a.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min and max propagate NaN
            finite = np.isfinite(a)
            logger.warning("timer %s: dropped %d non-finite values", name, int(a.size - finite.sum()))
            a = a[finite]
            if not a.size:
                return
            lo, hi = float(a.min()), float(a.max())
        self._timer(name).add_many(a, lo, hi)

    def combine_stats(self, raw_stats: dict[str, list[float]]) -> None:
        """Fold a worker's ``raw_stats`` (timer name to list of seconds) in; ``raw_stats`` is unchanged.

        Examples
        --------
        >>> s = PerfStats(); s.combine_stats({'a': [1.0, 3.0]}); s.read_stats('a').mean
        2.0
        """
        for name, values in raw_stats.items():
            self.add_many(name, values)

    def merge(self, other: PerfStats) -> None:
        """Add every sample of ``other`` into this one, as if they had been added here.

        Examples
        --------
        >>> a, b = PerfStats({'x': [1.0]}), PerfStats({'x': [3.0]})
        >>> a.merge(b); a.read_stats('x').count
        2
        """
        for name, timer in other._timers.items():
            self._timer(name).merge(timer)

    def all_stat_names(self) -> list[str]:
        """Timer names, in the order first seen.

        Examples
        --------
        >>> PerfStats({'b': [1.0], 'a': [2.0]}).all_stat_names()
        ['b', 'a']
        """
        return list(self._timers)

    def percentile(self, name: str, q: float) -> float:
        """The q-th percentile (0..100) of timer ``name``; raises KeyError for an unknown name.

        Examples
        --------
        >>> PerfStats({'x': [1.0, 2.0, 3.0]}).percentile('x', 100)
        3.0
        """
        if not 0 <= q <= 100:
            from .exceptions import ArgumentError

            raise ArgumentError(f"percentile q must be between 0 and 100, got {q}")
        return self._timers[name].quantiles([q])[0]

    def read_stats(self, name: str) -> TimerStats | None:
        """A frozen :class:`TimerStats` for timer ``name``, or None if there is no such timer.

        Examples
        --------
        >>> st = PerfStats({'x': [2.0, 4.0]}).read_stats('x')
        >>> st.count, st.mean, st.max
        (2, 3.0, 4.0)
        """
        t = self._timers.get(name)
        if t is None:
            return None
        return TimerStats(t.count, t.total / t.count, TimerHistogram(name, t.copy()))

    def snapshot(self) -> dict[str, TimerStats]:
        """A new dict of frozen :class:`TimerStats`, one per timer; later adds do not change it.

        Examples
        --------
        >>> PerfStats({'x': [1.0]}).snapshot()['x'].p50
        1.0
        """
        return {name: st for name in self._timers if (st := self.read_stats(name)) is not None}

    @property
    def bucket_count(self) -> int:
        """Allocated sketch buckets over all timers: the memory used, in units of 8 bytes."""
        return sum(len(t.counts) + 1 for t in self._timers.values())

    def _emit(self, lines: list[str], stderr: bool | None, file: IO[str] | None) -> None:
        if stderr is None and file is None:  # asked for by the user, no destination: stdout
            file = sys.stdout
        streams = [f for f in (file, sys.stderr if stderr else None) if f is not None]
        for line in lines:
            # the hidden logfile only: these lines reach a screen through `streams` alone
            logger.info(line, extra={"ps_verbose": 99})
            for stream in dict.fromkeys(streams):  # stderr=True with file=sys.stderr: print once
                print(line, file=stream)
        for stream in streams:
            stream.flush()

    def _ordered(self, name: str | None) -> list[str]:
        return ([name] if name in self._timers else []) + sorted(n for n in self._timers if n != name)

    def _summary_line(self, st: TimerStats) -> str:
        total = f"{st.total:.0f}s" if st.total >= 10 else _fmt(st.total)
        return f"counter {st.name}, total {total}, mean {_fmt(st.mean)}, counts {st.count}"

    def print_percentiles(
        self, name: str | None = "default", stderr: bool | None = None, file: IO[str] | None = None
    ) -> None:
        """Log count, total, mean and the 50/90/95/99th percentiles of every timer, ``name`` first.

        Lines go to the ``paramsurvey.stats`` logger at INFO (the hidden logfile), and are also
        printed to stderr if ``stderr`` is true and to ``file`` if given; with neither, to stdout.

        Examples
        --------
        >>> import io; f = io.StringIO()
        >>> PerfStats({'x': [2.0]}).print_percentiles(file=f); print(f.getvalue().splitlines()[1])
        counter x, 50%tile: 2.00s
        """
        lines = []
        for n in self._ordered(name):
            st = self.read_stats(n)
            assert st is not None
            lines.extend(self._percentile_lines(st))
        self._emit(lines, stderr, file)

    def _percentile_lines(self, st: TimerStats) -> list[str]:
        lines = [self._summary_line(st)]
        for pct, value in zip(_PERCENTILES, (st.p50, st.p90, st.p95, st.p99)):
            lines.append(f"counter {st.name}, {pct}%tile: {_fmt(value)}")
        return lines

    def print_percentile(self, name: str, stderr: bool | None = None, file: IO[str] | None = None) -> None:
        """0.4.x's one-timer form of :meth:`print_percentiles`: timer ``name`` alone (nothing if
        there is no such timer), printed where :meth:`print_percentiles` prints.

        Examples
        --------
        >>> import io; f = io.StringIO()
        >>> PerfStats({'x': [2.0], 'y': [1.0]}).print_percentile('x', file=f); len(f.getvalue().splitlines())
        5
        """
        st = self.read_stats(name)
        if st is not None:
            self._emit(self._percentile_lines(st), stderr, file)

    def print_histogram(self, name: str, value_units_per_bucket: int | None = None, stderr: bool | None = None,
                        file: IO[str] | None = None) -> None:
        """0.4.x's one-timer form of :meth:`print_histograms`. ``value_units_per_bucket`` (0.4.x's
        linear bucket width in milliseconds) is accepted and not used: rows are chosen as in
        :meth:`print_histograms`, so that a wide range of durations stays readable.

        Examples
        --------
        >>> import io; f = io.StringIO()
        >>> PerfStats({'x': [1.0, 2.0]}).print_histogram('x', file=f); '#' in f.getvalue()
        True
        """
        st = self.read_stats(name)
        if st is not None:
            self._emit(self._histogram_lines(st), stderr, file)

    def print_histograms(
        self, name: str | None = "default", stderr: bool | None = None, file: IO[str] | None = None
    ) -> None:
        """Log a text histogram of every timer, ``name`` first; output goes where
        :meth:`print_percentiles` sends it.

        Each row is a bucket's upper bound, its count and a bar of ``#`` (40 for the fullest row).
        Buckets are on a log scale when the values span more than a factor of 20, else linear.

        Examples
        --------
        >>> import io; f = io.StringIO()
        >>> PerfStats({'x': [1.0, 1.0, 2.0]}).print_histograms(file=f); '#' in f.getvalue()
        True
        """
        lines = []
        for n in self._ordered(name):
            st = self.read_stats(n)
            assert st is not None
            lines.extend(self._histogram_lines(st))
        self._emit(lines, stderr, file)

    def _histogram_lines(self, st: TimerStats) -> list[str]:
        rows = self._histogram(st.name)
        return [self._summary_line(st)] + [f"counter {st.name}, <= {_fmt(ub):>9} {c:>9} {bar}" for ub, c, bar in rows]

    def _histogram(self, name: str) -> list[tuple[float, int, str]]:
        import numpy as np

        t = self._timers[name]
        values, counts = t.bucket_values()
        rows: list[tuple[float, int]] = []
        if t.zeros:
            rows.append((max(0.0, t.min), t.zeros))
        if len(values):
            lo, hi = float(values.min()), float(values.max())
            if hi > lo:
                # a log scale once the values span more than a factor of 20, else linear bins
                spacing = np.geomspace if hi / lo > 20 else np.linspace
                edges = spacing(lo, hi, _HIST_ROWS + 1)
                which = np.clip(np.searchsorted(edges, values, side="left"), 1, _HIST_ROWS) - 1
                binned = np.bincount(which, weights=counts, minlength=_HIST_ROWS)
                rows.extend((float(ub), int(c)) for ub, c in zip(edges[1:], binned))
            else:
                rows.append((hi, int(counts.sum())))
        peak = max(c for _, c in rows)
        # a non-empty row always gets one '#', so rare slow outliers stay visible
        return [(ub, c, "#" * max(c > 0, round(_HIST_BAR_WIDTH * c / peak))) for ub, c in rows]

    def report(self, final: bool = False) -> None:
        """Print the percentiles if it is time to: every ``stats_dt`` seconds (set by vstats) to
        stderr, at least every ``LOG_INTERVAL`` (30 s) to the logger only, and always when ``final``.
        With ``verbose=0`` nothing goes to stderr.

        Examples
        --------
        >>> PerfStats({'x': [1.0]}, vstats=0, verbose=0).report(final=True)  # logger only
        """
        now = self._clock()
        due = self._print_due.due(now)
        log_due = self._log_due.due(now)
        if due:
            self._print_due.restart(now)
        if log_due:
            self._log_due.restart(now)
        if final or due or log_due:
            self.print_percentiles(stderr=(final or due) and self.verbose > 0)
