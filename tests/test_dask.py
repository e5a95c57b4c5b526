"""The Dask backend beyond the contract: a real scheduler and workers from the ``dask`` command line
(one worker with the resource ``special``), Ctrl-C on paramsurvey's own cluster and on a user's,
what Dask cannot do, and the install hint. A worker killed mid-survey: test_remote.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import _clusters
import psutil
import pytest
import workers
from _commands import commands_started, interrupt_once_commands_run, still_running

import paramsurvey

pytest.importorskip("distributed")


@pytest.fixture(scope="session")
def dask_cluster():
    with _clusters.shared("dask") as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """conftest's isolation, tolerant of the shared cluster's restarted workers."""
    with _clusters.isolated(tmp_path, monkeypatch):
        yield


def init_on(cluster, **kwargs):
    paramsurvey.init(backend="dask", verbose=0, dask=cluster.init_kwargs, **kwargs)


def pids_of(proc):
    return {p.pid for p in proc.family()}


def test_not_installed_names_the_extra():
    out = _clusters.run_script(textwrap.dedent("""
        import sys
        sys.modules['distributed'] = None  # as if dask[distributed] were not installed
        import paramsurvey
        try:
            paramsurvey.init(backend='dask', verbose=0)
        except paramsurvey.BackendNotInstalled as exc:
            print('raised:', exc)
    """))
    assert "raised:" in out.stdout, out.stderr
    assert "'paramsurvey[dask]'" in out.stdout  # the install hint names the extra


def test_what_dask_cannot_do_is_an_error(dask_cluster):
    with pytest.raises(ValueError, match="max_tasks_per_child is not supported by the dask backend"):
        init_on(dask_cluster, max_tasks_per_child=3)
    with pytest.raises(ValueError, match="unknown dask option"):
        paramsurvey.init(backend="dask", dask={"adress": dask_cluster.address})
    init_on(dask_cluster)
    with pytest.raises(ValueError, match="timeout= is not supported by the dask backend"):
        paramsurvey.map(workers.double, [{"x": 1}], timeout=5)


@pytest.mark.timeout(120)
def test_workers_that_cannot_import_paramsurvey_are_an_error_not_a_hang():
    """A node where paramsurvey is not installed: its worker used to die on the first task it
    could not unpickle, and map() waited forever."""
    cluster = _clusters.DaskCluster(workers=False)
    try:
        cluster.add_worker(without_paramsurvey=True)
        cluster.wait_for_workers(1)
        paramsurvey.init(backend="dask", verbose=0, dask=cluster.init_kwargs)
        started = time.monotonic()
        with pytest.raises(paramsurvey.BackendError, match="No module named 'paramsurvey'"):
            paramsurvey.map(workers.double, [{"x": i} for i in range(4)])
        assert time.monotonic() - started < 60  # a deadlock guard
        paramsurvey.finalize()
        assert cluster.workers[0].alive()  # the worker lives on, for a map it can run
    finally:
        paramsurvey.finalize()
        cluster.stop()


def test_cluster_cores_and_resources(dask_cluster):
    init_on(dask_cluster)
    assert paramsurvey.current_core_count() == 2
    nodes = paramsurvey.current_resources()  # one machine: both workers are on it
    assert len(nodes) == 1 and nodes[0]["num_cores"] == 2 and nodes[0]["memory"] > 0


def test_pset_with_a_custom_resource_runs_on_the_worker_that_has_it(dask_cluster):
    init_on(dask_cluster)
    psets = [{"x": i, "dask": {"resources": {"special": 1}}} if i % 3 == 0 else {"x": i} for i in range(12)]
    results = paramsurvey.map(workers.echo_system, psets)
    assert results["pset_index"].tolist() == list(range(12))
    special = results.results[results["x"] % 3 == 0]
    assert set(special["pid"]) <= pids_of(dask_cluster.special)
    assert special["pset_keys"].tolist() == ["dask,x"] * 4
    bad = paramsurvey.map(workers.double, [{"x": 1, "dask": {"cores": 2}}, {"x": 2}])
    assert bad["y"].tolist() == [4]
    assert "dask options" in bad.missing["_exception"].iloc[0]


def test_a_pset_that_cannot_be_sent_fails_alone(dask_cluster):
    init_on(dask_cluster)
    psets = [{"x": 1, "lock": None}, {"x": 2, "lock": threading.Lock()}, {"x": 3, "lock": None}]
    results = paramsurvey.map(workers.double, psets, group_size=1)
    assert results["y"].tolist() == [2, 6]
    assert results.missing["x"].tolist() == [2]
    assert "pickle" in results.missing["_exception"].iloc[0]


def test_ctrl_c_on_a_users_cluster_stops_the_running_group(dask_cluster, tmp_path):
    """Dask cannot kill a task on a cluster that is not paramsurvey's: a cancelled group stops at
    its next pset instead."""
    init_on(dask_cluster)
    marks = tmp_path / "marks"
    marks.mkdir()
    psets = [{"x": i, "sleep": 0.05} for i in range(200)]
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(paramsurvey.Interrupted):
        paramsurvey.map(workers.marker, psets, group_size=100, user_kwargs={"dir": str(marks)})
    timer.join()
    time.sleep(0.5)  # what still runs now stops at its next pset
    settled = len(os.listdir(marks))
    time.sleep(1.0)
    assert len(os.listdir(marks)) == settled < 200


DRIVER_KILLED = textwrap.dedent("""
    import sys, threading, time
    import paramsurvey, workers_remote

    paramsurvey.init(backend='dask', verbose=0, dask={'n_workers': 2})
    psets = [{'x': i} for i in range(4)]
    threading.Thread(target=paramsurvey.map, args=(workers_remote.busy_with_a_child, psets),
                     kwargs={'user_kwargs': {'dir': sys.argv[1]}, 'group_size': 1}, daemon=True).start()
    time.sleep(300)
