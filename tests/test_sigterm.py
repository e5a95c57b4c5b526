"""SIGTERM to the driver during map() (what Slurm sends at the time limit, on preemption or on
``scancel --signal=TERM``) acts like Ctrl-C: the workers stop, the journal keeps every finished pset,
``paramsurvey.Interrupted`` is raised (the process exits non-zero), and the same script run again
resumes. Outside map(), SIGTERM keeps Python's default: the process dies at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import workers_batch

import paramsurvey
from paramsurvey import journal as ps_journal

TESTS = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(TESTS), "src")
N_PSETS = 30
# a deadlock guard for one driver run of the survey below (~8 s of psets on 2 workers, when idle)
RUN_TIMEOUT = 90.0
# SIGTERM to exit: Slurm's grace before SIGKILL is 30 s by default; stopping takes well under one
# on an idle machine; this bound leaves room for a busy 2-core machine and still proves no hang
STOP_DEADLINE = 10.0

SCRIPT = textwrap.dedent("""
    import sys
    import paramsurvey, workers_batch

    journal, markers, run, sleep, N = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    backend = sys.argv[6]

    def announce(user_ret, system_kwargs, user_kwargs):
        print('finished', user_ret['pset']['x'], flush=True)

    if backend == 'ray':  # a local Ray: ray.init() puts a SIGTERM handler of its own in the driver
        paramsurvey.init(backend='ray', ray={'num_cpus': 2, 'include_dashboard': False})
    else:
        paramsurvey.init(backend='multiprocessing', ncores=2)
    try:
        results = paramsurvey.map(workers_batch.marked_sleep, [{'x': i} for i in range(N)], journal=journal,
                                  user_kwargs={'dir': markers, 'run': run, 'sleep': sleep},
                                  out_func=announce, group_size=1)
    except paramsurvey.Interrupted as exc:
        print('interrupted', len(exc.results), sorted(set(exc.results.missing['_status'])), flush=True)
        raise  # as a script that does not catch it: the exit status is Python's for an uncaught exception
    print('complete', len(results), len(results.missing), list(results.results['y']) == [10 * x for x in range(N)],
          flush=True)
""")


@pytest.fixture(autouse=True)
def default_sigterm():
    """The tests that run in this process start from Python's default SIGTERM handler: an earlier
    test may have left another (ray.init() installs one in the test process)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def start_driver(tmp_path, run, sleep, backend="multiprocessing"):
    script = tmp_path / "survey.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]))
    env = {k: v for k, v in env.items() if not k.startswith("PARAMSURVEY_")}
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    args = [sys.executable, str(script), str(tmp_path / "survey.journal"), str(markers), run, str(sleep),
            str(N_PSETS), backend]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def wait_for_finished(proc, n):
    """Lines of stdout until ``n`` psets have reached the driver."""
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(seen) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
    if len(seen) < n:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the driver did not finish {n} psets: {seen} {err[-2000:]}")
    return seen


def alive(procs):
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def finished_of(lines):
    return {int(line.split()[1]) for line in lines if line.startswith("finished")}


