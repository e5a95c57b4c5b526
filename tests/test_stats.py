"""Tests for paramsurvey.stats: sketch accuracy, memory bound, timers, printing and throttling."""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

STATS_FILE = Path(__file__).resolve().parents[1] / "src" / "paramsurvey" / "stats.py"


def _load_stats():
    # the package __init__ is written separately; load this file alone if the package does not import
    try:
        from paramsurvey import stats

        return stats
    except Exception:
        spec = importlib.util.spec_from_file_location("paramsurvey.stats", STATS_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


stats = _load_stats()
PerfStats = stats.PerfStats
LOGGER = "paramsurvey.stats"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    """Messages logged to paramsurvey.stats, caught on that logger itself: a handler set up elsewhere
    with propagate=False must not hide them."""
    logger, handler = logging.getLogger(LOGGER), _Lines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _run_standalone(code: str) -> str:
    """Run ``code`` in a fresh interpreter where ``stats`` is this file, loaded without the package."""
    prelude = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('paramsurvey_stats', {str(STATS_FILE)!r})\n"
        "stats = importlib.util.module_from_spec(spec); spec.loader.exec_module(stats)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


# --- accuracy ----------------------------------------------------------------------------------

RNG = np.random.default_rng(20240501)
DISTRIBUTIONS = {
    "lognormal": RNG.lognormal(0.0, 1.5, 100_000),
    "uniform": RNG.uniform(0.0, 10.0, 100_000),
    "exponential": RNG.exponential(0.3, 100_000),
    "constant": np.full(5_000, 2.5),
    "tiny-and-huge": np.concatenate([RNG.uniform(1e-6, 1e-5, 1_000), RNG.uniform(1e3, 1e4, 1_000)]),
    "with-zeros": np.concatenate([np.zeros(30_000), RNG.exponential(1.0, 70_000)]),
    "all-zeros": np.zeros(1_000),
}
QS = [0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_percentiles_within_one_percent_of_numpy(dist):
    data = DISTRIBUTIONS[dist]
    s = PerfStats()
    for chunk in np.array_split(data, 97):
        s.add_many(dist, chunk)
    exact = np.percentile(data, QS)
    got = np.array([s.percentile(dist, q) for q in QS])
    np.testing.assert_allclose(got, exact, rtol=0.01, atol=1e-12)
    st_ = s.read_stats(dist)
    assert (st_.p50, st_.p90, st_.p95, st_.p99) == tuple(s.percentile(dist, q) for q in (50, 90, 95, 99))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-12, 1e6, allow_nan=False, allow_infinity=False)),
        min_size=1,
        max_size=300,
    ),
    q=st.floats(0, 100),
)
def test_percentile_bound_holds_for_any_sample(values, q):
    # the documented guarantee: 0.5% of numpy's linear-interpolated percentile, plus the zero bucket
    s = PerfStats()
    half = len(values) // 2
    s.add_many("x", values[:half])
    for v in values[half:]:
        s.add("x", v)
    exact = float(np.percentile(values, q))
    assert abs(s.percentile("x", q) - exact) <= 0.0051 * exact + 2 * stats.ZERO_EPSILON


def test_count_total_min_max_mean_exact():
    data = RNG.exponential(1.0, 12_345)
    s = PerfStats()
    for chunk in np.array_split(data, 10):
        s.add_many("t", chunk.tolist())
    s.add("t", 7.0)
    full = np.append(data, 7.0)
    st_ = s.read_stats("t")
    assert st_.count == len(full) and isinstance(st_.count, int)
    assert st_.total == pytest.approx(math.fsum(full), rel=1e-12)
    assert st_.mean == pytest.approx(math.fsum(full) / len(full), rel=1e-12)
    assert (st_.min, st_.max) == (full.min(), full.max())