""")


@pytest.mark.timeout(180)
def test_own_workers_and_their_commands_end_at_once_with_a_killed_driver(tmp_path):
    """A driver SIGKILLed while psets run (each waiting on a command it started): its Dask workers
    used to run on ~30 s (Dask's --death-timeout); now they, and the commands, go at once."""
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER_KILLED, str(marks)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    family: list[psutil.Process] = []
    local_dirs: set[str] = set()
    try:
        deadline = time.monotonic() + 90
        while len(os.listdir(marks)) < 2:  # both workers run a pset
            assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
            assert time.monotonic() < deadline, "the psets never started"
            time.sleep(0.1)
        family = psutil.Process(driver.pid).children(recursive=True)
        assert set(commands_started(marks)) <= {p.pid for p in family}
        # a killed driver cannot remove its workers' directory: this test does
        local_dirs = {line[line.index("--local-directory") + 1] for line in (p.cmdline() for p in family)
                      if "--local-directory" in line}
        driver.kill()
        driver.wait()
        killed = time.monotonic()
        _, alive = psutil.wait_procs(family, timeout=20)
        gone_after = time.monotonic() - killed
        left = [p.pid for p in alive]
    finally:
        driver.kill()
        driver.wait()
        for p in family:  # a failed test leaves nothing running
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        for directory in local_dirs:
            shutil.rmtree(directory, ignore_errors=True)
    assert not left, f"still running 20 s after the driver was killed: {left}"
    assert gone_after < 10  # a deadlock guard; under a second here


@pytest.mark.timeout(180)
def test_ctrl_c_on_the_own_cluster_ends_the_commands_psets_started(tmp_path):
    """The worker processes running the survey are killed, and with them the commands their
    psets started (which would otherwise run on, orphaned)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    paramsurvey.init(backend="dask", verbose=0, dask={"n_workers": 2})

    commands = interrupt_once_commands_run(marks)
    assert len(commands) >= 2
    assert not still_running(commands, timeout=10)


@pytest.mark.timeout(180)
def test_ctrl_c_with_paramsurveys_own_cluster(tmp_path):
    _clusters.ctrl_c_in_a_script(tmp_path, "dask")


@pytest.mark.timeout(180)
def test_readme_example_piped_to_python_with_a_local_dask():
    _clusters.readme_example_piped("dask")
