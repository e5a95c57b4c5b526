"""What Ray and Dask share, tested on both real loopback clusters: per-worker set-up, options
checked before any pset runs, one bad pset costing one pset, results the driver cannot load, and a
member of the cluster killed mid-survey."""

from __future__ import annotations

import os
import threading
import time

import _clusters
import pytest
import workers
import workers_remote

import paramsurvey
from paramsurvey.exceptions import BackendError

pytest.importorskip("ray")
pytest.importorskip("distributed")


@pytest.fixture(scope="session")
def ray_cluster():
    with _clusters.shared("ray") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_cluster():
    with _clusters.shared("dask") as cluster:
        yield cluster


@pytest.fixture(params=["ray", "dask"])
def remote(request):
    """(backend name, its shared cluster)."""
    return request.param, request.getfixturevalue(f"{request.param}_cluster")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """conftest's isolation, tolerant of the shared clusters' own new worker processes."""
    with _clusters.isolated(tmp_path, monkeypatch):
        yield


def init_on(remote, **kwargs):
    backend, cluster = remote
    options = {**cluster.init_kwargs, **kwargs.pop(backend, {})}
    paramsurvey.init(backend=backend, verbose=0, **{backend: options}, **kwargs)


def init_files(directory):
    return [int(path.name.split("-")[0]) for path in directory.iterdir()]


# -- 1. per-worker set-up -----------------------------------------------------------------------
def test_the_initializer_runs_once_per_worker_process(remote, tmp_path):
    marks = tmp_path / "inits"
    marks.mkdir()
    init_on(remote, initializer=workers_remote.record_init, initargs=(str(marks),))
    pids = set()
    for _ in range(2):  # a second map does not set the workers up again
        results = paramsurvey.map(workers_remote.pid, [{"x": i, "sleep": 0.05} for i in range(12)], group_size=1)
        assert len(results) == 12
        pids |= set(results["pid"])
    inits = init_files(marks)
    assert pids <= set(inits)  # every process that ran a pset was set up first...
    assert len(inits) == len(set(inits))  # ...and no process twice


def test_the_initializer_runs_in_each_replaced_ray_worker(ray_cluster, tmp_path):
    """max_tasks_per_child: Ray replaces the worker process after each group (max_calls=1)."""
    marks = tmp_path / "inits"
    marks.mkdir()
    init_on(("ray", ray_cluster), initializer=workers_remote.record_init, initargs=(str(marks),),
            max_tasks_per_child=1)
    results = paramsurvey.map(workers_remote.pid, [{"x": i} for i in range(6)])
    pids = results["pid"].tolist()
    assert len(set(pids)) == 6  # a fresh process per pset
    inits = init_files(marks)
    assert sorted(inits) == sorted(set(inits)) and set(pids) <= set(inits)


