"""The Ray backend beyond the contract: a real cluster on loopback (a head and a second node with the
custom resource ``special``), per-pset and per-map task options, the worker reuse limit, Ctrl-C
with the embedded local start, and the install hint. A node killed mid-survey: test_remote.py."""

from __future__ import annotations

import signal
import textwrap
import threading
import time

import _clusters
import pytest
import workers
import workers_remote
from _commands import interrupt_once_commands_run, still_running

import paramsurvey
from paramsurvey import _logfile as logfile
from paramsurvey.exceptions import BackendNotInstalled

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_cluster():
    with _clusters.shared("ray") as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """conftest's isolation, tolerant of the shared cluster's own new worker processes."""
    with _clusters.isolated(tmp_path, monkeypatch):
        yield


def init_on(cluster, **kwargs):
    paramsurvey.init(backend="ray", verbose=0, ray=cluster.init_kwargs, **kwargs)


def pids_of(proc):
    return {p.pid for p in proc.family()}


def test_not_installed_names_the_extra():
    out = _clusters.run_script(textwrap.dedent("""
        import sys
        sys.modules['ray'] = None  # as if ray were not installed
        import paramsurvey
        try:
            paramsurvey.init(backend='ray', verbose=0)
        except paramsurvey.BackendNotInstalled as exc:
            print('raised:', exc)
    """))
    assert "raised:" in out.stdout, out.stderr
    assert "'paramsurvey[ray]'" in out.stdout  # the install hint names the extra
    assert issubclass(BackendNotInstalled, ImportError)


