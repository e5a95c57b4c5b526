"""Settings: every knob of init() and map(), resolved once, in one place.

Precedence: environment variable > map() kwarg > init() kwarg > default.
An environment value is converted to the knob's type; one that does not convert is an ArgumentError
(a ValueError) naming the variable and the accepted form. An empty variable is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ArgumentError, ArgumentTypeError

# slurm, pbs, sge, lsf: Dask workers in batch jobs of that scheduler (backends/jobqueue.py)
BACKENDS = ("multiprocessing", "ray", "dask", "serial", "slurm", "pbs", "sge", "lsf")

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
        raise ArgumentError("a bool is not an int")
    if isinstance(value, float) and not value.is_integer():
        raise ArgumentError("not a whole number")
    return int(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else os.fspath(value)


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _bool(value: Any) -> bool:
    """A real bool, or one of the environment's true/false words. Anything else (``'no'`` given as
    a kwarg would be truthy in Python) is refused rather than guessed."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ArgumentError("not a boolean")
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
             "a positive integer (0: unlimited)"),
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
        # the hidden logfile: its name's prefix, or an open text stream to log to instead (0.4.x's)
        Knob("pslogger_prefix", ".paramsurvey-", INIT),
        Knob("pslogger_fd", None, INIT),
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
    pslogger_prefix: str = ".paramsurvey-"
    pslogger_fd: Any = None
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


# The multiprocessing and serial backends take no options of their own. 0.4.x handed its
# multiprocessing={...} dict to multiprocessing.Pool() at init(); the Pool arguments that have an
# equivalent here are accepted and resolved to that setting (init() only, as in 0.4.x, whose map()
# refused any multiprocessing option). Any other key would be silently ignored, so it is an error.
POOL_ALIASES = {"initializer": "initializer", "initargs": "initargs",
                "maxtasksperchild": "max_tasks_per_child", "processes": "ncores"}
OWN_OPTIONS: dict[str, Mapping[str, str]] = {"multiprocessing": POOL_ALIASES, "serial": {}}


def _check_unknown(kwargs: Mapping[str, Any], where: str) -> None:
    for key in kwargs:
        if key not in KNOBS and key not in BACKENDS:
            raise ArgumentTypeError(f"{where}() got an unexpected keyword argument {key!r}")


def _check_own_options(kwargs: Mapping[str, Any], where: str) -> None:
    """The multiprocessing= and serial= dicts: every key must mean something, before any work."""
    for backend, aliases in OWN_OPTIONS.items():
        given = kwargs.get(backend)
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ArgumentTypeError(f"{backend}= must be a dict of options for the {backend} backend, "
                            f"not {type(given).__name__}")
        for key in given:
            if key not in aliases:
                accepted = ", ".join(map(repr, aliases)) if aliases else "no options"
                raise ArgumentTypeError(f"{where}() got an unexpected key {key!r} in {backend}={{...}}: "
                                f"the {backend} backend takes {accepted}")
            if where == "map":
                raise ArgumentError(f"{backend}={{{key!r}: ...}} can only be passed to init(), not to map()")


def split_init_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Check init()'s kwargs: unknown names are a TypeError, map-only names a ValueError."""
    _check_unknown(kwargs, "init")
    for key in kwargs:
        if key in KNOBS and KNOBS[key].scope == MAP:
            raise ArgumentError(f"{key} is an argument of map(), not of init()")
    _check_own_options(kwargs, "init")
    return dict(kwargs)


