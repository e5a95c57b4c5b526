"""The backend contract: the same tests on every backend.

A test module that wants them defines an ``init_kwargs`` fixture (what to pass to
``paramsurvey.init``) and does ``from contract_suite import *``. Behaviour a backend cannot give is
read from its capability flags, never skipped silently.
"""

from __future__ import annotations

import functools
import os
import signal

import pandas as pd
import pytest
import workers
import workers_worker

import paramsurvey
from paramsurvey._api import _session
from paramsurvey.backends.base import CRASH_ISOLATION, IN_PROCESS, TIMEOUT


def _init(init_kwargs, **extra):
    paramsurvey.init(**{**init_kwargs, **extra})
    return _session.backend


def test_results_in_pset_order(init_kwargs):
    _init(init_kwargs, verbose=0)
    psets = [{"x": i} for i in range(200)]
    results = paramsurvey.map(workers.double, psets)
    assert len(results) == 200
    assert list(results.results.columns) == ["x", "y"]
    assert results.results.index.tolist() == list(range(200))
    assert results.results["y"].tolist() == [2 * i for i in range(200)]
    assert results.results["y"].dtype == "int64"
    assert [r.y for r in results.itertuples()] == [2 * i for i in range(200)]
    assert list(results.iterdicts())[3] == {"x": 3, "y": 6}
    assert results.to_dict("records")[5] == {"x": 5, "y": 10}
    assert results["y"].mean() == pytest.approx(199.0)  # the 0.4.x DataFrame-like face
    assert list(results.columns) == ["x", "y"]
    assert str(results.progress) == "total: 200, active: 0, finished: 200, failures: 0, exceptions: 0"
    assert results.missing.to_df().empty
    assert list(results.missing.columns) == ["_status", "_exception", "_traceback"]


def test_failures_are_rows_of_missing(init_kwargs):
    _init(init_kwargs, verbose=0)
    results = paramsurvey.map(workers.raise_on_odd, [{"x": i} for i in range(20)], group_size=4)
    assert results.results["x"].tolist() == list(range(0, 20, 2))
    missing = results.missing
    assert missing["x"].tolist() == list(range(1, 20, 2))
    assert set(missing["_status"]) == {"exception"}
    assert missing["_exception"].iloc[0] == "ValueError('odd x: 1')"
    assert "raise ValueError" in missing["_traceback"].iloc[0]
    assert missing.to_psets().to_dict("records") == [{"x": i} for i in range(1, 20, 2)]
    progress = results.progress
    assert (progress.finished, progress.failures, progress.exceptions) == (10, 10, 10)
    assert progress.finished + progress.failures == progress.total


def test_non_dict_return_is_a_failure(init_kwargs):
    _init(init_kwargs, verbose=0)
    results = paramsurvey.map(lambda p, s, u: 5 if p["x"] == 1 else None, [{"x": 0}, {"x": 1}])
    assert results.results["x"].tolist() == [0]
    assert "worker returned int" in results.missing["_exception"].iloc[0]


def test_stats_have_builtin_and_user_timers(init_kwargs):
    _init(init_kwargs, verbose=0)
    results = paramsurvey.map(workers.timers, [{"i": i} for i in range(4)], name="tm")
    names = set(results.stats.all_stat_names())
    assert {"tm_wallclock", "tm_iowait", "phase_a", "phase_a_iowait"} <= names
    wall = results.stats.read_stats("tm_wallclock")
    assert wall.count == 4 and wall.mean >= 0.02
    assert results.stats.read_stats("phase_a").count == 4


def test_out_func_sees_every_pset_and_its_errors_are_not_failures(init_kwargs):
    _init(init_kwargs, verbose=0)
    seen = []

    def out_func(user_ret, system_kwargs, user_kwargs):
        seen.append((user_ret["pset"]["x"], user_ret.get("result"), user_kwargs["tag"]))
        if user_ret["pset"]["x"] == 2:
            raise RuntimeError("out_func fails")

    results = paramsurvey.map(workers.double, [{"x": i} for i in range(5)], out_func=out_func,
                              user_kwargs={"tag": "t"})
    assert sorted(seen) == [(i, {"y": 2 * i}, "t") for i in range(5)]
    assert len(results) == 5 and results.progress.failures == 0  # an out_func failing is not the pset's failure


