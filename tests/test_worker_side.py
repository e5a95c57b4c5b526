"""The worker side: per-worker initializer, tracebacks that name the user's file, results that
cannot travel, retries of psets that ended their own run, the 0.4.x system_kwargs['ray'], and
worker processes that survive what a pset did to them. On the serial and multiprocessing backends,
with real worker processes and real scripts run as programs."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import time
from array import array

import pandas as pd
import pytest
import workers
import workers_worker

import paramsurvey
from paramsurvey._api import _session
from paramsurvey._worker import GroupResult, encode_result

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
TESTS = os.path.dirname(os.path.abspath(__file__))
# Deadlock guard for what must fail fast: a failing initializer is an error "within seconds".
FAST = 30.0

backends = pytest.mark.parametrize("backend", ["serial", "multiprocessing"])


def run_program(tmp_path, args, stdin=None, timeout=90):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS])
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout, **({} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def markers(directory, tag="init"):
    """The pid of each call of workers_worker.mark_init, one per file."""
    return [int(name.split("-")[1]) for name in os.listdir(directory) if name.startswith(tag + "-")]


# -- 1. the per-worker initializer -----------------------------------------------------------------
def test_initializer_runs_once_in_every_worker_process_replacements_too(tmp_path):
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0, max_tasks_per_child=3,
                     initializer=workers_worker.mark_init, initargs=(str(tmp_path),))
    psets = [{"x": i, "how": "os_exit" if i == 7 else "fine"} for i in range(30)]
    results = paramsurvey.map(workers_worker.init_state, psets)
    assert len(results) == 29 and results.missing["_status"].tolist() == ["crashed"]
    assert results["initialized"].all()  # set-up came before each process's first pset
    pids = markers(tmp_path)
    assert len(pids) == len(set(pids))  # once per process
    assert set(results["pid"]) <= set(pids)
    assert len(set(results["pid"])) >= 10  # max_tasks_per_child=3 replaced workers: each ran it


def test_initializer_is_not_run_again_for_the_next_map_of_the_session(tmp_path):
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0,
                     initializer=workers_worker.mark_init, initargs=(str(tmp_path),))
    first = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(20)])
    second = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(20)])
    assert first["initialized"].all() and second["initialized"].all()
    pids = markers(tmp_path)
    assert sorted(pids) == sorted(set(pids)) and set(first["pid"]) | set(second["pid"]) <= set(pids)


def test_serial_initializer_runs_once_per_init_session(tmp_path):
    paramsurvey.init(backend="serial", verbose=0, initializer=workers_worker.mark_init, initargs=[str(tmp_path)])
    paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(5)])
    results = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(5)])
    assert results["initialized"].all()
    assert markers(tmp_path) == [os.getpid()]
    paramsurvey.finalize()
    paramsurvey.init(backend="serial", verbose=0, initializer=workers_worker.mark_init, initargs=[str(tmp_path)])
    paramsurvey.map(workers_worker.init_state, [{"x": 1}])
    assert markers(tmp_path) == [os.getpid()] * 2


def test_init_key_is_per_session_and_per_initializer(tmp_path):
    paramsurvey.init(backend="multiprocessing", verbose=0, initializer=workers_worker.mark_init,
                     initargs=(str(tmp_path),))
    backend = _session.backend
    key = backend.init_key(workers_worker.mark_init, (str(tmp_path),))
    assert key and key == backend.init_key(workers_worker.mark_init, (str(tmp_path),))
    assert key != backend.init_key(workers_worker.mark_init, (str(tmp_path), "other"))
    assert key != backend.init_key(workers_worker.failing_init, (str(tmp_path),))
    assert backend.init_key(None, ()) == ""
    paramsurvey.finalize()
    paramsurvey.init(backend="multiprocessing", verbose=0)
    assert key != _session.backend.init_key(workers_worker.mark_init, (str(tmp_path),))


def test_init_again_with_another_initializer_runs_it_in_the_same_workers(tmp_path):
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0,
                     initializer=workers_worker.mark_init, initargs=(str(tmp_path), "first"))
    first = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(10)])
    paramsurvey.init(initargs=(str(tmp_path), "second"))  # the same backend: settings updated
    second = paramsurvey.map(workers_worker.init_state, [{"x": i} for i in range(10)])
    for result, tag in ((first, "first"), (second, "second")):
        pids = markers(tmp_path, tag)
        assert set(result["pid"]) <= set(pids) and len(pids) == len(set(pids))
    assert set(second["pid"]) & set(first["pid"])  # workers of the first map ran the second initializer


@backends
def test_a_failing_initializer_is_a_backend_error_naming_it(backend):
    paramsurvey.init(backend=backend, verbose=0, initializer=workers_worker.failing_init, initargs=(1,))
    start = time.monotonic()
    with pytest.raises(paramsurvey.BackendError) as info:
        paramsurvey.map(workers.double, [{"x": i} for i in range(20)])
    assert time.monotonic() - start < FAST
    message = str(info.value)
    assert "workers_worker.failing_init" in message and "ValueError('no set-up today')" in message
    assert 'raise ValueError("no set-up today")' in message  # its traceback
    paramsurvey.finalize()
    paramsurvey.init(backend=backend, verbose=0)  # without it, the same workers work
    assert paramsurvey.map(workers.double, [{"x": 1}])["y"].tolist() == [2]


def test_an_initializer_that_kills_its_worker_costs_psets_never_a_respawn_loop(tmp_path):
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0, initializer=workers_worker.exiting_init)
    start = time.monotonic()
    results = paramsurvey.map(workers.double, [{"x": i} for i in range(4)])
    assert time.monotonic() - start < FAST
    assert len(results) == 0 and results.missing["_status"].tolist() == ["crashed"] * 4
    assert "exited with code 5" in results.missing["_exception"].iloc[0]


def test_the_initializers_time_is_not_counted_against_a_psets_timeout():
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0, initializer=workers_worker.slow_init,
                     initargs=(1.5,))
    results = paramsurvey.map(workers.double, [{"x": i} for i in range(4)], timeout=1.0)
    assert results["y"].tolist() == [0, 2, 4, 6] and results.missing.to_df().empty


@pytest.mark.parametrize("initializer, initargs, words", [
    (5, (), "init(initializer=...) must be callable, not int"),
    (workers_worker.mark_init, "abc", "init(initargs=...) must be a tuple or list"),
    (workers_worker.mark_init, (threading.Lock(),), "initializer workers_worker.mark_init or its initargs "
                                                    "could not be pickled"),
])
def test_bad_initializer_arguments_are_a_clear_error_before_any_work(initializer, initargs, words):
    with pytest.raises(TypeError, match=re.escape(words)):  # at init() or, at the latest, map()
        paramsurvey.init(backend="multiprocessing", verbose=0, initializer=initializer, initargs=initargs)
        paramsurvey.map(workers.double, [{"x": 1}])


# -- 2. tracebacks name the user's file and line ---------------------------------------------------
SCRIPT = textwrap.dedent("""\
    import sys
    import paramsurvey

    def worker(pset, system_kwargs, user_kwargs):
        if pset['x'] == 1:
            raise ValueError('script worker fails')
        return {'y': 1}

    def make_closure(k):
        def inner(pset, system_kwargs, user_kwargs):
            return {'y': [1, 2][pset['x'] * k]}
        return inner

    paramsurvey.init(backend=sys.argv[-1] if len(sys.argv) > 1 else 'multiprocessing', verbose=0)
    for f in (worker, make_closure(5), lambda p, s, u: {'y': 1 // (p['x'] - 1)}):
        tb = paramsurvey.map(f, [{'x': 0}, {'x': 1}]).missing['_traceback'].iloc[0]
        print(tb)
        print('=====')
""")


def check_tracebacks(out: str, filename: str) -> None:
    plain, closure, lam = out.split("=====\n")[:3]
    assert f'File "{filename}", line 6, in worker\n' in plain
    assert "    raise ValueError('script worker fails')\n" in plain
    assert f'File "{filename}", line 11, in inner\n' in closure
    assert "return {'y': [1, 2][pset['x'] * k]}" in closure
    assert f'File "{filename}", line 15, in <lambda>\n' in lam
    assert "for f in (worker, make_closure(5), lambda p, s, u: {'y': 1 // (p['x'] - 1)}):" in lam
    assert "<dynamic-code>" not in out


@backends
def test_traceback_names_the_script_file_and_line(tmp_path, backend):
    script = tmp_path / "my_survey.py"
    script.write_text(SCRIPT)
    done = run_program(tmp_path, [str(script), backend])
    assert done.returncode == 0, done.stderr
    check_tracebacks(done.stdout, str(script))


def test_traceback_of_python_c_shows_the_command_lines(tmp_path):
    done = run_program(tmp_path, ["-c", SCRIPT])
    assert done.returncode == 0, done.stderr
    check_tracebacks(done.stdout, "<string>")


def test_traceback_of_code_only_in_the_drivers_linecache(tmp_path):
    """As IPython does for a notebook cell: its source is in linecache under a file name that
    does not exist on disk, with no modification time."""
    program = textwrap.dedent("""
        import linecache
        import paramsurvey
        cell = "def worker(pset, system_kwargs, user_kwargs):\\n    return {'y': 1 / pset['x']}\\n"
        name = '/nonexistent/ipykernel_1/cell42.py'
        linecache.cache[name] = (len(cell), None, cell.splitlines(True), name)
        space = {}
        exec(compile(cell, name, 'exec'), space)
        paramsurvey.init(verbose=0)
        print(paramsurvey.map(space['worker'], [{'x': 0}]).missing['_traceback'].iloc[0])
    """)
    done = run_program(tmp_path, ["-c", program])
    assert done.returncode == 0, done.stderr
    assert 'File "/nonexistent/ipykernel_1/cell42.py", line 2, in worker\n' in done.stdout
    assert "    return {'y': 1 / pset['x']}\n" in done.stdout


def test_traceback_of_a_worker_defined_in_a_jupyter_cell(tmp_path, monkeypatch):
    """A real kernel: the cell's source exists only in the kernel's linecache."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import paramsurvey\nparamsurvey.init(verbose=0)"),
        nbformat.v4.new_code_cell("def cell_worker(pset, system_kwargs, user_kwargs):\n"
                                  "    return {'y': 1 / pset['x']}  # the cell's line"),
        nbformat.v4.new_code_cell("print(paramsurvey.map(cell_worker, [{'x': 0}]).missing['_traceback'].iloc[0])"),
    ]
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, TESTS]))
    NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.text for o in nb.cells[2].outputs if o.output_type == "stream")
    assert re.search(r'File "[^"]*ipykernel_\d+[^"]*", line 2, in cell_worker\n', out), out
    assert "    return {'y': 1 / pset['x']}  # the cell's line\n" in out


