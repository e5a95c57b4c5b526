"""Progress: the reporter's cadence (with a fake clock), the live bar and its stream routing, and
real surveys under a pseudo-terminal and with stderr to a file."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

from paramsurvey import _progress as progress
from paramsurvey._progress import FASTEST, Counters, MapProgress, ProgressReporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    """Collects the reporter's records: shown on stderr (ps_verbose <= verbose) or logfile only."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def shown(self, verbose: int) -> list[str]:
        return [r.getMessage() for r in self.records if getattr(r, "ps_verbose", 1) <= verbose]

    def all(self) -> list[str]:
        return [r.getMessage() for r in self.records]


class CarbonRecorder:
    """Stands in for the graphite sender (tested against a real carbon in test_carbon.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, MapProgress]] = []

    def send(self, name: str, snap: MapProgress) -> None:
        self.sent.append((name, snap))


@pytest.fixture
def records():
    handler = Records()
    logger = logging.getLogger("paramsurvey.progress")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # as logfile.ensure_handlers() sets its parent
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def drive(reporter: ProgressReporter, clock: FakeClock, seconds: float, step: float = 0.05,
          counters: Counters | None = None, change_every: float | None = None) -> Counters:
    """Tick the reporter every ``step`` fake seconds, finishing a pset every ``change_every``."""
    counters = counters or Counters(total=10_000)
    end = clock.now + seconds
    last_change = clock.now
    while clock.now < end:
        clock.now += step
        if change_every is not None and clock.now - last_change >= change_every:
            counters.finished += 1
            last_change = clock.now
        reporter.tick(counters)
    return counters


def test_mapprogress_line():
    snap = MapProgress(total=5, active=1, finished=3, failures=1, exceptions=1, crashed=0)
    assert str(snap) == "total: 5, active: 1, finished: 3, failures: 1, exceptions: 1"
    assert snap.asdict()["crashed"] == 0 and set(snap.asdict()) >= {"total", "retried", "timeouts"}


@pytest.mark.parametrize("verbose, seconds, expected", [(1, 65, 2), (2, 10.01, 10)])
def test_lines_every_interval(records, verbose, seconds, expected):
    clock = FakeClock()
    reporter = ProgressReporter("sv", verbose, clock=clock, display="lines")
    drive(reporter, clock, seconds, change_every=0.3)
    shown = [line for line in records.shown(verbose) if "progress:" in line]
    assert len(shown) == expected
    assert all(re.fullmatch(r"sv progress: total: 10000, active: 0, finished: \d+, failures: 0, "
                            r"exceptions: 0", line) for line in shown)


def test_verbose3_on_change_only_and_at_most_four_a_second(records):
    clock = FakeClock()
    reporter = ProgressReporter("sv", 3, clock=clock, display="lines")
    counters = drive(reporter, clock, 5, step=0.01, change_every=0.01)  # 100 changes a second
    shown = records.shown(3)
    assert 5 * 4 - 2 <= len(shown) <= 5 / FASTEST + 1
    drive(reporter, clock, FASTEST + 0.01, step=0.01, counters=counters)  # the last change shows
    assert len(records.shown(3)) == len(shown) + 1
    drive(reporter, clock, 5, step=0.01, counters=counters)  # nothing changes: nothing shown
    assert len(records.shown(3)) == len(shown) + 1


def test_progress_dt_overrides_but_never_floods(records):
    clock = FakeClock()
    reporter = ProgressReporter("sv", 1, progress_dt=2.0, clock=clock, display="lines")
    drive(reporter, clock, 10.01)
    assert len(records.shown(1)) == 5
    records.records.clear()
    reporter = ProgressReporter("sv", 1, progress_dt=0.0, clock=clock, display="lines")
    drive(reporter, clock, 10, step=0.01)
    assert len(records.shown(1)) <= 10 / FASTEST + 1


def test_verbose0_logfile_and_carbon_only(records):
    clock = FakeClock()
    carbon = CarbonRecorder()
    reporter = ProgressReporter("sv", 0, clock=clock, carbon=carbon)
    assert reporter.display == "none"
    counters = drive(reporter, clock, 61, step=0.5)
    assert records.shown(3) == []  # ps_verbose 99: the logfile alone
    assert len(records.all()) >= 61 // progress.LOG_INTERVAL
    # graphite hears at least every CARBON_INTERVAL, starting at the first tick
    assert len(carbon.sent) >= 61 // progress.CARBON_INTERVAL + 1
    counters.finished = counters.total
    final = reporter.close(counters)
    assert carbon.sent[-1] == ("sv", final) and final.finished == 10_000
    assert records.shown(3) == []


def test_next_due_bounds_the_engine_wait():
    clock = FakeClock()
    reporter = ProgressReporter("sv", 1, clock=clock, display="lines")
    counters = Counters(total=3)
    for _ in range(50):
        due = reporter.next_due()
        assert due is not None and 0 < due <= progress.HEARTBEAT  # heartbeat: vstats runs on time
        clock.now += due
        reporter.tick(counters)
    reporter3 = ProgressReporter("sv", 3, clock=clock, display="lines")
    reporter3.tick(counters)
    for _ in range(20):  # unchanged counters at verbose 3: no busy loop
        clock.now += FASTEST
        reporter3.tick(counters)
        assert reporter3.next_due() > 0


def test_close_shows_final_line_once(records):
    clock = FakeClock()
    reporter = ProgressReporter("sv", 1, clock=clock, display="lines")
    counters = Counters(total=2)
    counters.finished, counters.failures, counters.exceptions = 1, 1, 1
    snap = reporter.close(counters)
    assert snap == MapProgress(total=2, finished=1, failures=1, exceptions=1)
    reporter.close(counters)
    assert records.shown(1) == ["sv progress: total: 2, active: 0, finished: 1, failures: 1, exceptions: 1"]


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_routes_stderr_above_it_and_gives_it_back(monkeypatch):
    screen = FakeTTY()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal: left alone
    out = sys.stdout
    clock = FakeClock()
    reporter = ProgressReporter("sv", 1, clock=clock)
    assert reporter.display == "bar"
    counters = Counters(total=4)
    reporter.tick(counters)
    assert sys.stderr is not screen and sys.stdout is out
    sys.stderr.write("a partial")  # held until its newline: never drawn into the bar's line
    assert "a partial" not in screen.getvalue()
    sys.stderr.write(" line\nsecond line\n")
    counters.finished = 4
    clock.now += 1
    reporter.tick(counters)
    reporter.close(counters)
    assert sys.stderr is screen
    lines = screen_lines(screen.getvalue())
    assert lines[:2] == ["a partial line", "second line"]
    assert re.fullmatch(r"sv: 100%\|.*\| 4/4 \[.*, active 0, finished 4, failures 0, exceptions 0\]",
                        lines[2])
    assert lines[3:] == [""]  # the bar's line is ended


def test_interrupted_bar_stops_where_it_was(monkeypatch):
    screen = FakeTTY()
    monkeypatch.setattr(sys, "stderr", screen)
    reporter = ProgressReporter("sv", 1, clock=FakeClock())
    counters = Counters(total=40)
    counters.finished = 8
    reporter.tick(counters)
    counters.cancelled = counters.failures = 32  # what the engine records after Ctrl-C
    reporter.close(counters)
    final = screen_lines(screen.getvalue())[-2]
    assert re.fullmatch(r"sv: +20%\|.*\| 8/40 \[.*, finished 8, failures 32, exceptions 0, cancelled 32\]",
                        final)


def test_release_gives_streams_back_after_a_failed_map(monkeypatch):
    screen = FakeTTY()
    monkeypatch.setattr(sys, "stderr", screen)
    reporter = ProgressReporter("sv", 2, clock=FakeClock())
    reporter.tick(Counters(total=4))
    assert sys.stderr is not screen
    reporter.release()
    reporter.tick(Counters(total=4))  # never drawn again
    assert sys.stderr is screen and screen.getvalue().endswith("\n")


# -- real surveys: a pseudo-terminal, and stderr to a file ------------------------------------------

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import paramsurvey

    def work(pset, system_kwargs, user_kwargs):
        time.sleep(pset['sleep'])
        if pset['x'] % 6 == 1:
            raise ValueError('odd %d' % pset['x'])
        return {'y': pset['x']}

    config = json.loads(sys.argv[1])
    paramsurvey.init(ncores=2, **config.get('init', {}))
    n = config.get('n', 24)
    results = paramsurvey.map(work, [{'x': i, 'sleep': config.get('sleep', 0.25)} for i in range(n)],
                              **config.get('map', {}))
    assert len(results) == n - len(range(1, n, 6)), results.progress
    print('results', len(results))
""")

