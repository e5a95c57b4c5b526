"""0.4.x spellings and behaviours kept, and inputs refused before any work: the logfile's name and
stream, per-worker set-up and Pool options, progress_dt=0, max_tasks_per_child=0, OMP_NUM_THREADS,
generators with limit, numpy values in psets, one map() at a time, os.fork() after init()."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
import workers
import workers_compat

import paramsurvey
from paramsurvey._config import resolve

SRC = os.path.dirname(os.path.dirname(paramsurvey.__file__))  # subprocesses run the code under test
TESTS = os.path.dirname(__file__)


def run_script(script: str, *args: str, cwd: str, env: dict[str, str] | None = None,
               timeout: float = 100) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    base["PYTHONPATH"] = os.pathsep.join([SRC, TESTS])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def logfiles(where) -> list[str]:
    return sorted(f for f in os.listdir(where) if f.endswith(".log"))


# -- the hidden logfile: prefix, stream, one file per run -----------------------------------------


def test_pslogger_prefix_names_the_logfile(tmp_path):
    paramsurvey.init(backend="serial", verbose=0, pslogger_prefix="survey-log-")
    paramsurvey.map(workers.double, [{"x": 1}], name="named")
    paramsurvey.finalize()
    [name] = logfiles(tmp_path)
    assert re.fullmatch(r"survey-log-\d{8}-\d{6}\.log", name)
    text = (tmp_path / name).read_text()
    assert "header start_time" in text and "named progress: total: 1" in text and "end time" in text


def test_pslogger_fd_receives_the_whole_log_instead_of_a_file(tmp_path):
    stream = io.StringIO()
    paramsurvey.init(ncores=2, verbose=0, pslogger_fd=stream)
    results = paramsurvey.map(workers_compat.fail_with_traceback, [{"x": i} for i in range(3)])
    assert len(results.missing) == 1
    paramsurvey.finalize()
    assert logfiles(tmp_path) == []  # the stream instead of a file
    text = stream.getvalue()  # still open: the stream is the caller's
    assert "header start_time" in text and "header command_line" in text
    assert "default progress: total: 3, active: 0, finished: 2, failures: 1, exceptions: 1" in text
    assert "Traceback (most recent call last)" in text and "ValueError: bad x 1" in text
    assert "counter default_wallclock, 99%tile" in text and "end time" in text


def test_bad_pslogger_arguments_are_refused():
    with pytest.raises(TypeError, match="pslogger_fd"):
        paramsurvey.init(backend="serial", pslogger_fd=3)
    with pytest.raises(TypeError, match="pslogger_prefix"):
        paramsurvey.init(backend="serial", pslogger_prefix=7)
    with pytest.raises(ValueError, match="pslogger_fd"):
        paramsurvey.map(workers.double, [{"x": 1}], pslogger_fd=io.StringIO())


def test_a_logfile_name_already_taken_is_never_shared(tmp_path):
    # another run's logfile for every second this test may open its own in
    now = time.time()
    decoys = {f".paramsurvey-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + d))}.log" for d in range(-2, 60)}
    for name in decoys:
        (tmp_path / name).write_text("another run\n")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(workers.double, [{"x": 1}], name="mine")
    paramsurvey.finalize()
    assert all((tmp_path / name).read_text() == "another run\n" for name in decoys)
    [mine] = set(logfiles(tmp_path)) - decoys
    assert re.fullmatch(rf"\.paramsurvey-\d{{8}}-\d{{6}}-{os.getpid()}\.log", mine)
    assert "mine progress: total: 1" in (tmp_path / mine).read_text()


STARTED_TOGETHER = """
    import os, sys, time
    import paramsurvey, paramsurvey._api, workers
    start = float(sys.argv[1])
    while time.time() < start:  # every program starts its run at the same moment
        time.sleep(0.001)
    paramsurvey.init(backend='serial', verbose=0)
    paramsurvey.map(workers.double, [{'x': 1}], name='run%d' % os.getpid())