def test_a_failing_initializer_stops_the_map_at_once_naming_it(remote, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    init_on(remote, initializer=workers_remote.failing_init, initargs=("no database",))
    with pytest.raises(BackendError) as info:
        paramsurvey.map(workers.marker, [{"x": i} for i in range(20)], user_kwargs={"dir": str(marks)})
    message = str(info.value)
    assert "initializer" in message and "failing_init" in message
    assert "ValueError('cannot set up: no database')" in message
    assert 'raise ValueError(f"cannot set up: {reason}")' in message  # the initializer's traceback
    assert "installed alike" not in message  # not mistaken for a broken installation
    assert not list(marks.iterdir())  # no pset ran


# -- 2. options: checked before any pset runs ------------------------------------------------------
def test_an_unknown_map_option_is_an_error_before_any_pset_runs(remote, tmp_path):
    backend, _ = remote
    marks = tmp_path / "marks"
    marks.mkdir()
    init_on(remote)
    with pytest.raises(ValueError, match="doesnotexist"):
        paramsurvey.map(workers.marker, [{"x": 1}], user_kwargs={"dir": str(marks)},
                        **{backend: {"doesnotexist": True}})
    assert not list(marks.iterdir())
    # the session stays usable
    assert paramsurvey.map(workers.double, [{"x": 2}])["y"].tolist() == [4]


def test_a_bad_map_option_value_is_an_error_before_any_pset_runs(remote, tmp_path):
    backend, _ = remote
    init_on(remote)
    bad = {"ray": {"num_cpus": -1}, "dask": {"resources": "special"}}[backend]
    with pytest.raises((TypeError, ValueError), match="num_cpus|resources"):
        paramsurvey.map(workers.double, [{"x": 1}], **{backend: bad})


def test_an_init_option_in_map_is_an_error(remote):
    """address chooses the cluster at init(): given to map() it would be silently ignored."""
    backend, _ = remote
    init_on(remote)
    elsewhere = {"ray": "127.0.0.9:6379", "dask": "tcp://127.0.0.9:8786"}[backend]
    with pytest.raises(ValueError, match="address"):
        paramsurvey.map(workers.double, [{"x": 1}], **{backend: {"address": elsewhere}})


def test_an_unknown_init_option_is_an_error_naming_it(remote):
    backend, cluster = remote
    with pytest.raises((TypeError, ValueError), match="doesnotexist"):
        paramsurvey.init(backend=backend, verbose=0, **{backend: {**cluster.init_kwargs, "doesnotexist": 1}})
    assert paramsurvey.backend() is None


def test_dask_cluster_sizes_with_a_given_cluster_are_an_error(dask_cluster):
    """n_workers and friends size paramsurvey's own cluster; with an address they would do nothing."""
    with pytest.raises(ValueError, match="n_workers"):
        paramsurvey.init(backend="dask", verbose=0, dask={**dask_cluster.init_kwargs, "n_workers": 8})
    assert paramsurvey.backend() is None


def test_a_psets_own_bad_option_fails_that_pset_alone(remote):
    backend, _ = remote
    init_on(remote)
    psets = [{"x": 0}, {"x": 1, backend: {"doesnotexist": 1}}, {"x": 2}]
    results = paramsurvey.map(workers.double, psets)
    assert results["y"].tolist() == [0, 4]
    assert results.missing["x"].tolist() == [1]
    assert "doesnotexist" in results.missing["_exception"].iloc[0]


# -- 3. one bad pset costs one pset ------------------------------------------------------------------
def test_a_pset_that_cannot_be_pickled_fails_alone_in_its_group(remote):
    init_on(remote)
    psets = [{"x": i, "lock": threading.Lock() if i == 2 else None} for i in range(6)]
    results = paramsurvey.map(workers.double, psets, group_size=6)
    assert results["y"].tolist() == [0, 2, 6, 8, 10]
    missing = results.missing
    assert missing["x"].tolist() == [2] and missing["_status"].tolist() == ["exception"]
    assert "lock" in missing["_exception"].iloc[0] and "pickle" in missing["_exception"].iloc[0]


# -- 4. results the driver cannot load ---------------------------------------------------------------
def test_a_result_the_driver_cannot_load_fails_its_group_not_the_map(remote):
    init_on(remote)
    results = paramsurvey.map(workers_remote.unloadable_in_driver, [{"x": i} for i in range(4)], group_size=1)
    assert results["y"].tolist() == [0, 2, 3]
    missing = results.missing
    assert missing["x"].tolist() == [1] and missing["_status"].tolist() == ["exception"]
    assert "could not be loaded" in missing["_exception"].iloc[0]
    assert "loads only in process" in missing["_exception"].iloc[0]


def test_a_pset_the_worker_cannot_load_fails_alone_in_its_group(remote):
    """As a value of a class that exists on the driver's machine but not on the worker's."""
    init_on(remote)
    psets = [{"x": i, "v": workers_remote.LoadsOnlyWhereMade() if i == 1 else None} for i in range(4)]
    results = paramsurvey.map(workers.double, psets, group_size=4)
    assert results["y"].tolist() == [0, 4, 6]
    missing = results.missing
    assert missing["x"].tolist() == [1] and missing["_status"].tolist() == ["exception"]
    assert "could not load" in missing["_exception"].iloc[0]
    assert "loads only in process" in missing["_exception"].iloc[0]


def test_a_failed_psets_traceback_names_the_users_file_and_line(remote):
    """A worker shipped by value (a closure here; a function of __main__ alike) keeps its real file
    name, so the traceback shows where it failed. Passes once B1's _pickling.dumps_by_value lands."""
    init_on(remote)
    limit = 2

    def picky(pset, system_kwargs, user_kwargs):
        if pset["x"] > limit:
            raise ValueError(f"{pset['x']} is over the limit")  # the line the traceback must show
        return {"y": pset["x"]}

    results = paramsurvey.map(picky, [{"x": i} for i in range(4)])
    tb = results.missing["_traceback"].iloc[0]
    assert f'File "{__file__}"' in tb
    assert "raise ValueError(f\"{pset['x']} is over the limit\")" in tb


# -- 5. a machine that dies ---------------------------------------------------------------------------
# Cores of each shared cluster before a member joins (see _clusters: Ray's head 2 + node 1, Dask's
# two one-thread workers).
SHARED_CORES = {"ray": 3, "dask": 2}
# Long enough that psets are seen running on the member before the survey is over.
PSET_SECONDS = {"ray": 0.3, "dask": 0.2}


@pytest.mark.timeout(180)
def test_a_member_killed_mid_survey_loses_nothing(remote, tmp_path):
    """A member joins (a Ray node, a Dask worker with its nanny); once psets run there, it is
    SIGKILLed whole (a machine that dies). Its psets run again elsewhere and every result arrives
    exactly once; the cluster then counts the cores it has left."""
    backend, cluster = remote
    member = cluster.add_member()
    killed = []
    try:
        cluster.wait_for_members()
        init_on(remote)
        assert paramsurvey.current_core_count() == SHARED_CORES[backend] + cluster.MEMBER_CORES
        marks = tmp_path / "marks"
        marks.mkdir()
        victims = {p.pid for p in member.family()}

        def kill_when_busy():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                victims.update(p.pid for p in member.family())
                if any(int(name.split("-")[2]) in victims for name in os.listdir(marks)):
                    member.kill()
                    killed.append(time.monotonic())
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        psets = [{"x": i, "sleep": PSET_SECONDS[backend]} for i in range(60)]
        results = paramsurvey.map(workers.marker, psets, user_kwargs={"dir": str(marks)})
        killer.join()
    finally:
        cluster.remove_member(member)
    assert killed, "no pset ever ran on the member"
    assert results.results.index.tolist() == list(range(60))  # each once, none missing
    assert results["y"].tolist() == [10 * i for i in range(60)]
    assert len(results.missing) == 0 and results.progress.finished == 60
    assert {int(name.split("-")[0]) for name in os.listdir(marks)} == set(range(60))
    deadline = time.monotonic() + 60
    while paramsurvey.current_core_count() != SHARED_CORES[backend] and time.monotonic() < deadline:
        time.sleep(0.5)  # the cluster notices the dead member
    assert paramsurvey.current_core_count() == SHARED_CORES[backend]
