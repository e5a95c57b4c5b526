"""Verbose levels exactly as the README and docs/monitoring.md promise, and vstats, each in a real program
whose stderr and stdout are captured (a file, not a terminal: plain lines)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import paramsurvey

    def work(pset, system_kwargs, user_kwargs):
        time.sleep(0.25)
        if pset['x'] % 6 == 1:
            raise ValueError('odd %d' % pset['x'])
        return {'y': pset['x']}

    config = json.loads(sys.argv[1])
    paramsurvey.init(ncores=2, **config.get('init', {}))
    start = time.monotonic()
    results = paramsurvey.map(work, [{'x': i} for i in range(24)], **config.get('map', {}))
    with open('map_seconds', 'w') as f:
        f.write(str(time.monotonic() - start))
    assert len(results) == 20 and len(results.missing) == 4, results.progress
    # no finalize(): the backend is stopped at interpreter exit, which must be silent at verbose 0
""")

# Each case: the init() and map() kwargs, and environment variables.
CASES = {
    "v0": {"init": {"verbose": 0}, "map": {"vstats": 3}},
    "v0_env": {"init": {"verbose": 3}, "env": {"PARAMSURVEY_VERBOSE": "0"}},
    "v1": {},
    "v2": {"init": {"verbose": 2}},
    "v3": {"init": {"verbose": 3}},
    "vstats2": {"map": {"vstats": 2}},
    "vstats0": {"map": {"vstats": 0}},
    "fast": {"map": {"verbose": 1, "progress_dt": 0.01}},
}
PROGRESS = re.compile(r"default progress: total: 24, active: \d+, finished: \d+, failures: \d+, "
                      r"exceptions: \d+")
FINAL = "default progress: total: 24, active: 0, finished: 20, failures: 4, exceptions: 4"
NOTE = re.compile(r"default: pset (1|7|13|19) failed \(exception\): ValueError\('odd \1'\)")
STATS_HEAD = re.compile(r"counter default_wallclock, total [\d.e-]+s, mean [\d.e-]+s, counts \d+")


class Run:
    def __init__(self, code: int, out: str, err: str, cwd: str) -> None:
        self.code, self.out, self.err, self.cwd = code, out, err, cwd
        self.lines = err.splitlines()
        seconds = os.path.join(cwd, "map_seconds")  # absent if the program failed
        with open(seconds) if os.path.exists(seconds) else io.StringIO("0") as f:
            # at most 4 progress lines a second, and the final one
            self.max_lines = int(float(f.read()) * 4) + 2

    def progress(self) -> list[str]:
        return [line for line in self.lines if PROGRESS.fullmatch(line)]

    def stats_reports(self) -> int:
        return sum(1 for line in self.lines if STATS_HEAD.fullmatch(line))

    def logfile(self) -> str:
        [path] = [f for f in os.listdir(self.cwd) if f.startswith(".paramsurvey-")]
        with open(os.path.join(self.cwd, path)) as f:
            return f.read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Every case at once (they mostly sleep), each in its own directory."""
    procs = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    for name, case in CASES.items():
        cwd = tmp_path_factory.mktemp(name)
        procs[name] = (cwd, subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps(case)], cwd=cwd, env={**env, **case.get("env", {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = {}
    try:
        for name, (cwd, proc) in procs.items():
            stdout, stderr = proc.communicate(timeout=90)
            out[name] = Run(proc.returncode, stdout, stderr, str(cwd))
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, run in out.items():
        assert run.code == 0, f"{name}:\n{run.err}"
    return out


@pytest.mark.parametrize("case", ["v0", "v0_env"])
def test_verbose0_prints_nothing_at_all(runs, case):
    run = runs[case]
    assert run.out == "" and run.err == ""  # including at interpreter exit
    # while the hidden logfile still has everything
    log = run.logfile()
    assert FINAL in log and log.count("Traceback (most recent call last)") == 4
    assert "counter default_wallclock, 99%tile" in log


def test_verbose1_notes_and_final_line(runs):
    run = runs["v1"]
    assert run.out == ""
    notes = [line for line in run.lines if "failed" in line]
    assert len(notes) == 4 and all(NOTE.fullmatch(n) for n in notes)
    assert "Traceback" not in run.err and " was {" not in run.err
    assert run.progress() == [FINAL]  # a short survey: no 30 s line, the final one
    assert run.stats_reports() == 1  # vstats=1: every 30 s, and at the end
    [logfile] = [f for f in os.listdir(run.cwd) if f.startswith(".paramsurvey-")]
    hint = (f"default: each failure's traceback is in {os.path.join(run.cwd, logfile)} "
            "and in results.missing['_traceback']")
    assert run.lines.count(hint) == 1  # where the tracebacks are, once
    others = [line for line in run.lines if line not in notes and line not in (FINAL, hint)]
    assert all(line.startswith("counter default_") for line in others), others


def test_verbose2_tracebacks_and_a_line_a_second(runs):
    run = runs["v2"]
    assert run.err.count("Traceback (most recent call last)") == 4
    assert run.err.count("ValueError: odd") == 4
    assert len(re.findall(r"default: pset \d+ was \{'x': \d+\}", run.err)) == 4
    progress = run.progress()
    assert progress[-1] == FINAL
    # a line every second over a survey of >= 3 s: at least 2 before the final one, never a flood
    assert 3 <= len(progress) <= run.max_lines


def test_verbose3_every_action_on_change_only(runs):
    run = runs["v3"]
    assert "default: starting map of 24 psets on the multiprocessing backend" in run.lines
    assert any(re.fullmatch(r"default: group of \d+ psets finished, \d+ ok", line) for line in run.lines)
    progress = run.progress()
    assert progress[-1] == FINAL
    periodic = progress[:-1]
    assert len(periodic) >= 3
    assert all(a != b for a, b in zip(periodic, periodic[1:]))  # shown on change only
    assert len(progress) <= run.max_lines  # at most 4 a second


def test_never_more_than_a_few_lines_a_second(runs):
    run = runs["fast"]  # progress_dt=0.01
    progress = run.progress()
    assert progress[-1] == FINAL
    assert 4 <= len(progress) <= run.max_lines


def test_vstats2_reports_every_second(runs):
    run = runs["vstats2"]
    assert run.stats_reports() >= 3  # ~3 s survey: periodic reports, then the final one
    assert run.progress() == [FINAL]  # verbose is still 1


def test_vstats0_reports_at_the_end_only(runs):
    run = runs["vstats0"]
    assert run.stats_reports() == 1
    head = run.lines.index(next(line for line in run.lines if STATS_HEAD.fullmatch(line)))
    for line, pct in zip(run.lines[head + 1:head + 5], (50, 90, 95, 99)):
        found = re.fullmatch(rf"counter default_wallclock, {pct}%tile: ([\d.]+)s", line)
        assert found and float(found.group(1)) >= 0.25  # every pset slept 0.25 s