"""


def test_programs_started_together_write_their_own_logfiles(tmp_path):
    start = int(time.time()) + 5.05  # early in a whole second, once every interpreter has imported
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(STARTED_TOGETHER), str(start)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}) for _ in range(3)]
    pids = sorted(p.pid for p in procs)
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    names = logfiles(tmp_path)
    runs = [{int(m) for m in re.findall(r"run(\d+) progress", (tmp_path / n).read_text())} for n in names]
    assert sorted(pid for found in runs for pid in found) == pids, runs  # each run in one file
    assert all(len(found) == 1 for found in runs), runs  # each file holds one run


# -- per-worker set-up and 0.4.x's Pool options: configuration -----------------------------------


def init_a(*args):
    pass


def init_b(*args):
    pass


def test_pool_initializer_resolves_to_the_settings_on_multiprocessing():
    s = resolve({"multiprocessing": {"initializer": init_a, "initargs": [1, 2]}}, {}, {})
    assert s.initializer is init_a and s.initargs == (1, 2)
    assert "initializer" not in s.backend_options and "initargs" not in s.backend_options
    # the multiprocessing dict means nothing to another backend
    s = resolve({"backend": "serial", "multiprocessing": {"initializer": init_a}}, {}, {})
    assert s.initializer is None and s.initargs == ()


@pytest.mark.parametrize("backend", ["multiprocessing", "serial", "ray", "dask"])
def test_backend_neutral_initializer_for_every_backend(backend):
    s = resolve({"backend": backend, "initializer": init_a, "initargs": ("x",)}, {}, {})
    assert s.initializer is init_a and s.initargs == ("x",)


def test_pool_processes_and_maxtasksperchild_are_ncores_and_max_tasks_per_child():
    s = resolve({"multiprocessing": {"processes": 3, "maxtasksperchild": 7}}, {}, {})
    assert (s.ncores, s.max_tasks_per_child) == (3, 7)
    s = resolve({"multiprocessing": {"processes": 3}}, {}, {"PARAMSURVEY_NCORES": "1"})
    assert s.ncores == 1  # the environment wins, as everywhere
    assert resolve({"ncores": 3, "multiprocessing": {"processes": 3}}, {}, {}).ncores == 3  # the same twice: fine


def test_pool_processes_starts_that_many_workers():
    paramsurvey.init(verbose=0, multiprocessing={"processes": 2, "maxtasksperchild": 1})
    assert paramsurvey.current_core_count() == 2
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(6)])
    assert results["pid"].nunique() == 6  # a fresh worker for every pset


SETUP_ERRORS = [
    ("initializer not callable", dict(initializer=5), TypeError, "initializer"),
    ("initializer in the dict not callable", dict(multiprocessing={"initializer": "f"}), TypeError, "initializer"),
    ("initargs not a tuple", dict(initializer=init_a, initargs=5), TypeError, "initargs"),
    ("initargs a string", dict(initializer=init_a, initargs="ab"), TypeError, "initargs"),
    ("initializer twice", dict(initializer=init_a, multiprocessing={"initializer": init_b}), ValueError,
     "initializer"),
    ("initargs twice", dict(initializer=init_a, initargs=(1,), multiprocessing={"initargs": (2,)}), ValueError,
     "initargs"),
    ("processes and ncores", dict(ncores=2, multiprocessing={"processes": 3}), ValueError, "processes"),
    ("unknown multiprocessing key", dict(multiprocessing={"context": "spawn"}), TypeError, "'context'"),
    ("unknown serial key", dict(backend="serial", serial={"pdb": True}), TypeError, "'pdb'"),
    ("multiprocessing not a dict", dict(multiprocessing=3), TypeError, "multiprocessing"),
]


@pytest.mark.parametrize("what, kwargs, exc, fragment", SETUP_ERRORS, ids=[e[0] for e in SETUP_ERRORS])
def test_bad_setup_is_refused_at_init(what, kwargs, exc, fragment):
    with pytest.raises(exc, match=re.escape(fragment)):
        paramsurvey.init(verbose=0, **kwargs)
    assert paramsurvey.backend() is None  # nothing was started


MAP_ERRORS = [
    ("initializer to map", dict(initializer=init_a), ValueError, "initializer"),
    ("initargs to map", dict(initargs=(1,)), ValueError, "initargs"),
    ("pool initializer to map", dict(multiprocessing={"initializer": init_a}), ValueError, "initializer"),
    ("pool processes to map", dict(multiprocessing={"processes": 2}), ValueError, "processes"),
    ("unknown multiprocessing key to map", dict(multiprocessing={"doesnotexist": True}), TypeError,
     "'doesnotexist'"),
    ("unknown serial key to map", dict(serial={"doesnotexist": True}), TypeError, "'doesnotexist'"),
    # 0.4.x's own test: a typo in the dict of a backend not in use is still a typo
    ("ray and multiprocessing typos", dict(ray={"doesnotexist": True}, multiprocessing={"doesnotexist": True}),
     TypeError, "'doesnotexist'"),
]


@pytest.mark.parametrize("what, kwargs, exc, fragment", MAP_ERRORS, ids=[e[0] for e in MAP_ERRORS])
@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_bad_backend_options_are_refused_at_map_before_any_pset_runs(what, kwargs, exc, fragment, backend,
                                                                      tmp_path):
    paramsurvey.init(backend=backend, verbose=0, ncores=2)
    with pytest.raises(exc, match=re.escape(fragment)):
        paramsurvey.map(workers_compat.touch_then_double, [{"x": 1}], user_kwargs={"dir": str(tmp_path)},
                        **kwargs)
    assert not list(tmp_path.glob("ran-*"))


# -- 0.4.x values -----------------------------------------------------------------------------------


def test_max_tasks_per_child_zero_is_unlimited():
    assert resolve({"max_tasks_per_child": 0}, {}, {}).max_tasks_per_child is None
    assert resolve({}, {}, {"PARAMSURVEY_MAX_TASKS_PER_CHILD": "0"}).max_tasks_per_child is None
    with pytest.raises(ValueError, match="max_tasks_per_child"):
        resolve({"max_tasks_per_child": -1}, {}, {})
    paramsurvey.init(verbose=0, ncores=1, max_tasks_per_child=0)
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(4)])
    assert results["pid"].nunique() == 1  # one worker did everything


def test_progress_dt_zero_reports_every_change(capsys):
    paramsurvey.init(backend="serial", verbose=1)
    results = paramsurvey.map(workers.double, [{"x": 1}, {"x": 2}], progress_dt=0, name="dt0")
    assert len(results) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dt0 progress")]
    # the first state seen and the end: 0.4.x's own test asks for at least one line per pset here
    assert len(lines) == 2 and lines[0] != lines[1]
    assert lines[1] == "dt0 progress: total: 2, active: 0, finished: 2, failures: 0, exceptions: 0"
    with pytest.raises(ValueError, match="progress_dt"):
        paramsurvey.map(workers.double, [{"x": 1}], progress_dt=-1)


OMP_SCRIPT = """
    import os, sys, paramsurvey
    paramsurvey.init(backend=sys.argv[1], verbose=2, ncores=1)
    print(os.environ.get('OMP_NUM_THREADS'))