def test_python_stdin_worker_traceback_names_stdin(tmp_path):
    """Python keeps no source of a program read from stdin; the traceback still names its line."""
    done = run_program(tmp_path, ["-"], stdin=SCRIPT)
    assert done.returncode == 0, done.stderr
    assert 'File "<stdin>", line 6, in worker' in done.stdout and "<dynamic-code>" not in done.stdout


@backends
def test_traceback_of_a_worker_in_an_importable_module(backend):
    paramsurvey.init(backend=backend, verbose=0)
    tb = paramsurvey.map(workers.raise_on_odd, [{"x": 1}]).missing["_traceback"].iloc[0]
    assert f'File "{os.path.join(TESTS, "workers.py")}", line ' in tb
    assert "raise ValueError(f\"odd x: {pset['x']}\")" in tb


# -- 3. results that cannot travel -----------------------------------------------------------------
def test_a_result_that_pickles_but_does_not_load_fails_its_pset_alone():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    results = paramsurvey.map(workers_worker.return_bad_value, [{"x": i} for i in range(5)], group_size=5)
    assert results["y"].tolist() == [0, 1, 3, 4]
    assert results.missing["x"].tolist() == [2]
    assert results.missing["_status"].tolist() == ["exception"]
    message = results.missing["_exception"].iloc[0]
    assert "of type workers_worker.TwoArgError pickles but cannot be loaded again" in message
    assert "result \\'extra\\'" in message or "result 'extra'" in message