@pytest.mark.parametrize("how", ["default_file", "RAY_HEAD_FILE"])
def test_no_address_joins_the_cluster_of_the_head_file_as_0_4_did(ray_cluster, tmp_path, monkeypatch, how):
    """0.4.x read ``host:port password`` from $RAY_HEAD_FILE, by default ~/.ray-head-details."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if how == "default_file":
        head_file = tmp_path / ".ray-head-details"
    else:
        head_file = tmp_path / "elsewhere"
        monkeypatch.setenv("RAY_HEAD_FILE", str(head_file))
    head_file.write_text(f"{ray_cluster.address} thehfhghedhdjfhgfhdhdhdf\n")
    # no address; only where this driver's node is, as every driver of this loopback cluster needs
    paramsurvey.init(backend="ray", verbose=0, ray={"_node_ip_address": _clusters.HEAD_IP})
    assert paramsurvey.current_core_count() == 3  # the cluster's three CPUs, not a private Ray's
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(6)])
    cluster_pids = set().union(*(pids_of(proc) for proc in ray_cluster.procs()))
    assert set(results["pid"]) <= cluster_pids
    with open(logfile.logfile_path()) as f:
        assert f"joined the Ray cluster at '{ray_cluster.address}' (from the head file {head_file}" in f.read()


def test_a_missing_ray_head_file_named_by_the_environment_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_HEAD_FILE", str(tmp_path / "nothere"))
    with pytest.raises(paramsurvey.BackendError, match="RAY_HEAD_FILE=.*nothere"):
        paramsurvey.init(backend="ray", verbose=0)
    assert paramsurvey.backend() is None


def test_cluster_cores_and_resources(ray_cluster):
    init_on(ray_cluster)
    assert paramsurvey.current_core_count() == 3
    nodes = paramsurvey.current_resources()
    assert sorted(n["num_cores"] for n in nodes) == [1, 2]
    assert all(n["memory"] > 0 and n["num_gpus"] == 0 for n in nodes)


def test_pset_with_a_custom_resource_runs_on_the_node_that_has_it(ray_cluster):
    init_on(ray_cluster)
    psets = [{"x": i, "ray": {"resources": {"special": 1}}} if i % 3 == 0 else {"x": i} for i in range(12)]
    results = paramsurvey.map(workers.echo_system, psets)
    assert results["pset_index"].tolist() == list(range(12))
    special = results.results[results["x"] % 3 == 0]
    assert set(special["pid"]) <= pids_of(ray_cluster.second)
    assert special["pset_keys"].tolist() == ["ray,x"] * 4  # the worker still sees its own dict


def test_map_options_and_pset_options_set_the_task(ray_cluster, monkeypatch):
    # "unless the user set them": an earlier test in this process (Dask's nanny) may have set them
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    init_on(ray_cluster)
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(4)], ray={"num_cpus": 2})
    assert set(results["omp"]) == {"2"}  # numeric libraries get the task's cores
    psets = [{"x": 0, "ray": {"num_cores": 2}}, {"x": 1}, {"x": 2, "ray": {"bogus_option": 1}}]
    results = paramsurvey.map(workers.echo_system, psets)
    assert results["omp"].tolist() == ["2", "1"]  # num_cores is num_cpus
    missing = results.missing
    assert missing["x"].tolist() == [2] and missing["_status"].tolist() == ["exception"]
    assert "invalid Ray task options" in missing["_exception"].iloc[0]


def test_a_pset_that_cannot_be_sent_fails_alone(ray_cluster):
    init_on(ray_cluster)
    psets = [{"x": 1, "lock": None}, {"x": 2, "lock": threading.Lock()}, {"x": 3, "lock": None}]
    results = paramsurvey.map(workers.double, psets, group_size=1)
    assert results["y"].tolist() == [2, 6]
    assert results.missing["x"].tolist() == [2]
    assert "pickle" in results.missing["_exception"].iloc[0]


def test_max_tasks_per_child_replaces_worker_processes(ray_cluster):
    init_on(ray_cluster, max_tasks_per_child=2)
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(6)])
    assert len(results) == 6
    assert results["pid"].value_counts().max() <= 2


def test_retries_after_ray_gave_up_on_a_crashing_pset(ray_cluster):
    init_on(ray_cluster)
    results = paramsurvey.map(workers.crash_once, [{"x": i} for i in range(4)], retries=1)
    assert results["attempt"].tolist() == [0, 1, 0, 0]
    assert results.progress.retried == 1 and results.progress.failures == 0


def test_a_timed_out_pset_is_retried(ray_cluster):
    init_on(ray_cluster)
    psets = [{"how": "hang" if i == 1 else "fine", "i": i} for i in range(4)]
    results = paramsurvey.map(workers.crash, psets, timeout=0.5, retries=1, group_size=4)
    assert results["ok"].tolist() == [0, 2, 3]
    assert results.missing["_status"].tolist() == ["timeout"]
    assert "timeout of 0.5 s" in results.missing["_exception"].iloc[0]
    assert results.progress.retried == 1 and results.progress.timeouts == 1


def test_a_pset_stuck_where_no_signal_reaches_is_stopped(ray_cluster):
    """SIGALRM blocked: the worker's watchdog process has the driver stop it past the timeout's
    grace, the pset is recorded 'timeout' (it was 'crashed' before the watchdog could tell the
    driver why), and the survey goes on."""

    def stuck(pset, system_kwargs, user_kwargs):
        if pset["x"] == 1:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        return {"y": pset["x"]}

    init_on(ray_cluster)
    results = paramsurvey.map(stuck, [{"x": i} for i in range(3)], timeout=0.5, group_size=1,
                              ray={"max_retries": 0})
    assert results["y"].tolist() == [0, 2]
    assert results.missing["_status"].tolist() == ["timeout"]


def test_a_pset_stuck_in_c_code_holding_the_gil_times_out_and_is_retried(ray_cluster):
    """``sum(range(10**11))`` holds the GIL for many minutes: no signal handler or thread of the
    worker runs. Its watchdog process tells the driver, which stops the worker; the pset is
    'timeout', retried under ``retries``, and the rest of its group runs again."""
    init_on(ray_cluster)
    psets = [{"x": i, "stuck": i == 1} for i in range(4)]
    results = paramsurvey.map(workers_remote.stuck_in_c, psets, timeout=0.5, retries=1, group_size=4)
    assert results["ok"].tolist() == [0, 2, 3]
    missing = results.missing
    assert missing["x"].tolist() == [1] and missing["_status"].tolist() == ["timeout"]
    assert "timeout of 0.5 s" in missing["_exception"].iloc[0]
    assert results.progress.retried == 1 and results.progress.timeouts == 1


def test_ctrl_c_ends_the_commands_psets_started(ray_cluster, tmp_path):
    """Ray runs each worker in its own process group and kills it with the worker: the commands a
    cancelled pset started end too."""
    marks = tmp_path / "marks"
    marks.mkdir()
    init_on(ray_cluster)
    commands = interrupt_once_commands_run(marks)
    assert len(commands) >= 2
    assert not still_running(commands, timeout=10)


@pytest.mark.timeout(180)
def test_ctrl_c_with_the_embedded_local_ray(tmp_path):
    _clusters.ctrl_c_in_a_script(tmp_path, "ray")


@pytest.mark.timeout(180)
def test_readme_example_piped_to_python_with_a_local_ray():
    _clusters.readme_example_piped("ray")