"""
OMP_NOTICE = 'paramsurvey warning: OMP_NUM_THREADS undefined, setting it to "1" to prevent foot-cannon'


@pytest.mark.parametrize("backend", ["serial", "multiprocessing", "ray", "dask"])
def test_init_sets_omp_num_threads_in_the_driver_when_unset(backend, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and not k.startswith("PARAMSURVEY_")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(OMP_SCRIPT), backend], cwd=tmp_path,
                          capture_output=True, text=True, timeout=100, env={**env, "PYTHONPATH": SRC})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n" and OMP_NOTICE in done.stderr
    [log] = logfiles(tmp_path)
    assert OMP_NOTICE in (tmp_path / log).read_text()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(OMP_SCRIPT), backend], cwd=tmp_path,
                          capture_output=True, text=True, timeout=100,
                          env={**env, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "3"})
    assert done.stdout == "3\n" and "OMP_NUM_THREADS" not in done.stderr  # the user's choice stays


def test_original_example_workers_are_importable():
    from paramsurvey.examples import burn_worker, sleep_worker

    paramsurvey.init(backend="serial", verbose=0)
    results = paramsurvey.map(burn_worker, [{"duration": 0.01}])
    assert results["burned"].tolist() == [0.01] and results.stats.read_stats("foo").count == 1
    assert paramsurvey.map(sleep_worker, [{"duration": 0.01}])["slept"].tolist() == [0.01]


# -- psets ------------------------------------------------------------------------------------------


def test_limit_reads_only_that_many_psets_of_a_generator():
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            if i > 1000:  # reading everything would never end: fail instead of eating the memory
                raise RuntimeError("the generator was read far past the limit")
            yield {"x": i}

    paramsurvey.init(backend="serial", verbose=0)
    results = paramsurvey.map(workers.double, endless(), limit=3)
    assert results["y"].tolist() == [0, 2, 4] and len(pulled) == 3


@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_numpy_scalars_in_psets_reach_the_worker_as_python_values(backend):
    psets = [{"i": np.int64(3), "f": np.float32(2.5), "b": np.bool_(True), "s": np.str_("a"), "p": 4},
             {"i": 5, "f": 1.5, "b": False, "s": "b", "p": 5}]
    copy = [dict(p) for p in psets]
    paramsurvey.init(backend=backend, verbose=0, ncores=2)
    results = paramsurvey.map(workers_compat.value_types, psets)
    for row in results.iterdicts():
        assert (row["type_i"], row["type_f"], row["type_b"], row["type_s"], row["type_p"]) == (
            "builtins.int", "builtins.float", "builtins.bool", "builtins.str", "builtins.int")
    assert all(type(a[k]) is type(b[k]) for a, b in zip(psets, copy) for k in a)  # the caller's psets untouched


# -- refused before any work, naming the culprit -----------------------------------------------------

BAD = [
    ("journal empty", dict(journal=""), ValueError, "journal=''"),
    ("keep_results a word", dict(keep_results="no"), TypeError, "keep_results"),
    ("rerun_failed a number", dict(rerun_failed=2), TypeError, "rerun_failed"),
    ("verbose 7", dict(verbose=7), ValueError, "verbose=7"),
    ("vstats 99", dict(vstats=99), ValueError, "vstats=99"),
    ("verbose negative", dict(verbose=-1), ValueError, "verbose=-1"),
    ("carbon_port negative", dict(carbon_port=-1), ValueError, "carbon_port=-1"),
    ("carbon_port too big", dict(carbon_port=70000), ValueError, "carbon_port=70000"),
]


@pytest.mark.parametrize("what, kwargs, exc, fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_refused_before_any_pset_runs(what, kwargs, exc, fragment, tmp_path):
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(exc, match=re.escape(fragment)):
        paramsurvey.map(workers_compat.touch_then_double, [{"x": 1}], user_kwargs={"dir": str(tmp_path)}, **kwargs)
    assert not list(tmp_path.glob("ran-*")) and not (tmp_path / "journal").exists()


def test_bad_verbose_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("PARAMSURVEY_VERBOSE", "9")
    with pytest.raises(ValueError, match="PARAMSURVEY_VERBOSE='9'"):
        paramsurvey.init(backend="serial")


def test_keep_results_takes_bools_and_the_environments_words(monkeypatch):
    assert resolve({}, {"keep_results": np.bool_(False)}, {}).keep_results is False
    assert resolve({}, {"keep_results": True}, {}).keep_results is True
    monkeypatch.setenv("PARAMSURVEY_LIMIT", "")  # unrelated, but empty: ignored


def test_duplicate_dataframe_columns_are_refused(tmp_path):
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(ValueError, match="duplicate column name.*'a'"):
        paramsurvey.map(workers_compat.touch_then_double, frame, user_kwargs={"dir": str(tmp_path)})


def test_dict_of_scalars_is_refused_naming_the_key():
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(ValueError, match="'x' holds 1"):
        paramsurvey.map(workers.double, {"x": 1, "y": 2})
    with pytest.raises(ValueError, match="'x' holds 'abc'"):
        paramsurvey.map(workers.double, {"x": "abc"})
    assert paramsurvey.map(workers.double, {"x": np.arange(3)})["y"].tolist() == [0, 2, 4]


def test_empty_carbon_prefix_means_no_prefix():
    from paramsurvey._carbon import CarbonSender

    assert resolve({"carbon_prefix": ""}, {}, {}).carbon_prefix == ""
    assert resolve({}, {}, {}).carbon_prefix == "paramsurvey"
    sender = CarbonSender("127.0.0.1", 9, prefix=resolve({}, {"carbon_prefix": ""}, {}).carbon_prefix)
    try:
        sender.send("survey", paramsurvey.MapProgress(total=3))
        with sender._cond:
            paths = {path for path, _ in sender._queue}
    finally:
        sender.close()
    assert "survey.total" in paths and not any(p.startswith("paramsurvey.") for p in paths)


# -- verbose=0 prints nothing ----------------------------------------------------------------------

SILENT = """
    import warnings, paramsurvey, workers

    def out_func(user_ret, system_kwargs, user_kwargs):
        warnings.warn('a warning in the driver during the map')

    paramsurvey.init(backend='serial', verbose=0)
    r = paramsurvey.map(workers.double, [{'x': 1}, {'x': 2}], out_func=out_func)
    assert len(r) == 2