def test_memory_does_not_grow_with_samples():
    s = PerfStats()
    rng = np.random.default_rng(7)
    sizes = []
    for i in range(1_000):
        s.add_many("d", rng.lognormal(0.0, 1.0, 1_000))
        if i in (9, 999):
            sizes.append(s.bucket_count)
    assert s.read_stats("d").count == 1_000_000
    assert sizes[1] < 2_000
    assert sizes[1] < 2 * sizes[0]  # 100x the samples, only the tails' range grew


def test_nonfinite_values_are_dropped(log_lines):
    s = PerfStats()
    s.add_many("x", [1.0, math.nan, math.inf, 3.0])
    s.add("x", math.nan)
    s.add_many("y", [math.nan])
    assert s.read_stats("x").count == 2 and s.read_stats("x").total == 4.0
    assert s.read_stats("y") is None
    assert len(log_lines) == 3 and all("non-finite" in line for line in log_lines)


# --- the original's API ------------------------------------------------------------------------


def test_combine_stats_compatible_with_original():
    raw = {"a": [1.0, 2.0, 3.0], "b": [0.5]}
    s = PerfStats(raw)
    s.combine_stats({"a": [4.0]})
    assert raw == {"a": [1.0, 2.0, 3.0], "b": [0.5]}  # not consumed
    assert s.read_stats("a")[0] == 4 and s.read_stats("a")[1] == 2.5  # original: (count, mean, hist)
    assert s.read_stats("missing") is None
    assert sorted(s.all_stat_names()) == ["a", "b"]
    s.combine_stats({"c": []})
    assert "c" not in s.all_stat_names()


def test_read_stats_unpacks_as_the_original_count_mean_histogram():
    # 0.4.x's own test of read_stats, in its units: milliseconds, values below 1 ms counted as 1 ms
    raw = {"foo": [0.1, 0.3], "bar": [3.0, 4.0, 5.0], "baz": [3.0, -4.0, 5.0]}
    s = PerfStats(raw)
    for name, values in raw.items():
        count, mean, hist = s.read_stats(name)
        assert count == len(values) == hist.get_total_count()
        assert math.isclose(mean, sum(values) / count)
        assert math.isclose(hist.get_value_at_percentile(99) / 1000, max(values), rel_tol=0.01)
        assert math.isclose(hist.get_value_at_percentile(0) / 1000, max(min(values), 0.001), rel_tol=0.01)
        assert hist.get_min_value() == max(min(values) * 1000, 1.0) and hist.get_max_value() == max(values) * 1000
        assert math.isclose(hist.get_mean_value(), max(mean * 1000, 1.0))


def test_print_percentile_and_histogram_one_timer_as_the_original(capsys):
    s = PerfStats({"default": [0.1, 0.2, 0.2, 0.9], "other": [1.0]})
    s.print_percentile("default")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("counter default, total") and len(lines) == 5
    assert all(line.startswith("counter default,") for line in lines)
    s.print_histogram("other", 3)  # 0.4.x's value_units_per_bucket, positionally
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("counter other, total") and all("counter other," in line for line in lines)
    s.print_percentile("no such timer")
    s.print_histogram("no such timer")
    assert capsys.readouterr().out == ""
    s.print_percentiles(None)  # 0.4.x's way to print every timer
    assert "counter default, 99%tile" in capsys.readouterr().out


def test_timerstats_is_frozen_and_snapshot_does_not_move():
    s = PerfStats({"x": [1.0, 2.0]})
    snap = s.snapshot()
    s.add("x", 100.0)
    assert snap["x"].count == 2 and snap["x"].max == 2.0
    with pytest.raises(AttributeError):
        snap["x"].count = 5
    # 0.4.x's shape, (count, mean, histogram); the histogram is frozen too
    assert snap["x"]._fields == ("count", "mean", "histogram") and snap["x"].name == "x"
    assert snap["x"].histogram.get_total_count() == 2 and snap["x"].histogram.get_max_value() == 2000.0