def check_map_kwargs(kwargs: Mapping[str, Any]) -> None:
    _check_unknown(kwargs, "map")
    for key in kwargs:
        if key in KNOBS and KNOBS[key].scope == INIT:
            raise ArgumentError(f"{key} can only be passed to init(), not to map()")
    _check_own_options(kwargs, "map")


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
        raise ArgumentError(
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
    backend = values["backend"]
    options: dict[str, Any] = {}
    for source in (init_kwargs, map_kwargs):
        given = source.get(backend)
        if given is not None:
            if not isinstance(given, Mapping):
                raise ArgumentTypeError(f"{backend}= must be a dict of options for the {backend} backend")
            options.update(given)
    if backend == "multiprocessing":
        _fold_pool_options(values, init_kwargs, options, env_used)
    _validate(values, env_used)
    return Settings(**values, backend_options=options, env_used=env_used)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a is b or a == b


def _fold_pool_options(values: dict[str, Any], init_kwargs: Mapping[str, Any], options: dict[str, Any],
                       env_used: Mapping[str, str]) -> None:
    """0.4.x's multiprocessing={'initializer': ..., 'processes': ...} become the settings they mean;
    the same setting given both ways, differently, is an error rather than a silent choice."""
    for key, target in POOL_ALIASES.items():
        if key not in options:
            continue
        given = options.pop(key)
        explicit = init_kwargs.get(target)
        if explicit is not None and given is not None and not _same(explicit, given):
            raise ArgumentError(f"{target}={explicit!r} and multiprocessing={{{key!r}: {given!r}}} disagree: "
                             "give one of them")
        knob = KNOBS[target]
        if given is not None and not (knob.env is not None and knob.env in env_used):
            values[target] = given


# Allowed ranges, and why: verbose and vstats have four levels (0.4.x's); a TCP port is 1-65535.
INT_RANGES = {"verbose": (0, 3), "vstats": (0, 3), "carbon_port": (1, 65535)}


def _named(name: str, value: Any, env_used: Mapping[str, str]) -> str:
    """How the culprit was given: the environment variable when it came from there."""
    env = KNOBS[name].env
    if env is not None and env in env_used:
        return f"environment variable {env}={env_used[env]!r}"
    return f"{name}={value!r}"


def _validate(v: dict[str, Any], env_used: Mapping[str, str] | None = None) -> None:
    env_used = env_used or {}
    if v["backend"] not in BACKENDS:
        raise ArgumentError(f"unknown backend {v['backend']!r}: choose one of {', '.join(BACKENDS)}")
    for name in ("verbose", "vstats", "limit", "retries", "carbon_port", "seed"):
        try:
            v[name] = _int(v[name])
        except (TypeError, ValueError):
            raise ArgumentTypeError(f"{name} must be an integer, not {v[name]!r}") from None
    for name, (low, high) in INT_RANGES.items():
        if not low <= v[name] <= high:
            raise ArgumentError(f"{_named(name, v[name], env_used)} is out of range: {name} must be "
                             f"{low}-{high}")
    if v["retries"] < 0:
        raise ArgumentError(f"retries must be >= 0, not {v['retries']}")
    for name in ("ncores", "max_tasks_per_child", "group_size", "out_subdirs"):
        if v[name] is not None:
            try:
                v[name] = _int(v[name])
            except (TypeError, ValueError):
                raise ArgumentTypeError(f"{name} must be an integer or None, not {v[name]!r}") from None
    if v["max_tasks_per_child"] == 0:  # 0.4.x's spelling of "never replace a worker"
        v["max_tasks_per_child"] = None
    for name in ("max_tasks_per_child", "group_size", "out_subdirs"):
        if v[name] is not None and v[name] <= 0:
            raise ArgumentError(f"{name} must be a positive integer, not {v[name]}")
    _validate_seconds(v)
    for name in ("keep_results", "rerun_failed", "extend_journal"):
        v[name] = _real_bool(name, v[name])
    if v["out_func"] is not None and not callable(v["out_func"]):
        raise ArgumentTypeError(f"out_func must be callable, not {type(v['out_func']).__name__}")
    _validate_initializer(v)
    _validate_paths(v)
    _validate_logger(v)
    # None (not given) is the default prefix; '' is no prefix at all: paths are <name>.<counter>
    v["carbon_prefix"] = str(v["carbon_prefix"]).rstrip(".")
    v["name"] = str(v["name"])


def _validate_seconds(v: dict[str, Any]) -> None:
    for name in ("timeout", "progress_dt"):
        if v[name] is not None:
            try:
                v[name] = float(v[name])
            except (TypeError, ValueError):
                raise ArgumentTypeError(f"{name} must be a number of seconds, not {v[name]!r}") from None
    if v["timeout"] is not None and not v["timeout"] > 0:
        raise ArgumentError(f"timeout must be > 0 seconds, not {v['timeout']}")
    # progress_dt=0 is 0.4.x's "report on every change" (still throttled by the progress module)
    if v["progress_dt"] is not None and not v["progress_dt"] >= 0:
        raise ArgumentError(f"progress_dt must be >= 0 seconds, not {v['progress_dt']}")


def _real_bool(name: str, value: Any) -> bool:
    # a string such as 'no' is truthy in Python: guessing would do the opposite of what was meant
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        return bool(value)
    raise ArgumentTypeError(f"{name} must be True or False, not {value!r}")


def _validate_initializer(v: dict[str, Any]) -> None:
    if v["initializer"] is not None and not callable(v["initializer"]):
        raise ArgumentTypeError(f"init(initializer=...) must be callable, not {type(v['initializer']).__name__}")
    if not isinstance(v["initargs"], (tuple, list)):
        raise ArgumentTypeError("init(initargs=...) must be a tuple or list of the initializer's arguments, "
                        f"not {type(v['initargs']).__name__}")
    v["initargs"] = tuple(v["initargs"])


def _validate_paths(v: dict[str, Any]) -> None:
    if v["chdir"] is not None:
        v["chdir"] = os.path.abspath(os.fspath(v["chdir"]))
        if not os.path.isdir(v["chdir"]):
            raise ArgumentError(f"chdir={v['chdir']!r} is not a directory")
    if v["journal"] is not None:
        if not os.fspath(v["journal"]).strip():
            # abspath('') is the current directory, which would become a journal
            raise ArgumentError(f"journal={v['journal']!r} is not a path: give a file path, or None for no journal")
        v["journal"] = os.path.abspath(os.fspath(v["journal"]))


def _validate_logger(v: dict[str, Any]) -> None:
    if not isinstance(v["pslogger_prefix"], (str, os.PathLike)):
        raise ArgumentTypeError(f"pslogger_prefix must be a string, not {type(v['pslogger_prefix']).__name__}")
    v["pslogger_prefix"] = os.fspath(v["pslogger_prefix"])
    if v["pslogger_fd"] is not None and not callable(getattr(v["pslogger_fd"], "write", None)):
        raise ArgumentTypeError(f"pslogger_fd must be an open text stream (with write()), "
                        f"not {type(v['pslogger_fd']).__name__}")
