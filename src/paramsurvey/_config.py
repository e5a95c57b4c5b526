"""Settings: every knob of init() and map(), resolved once, in one place.

Precedence (SPEC §3): environment variable > map() kwarg > init() kwarg > default.
An environment value is converted to the knob's type; one that does not convert is a ValueError
naming the variable and the accepted form. An empty variable is ignored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("multiprocessing", "ray", "dask", "serial")

# Where a knob may be given. 'init': init() only; 'both': init() or map(); 'map': map() only.
INIT, BOTH, MAP = "init", "both", "map"


@dataclass(frozen=True)
class Knob:
    name: str
    default: Any
    scope: str
    kind: Callable[[Any], Any] | None = None  # converter of an environment value
    env: str | None = None
    form: str = ""  # the accepted form, for error messages


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a bool is not an int")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return int(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else os.fspath(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a boolean")
    return bool(value)


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("backend", "multiprocessing", INIT, str, "PARAMSURVEY_BACKEND", "one of " + ", ".join(BACKENDS)),
        Knob("verbose", 1, BOTH, _int, "PARAMSURVEY_VERBOSE", "an integer 0-3"),
        Knob("vstats", 1, BOTH, _int, "PARAMSURVEY_VSTATS", "an integer 0-3"),
        Knob("limit", 0, BOTH, _int, "PARAMSURVEY_LIMIT", "an integer (0 or negative: all psets)"),
        Knob("ncores", None, INIT, _opt_int, "PARAMSURVEY_NCORES", "an integer (negative: leave that many free)"),
        Knob("max_tasks_per_child", None, INIT, _opt_int, "PARAMSURVEY_MAX_TASKS_PER_CHILD",
             "a positive integer"),
        Knob("group_size", None, BOTH, _opt_int, "PARAMSURVEY_GROUP_SIZE", "a positive integer"),
        Knob("timeout", None, BOTH, _opt_float, "PARAMSURVEY_TIMEOUT", "a number of seconds"),
        Knob("retries", 0, BOTH, _int, "PARAMSURVEY_RETRIES", "a non-negative integer"),
        Knob("journal", None, BOTH, _opt_str, "PARAMSURVEY_JOURNAL", "a file path"),
        Knob("carbon_server", None, BOTH, _opt_str),
        Knob("carbon_port", 2004, BOTH, _int),
        Knob("carbon_prefix", "paramsurvey", BOTH, str),
        # per-worker set-up: initializer(*initargs) once in every worker process
        Knob("initializer", None, INIT),
        Knob("initargs", (), INIT),
        # map() only
        Knob("out_func", None, MAP),
        Knob("user_kwargs", None, MAP),
        Knob("chdir", None, MAP, _opt_str),
        Knob("out_subdirs", None, MAP, _opt_int),
        Knob("progress_dt", None, MAP, _opt_float),
        Knob("name", "default", MAP, str),
        Knob("keep_results", True, MAP, _bool),
        Knob("seed", 0, MAP, _int),
        Knob("rerun_failed", True, MAP, _bool),
        Knob("extend_journal", False, MAP, _bool),
    )
}


@dataclass(frozen=True)
class Settings:
    """Every setting of one map(), resolved. Built by :func:`resolve`, never mutated."""

    backend: str = "multiprocessing"
    verbose: int = 1
    vstats: int = 1
    limit: int = 0
    ncores: int | None = None
    max_tasks_per_child: int | None = None
    group_size: int | None = None
    timeout: float | None = None
    retries: int = 0
    journal: str | None = None
    carbon_server: str | None = None
    carbon_port: int = 2004
    carbon_prefix: str = "paramsurvey"
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    out_func: Callable[..., Any] | None = None
    user_kwargs: Any = None
    chdir: str | None = None
    out_subdirs: int | None = None
    progress_dt: float | None = None
    name: str = "default"
    keep_results: bool = True
    seed: int = 0
    rerun_failed: bool = True
    extend_journal: bool = False
    # the dict given as ray={...} / dask={...} / multiprocessing={...} for the chosen backend,
    # init()'s updated by map()'s
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    # PARAMSURVEY_* variables that were in force, for the logfile and journal provenance
    env_used: Mapping[str, str] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _check_unknown(kwargs: Mapping[str, Any], where: str) -> None:
    for key in kwargs:
        if key not in KNOBS and key not in BACKENDS:
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}")


def split_init_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check init()'s kwargs: unknown names are a TypeError, map-only names a ValueError."""
    _check_unknown(kwargs, "init")
    for key in kwargs:
        if key in KNOBS and KNOBS[key].scope == MAP:
            raise ValueError(f"{key} is an argument of map(), not of init()")
    return dict(kwargs)


