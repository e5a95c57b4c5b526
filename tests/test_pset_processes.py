"""Processes started by psets end with their worker, and all of them with the survey.

A pset starts a long command (tagged with a unique token in its argv) three ways: subprocess.Popen
(a child in the worker's process group), the shell's '&' through os.system (an orphan that keeps the
worker's pipes open) and a double-fork daemon (an orphan in a session of its own, also holding the
pipes); the package's own subprocess_run_worker where the pset waits for its command. Then its worker
crashes, times out, retires, is Ctrl-C'd, or the driver is killed, or finalize() runs: after a short
bounded wait no tagged process is left anywhere on the machine (orphans reparented to init are not
the test's children, so the autouse fixture alone would not see them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import workers_mpworker as wm

import paramsurvey

TESTS = os.path.dirname(__file__)
SRC = os.path.join(TESTS, "..", "src")
# Generous bounds that turn a hang or a leak into a failure, not timing claims.
GONE_WITHIN = 5.0
MAP_DEADLINE = 30.0
BACKGROUND = ["popen", "system", "daemon"]


@pytest.fixture
def tag():
    """A unique token for this test's commands; any left at the end (a failed test) are killed."""
    value = f"paramsurvey-test-{uuid.uuid4().hex}"
    yield value
    for proc in wm.tagged_processes(value):
        proc.kill()


def psets_with_one(tag: str, how: str, then: str, n: int = 6) -> list[dict]:
    return [{"x": i, "token": tag if i == 2 else "", "how": how, "then": then if i == 2 else "return"}
            for i in range(n)]


@pytest.mark.parametrize("how", ["system", "daemon"])
@pytest.mark.parametrize("then, words", [("os_exit", "exited with code 5"),
                                         ("segfault", "signal 11 (SIGSEGV)")])
def test_a_crash_is_noticed_at_once_though_a_background_child_holds_its_pipe(how, then, words, tag):
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=2)
    started = time.monotonic()
    results = paramsurvey.map(wm.start_then, psets_with_one(tag, how, then))
    elapsed = time.monotonic() - started
    assert elapsed < MAP_DEADLINE, "the map waited for the background command to exit"
    assert results["y"].tolist() == [0, 1, 3, 4, 5]
    missing = results.missing
    assert missing["x"].tolist() == [2]
    assert missing["_status"].tolist() == ["crashed"]
    assert words in missing["_exception"].iloc[0]
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []


@pytest.mark.parametrize("how", BACKGROUND + ["run_worker"])
def test_a_timeout_ends_the_psets_processes(how, tag):
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=2)
    results = paramsurvey.map(wm.start_then, psets_with_one(tag, how, "hang"), timeout=2)
    assert results.missing["_status"].tolist() == ["timeout"]
    assert len(results) == 5
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []


@pytest.mark.parametrize("how", BACKGROUND)
def test_a_retired_worker_takes_its_psets_processes_with_it(how, tag):
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=2, max_tasks_per_child=1)
    results = paramsurvey.map(wm.start_then, psets_with_one(tag, how, "return"))
    assert len(results) == 6
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []


@pytest.mark.parametrize("how", ["popen", "system"])
def test_processes_live_as_long_as_their_worker_then_finalize_ends_them(how, tag):
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=2)
    results = paramsurvey.map(wm.start_then, psets_with_one(tag, how, "return"))
    assert len(results) == 6
    # the worker that ran the pset is alive and idle: what the pset started is still running
    assert len(wm.wait_for_tagged(tag, 1, GONE_WITHIN)) == 1
    paramsurvey.finalize()
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []


def test_finalize_ends_a_psets_daemon(tag):
    paramsurvey.init(backend="multiprocessing", verbose=0, ncores=2)
    results = paramsurvey.map(wm.start_then, psets_with_one(tag, "daemon", "return"))
    assert len(results) == 6
    assert len(wm.wait_for_tagged(tag, 1, GONE_WITHIN)) == 1
    paramsurvey.finalize()
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []


DRIVER = textwrap.dedent("""
    import os, sys
    import paramsurvey
    import workers_mpworker as wm

    tag, n = os.environ['TEST_TAG'], int(sys.argv[1])  # not in argv: only the commands carry the tag
    hows = ['popen', 'system', 'daemon', 'run_worker'][:n]
    paramsurvey.init(backend='multiprocessing', verbose=0, ncores=n)
    psets = [{'x': i, 'token': tag, 'how': how, 'then': 'hang'} for i, how in enumerate(hows)]
    try:
        paramsurvey.map(wm.start_then, psets, group_size=1)
    except paramsurvey.Interrupted as exc:
        print('interrupted', len(exc.results.missing), flush=True)
""")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_the_driver_interrupted_or_killed_leaves_no_psets_process(tmp_path, how, tag):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    n = 4  # one pset for each way of starting a command, each on a worker of its own
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]), TEST_TAG=tag)
    # output to files, not pipes: a leaked process would hold a pipe open and hang the reading
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        driver = subprocess.Popen([sys.executable, str(script), str(n)], stdout=out, stderr=err, env=env,
                                  cwd=tmp_path)
    try:
        started = wm.wait_for_tagged(tag, n, MAP_DEADLINE)
        assert len(started) == n, err_path.read_text() if driver.poll() is not None else "too slow"
        driver.send_signal(how)
        driver.wait(timeout=MAP_DEADLINE)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    if how == signal.SIGINT:
        assert driver.returncode == 0, err_path.read_text()
        assert out_path.read_text().strip() == f"interrupted {n}"
    assert wm.wait_until_gone(tag, GONE_WITHIN) == []