"""


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose0_is_silent_where_no_logfile_can_be_written(verbose):
    # /proc refuses new files (even to root): the hidden logfile cannot be created there
    done = run_script(SILENT.replace("verbose=0", f"verbose={verbose}"), cwd="/proc")
    assert done.returncode == 0, done.stderr
    if verbose:  # the same run at verbose 1 says so, and shows the warning
        assert "cannot write the hidden logfile /proc/.paramsurvey-" in done.stderr
        assert "a warning in the driver during the map" in done.stderr
    else:
        assert done.stdout == "" and done.stderr == ""


def test_verbose0_sends_driver_warnings_to_the_logfile(tmp_path):
    done = run_script(SILENT, cwd=str(tmp_path))
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    [log] = logfiles(tmp_path)
    assert "UserWarning: a warning in the driver during the map" in (tmp_path / log).read_text()


# -- the driver's own concurrency ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_a_second_map_at_the_same_time_is_refused_and_the_next_one_works(backend):
    paramsurvey.init(backend=backend, verbose=0, ncores=2)
    started = threading.Event()
    first: dict[str, object] = {}

    def out_func(user_ret, system_kwargs, user_kwargs):
        started.set()

    psets = [{"x": 0, "sleep": 0.05}] + [{"x": i, "sleep": 0.5} for i in range(1, 5)]

    def run_first():
        try:
            first["results"] = paramsurvey.map(workers_compat.slow_double, psets, out_func=out_func, group_size=1)
        except BaseException as exc:  # pragma: no cover - reported below
            first["error"] = exc

    thread = threading.Thread(target=run_first)
    thread.start()
    assert started.wait(60), "the first map never produced a result"
    begun = time.monotonic()
    with pytest.raises(RuntimeError, match="already running"):
        paramsurvey.map(workers.double, [{"x": 1}])
    assert time.monotonic() - begun < 10  # refused at once, not after waiting (generous guard)
    thread.join(60)
    assert not thread.is_alive() and "error" not in first, first.get("error")
    assert first["results"]["y"].tolist() == [0, 2, 4, 6, 8]  # not disturbed
    assert paramsurvey.map(workers.double, [{"x": 3}])["y"].tolist() == [6]  # the next map works


FORK = """
    import json, os, sys
    import paramsurvey, workers_compat

    paramsurvey.init(ncores=2, verbose=0)
    psets = [{'x': i} for i in range(8)]
    parent_zygote = set(paramsurvey.map(workers_compat.zygote_pid, psets)['ppid'])
    mode = sys.argv[1]
    pid = os.fork()
    if pid == 0:
        if mode == 'map':
            r = paramsurvey.map(workers_compat.zygote_pid, psets)
            ok = r['y'].tolist() == [2 * i for i in range(8)] and not set(r['ppid']) & parent_zygote
            sys.exit(0 if ok else 3)
        sys.exit(0)  # a normal exit: atexit handlers run in the child too
    _, status = os.waitpid(pid, 0)
    r = paramsurvey.map(workers_compat.zygote_pid, psets)
    print(json.dumps({'child': os.waitstatus_to_exitcode(status), 'y': r['y'].tolist(),
                      'same_workers': set(r['ppid']) == parent_zygote, 'missing': len(r.missing)}))
"""


@pytest.mark.parametrize("mode", ["exit", "map"])
def test_a_forked_child_never_touches_the_parents_backend(mode, tmp_path):
    done = run_script(FORK, mode, cwd=str(tmp_path), timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out == {"child": 0, "y": [2 * i for i in range(8)], "same_workers": True, "missing": 0}