BAR_RE = re.compile(r"default: +\d+%\|[^|]*\| *(\d+)/24 \[(\d\d:\d\d)<(\d\d:\d\d|\?), +([\d.?]+)pset/s, "
                    r"active (\d+), finished (\d+), failures (\d+), exceptions (\d+)\]")
PLAIN_RE = re.compile(r"default progress: total: 24, active: \d+, finished: \d+, failures: \d+, "
                      r"exceptions: \d+")
FINAL = "default progress: total: 24, active: 0, finished: 20, failures: 4, exceptions: 4"


def run_in_pty(args: list[str], cwd: str, timeout: float = 60) -> tuple[int, str]:
    """Run a child with a pseudo-terminal (120x40) as stdin, stdout and stderr; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows at the end: each \\r returns to column 0 and overwrites."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        shown: list[str] = []
        for segment in line.split("\r"):
            shown[: len(segment)] = list(segment)
        lines.append("".join(shown).rstrip())
    return lines


@pytest.fixture(scope="module")
def bar_and_file_runs(tmp_path_factory):
    """The same survey twice at once: under a pseudo-terminal, and with stderr to a file."""
    config = json.dumps({"init": {"verbose": 1}, "map": {"progress_dt": 0.5}})
    pty_dir, file_dir = tmp_path_factory.mktemp("pty"), tmp_path_factory.mktemp("file")
    args = [sys.executable, "-c", SCRIPT, config]
    with open(file_dir / "stderr.txt", "w") as err, open(file_dir / "stdout.txt", "w") as out:
        in_file = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=file_dir)
        try:
            code, raw = run_in_pty(args, str(pty_dir))
        finally:
            file_code = in_file.wait(timeout=60)
    assert code == 0, raw
    assert file_code == 0, (file_dir / "stderr.txt").read_text()
    return raw, (file_dir / "stderr.txt").read_text(), (file_dir / "stdout.txt").read_text(), pty_dir


def test_terminal_shows_a_live_bar(bar_and_file_runs):
    raw, _, _, _ = bar_and_file_runs
    frames = [m.groups() for m in BAR_RE.finditer(raw)]
    assert len(frames) >= 5, raw
    # time remaining: a real estimate while running, from a measured rate
    running = [f for f in frames if int(f[0]) < 24 and f[2] != "?"]
    assert running, raw
    assert all(float(f[3]) > 0 for f in running)
    final = frames[-1]
    assert final[0] == "24" and final[2] == "00:00" and final[4:] == ("0", "20", "4", "4")
    # never a plain progress line on a terminal
    assert "progress: total" not in raw


def test_terminal_bar_and_notes_never_share_a_line(bar_and_file_runs):
    raw, _, _, _ = bar_and_file_runs
    screen = screen_lines(raw)
    notes = [line for line in screen if "failed (exception)" in line]
    assert len(notes) == 4
    note = re.compile(r"default: pset \d+ failed \(exception\): ValueError\('odd \d+'\)")
    assert all(note.fullmatch(n) for n in notes)
    bars = [line for line in screen if "%|" in line]
    # the bar ends on its own line, in its final state, before the statistics and the script's output
    assert len(bars) == 1 and BAR_RE.fullmatch(bars[0]) and bars[0].startswith("default: 100%")
    after = screen[screen.index(bars[0]) + 1:]
    assert any(line.startswith("counter default_wallclock, total") for line in after)
    assert screen[-2:] == ["results 20", ""]


def test_redirected_stderr_gets_plain_lines(bar_and_file_runs):
    _, err, out, _ = bar_and_file_runs
    assert out == "results 20\n"
    assert "\r" not in err and "%|" not in err
    lines = err.splitlines()
    progress_lines = [line for line in lines if "progress" in line]
    # progress_dt=0.5 over a ~3 s survey, and the final line
    assert len(progress_lines) >= 4 and all(PLAIN_RE.fullmatch(line) for line in progress_lines)
    assert progress_lines[-1] == FINAL
    others = [line for line in lines if line not in progress_lines]
    assert all(line.startswith(("default: pset", "default: each failure's traceback is in", "counter "))
               for line in others), others


def test_logfile_is_complete_under_the_bar(bar_and_file_runs):
    _, _, _, pty_dir = bar_and_file_runs
    [logfile] = pty_dir.glob(".paramsurvey-*.log")
    text = logfile.read_text()
    assert FINAL in text
    assert text.count("Traceback (most recent call last)") == 4
    assert "counter default_wallclock, 99%tile" in text