def test_merge_equals_adding_everything_to_one():
    a_data, b_data = RNG.lognormal(0, 1, 5_000), RNG.lognormal(3, 1, 5_000)
    a, b, both = PerfStats({"x": a_data, "only-b": [1.0]}), PerfStats({"x": b_data}), PerfStats()
    both.add_many("x", np.concatenate([a_data, b_data]))
    b.merge(a)
    merged, expected = b.read_stats("x"), both.read_stats("x")
    def summary(st):  # all but total and mean, which may differ in the last bits (summation order)
        return (st.count, st.min, st.max, st.p50, st.p90, st.p95, st.p99)

    assert summary(merged) == summary(expected)
    assert merged.total == pytest.approx(expected.total)
    assert b.read_stats("only-b").count == 1


def test_percentile_argument_errors():
    s = PerfStats({"x": [1.0]})
    with pytest.raises(ValueError):
        s.percentile("x", 101)
    with pytest.raises(KeyError):
        s.percentile("nope", 50)


def test_repr_is_short():
    assert repr(PerfStats({"a": [1.0, 2.0], "b": [3.0]})) == "PerfStats(2 timers, 3 samples)"


# --- timers ------------------------------------------------------------------------------------


def test_timers_measure_sleep_and_busy_loop():
    # in a fresh interpreter without numpy: idle BLAS threads would count as this process's CPU
    # The busy loop runs until this process has used 0.05 s of CPU, however long a loaded machine
    # takes to give it that: iowait (wall minus CPU) is then at most wall - 0.05 whatever the load,
    # where a loop timed by the wall clock could be preempted into looking like waiting.
    out = _run_standalone(
        "import time\n"
        "raw = {}\n"
        "with stats.record_wallclock('sleep wall', raw), stats.record_iowait('sleep io', raw):\n"
        "    time.sleep(0.05)\n"
        "with stats.record_wallclock('busy wall', raw), stats.record_iowait('busy io', raw):\n"
        "    end = time.process_time() + 0.05\n"
        "    while time.process_time() < end: pass\n"
        "print(repr(raw)); print('numpy' in sys.modules)\n"
    )
    raw_line, numpy_line = out.splitlines()
    raw = eval(raw_line)
    assert all(len(v) == 1 for v in raw.values())
    # sleeping uses microseconds of CPU: nearly all of it is waiting
    assert raw["sleep wall"][0] >= 0.045 and raw["sleep io"][0] > 0.5 * raw["sleep wall"][0]
    assert raw["busy wall"][0] >= 0.045
    assert 0.0 <= raw["busy io"][0] <= raw["busy wall"][0] - 0.045  # the 0.05 s of CPU is not waiting
    assert numpy_line == "False"


@pytest.mark.parametrize("timer", ["record_wallclock", "record_iowait"])
def test_timer_records_even_when_body_raises(timer):
    raw: dict[str, list[float]] = {}
    s = PerfStats()
    with pytest.raises(ZeroDivisionError):
        with getattr(stats, timer)("t", raw, obj=s):
            1 / 0  # noqa: B018
    assert len(raw["t"]) == 1 and raw["t"][0] >= 0.0
    assert s.read_stats("t").count == 1
    with getattr(stats, timer)("t", obj=s):  # raw_stats is optional
        pass
    assert s.read_stats("t").count == 2 and raw["t"] == raw["t"][:1]


def test_importing_stats_does_not_import_numpy_or_pandas():
    out = _run_standalone("print('numpy' in sys.modules, 'pandas' in sys.modules)")
    assert out.split() == ["False", "False"]


# --- printing ----------------------------------------------------------------------------------


