"""Settings: precedence env > map() > init() > default, typed env conversion, bad input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import workers

import paramsurvey
from paramsurvey._config import KNOBS, resolve


def test_defaults():
    s = resolve({})
    assert (s.backend, s.verbose, s.vstats, s.limit, s.timeout, s.retries) == ("multiprocessing", 1, 1, 0, None, 0)
    assert (s.carbon_port, s.carbon_prefix, s.name, s.keep_results) == (2004, "paramsurvey", "default", True)


def test_precedence_env_over_map_over_init():
    env = {"PARAMSURVEY_VERBOSE": "3"}
    assert resolve({"verbose": 1}, {"verbose": 2}, env).verbose == 3
    assert resolve({"verbose": 1}, {"verbose": 2}, {}).verbose == 2
    assert resolve({"verbose": 1}, {}, {}).verbose == 1
    assert resolve({"limit": 5}, {}, {"PARAMSURVEY_LIMIT": "7"}).limit == 7


def test_env_values_are_typed_and_empty_ignored():
    s = resolve({}, {}, {"PARAMSURVEY_TIMEOUT": "2.5", "PARAMSURVEY_NCORES": "-1", "PARAMSURVEY_GROUP_SIZE": "",
                         "PARAMSURVEY_BACKEND": "serial"})
    assert s.timeout == 2.5 and s.ncores == -1 and s.group_size is None and s.backend == "serial"
    assert s.env_used == {"PARAMSURVEY_TIMEOUT": "2.5", "PARAMSURVEY_NCORES": "-1", "PARAMSURVEY_BACKEND": "serial"}


@pytest.mark.parametrize("var, value", [("PARAMSURVEY_VERBOSE", "loud"), ("PARAMSURVEY_LIMIT", "1.5"),
                                        ("PARAMSURVEY_TIMEOUT", "soon"), ("PARAMSURVEY_BACKEND", "mpi")])
def test_bad_env_value_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var if var != "PARAMSURVEY_BACKEND" else "unknown backend"):
        paramsurvey.init(backend="serial")


def test_backend_options_merge_init_then_map():
    s = resolve({"backend": "ray", "ray": {"address": "auto", "num_cpus": 1}, "dask": {"x": 1}},
                {"ray": {"num_cpus": 2}})
    assert dict(s.backend_options) == {"address": "auto", "num_cpus": 2}


BAD_INPUTS = [
    # (what, call, exception, message fragment)
    ("key not a string", lambda: paramsurvey.map(workers.double, [{1: 2}]), ValueError, "1"),
    ("key not an identifier", lambda: paramsurvey.map(workers.double, [{"a b": 1}]), ValueError, "a b"),
    ("key a keyword", lambda: paramsurvey.map(workers.double, [{"x": 1}, {"class": 1}]), ValueError, "class"),
    ("key with underscore", lambda: paramsurvey.map(workers.double, [{"_x": 1}]), ValueError, "_x"),
    ("frame column", lambda: paramsurvey.map(workers.double, __import__("pandas").DataFrame({"_pset_id": [1]})),
     ValueError, "_pset_id"),
    ("pset not a dict", lambda: paramsurvey.map(workers.double, [{"x": 1}, 5]), ValueError, "pset 1"),
    ("psets not iterable", lambda: paramsurvey.map(workers.double, 5), TypeError, "psets"),
    ("psets a string", lambda: paramsurvey.map(workers.double, "abc"), TypeError, "psets"),
    ("worker not callable", lambda: paramsurvey.map("double", [{"x": 1}]), TypeError, "callable"),
    ("backend to map", lambda: paramsurvey.map(workers.double, [{"x": 1}], backend="serial"), ValueError, "backend"),
    ("ncores to map", lambda: paramsurvey.map(workers.double, [{"x": 1}], ncores=2), ValueError, "ncores"),
    ("max_tasks_per_child to map", lambda: paramsurvey.map(workers.double, [{"x": 1}], max_tasks_per_child=2),
     ValueError, "max_tasks_per_child"),
    ("unknown map kwarg", lambda: paramsurvey.map(workers.double, [{"x": 1}], colour=2), TypeError, "colour"),
    ("unknown init kwarg", lambda: paramsurvey.init(colour=2), TypeError, "colour"),
    ("unknown backend", lambda: paramsurvey.init(backend="mpi"), ValueError, "mpi"),
    ("map-only kwarg to init", lambda: paramsurvey.init(out_func=print), ValueError, "out_func"),
    ("negative timeout", lambda: paramsurvey.map(workers.double, [{"x": 1}], timeout=-1), ValueError, "timeout"),
    ("group_size zero", lambda: paramsurvey.map(workers.double, [{"x": 1}], group_size=0), ValueError, "group_size"),
    ("unequal dict of lists", lambda: paramsurvey.map(workers.double, {"x": [1, 2], "y": [1]}), ValueError,
     "equal length"),
    ("chdir missing", lambda: paramsurvey.map(workers.double, [{"x": 1}], chdir="/no/such/dir"), ValueError,
     "/no/such/dir"),
    ("verbose not a number", lambda: paramsurvey.map(workers.double, [{"x": 1}], verbose="x"), TypeError, "verbose"),
]


@pytest.mark.parametrize("what, call, exc, fragment", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_clear_error_before_any_work(what, call, exc, fragment, tmp_path):
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


def test_init_twice_same_backend_updates_other_backend_errors():
    paramsurvey.init(backend="serial", verbose=0, limit=2)
    paramsurvey.init(backend="serial", limit=3)
    assert len(paramsurvey.map(workers.double, [{"x": i} for i in range(10)])) == 3
    with pytest.raises(RuntimeError, match="finalize"):
        paramsurvey.init(backend="multiprocessing")
    paramsurvey.finalize()
    paramsurvey.init(backend="multiprocessing", verbose=0)
    assert paramsurvey.backend() == "multiprocessing"


def test_map_without_init_uses_defaults():
    assert paramsurvey.backend() is None
    results = paramsurvey.map(workers.double, [{"x": 1}], verbose=0)
    assert paramsurvey.backend() == "multiprocessing"
    assert results["y"].tolist() == [2]


def test_ncores_and_resources(monkeypatch):
    from paramsurvey.utils import usable_cores

    paramsurvey.init(ncores=-1, verbose=0)
    assert paramsurvey.current_core_count() == max(1, usable_cores() - 1)
    resources = paramsurvey.current_resources()
    assert resources[0]["num_cores"] == paramsurvey.current_core_count() and resources[0]["memory"] > 0
    paramsurvey.finalize()
    monkeypatch.setenv("PARAMSURVEY_NCORES", "1")
    paramsurvey.init(ncores=2, verbose=0)
    assert paramsurvey.current_core_count() == 1


def test_every_setting_is_in_the_readme_tables():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [name for name in KNOBS if f"`{name}`" not in readme]
    assert not missing, f"settings not documented in the README: {missing}"
