"""Each defect of the original paramsurvey 0.4.x, as a named test that fails if it returns."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import workers

import paramsurvey

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def run_script(tmp_path, code, *, stdin=None, args=(), timeout=60):
    env = dict(os.environ, PYTHONPATH=SRC)
    for key in list(env):
        if key.startswith("PARAMSURVEY_"):
            del env[key]
    return subprocess.run([sys.executable, *args], input=stdin if stdin is not None else None,
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout,
                          **({} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def test_12_1_dying_workers_never_hang_the_map():
    paramsurvey.init(verbose=0)
    psets = [{"how": how, "i": i} for i, how in enumerate(["segfault", "os_exit", "sys_exit", "keyboard_interrupt",
                                                            "fine", "fine"])]
    results = paramsurvey.map(workers.crash, psets, group_size=6)
    assert results["i"].tolist() == [4, 5]
    assert results.missing["_status"].tolist() == ["crashed"] * 4


def test_12_3_a_column_whose_type_changes_loses_nothing():
    paramsurvey.init(verbose=0)
    psets = [{"x": i} for i in range(100_000)]
    results = paramsurvey.map(lambda p, s, u: {"v": p["x"] if p["x"] < 60_000 else p["x"] + 0.5}, psets)
    v = results["v"]
    assert len(results) == 100_000 and v.dtype == "float64"
    assert v.iloc[59_999] == 59_999.0 and v.iloc[60_000] == 60_000.5
    assert (v.to_numpy() == [i if i < 60_000 else i + 0.5 for i in range(100_000)]).all()


def test_12_4_limit_zero_means_all(tmp_path):
    paramsurvey.init(verbose=0, limit=0)
    assert len(paramsurvey.map(workers.double, [{"x": i} for i in range(7)])) == 7


def test_12_4_verbose_zero_prints_nothing_at_all(tmp_path):
    code = textwrap.dedent("""
        import paramsurvey
        paramsurvey.init(verbose=0)
        r = paramsurvey.map(lambda p, s, u: 1 / p['x'], [{'x': 0}, {'x': 1}])
    """)
    done = run_script(tmp_path, code, args=("-c", code))
    assert done.returncode == 0
    assert done.stdout == "" and done.stderr == ""


def test_12_5_missing_bools_are_not_truthy_and_int_gaps_stay_ints():
    paramsurvey.init(verbose=0)

    def worker(pset, system_kwargs, user_kwargs):
        return {"flag": True, "n": 3} if pset["x"] % 2 else {}

    results = paramsurvey.map(worker, [{"x": i} for i in range(4)])
    assert str(results["flag"].dtype) == "boolean" and str(results["n"].dtype) == "Int64"
    assert results["flag"].isna().tolist() == [True, False, True, False]
    assert results["flag"].fillna(False).tolist() == [False, True, False, True]
    assert results["n"].sum() == 6


def test_12_6_no_internal_key_reaches_the_worker():
    paramsurvey.init(verbose=0)
    results = paramsurvey.map(lambda p, s, u: {"keys": ",".join(sorted(p))}, [{"a": 1, "b": 2}] * 3)
    assert set(results["keys"]) == {"a,b"}
    assert not [c for c in results.results.columns if c.startswith("_")]


def test_12_7_omitting_carbon_prefix_works():
    paramsurvey.init(verbose=0)
    results = paramsurvey.map(workers.double, [{"x": 1}], carbon_server="127.0.0.1", carbon_port=9)
    assert results["y"].tolist() == [2]


def test_12_8_to_psets_works_without_exceptions():
    paramsurvey.init(verbose=0)
    results = paramsurvey.map(workers.double, [{"x": 1}])
    assert results.missing.to_psets().empty
    crashed = paramsurvey.map(workers.crash, [{"how": "os_exit", "i": 0}])
    assert crashed.missing.to_psets().to_dict("records") == [{"how": "os_exit", "i": 0}]
    again = paramsurvey.map(workers.crash, crashed.missing.to_psets())
    assert again.missing["_status"].tolist() == ["crashed"]


def test_12_9_out_func_errors_are_not_pset_failures():
    paramsurvey.init(verbose=0)

    def out_func(user_ret, system_kwargs, user_kwargs):
        raise ValueError("out_func broke")

    results = paramsurvey.map(workers.double, [{"x": i} for i in range(3)], out_func=out_func)
    assert len(results) == 3 and len(results.missing) == 0
    assert results.progress.failures == 0 and results.progress.exceptions == 0


def test_12_2_readme_example_without_main_guard(tmp_path):
    code = (textwrap.dedent("""
        import time
        import paramsurvey

        def sleep_worker(pset, system_kwargs, user_kwargs):
            time.sleep(pset['duration'])
            return {'slept': pset['duration']}

        paramsurvey.init(backend='multiprocessing')

        psets = [{'duration': 0.3}] * 5

        results = paramsurvey.map(sleep_worker, psets, verbose=2)

        for r in results.itertuples():
            print(r.duration, r.slept)
        for r in results.iterdicts():
            print(r['duration'], r['slept'])
    """))
    script = tmp_path / "example.py"
    script.write_text(code)
    as_file = run_script(tmp_path, None, args=(str(script),))
    piped = run_script(tmp_path, None, stdin=code, args=("-",))
    as_c = run_script(tmp_path, None, args=("-c", code))
    for done in (as_file, piped, as_c):
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["0.3 0.3"] * 10
        assert "progress: total: 5, active: 0, finished: 5" in done.stderr


def test_12_2_workers_from_stdin_lambda_closure_partial_globals(tmp_path):
    code = textwrap.dedent("""
        import functools
        import paramsurvey
        OFFSET = 100
        def uses_global(p, s, u):
            return {'y': p['x'] + OFFSET}
        def make_closure(k):
            def inner(p, s, u):
                return {'y': p['x'] * k}
            return inner
        def with_arg(p, s, u, k):
            return {'y': p['x'] - k}
        psets = [{'x': i} for i in range(4)]
        for f in (uses_global, make_closure(3), functools.partial(with_arg, k=1), lambda p, s, u: {'y': -p['x']}):
            print(paramsurvey.map(f, psets, verbose=0)['y'].tolist())
    """)
    done = run_script(tmp_path, None, stdin=code, args=("-",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[100, 101, 102, 103]", "[0, 3, 6, 9]", "[-1, 0, 1, 2]", "[0, -1, -2, -3]"]


def test_hidden_logfile_records_everything_even_at_verbose_zero(tmp_path):
    paramsurvey.init(verbose=0)
    paramsurvey.map(workers.raise_on_odd, [{"x": i} for i in range(3)], name="logged")
    paramsurvey.finalize()
    logs = list(tmp_path.glob(".paramsurvey-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    for expected in ("header start_time", "header command_line", "header versions", "logged progress: total: 3",
                     "pset 1 failed (exception): ValueError('odd x: 1')", "raise ValueError",
                     "counter logged_wallclock", "end time"):
        assert expected in text, expected


def test_dataframe_psets_keep_their_dtypes_and_results_align():
    paramsurvey.init(verbose=0)
    frame = pd.DataFrame({"x": [3, 1, 2], "c": pd.Categorical(["a", "b", "a"])}, index=[10, 20, 30])
    results = paramsurvey.map(workers.double, frame)
    assert results.results.index.tolist() == [0, 1, 2]
    assert results["y"].tolist() == [6, 2, 4]
    assert str(results["c"].dtype) == "category"


def test_12_2_workers_never_run_the_main_script(tmp_path):
    code = textwrap.dedent("""
        import os
        import paramsurvey
        print('main script ran in', os.getpid(), flush=True)
        paramsurvey.init(max_tasks_per_child=2)
        r = paramsurvey.map(lambda p, s, u: {'pid': os.getpid()}, [{'x': i} for i in range(20)], verbose=0)
        print('most psets in one worker', r['pid'].value_counts().max(), flush=True)
    """)
    script = tmp_path / "main_script.py"
    script.write_text(code)
    done = run_script(tmp_path, None, args=(str(script),))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("main script ran") == 1
    assert "most psets in one worker 2" in done.stdout


def test_a_lone_surrogate_in_a_result_key_or_an_exception_is_kept_and_logged(tmp_path):
    """pandas 3 keeps column labels in pyarrow, which refuses a lone surrogate; the log file is UTF-8:
    neither may cost the survey its results, nor print 'Logging error' noise."""
    program = textwrap.dedent("""
        import paramsurvey
        def worker(pset, system_kwargs, user_kwargs):
            if pset['x']:
                raise ValueError('bad \\udc80 value')
            return {'a\\udc80': 1, 'b': 2}
        paramsurvey.init(backend='multiprocessing', ncores=1, verbose=1, vstats=0)
        r = paramsurvey.map(worker, [{'x': 0}, {'x': 1}])
        print(ascii(r.results.columns.tolist()), ascii(r.missing['_exception'].tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, errors="backslashreplace")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['x', 'a\\udc80', 'b'] [\"ValueError('bad \\\\udc80 value')\"]"
    assert "Logging error" not in done.stderr
    [logfile] = [f for f in os.listdir(tmp_path) if f.startswith(".paramsurvey-")]
    with open(tmp_path / logfile, encoding="utf-8") as f:
        assert "bad \\udc80 value" in f.read()