def test_keep_results_false_keeps_no_rows(init_kwargs):
    _init(init_kwargs, verbose=0)
    got = []
    results = paramsurvey.map(workers.double, [{"x": i} for i in range(10)], keep_results=False,
                              out_func=lambda r, s, u: got.append(r["result"]["y"]))
    assert len(results.results) == 0
    assert sorted(got) == [2 * i for i in range(10)]
    assert results.progress.finished == 10


@pytest.mark.parametrize("limit, expected", [(0, 10), (-1, 10), (3, 3), (20, 10)])
def test_limit(init_kwargs, limit, expected):  # limit=0 means all (0.4.x returned nothing)
    _init(init_kwargs, verbose=0)
    results = paramsurvey.map(workers.double, [{"x": i} for i in range(10)], limit=limit)
    assert len(results) == expected
    assert results.progress.total == expected


def test_group_size_and_system_kwargs(init_kwargs, tmp_path):
    backend = _init(init_kwargs, verbose=0)
    sub = tmp_path / "work"
    sub.mkdir()
    psets = [{"x": i} for i in range(12)]
    results = paramsurvey.map(workers.echo_system, psets, group_size=5, chdir=str(sub), out_subdirs=4,
                              user_kwargs={"tag": "hello"}, name="sys")
    df = results.results
    assert df["pset_keys"].tolist() == ["x"] * 12  # no internal key leaks into the worker's pset
    assert df["pset_index"].tolist() == list(range(12))
    assert set(df["attempt"]) == {0}
    assert set(df["name"]) == {"sys"}
    assert set(df["cwd"]) == {str(sub)}
    assert set(df["user"]) == {"hello"}
    assert df["out_subdir"].value_counts().to_dict() == {"ps0": 3, "ps1": 3, "ps2": 3, "ps3": 3}
    # worker processes get one thread per numeric library unless the user said otherwise
    in_process = IN_PROCESS in backend.capabilities
    assert set(df["omp"]) == {os.environ.get("OMP_NUM_THREADS", None if in_process else "1")}
    assert df["seed"].nunique() == 12


def test_seeds_do_not_depend_on_backend_or_order(init_kwargs):
    _init(init_kwargs, verbose=0)
    psets = [{"x": i, "s": str(i)} for i in range(6)]
    a = paramsurvey.map(workers.echo_system, psets, seed=7).results.set_index("x")["seed"]
    b = paramsurvey.map(workers.echo_system, psets[::-1], seed=7).results.set_index("x")["seed"]
    c = paramsurvey.map(workers.echo_system, psets, seed=8).results.set_index("x")["seed"]
    assert a.sort_index().tolist() == b.sort_index().tolist()
    assert a.tolist() != c.tolist()
    from paramsurvey._hashing import seed_for

    assert a.tolist() == [seed_for(7, p) for p in psets]


def test_lambdas_closures_partials(init_kwargs):
    _init(init_kwargs, verbose=0)
    factor = 3

    def closure(pset, system_kwargs, user_kwargs):
        return {"y": factor * pset["x"]}

    def scaled(pset, system_kwargs, user_kwargs, k):
        return {"y": k * pset["x"]}

    psets = [{"x": i} for i in range(4)]
    assert paramsurvey.map(closure, psets)["y"].tolist() == [0, 3, 6, 9]
    assert paramsurvey.map(lambda p, s, u: {"y": -p["x"]}, psets)["y"].tolist() == [0, -1, -2, -3]
    assert paramsurvey.map(functools.partial(scaled, k=5), psets)["y"].tolist() == [0, 5, 10, 15]


@pytest.mark.parametrize("kind", ["list", "frame", "dict_of_lists", "generator"])
def test_pset_containers(init_kwargs, kind):
    _init(init_kwargs, verbose=0)
    rows = [{"x": i, "name": f"n{i}"} for i in range(5)]
    psets = {
        "list": rows,
        "frame": pd.DataFrame(rows),
        "dict_of_lists": {"x": [r["x"] for r in rows], "name": [r["name"] for r in rows]},
        "generator": (r for r in rows),
    }[kind]
    results = paramsurvey.map(workers.double, psets)
    assert results["y"].tolist() == [0, 2, 4, 6, 8]
    assert results["name"].tolist() == [r["name"] for r in rows]


