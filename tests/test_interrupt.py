"""Ctrl-C and SIGTERM to the driver mid-survey: it exits within 2 s and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "src")

SCRIPT = textwrap.dedent("""
    import sys, time
    import paramsurvey

    def slow(pset, system_kwargs, user_kwargs):
        time.sleep(0.2 if pset['x'] < 4 else 30)
        return {'y': pset['x']}

    def announce(user_ret, system_kwargs, user_kwargs):
        print('finished', user_ret['pset']['x'], flush=True)

    if sys.argv[2:] == ['dask-jobqueue']:  # its import replaces Ctrl-C's handler by one that calls sys.exit()
        import dask_jobqueue
    elif len(sys.argv) > 2:  # like IPython/Jupyter: a SIGINT handler of its own raises KeyboardInterrupt
        import signal
        def raise_interrupt(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGINT, raise_interrupt)

    paramsurvey.init(backend=sys.argv[1], verbose=0)
    try:
        paramsurvey.map(slow, [{'x': i} for i in range(40)], out_func=announce, group_size=1)
    except paramsurvey.Interrupted as exc:
        r = exc.results
        print('interrupted', len(r), len(r.missing), sorted(set(r.missing['_status'])), flush=True)
        print('progress', r.progress.finished + r.progress.failures == r.progress.total, flush=True)
        sys.exit(0)
    print('not interrupted', flush=True)
""")


def start(tmp_path, backend, *extra):
    script = tmp_path / "driver.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, str(script), backend, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:  # some psets have finished
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
    assert len(seen) == 2, (seen, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def descendants(pid):
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def alive(pids):
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.parametrize("backend, handler", [("multiprocessing", ()), ("serial", ()),
                                              ("multiprocessing", ("notebook-like",)),
                                              ("multiprocessing", ("dask-jobqueue",))])
def test_sigint_raises_interrupted_with_partial_results(tmp_path, backend, handler):
    proc = start(tmp_path, backend, *handler)
    family = descendants(proc.pid)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 0, err
    assert elapsed < 2.0
    lines = out.strip().splitlines()
    interrupted = [line for line in lines if line.startswith("interrupted")]
    assert interrupted, out + err
    _, n_results, n_missing = interrupted[0].split()[:3]
    assert int(n_results) >= 2 and int(n_results) + int(n_missing) == 40
    assert "'cancelled'" in interrupted[0]
    assert "progress True" in out
    time.sleep(0.5)
    assert alive(family) == []


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_driver_killed_leaves_no_worker(tmp_path, how):
    proc = start(tmp_path, "multiprocessing")
    family = descendants(proc.pid)
    assert family, "the multiprocessing backend should have started processes"
    proc.send_signal(how)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 2.0
    while alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(family) == []


SERIAL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import paramsurvey

    def quick(pset, system_kwargs, user_kwargs):
        if pset['x'] == int(sys.argv[2]):  # Ctrl-C arrives while this pset runs, mid-group
            os.kill(os.getpid(), signal.SIGINT)
        return {'y': pset['x']}

    paramsurvey.init(backend='serial', verbose=0)
    try:
        paramsurvey.map(quick, [{'x': i} for i in range(400)], journal=sys.argv[1])
    except paramsurvey.Interrupted as exc:
        print('results', sorted(exc.results.df['y'].tolist()) == list(range(int(sys.argv[2]))), flush=True)
        print('line', exc.results.progress, flush=True)
    print('journaled', len(paramsurvey.journal.read(sys.argv[1])), flush=True)
""")


def test_ctrl_c_on_the_serial_backend_keeps_what_the_running_group_finished(tmp_path):
    """On the serial backend Ctrl-C lands inside a pset, in the middle of its group: the psets that
    group finished before it are results (and journaled), not lost with the interrupted one; the
    progress line counts the rest as cancelled."""
    script = tmp_path / "serial_driver.py"
    script.write_text(SERIAL_SCRIPT)
    stop_at = 300  # psets this quick run in big groups by then: the interrupted group holds finished psets
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "j.journal"), str(stop_at)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=SRC))
    assert proc.returncode == 0, proc.stderr
    assert "results True" in proc.stdout, proc.stdout + proc.stderr
    assert f"journaled {stop_at}" in proc.stdout, proc.stdout + proc.stderr
    # the progress line says that the psets never run were cancelled, not failed
    assert f"failures: {400 - stop_at}, exceptions: 0, cancelled: {400 - stop_at}" in proc.stdout, proc.stdout