def test_print_percentiles_format_and_order(log_lines):
    s = PerfStats({"zeta": [2.0] * 5, "alpha": [0.004, 0.006], "default": [10.0, 20.0]})
    f = io.StringIO()
    s.print_percentiles(file=f)
    lines = f.getvalue().splitlines()
    assert lines[:2] == [
        "counter default, total 30s, mean 15.00s, counts 2",
        "counter default, 50%tile: 15.00s",
    ]
    assert lines[5:7] == [
        "counter alpha, total 0.01s, mean 0.005s, counts 2",
        "counter alpha, 50%tile: 0.005s",
    ]
    assert lines[10] == "counter zeta, total 10s, mean 2.00s, counts 5"
    assert lines[11:] == [f"counter zeta, {p}%tile: 2.00s" for p in (50, 90, 95, 99)]
    assert log_lines == lines  # the logger gets the same lines


def test_print_percentiles_to_stderr_only_when_asked(capsys):
    s = PerfStats({"x": [1.0]})
    s.print_percentiles()
    assert capsys.readouterr().err == ""
    s.print_percentiles(stderr=True)
    assert capsys.readouterr().err.startswith("counter x, total 1.00s")


@pytest.mark.parametrize(
    "data",
    [
        RNG.lognormal(0, 2, 10_000),
        RNG.uniform(1, 2, 10_000),
        [3.0] * 4,
        np.concatenate([np.zeros(10), RNG.uniform(1, 2, 100)]),
    ],
)
def test_print_histograms_rows(data):
    f = io.StringIO()
    PerfStats({"h": data}).print_histograms("h", file=f)
    head, *rows = f.getvalue().splitlines()
    assert head.startswith("counter h, total")
    assert 1 <= len(rows) <= 20
    parsed = [re.fullmatch(r"counter h, <= +(\S+)s +(\d+) ?(#*)", r) for r in rows]
    assert all(parsed), rows
    counts = [int(m.group(2)) for m in parsed]
    bars = [len(m.group(3)) for m in parsed]
    assert sum(counts) == len(data) and max(bars) == 40
    assert all((c > 0) == (b > 0) for c, b in zip(counts, bars))
    bounds = [float(m.group(1)) for m in parsed]
    assert bounds == sorted(bounds)


# --- report throttling -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "vstats, stderr_after",
    [(2, [False, True, False, True]), (1, [False, False, False, True]), (0, [False, False, False, False])],
)
def test_report_throttled_by_time(capsys, log_lines, vstats, stderr_after):
    clock = FakeClock()
    s = PerfStats({"x": [1.0]}, vstats=vstats, clock=clock)
    printed = []
    for dt in (0.5, 0.6, 0.5, 30.0):  # t = 0.5, 1.1, 1.6, 31.6 s after construction
        clock.now += dt
        s.report()
        printed.append(bool(capsys.readouterr().err))
    assert printed == stderr_after
    assert log_lines  # at 31.6 s the 30 s logger interval is due whatever vstats says
    s.report(final=True)
    assert capsys.readouterr().err.startswith("counter x")


def test_report_verbose_zero_never_writes_stderr(capsys, log_lines):
    clock = FakeClock()
    s = PerfStats({"x": [1.0]}, vstats=2, verbose=0, clock=clock)
    clock.now += 5
    s.report()
    s.report(final=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert sum("counter x, total" in line for line in log_lines) == 2


def test_pickle_round_trip_keeps_everything():
    # MapResults, and so its PerfStats, may be pickled or sent between processes
    import pickle

    s = PerfStats({"x": RNG.exponential(1.0, 1_000), "z": [0.0, 0.0]}, vstats=2, verbose=0)
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.snapshot() == s.snapshot() and (s2.vstats, s2.verbose) == (2, 0)
    s2.add("x", 1.0)
    assert s2.read_stats("x").count == s.read_stats("x").count + 1


def test_print_to_file_and_stderr_together(capsys):
    f = io.StringIO()
    PerfStats({"x": [1.0]}).print_percentiles(stderr=True, file=f)
    assert f.getvalue() == capsys.readouterr().err != ""
    PerfStats({"x": [1.0]}).print_percentiles(stderr=True, file=sys.stderr)  # printed once
    assert len(capsys.readouterr().err.splitlines()) == 5