def test_empty_psets(init_kwargs):
    _init(init_kwargs, verbose=0)
    results = paramsurvey.map(workers.double, [])
    assert len(results) == 0 and results.progress.total == 0
    assert list(results.missing.columns) == ["_status", "_exception", "_traceback"]


def test_timeout(init_kwargs):
    backend = _init(init_kwargs, verbose=0)
    psets = [{"how": "hang" if i == 1 else "fine", "i": i} for i in range(4)]
    if TIMEOUT not in backend.capabilities:
        with pytest.raises(ValueError, match="timeout"):
            paramsurvey.map(workers.crash, psets, timeout=0.5)
        return
    results = paramsurvey.map(workers.crash, psets, timeout=1.0)
    assert results["ok"].tolist() == [0, 2, 3]
    assert results.missing["_status"].tolist() == ["timeout"]
    assert results.progress.timeouts == 1


@pytest.mark.timeout(300)  # on Dask, each of the pset's 8 deaths waits for a worker to restart
def test_a_pset_that_kills_its_worker_is_crashed_alone(init_kwargs):
    backend = _init(init_kwargs, verbose=0)
    if CRASH_ISOLATION not in backend.capabilities:
        return  # in-process: the pset would take the test run down with it
    psets = [{"how": "os_exit" if i == 5 else "fine", "i": i} for i in range(12)]
    results = paramsurvey.map(workers.crash, psets, group_size=4)
    assert results["ok"].tolist() == [i for i in range(12) if i != 5]
    assert results.missing["i"].tolist() == [5]
    assert results.missing["_status"].tolist() == ["crashed"]
    assert results.progress.crashed == 1 and results.progress.finished == 11


def test_ctrl_c_raises_interrupted_with_partial_results(init_kwargs):
    """SIGINT as a terminal's Ctrl-C sends it, once the first group is in (from out_func, so that
    it lands inside map()); then the same session runs the next map."""
    _init(init_kwargs, verbose=0)
    sent = []

    def out_func(user_ret, system_kwargs, user_kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    psets = [{"duration": 0.05} for _ in range(400)]
    with pytest.raises(paramsurvey.Interrupted) as info:
        paramsurvey.map(workers.sleeper, psets, group_size=10, out_func=out_func)
    results = info.value.results
    assert 10 <= len(results) < 400
    assert len(results) + len(results.missing) == 400
    assert set(results.missing["_status"]) == {"cancelled"}
    assert results.progress.finished + results.progress.failures == results.progress.total == 400
    assert paramsurvey.map(workers.double, [{"x": 1}, {"x": 2}])["y"].tolist() == [2, 4]


def test_initializer_runs_once_in_each_worker_process_before_its_psets(init_kwargs, tmp_path):
    _init(init_kwargs, verbose=0, initializer=workers_worker.mark_init, initargs=(str(tmp_path),))
    try:
        first = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(40)])
        second = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(40)])
    finally:  # a backend kept across tests must not run this initializer for the next ones
        _init(init_kwargs, initializer=None, initargs=())
    assert first["initialized"].all() and second["initialized"].all()
    pids = [int(name.split("-")[1]) for name in os.listdir(tmp_path) if name.startswith("init-")]
    assert len(pids) == len(set(pids))  # once per process, however many maps and groups
    assert set(first["pid"]) | set(second["pid"]) <= set(pids)


def test_a_psets_ray_options_reach_system_kwargs(init_kwargs):
    _init(init_kwargs, verbose=0)
    psets = [{"x": 0, "ray": {"num_cpus": 1}}, {"x": 1}]
    df = paramsurvey.map(workers_worker.ray_options, psets).results
    assert df["sys_ray"].tolist() == ["{'num_cpus': 1}", "None"]  # as 0.4.x handed it to the worker
    assert df["keys"].tolist() == ["ray,x", "x"]  # and the pset is unchanged