def test_a_result_that_cannot_be_pickled_names_its_type():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"how": "unpicklable" if i == 1 else "fine", "i": i} for i in range(3)]
    results = paramsurvey.map(workers.crash, psets, group_size=3)
    assert results["ok"].tolist() == [0, 2]
    message = results.missing["_exception"].iloc[0]
    assert "of type function could not be pickled" in message


def group(columns, n):
    return GroupResult(array("q", range(n)), array("d", [0.0] * n), array("d", [0.0] * n),
                       array("q", range(n)), columns, {}, [], {})


def test_encode_result_plain_columns_travel_as_they_are():
    result = group({"a": [1, 2.5, None], "b": ["s", b"b", True], "c": [[1, 2], (3,), {"k": 1.0}]}, 3)
    blob = encode_result(result)
    assert blob == pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(blob).columns == result.columns


def test_encode_result_numpy_and_nested_values():
    import numpy as np

    values = [np.float64(1.5), np.arange(3), [workers_worker.TwoArgError(1, "x")], np.array([None], dtype=object)]
    loaded = pickle.loads(encode_result(group({"v": values}, 4)))
    assert loaded.ok.tolist() == [0, 1, 3]
    assert [f[0] for f in loaded.failures] == [2]
    assert "of type list pickles but cannot be loaded again" in loaded.failures[0][2]
    assert loaded.columns["v"][0] == 1.5 and loaded.columns["v"][1].tolist() == [0, 1, 2]


