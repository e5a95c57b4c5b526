"""The one clock of a map's periodic reports, driven by a fake time source: what is due, when the
engine wakes, and progress and statistics sharing it."""

from __future__ import annotations

import logging
import math

import pytest

from paramsurvey._clock import BAR_DT, FAST_INTERVAL, HEARTBEAT, LOG_INTERVAL, SLOW_INTERVAL, ReportClock
from paramsurvey._progress import Counters, ProgressReporter
from paramsurvey.stats import PerfStats


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake():
    return FakeTime()


def test_a_periodic_is_due_at_its_deadline_then_one_interval_after_each_report(fake):
    clock = ReportClock(fake)
    report = clock.every(2.0)
    assert not report.due()
    fake.now += 1.999
    assert not report.due()
    fake.now += 0.001
    assert report.due()
    fake.now += 0.7  # reported late: due again 2 s after the report
    report.restart(fake.now)
    assert not report.due(fake.now + 1.9) and report.due(fake.now + 2.0)


def test_advance_keeps_the_grid_and_never_bursts(fake):
    clock = ReportClock(fake)
    lines = clock.every(1.0)
    fake.now += 1.3  # a wait that ended 0.3 s late: the next line is still due on the grid
    lines.advance(fake.now)
    assert lines.deadline == pytest.approx(1002.0)
    fake.now += 10.0  # very late: one line now, the next not before the floor
    lines.advance(fake.now, floor=0.25)
    assert lines.deadline == pytest.approx(fake.now + 0.25)


def test_first_deadline_and_stop(fake):
    clock = ReportClock(fake)
    bar = clock.every(BAR_DT, first=fake.now)
    assert bar.due() and clock.next_due() == 0.0
    bar.stop()
    assert not bar.due(1e300) and clock.next_due() == HEARTBEAT
    never = clock.every(math.inf)
    assert not never.due(1e300)


def test_next_due_is_the_earliest_deadline_capped_by_the_heartbeat(fake):
    clock = ReportClock(fake)
    assert clock.next_due() == HEARTBEAT  # nothing scheduled: the engine still wakes
    clock.every(SLOW_INTERVAL)
    assert clock.next_due() == HEARTBEAT
    clock.every(0.1)
    assert clock.next_due() == pytest.approx(0.1)
    fake.now += 5
    assert clock.next_due() == 0.0  # overdue: no wait at all


def test_of_shares_a_report_clock_and_wraps_a_time_source(fake):
    clock = ReportClock(fake)
    assert ReportClock.of(clock) is clock
    wrapped = ReportClock.of(fake)
    assert isinstance(wrapped, ReportClock) and wrapped() == fake.now


@pytest.fixture
def quiet_stats_logger():
    # the statistics report logs its lines; keep them out of the test's output
    logger = logging.getLogger("paramsurvey.stats")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


def test_progress_and_statistics_share_one_clock(fake, capsys, quiet_stats_logger):
    clock = ReportClock(fake)
    reporter = ProgressReporter("sv", 0, clock=clock)  # verbose 0: lines never due, the log every 30 s
    stats = PerfStats({"x": [1.0]}, vstats=2, verbose=1, clock=clock)  # stderr every second
    counters = Counters(total=3)
    reporter.tick(counters)
    assert clock.next_due() == HEARTBEAT
    fake.now += FAST_INTERVAL
    # the statistics are due: the engine's wait is 0 until they have reported, whoever ticked
    reporter.tick(counters)
    assert clock.next_due() == 0.0
    stats.report()
    assert capsys.readouterr().err.startswith("counter x")
    assert clock.next_due() == HEARTBEAT
    fake.now += LOG_INTERVAL  # now everything is due: both report, and the wait is back
    reporter.tick(counters)
    stats.report()
    assert clock.next_due() == HEARTBEAT


def test_statistics_alone_still_take_a_plain_time_source(fake, capsys, quiet_stats_logger):
    # PerfStats(clock=callable) as before: a clock of its own
    stats = PerfStats({"x": [1.0]}, vstats=2, clock=fake)
    fake.now += 0.5
    stats.report()
    assert capsys.readouterr().err == ""
    fake.now += 0.6
    stats.report()
    assert capsys.readouterr().err.startswith("counter x")


def test_a_survey_drives_progress_and_statistics_from_one_clock():
    from paramsurvey._config import resolve
    from paramsurvey._engine import Survey
    from paramsurvey._psets import PsetSource
    from paramsurvey.backends import create

    settings = resolve({"backend": "serial", "verbose": 0})
    backend = create(settings)
    backend.start()
    try:
        survey = Survey(backend, settings, lambda pset, sk, uk: {"y": pset["x"]}, PsetSource([{"x": 1}]))
        assert survey.reporter.clock is survey.clock and survey.stats._clock is survey.clock
        assert survey.run().results["y"].tolist() == [1]
    finally:
        backend.shutdown()