@pytest.mark.parametrize("whom", ["driver", "every process"])
def test_sigterm_stops_the_survey_and_the_same_script_resumes(tmp_path, whom):
    """``every process``: what Slurm does at the time limit and on scancel, SIGTERM to every process
    of the job at once (the driver, its fork server, its workers)."""
    proc = start_driver(tmp_path, "first", 0.5)
    seen = wait_for_finished(proc, 4)
    family = psutil.Process(proc.pid).children(recursive=True)
    assert family, "the multiprocessing backend should have started processes"
    sent = time.monotonic()
    if whom == "every process":  # Slurm signals them one by one: here the driver last, once they react
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        psutil.wait_procs(family, timeout=1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - sent
    # Interrupted is a KeyboardInterrupt, but Python ends itself with SIGINT (status 130) only for
    # the plain class: an uncaught subclass exits with status 1, as any uncaught exception
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    assert err.rstrip().endswith("paramsurvey.exceptions.Interrupted: paramsurvey.map interrupted"), err[-3000:]
    assert elapsed < STOP_DEADLINE, elapsed
    _, still = psutil.wait_procs(family, timeout=2)
    assert alive(still) == []
    journal = str(tmp_path / "survey.journal")
    assert "stopped by SIGTERM" in err and f"resubmit the same script to resume from the journal {journal}" in err, \
        err[-3000:]
    interrupted = [line for line in out.splitlines() if line.startswith("interrupted")]
    assert interrupted and "'cancelled'" in interrupted[0], out + err[-3000:]

    finished = finished_of(seen + out.splitlines())
    on_disk = ps_journal.read(journal)
    journaled = set(on_disk["x"])
    assert finished <= journaled, "a pset that reached the driver is missing from the journal"
    # a worker killed by the same SIGTERM is recorded as crashed, and runs again on resume
    assert set(on_disk["_status"]) <= {"ok", "crashed"}
    assert "ok" in set(on_disk["_status"])
    crashed = on_disk[on_disk["_status"] == "crashed"]
    assert all("SIGTERM" in e for e in crashed["_exception"]), crashed["_exception"]
    assert len(journaled) < N_PSETS

    again = start_driver(tmp_path, "second", 0.0)
    out, err = again.communicate(timeout=RUN_TIMEOUT)
    assert again.returncode == 0, err[-3000:]
    assert f"complete {N_PSETS} 0 True" in out, out + err[-3000:]
    second = {x for x, run in workers_batch.starts(str(tmp_path / "markers")) if run == "second"}
    succeeded = set(on_disk.loc[on_disk["_status"] == "ok", "x"])
    assert not second & succeeded, "a pset that finished ran again"
    assert second | succeeded == set(range(N_PSETS))


def test_sigterm_stops_a_survey_on_ray_whose_init_put_its_own_handler(tmp_path):
    """ray.init() installs a SIGTERM handler in the driver that calls sys.exit(): during map() it
    counts as the default, so a batch job on Ray stops like the others, its journal written."""
    proc = start_driver(tmp_path, "first", 0.5, backend="ray")
    seen = wait_for_finished(proc, 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    journal = str(tmp_path / "survey.journal")
    assert f"resubmit the same script to resume from the journal {journal}" in err, err[-3000:]
    assert any(line.startswith("interrupted") for line in out.splitlines()), out + err[-3000:]
    assert finished_of(seen + out.splitlines()) <= set(ps_journal.read(journal)["x"])


def test_sigterm_outside_map_keeps_the_default(tmp_path):
    """Before and after map(), SIGTERM ends the process at once, as Python's default does."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        import paramsurvey
        paramsurvey.init(backend='multiprocessing', ncores=1, verbose=0)
        paramsurvey.map(lambda pset, s, u: {'y': 1}, [{'x': 1}])
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        print('after map', flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        print('survived', flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    env["PYTHONPATH"] = SRC
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=RUN_TIMEOUT)
    assert done.returncode == -signal.SIGTERM, done.stderr[-3000:]
    assert done.stdout == "after map\n"


def my_handler(signum, frame):
    raise AssertionError("no SIGTERM is sent in this test")


def handler_during_map(pset, system_kwargs, user_kwargs):
    """Run in the driver (serial backend): which SIGTERM handler is in force during the map."""
    handler = signal.getsignal(signal.SIGTERM)
    return {"default": handler is signal.SIG_DFL, "mine": handler is my_handler}


def test_map_traps_sigterm_only_when_it_has_the_default_handler():
    """A program's own SIGTERM handler is left alone; the default one is replaced during the map
    and restored after it."""
    paramsurvey.init(backend="serial", verbose=0)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    trapped = paramsurvey.map(handler_during_map, [{"x": 1}])
    assert list(trapped.results["default"]) == [False]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    signal.signal(signal.SIGTERM, my_handler)
    try:
        kept = paramsurvey.map(handler_during_map, [{"x": 1}])
        assert list(kept.results["mine"]) == [True]
        assert signal.getsignal(signal.SIGTERM) is my_handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no journal"])
def test_sigterm_on_the_serial_backend_raises_interrupted(tmp_path, caplog, journal):
    """In-process psets: the SIGTERM raises at once inside the pset, like Ctrl-C there; the log
    says what to do next."""
    paramsurvey.init(backend="serial", verbose=0)
    path = str(tmp_path / "j") if journal else None

    def stopped_at_third(pset, system_kwargs, user_kwargs):
        if pset["x"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        return {"y": pset["x"]}

    with pytest.raises(paramsurvey.Interrupted) as caught:
        paramsurvey.map(stopped_at_third, [{"x": i} for i in range(5)], journal=path)
    results = caught.value.results
    # the group the signal interrupted is lost whole, as with Ctrl-C: it had not finished
    finished = set(results.results["y"])
    assert 0 in finished and 2 not in finished
    assert set(results.missing["_status"]) == {"cancelled"} and len(results.missing) == 5 - len(finished)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    said = [r.getMessage() for r in caplog.records if "stopped by SIGTERM" in r.getMessage()]
    assert len(said) == 1
    if journal:
        assert set(ps_journal.read(path)["x"]) == finished
        assert said[0].endswith(f"resubmit the same script to resume from the journal {path}")
    else:
        assert said[0].endswith("without a journal what finished is only in the paramsurvey.Interrupted "
                                "exception (give journal= to resume)")
