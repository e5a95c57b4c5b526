"""The multiprocessing backend's last lines of defence: a pset that cannot be sent, a result the driver
cannot load, more workers than the process may open files for, and silence when workers lose their
driver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest
import workers
import workers_mpworker as wm

import paramsurvey

TESTS = os.path.dirname(__file__)
SRC = os.path.join(TESTS, "..", "src")
SUBPROCESS_DEADLINE = 100  # seconds: a hang becomes a failure


def run_script(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=SUBPROCESS_DEADLINE)


# -- 1. a pset that cannot be pickled costs that pset alone ------------------------------------------
@pytest.mark.parametrize("bad, type_name", [(threading.Lock, "_thread.lock"),
                                            (lambda: open(os.devnull, "w"), "_io.TextIOWrapper")],
                         ids=["lock", "open_file"])
def test_an_unpicklable_pset_costs_that_pset_alone(bad, type_name):
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"x": i, "extra": None} for i in range(1000)]
    psets[700]["extra"] = bad()
    results = paramsurvey.map(workers.double, psets)
    assert len(results) == 999
    assert results["y"].tolist() == [2 * i for i in range(1000) if i != 700]
    missing = results.missing
    assert missing["x"].tolist() == [700]
    assert missing["_status"].tolist() == ["exception"]
    message = missing["_exception"].iloc[0]
    assert type_name in message and "'extra'" in message, message
    progress = results.progress
    assert (progress.finished, progress.failures, progress.exceptions) == (999, 1, 1)


def test_unpicklable_psets_in_many_groups_with_a_journal(tmp_path):
    """With a journal, every failure is journaled and the survey completes."""
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"x": i, "extra": threading.Lock() if i % 10 == 3 else None} for i in range(100)]
    journal = str(tmp_path / "survey.journal")
    results = paramsurvey.map(workers.double, psets, group_size=7, journal=journal)
    bad = [i for i in range(100) if i % 10 == 3]
    assert results.missing["x"].tolist() == bad
    assert results["x"].tolist() == [i for i in range(100) if i not in bad]
    assert set(results.missing["_status"]) == {"exception"}


def test_a_pset_value_only_cloudpickle_handles_travels():
    """As on Ray and Dask: what pickle refuses, cloudpickle may send (a lambda, a local class)."""
    paramsurvey.init(backend="multiprocessing", verbose=0)
    offset = 7
    psets = [{"x": i, "f": (lambda v: v + offset) if i == 3 else None} for i in range(10)]
    results = paramsurvey.map(workers.double, psets)
    assert len(results) == 10 and results.missing.to_df().empty


MAIN_CLASS = """
    import dataclasses, enum
    import paramsurvey

    class Color(enum.Enum):
        RED = 1

    @dataclasses.dataclass
    class Point:
        x: int

    def work(pset, system_kwargs, user_kwargs):
        return {'y': pset['point'].x, 'color': pset['color'].name}

    paramsurvey.init(backend='multiprocessing', verbose=0, ncores=2)
    results = paramsurvey.map(work, [{'point': Point(i), 'color': Color.RED} for i in range(50)])
    print(results['y'].tolist() == list(range(50)), set(results['color']), len(results.missing))
"""


def test_psets_holding_instances_of_the_scripts_own_classes_travel(tmp_path):
    # pickled by reference to __main__, which in a worker is not the user's script
    done = run_script(tmp_path, MAIN_CLASS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True {'RED'} 0", done.stdout + done.stderr


def test_a_pset_the_worker_cannot_load_costs_that_pset_alone():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"x": i, "value": wm.LoadsOnlyInTheDriver() if i == 6 else None} for i in range(20)]
    results = paramsurvey.map(wm.read_value, psets, group_size=5)
    assert results["x"].tolist() == [i for i in range(20) if i != 6]
    missing = results.missing
    assert missing["x"].tolist() == [6]
    assert missing["_status"].tolist() == ["exception"]
    assert "this value cannot be loaded in a worker process" in missing["_exception"].iloc[0]


def test_a_group_that_kills_the_worker_loading_it_fails_instead_of_killing_workers_forever():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"x": i, "value": wm.KillsItsLoader() if i == 1 else None} for i in range(8)]
    results = paramsurvey.map(wm.read_value, psets, group_size=2)
    assert results["x"].tolist() == [0, 2, 3, 4, 5, 6, 7]
    missing = results.missing
    assert missing["x"].tolist() == [1]
    assert missing["_status"].tolist() == ["crashed"]
    assert "exited with code 7 each time it loaded this pset" in missing["_exception"].iloc[0]


# -- 2. a result the driver cannot load costs its group ----------------------------------------------
def test_a_result_the_driver_cannot_load_fails_its_group_alone(tmp_path):
    paramsurvey.init(backend="multiprocessing", verbose=0)
    module = f"worker_only_{uuid.uuid4().hex}"
    psets = [{"x": i, "odd": i == 5} for i in range(12)]
    results = paramsurvey.map(wm.worker_only_value, psets, group_size=4,
                              user_kwargs={"dir": str(tmp_path / "worker_only"), "module": module})
    assert results["x"].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    missing = results.missing
    assert missing["x"].tolist() == [4, 5, 6, 7]
    assert set(missing["_status"]) == {"exception"}
    assert all(f"No module named '{module}'" in text for text in missing["_exception"])
    assert results.progress.finished + results.progress.failures == 12
    again = paramsurvey.map(workers.double, [{"x": i} for i in range(10)])  # the workers still serve
    assert again["y"].tolist() == [2 * i for i in range(10)]


# -- 5. more workers than open files --------------------------------------------------------------
LIMITED = """
    import resource, sys
    import psutil
    import paramsurvey

    soft, hard, ncores = map(int, sys.argv[1:4])
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        paramsurvey.init(backend='multiprocessing', verbose=0, ncores=ncores)
    except ValueError as exc:
        print('refused', psutil.Process().children(), exc)
        sys.exit(0)
    results = paramsurvey.map(lambda pset, s, u: {'pid': s['pset_index']}, [{'x': i} for i in range(3 * ncores)])
    print('ran', len(results), results.missing.to_df().empty,
          resource.getrlimit(resource.RLIMIT_NOFILE)[0] > soft)
"""


def test_too_many_workers_for_the_open_file_limit_is_refused_before_any_fork(tmp_path):
    done = run_script(tmp_path, LIMITED, "1024", "4096", "5000")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused [] "), done.stdout + done.stderr
    assert "ncores=5000" in done.stdout and "4096" in done.stdout


def test_the_soft_open_file_limit_is_raised_when_the_workers_need_it(tmp_path):
    done = run_script(tmp_path, LIMITED, "256", "4096", "150")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran 450 True True", done.stdout + done.stderr


# -- 6. verbose=0 is silent when workers lose their driver ----------------------------------------
SILENT = """
    import paramsurvey
    import workers

    for _ in range(5):  # each failed begin_map forks fresh workers that finalize() cuts off at once
        paramsurvey.init(backend='multiprocessing', verbose=0, ncores=4)
        try:
            paramsurvey.map(workers.Unloadable(), [{'x': i} for i in range(20)])
        except paramsurvey.BackendError:
            pass
        paramsurvey.finalize()
    paramsurvey.init(backend='multiprocessing', verbose=0, ncores=4)
    paramsurvey.map(workers.sleeper, [{'duration': 0.05}] * 40)
    # exit with no finalize() while results are on their way: atexit closes the pipes
"""


def test_verbose_0_stays_silent_when_workers_lose_their_driver(tmp_path):
    done = run_script(tmp_path, SILENT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