def check_map_kwargs(kwargs: Mapping[str, Any]) -> None:
    _check_unknown(kwargs, "map")
    for key in kwargs:
        if key in KNOBS and KNOBS[key].scope == INIT:
            raise ValueError(f"{key} can only be passed to init(), not to map()")


def _from_env(knob: Knob, environ: Mapping[str, str]) -> tuple[bool, Any]:
    if knob.env is None:
        return False, None
    raw = environ.get(knob.env)
    if raw is None or raw.strip() == "":
        return False, None
    assert knob.kind is not None
    try:
        return True, knob.kind(raw.strip())
    except (TypeError, ValueError):
        raise ValueError(
            f"environment variable {knob.env}={raw!r} is not valid: expected {knob.form}"
        ) from None


def resolve(init_kwargs: Mapping[str, Any], map_kwargs: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> Settings:
    """Build the Settings of one map(): env > map kwarg > init kwarg > default."""
    environ = os.environ if environ is None else environ
    map_kwargs = map_kwargs or {}
    values: dict[str, Any] = {}
    env_used: dict[str, str] = {}
    for name, knob in KNOBS.items():
        found, value = _from_env(knob, environ)
        if found:
            assert knob.env is not None
            env_used[knob.env] = environ[knob.env]
        elif name in map_kwargs and map_kwargs[name] is not None:
            value = map_kwargs[name]
        elif name in init_kwargs and init_kwargs[name] is not None:
            value = init_kwargs[name]
        else:
            value = knob.default
        values[name] = value
    _validate(values)
    backend = values["backend"]
    options: dict[str, Any] = {}
    for source in (init_kwargs, map_kwargs):
        given = source.get(backend)
        if given is not None:
            if not isinstance(given, Mapping):
                raise TypeError(f"{backend}= must be a dict of options for the {backend} backend")
            options.update(given)
    return Settings(**values, backend_options=options, env_used=env_used)


def _validate(v: dict[str, Any]) -> None:
    if v["backend"] not in BACKENDS:
        raise ValueError(f"unknown backend {v['backend']!r}: choose one of {', '.join(BACKENDS)}")
    for name in ("verbose", "vstats", "limit", "retries", "carbon_port", "seed"):
        try:
            v[name] = _int(v[name])
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an integer, not {v[name]!r}") from None
    for name in ("verbose", "vstats", "retries"):
        if v[name] < 0:
            raise ValueError(f"{name} must be >= 0, not {v[name]}")
    for name in ("ncores", "max_tasks_per_child", "group_size", "out_subdirs"):
        if v[name] is not None:
            try:
                v[name] = _int(v[name])
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be an integer or None, not {v[name]!r}") from None
    for name in ("max_tasks_per_child", "group_size", "out_subdirs"):
        if v[name] is not None and v[name] <= 0:
            raise ValueError(f"{name} must be a positive integer, not {v[name]}")
    for name in ("timeout", "progress_dt"):
        if v[name] is not None:
            try:
                v[name] = float(v[name])
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be a number of seconds, not {v[name]!r}") from None
            if not v[name] > 0:
                raise ValueError(f"{name} must be > 0 seconds, not {v[name]}")
    if v["out_func"] is not None and not callable(v["out_func"]):
        raise TypeError(f"out_func must be callable, not {type(v['out_func']).__name__}")
    if v["chdir"] is not None:
        v["chdir"] = os.path.abspath(os.fspath(v["chdir"]))
        if not os.path.isdir(v["chdir"]):
            raise ValueError(f"chdir={v['chdir']!r} is not a directory")
    if v["journal"] is not None:
        v["journal"] = os.path.abspath(os.fspath(v["journal"]))
    v["carbon_prefix"] = str(v["carbon_prefix"] or "paramsurvey").rstrip(".")
    v["name"] = str(v["name"])