# -- 4. the engine: where tracebacks are, retries of psets that ended their run --------------------
def test_verbose_1_says_once_where_the_tracebacks_are(tmp_path):
    program = textwrap.dedent("""
        import paramsurvey
        paramsurvey.init(verbose=1, vstats=0)
        paramsurvey.map(lambda p, s, u: 1 / p['x'], [{'x': 0}, {'x': 0}, {'x': 1}])
        paramsurvey.map(lambda p, s, u: 1 / p['x'], [{'x': 0}], name='again')
    """)
    done = run_program(tmp_path, ["-c", program])
    assert done.returncode == 0, done.stderr
    [logfile] = [f for f in os.listdir(tmp_path) if f.startswith(".paramsurvey-")]
    hints = [line for line in done.stderr.splitlines() if "traceback is in" in line]
    path = os.path.join(str(tmp_path), logfile)
    assert hints == [f"default: each failure's traceback is in {path} and in results.missing['_traceback']",
                     f"again: each failure's traceback is in {path} and in results.missing['_traceback']"]
    assert "Traceback (most recent call last)" not in done.stderr


@backends
def test_retries_run_a_pset_that_called_sys_exit_again(backend):
    paramsurvey.init(backend=backend, verbose=0)
    results = paramsurvey.map(workers_worker.exit_once, [{"x": i} for i in range(4)], retries=1, group_size=4)
    assert results["attempt"].tolist() == [0, 1, 0, 0]
    assert results.progress.retried == 1 and results.progress.failures == 0
    assert results.progress.finished == 4 and results.progress.active == 0


@backends
def test_retries_of_sys_exit_exhausted(backend):
    paramsurvey.init(backend=backend, verbose=0)
    psets = [{"x": i, "always": True} for i in range(3)]
    results = paramsurvey.map(workers_worker.exit_once, psets, retries=2)
    assert results.progress.retried == 2
    assert results.missing["x"].tolist() == [1] and results.missing["_status"].tolist() == ["crashed"]
    assert "SystemExit(4)" in results.missing["_exception"].iloc[0]
    assert results.progress.finished + results.progress.failures == 3


def test_a_retried_sys_exit_is_journaled_once_with_its_last_attempt(tmp_path):
    paramsurvey.init(backend="multiprocessing", verbose=0)
    journal = str(tmp_path / "j.journal")
    results = paramsurvey.map(workers_worker.exit_once, [{"x": i} for i in range(4)], retries=1, journal=journal)
    assert results.progress.failures == 0
    rows = paramsurvey.journal.read(journal, history=True)
    assert sorted(rows["x"].tolist()) == [0, 1, 2, 3]
    assert set(rows["_status"]) == {"ok"}
    assert rows.set_index("x")["_attempt"].to_dict() == {0: 0, 1: 1, 2: 0, 3: 0}


# -- 5. system_kwargs['ray'], as 0.4.x gave it ---------------------------------------------------------
@backends
def test_a_psets_ray_options_are_in_system_kwargs(backend):
    paramsurvey.init(backend=backend, verbose=0)
    psets = [{"x": 0, "ray": {"num_cpus": 2}}, {"x": 1}]
    df = paramsurvey.map(workers_worker.ray_options, psets).results
    assert df["has_ray"].tolist() == [True, False]
    assert df["sys_ray"].tolist() == ["{'num_cpus': 2}", "None"]
    assert df["pset_ray"].tolist() == ["{'num_cpus': 2}", "None"]
    assert df["keys"].tolist() == ["ray,x", "x"]  # the pset itself is unchanged
    assert psets[0] == {"x": 0, "ray": {"num_cpus": 2}}
    frame = pd.DataFrame({"x": [0, 1], "ray": [{"num_gpus": 1}, float("nan")]})
    df = paramsurvey.map(workers_worker.ray_options, frame).results
    assert df["has_ray"].tolist() == [True, False]  # NaN: that row has no options


# -- 6. a worker survives what a pset did to its process -------------------------------------------------
def _abuse(how, n=4):
    paramsurvey.init(backend="multiprocessing", ncores=1, verbose=0)
    psets = [{"how": how if i == 0 else "allocate", "i": i} for i in range(n)]
    return paramsurvey.map(workers_worker.abuse_process, psets, group_size=1)


def test_a_pset_that_closed_stdout_and_stderr_does_not_break_later_psets(capfd):
    results = _abuse("close_std_fds")
    assert results.missing.to_df().empty, results.missing["_exception"].tolist()
    assert results["pid"].nunique() == 1  # the same worker, put right
    out, err = capfd.readouterr()
    assert "pset 3 prints" in out and "pset 3 warns" in err


def test_a_pset_that_lowered_its_address_space_does_not_break_later_psets():
    results = _abuse("low_address_space")
    assert results.missing.to_df().empty, results.missing["_exception"].tolist()
    assert len(results) == 4 and results["pid"].nunique() == 1


def test_a_pset_that_lowered_a_hard_limit_gets_its_worker_replaced():
    hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    results = _abuse("low_hard_nofile")
    assert results.missing.to_df().empty, results.missing["_exception"].tolist()
    assert results["nofile_hard"].tolist()[1:] == [hard] * 3  # a fresh worker, with the limits it had
    assert results["pid"].iloc[0] not in set(results["pid"].iloc[1:])
