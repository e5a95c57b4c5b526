"""Every error paramsurvey raises on purpose is a ParamsurveyError and the builtin the README names:
a representative bad input of each kind, through the public API, before any work."""

from __future__ import annotations

import pytest

import paramsurvey
from paramsurvey.stats import PerfStats


def work(pset, system_kwargs, user_kwargs):
    return {"y": pset["x"]}


def test_the_classes_and_their_builtins():
    pairs = [(paramsurvey.ArgumentError, ValueError), (paramsurvey.ArgumentTypeError, TypeError),
             (paramsurvey.UsageError, RuntimeError), (paramsurvey.BackendNotInstalled, ImportError)]
    for cls, builtin in pairs:
        assert issubclass(cls, paramsurvey.ParamsurveyError) and issubclass(cls, builtin)
    for cls in (paramsurvey.BackendError, paramsurvey.JournalError):
        assert issubclass(cls, paramsurvey.ParamsurveyError)
    # Ctrl-C is not an error: `except Exception` must not swallow it
    assert not issubclass(paramsurvey.Interrupted, Exception)


BAD_VALUES = {
    "a setting out of range": lambda: paramsurvey.init(backend="serial", verbose=7),
    "an unknown backend": lambda: paramsurvey.init(backend="mpi"),
    "an init-only setting given to map()": lambda: paramsurvey.map(work, [{"x": 1}], ncores=2),
    "a map-only setting given to init()": lambda: paramsurvey.init(backend="serial", name="x"),
    "a pset key that is not an identifier": lambda: paramsurvey.map(work, [{"a b": 1}]),
    "a reserved pset key": lambda: paramsurvey.map(work, [{"_x": 1}]),
    "a dict of unequal lists": lambda: paramsurvey.map(work, {"x": [1, 2], "z": [1]}),
    "a capability the backend lacks": lambda: paramsurvey.map(work, [{"x": 1}], timeout=1),
    "a percentile out of range": lambda: PerfStats({"x": [1.0]}).percentile("x", 101),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_value_is_an_argument_error_and_a_value_error(case):
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(paramsurvey.ArgumentError) as info:
        BAD_VALUES[case]()
    assert isinstance(info.value, ValueError) and isinstance(info.value, paramsurvey.ParamsurveyError)


def test_a_bad_environment_value_is_an_argument_error(monkeypatch):
    monkeypatch.setenv("PARAMSURVEY_VERBOSE", "loud")
    with pytest.raises(paramsurvey.ArgumentError, match="PARAMSURVEY_VERBOSE") as info:
        paramsurvey.init(backend="serial")
    assert isinstance(info.value, ValueError)


BAD_TYPES = {
    "an unknown keyword": lambda: paramsurvey.map(work, [{"x": 1}], verbos=2),
    "an unknown backend option": lambda: paramsurvey.init(backend="serial", multiprocessing={"nope": 1}),
    "a worker that is not callable": lambda: paramsurvey.map(42, [{"x": 1}]),
    "psets that are not psets": lambda: paramsurvey.map(work, 5),
    "a string for a bool": lambda: paramsurvey.map(work, [{"x": 1}], keep_results="no"),
    "a setting that is not a number": lambda: paramsurvey.map(work, [{"x": 1}], limit="all"),
}


@pytest.mark.parametrize("case", BAD_TYPES)
def test_a_bad_type_is_an_argument_type_error_and_a_type_error(case):
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(paramsurvey.ArgumentTypeError) as info:
        BAD_TYPES[case]()
    assert isinstance(info.value, TypeError) and isinstance(info.value, paramsurvey.ParamsurveyError)


def test_init_of_another_backend_is_a_usage_error_and_a_runtime_error():
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(paramsurvey.UsageError, match="finalize") as info:
        paramsurvey.init(backend="multiprocessing")
    assert isinstance(info.value, RuntimeError)
    assert paramsurvey.backend() == "serial"  # nothing was started or stopped


def test_a_map_inside_a_map_is_a_usage_error_and_a_runtime_error():
    paramsurvey.init(backend="serial", verbose=0)
    caught: list[BaseException] = []

    def out_func(user_ret, system_kwargs, user_kwargs):
        try:
            paramsurvey.map(work, [{"x": 2}])
        except Exception as exc:
            caught.append(exc)

    results = paramsurvey.map(work, [{"x": 1}], out_func=out_func)
    assert len(results) == 1  # the outer map is unharmed
    [error] = caught
    assert isinstance(error, paramsurvey.UsageError) and isinstance(error, RuntimeError)
    assert "already running" in str(error)
