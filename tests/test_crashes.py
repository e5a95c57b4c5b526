"""The crash table (loky's habit): each way a worker can die, in a group with healthy psets.

The map returns; the bad pset alone is in `missing` with the right `_status` and an `_exception`
that names the signal or exit code; every healthy pset is in the results; no process is left
(the autouse fixture checks that).
"""

from __future__ import annotations

import pytest
import workers

import paramsurvey

CRASHES = [
    # how, status, words in _exception
    ("segfault", "crashed", "signal 11 (SIGSEGV)"),
    ("os_exit", "crashed", "exited with code 3"),
    ("sys_exit", "crashed", "SystemExit(4)"),
    ("keyboard_interrupt", "crashed", "KeyboardInterrupt"),
    ("sigkill", "crashed", "signal 9 (SIGKILL)"),
    ("unpicklable", "exception", "could not be pickled"),
    ("hang", "timeout", "timeout of 2 s"),
    ("raise", "exception", "RuntimeError('raised on purpose')"),
]


@pytest.mark.parametrize("how, status, words", CRASHES, ids=[c[0] for c in CRASHES])
def test_one_bad_pset_in_a_group(how, status, words):
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"how": how if i == 5 else "fine", "i": i} for i in range(12)]
    results = paramsurvey.map(workers.crash, psets, group_size=12, timeout=2)
    assert results["ok"].tolist() == [i for i in range(12) if i != 5]
    missing = results.missing
    assert missing["i"].tolist() == [5]
    assert missing["_status"].tolist() == [status]
    assert words in missing["_exception"].iloc[0]
    assert results.progress.finished == 11 and results.progress.failures == 1


def test_every_pset_crashing_still_completes():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"how": "os_exit", "i": i} for i in range(6)]
    results = paramsurvey.map(workers.crash, psets)
    assert len(results) == 0
    assert results.missing["_status"].tolist() == ["crashed"] * 6
    assert results.progress.crashed == 6


def test_retries_run_a_crashed_pset_again_on_a_fresh_worker():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    results = paramsurvey.map(workers.crash_once, [{"x": i} for i in range(4)], retries=1)
    assert results["attempt"].tolist() == [0, 1, 0, 0]
    assert results.progress.retried == 1 and results.progress.failures == 0


def test_retries_exhausted():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    psets = [{"how": "os_exit" if i == 0 else "fine", "i": i} for i in range(3)]
    results = paramsurvey.map(workers.crash, psets, retries=2)
    assert results.progress.retried == 2
    assert results.missing["_status"].tolist() == ["crashed"]


def test_max_tasks_per_child_replaces_workers_after_exactly_n_psets():
    paramsurvey.init(backend="multiprocessing", verbose=0, max_tasks_per_child=3)
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(30)])
    counts = results["pid"].value_counts()
    assert len(results) == 30
    assert counts.max() <= 3
    assert len(counts) >= 10


def test_max_tasks_per_child_one_is_cheap():
    paramsurvey.init(backend="multiprocessing", verbose=0, max_tasks_per_child=1)
    results = paramsurvey.map(workers.echo_system, [{"x": i} for i in range(200)])
    assert results["pid"].nunique() == 200


def test_a_worker_that_cannot_be_loaded_is_a_clear_error_and_the_next_map_works():
    paramsurvey.init(backend="multiprocessing", verbose=0)
    with pytest.raises(paramsurvey.BackendError, match="cannot be loaded in a worker process"):
        paramsurvey.map(workers.Unloadable(), [{"x": i} for i in range(10)])
    results = paramsurvey.map(workers.double, [{"x": i} for i in range(10)])
    assert results["y"].tolist() == [2 * i for i in range(10)]


@pytest.mark.parametrize("how, words", [
    ("sigkill", "signal 9 (SIGKILL): often the out-of-memory killer (or someone's kill -9)"),
    ("segfault", "signal 11 (SIGSEGV): a crash in native code (a C extension)"),
    ("os_exit", "exited with code 3: the worker called sys.exit/os._exit with code 3"),
])
def test_a_crash_names_its_signal_or_exit_code_and_its_likely_cause(how, words):
    paramsurvey.init(backend="multiprocessing", verbose=0)
    results = paramsurvey.map(workers.crash, [{"how": how, "i": 0}])
    assert results.missing["_status"].tolist() == ["crashed"]
    assert words in results.missing["_exception"].iloc[0]
