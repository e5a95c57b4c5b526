"""What ``init(slurm={...})`` (and ``pbs=``, ``sge=``, ``lsf=``) may hold, checked before any job
is submitted, and the dask-jobqueue cluster keyword arguments it becomes.

paramsurvey's own options have the names users of the batch system know (``partition``,
``account``, ``walltime``...); any other keyword of the dask-jobqueue cluster class (or of its job
class) passes through unchanged. A key that is neither is an error naming it: dask-jobqueue itself
would take a misspelt keyword into ``**kwargs`` and fail later, or never.
"""

from __future__ import annotations

import inspect
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ArgumentError, ArgumentTypeError

# paramsurvey's options; each maps to a dask-jobqueue keyword (or to paramsurvey's own behaviour)
OWN_KEYS = ("jobs", "minimum_jobs", "maximum_jobs", "cores", "memory", "walltime", "partition", "account",
            "job_extra", "env", "pending_timeout", "lifetime", "check_request")
# dask-jobqueue keywords that paramsurvey's options set: giving them directly would be ambiguous
RENAMED = {"queue": "partition", "job_extra_directives": "job_extra", "job_script_prologue": "env",
           "env_extra": "env", "n_workers": "jobs", "project": "account"}
# keywords of the classes' signatures that are the classes' own plumbing, not options
PLUMBING = frozenset({"self", "scheduler", "name", "config_name", "job_cls", "loop", "asynchronous",
                      "args", "kwargs", "base_class_kwargs", "job_kwargs"})
# One worker process per core, each single-threaded: psets are Python, which holds the GIL.
THREADS_PER_WORKER = 1
# Memory per core when neither the option nor dask-jobqueue's configuration gives one: a common
# default of HPC partitions.
MEMORY_PER_CORE_GB = 2
# Workers retire this long before their job's walltime (a fraction of it, within bounds), so their
# running psets move elsewhere and the scheduler never kills a worker mid-pset: long enough for a
# worker to stop gracefully, short enough to waste little of the allocation.
RETIRE_FRACTION = 0.1
RETIRE_MIN_SECONDS = 30.0
RETIRE_MAX_SECONDS = 600.0
# ...and each worker's moment is spread by up to a third of that margin either way, so that the
# jobs do not all leave at once.
STAGGER_FRACTION = 1 / 3


@dataclass
class JobOptions:
    """init's dict, checked: how many jobs, when to give up, and the cluster's keywords."""

    minimum_jobs: int
    maximum_jobs: int
    pending_timeout: float | None
    check_request: bool
    job_name: str
    walltime_seconds: float | None
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)


def cluster_keywords(cluster_cls: type) -> set[str]:
    """Every keyword the cluster class (and its job class, which gets the rest) accepts."""
    names: set[str] = set()
    classes = [cluster_cls, *getattr(cluster_cls, "job_cls", object).__mro__]
    for cls in classes:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    return names - PLUMBING


def check_options(system: str, cluster_cls: type, options: Mapping[str, Any]) -> JobOptions:
    """The checked options, or an error naming the culprit."""
    if not isinstance(options, Mapping):
        raise ArgumentTypeError(f"{system}= must be a dict of options, not {type(options).__name__}")
    _refuse_unknown(system, cluster_cls, options)
    minimum, maximum = _job_counts(system, options)
    config = _config_of(cluster_cls)
    cores = _positive_int(system, options, "cores", config.get("cores") or 1)
    memory = options.get("memory") or config.get("memory") or f"{MEMORY_PER_CORE_GB * cores}GB"
    _check_memory(system, memory)
    walltime = options.get("walltime") or config.get("walltime")
    walltime_seconds = parse_walltime(system, walltime) if walltime else None
    pending_timeout = _opt_positive(system, options, "pending_timeout")
    check_request = options.get("check_request", True)
    if not isinstance(check_request, bool):
        raise ArgumentTypeError(f"{system}={{'check_request': ...}} must be True or False, not {check_request!r}")
    passed = {k: v for k, v in options.items() if k not in OWN_KEYS}
    # unique, so that our jobs are found in the queue by name (and cancelled by it, even after
    # the driver's death); the user's own name stays in front
    job_name = f"{passed.pop('job_name', None) or 'paramsurvey'}-{secrets.token_hex(4)}"
    kwargs: dict[str, Any] = {"processes": cores // THREADS_PER_WORKER, **passed, "cores": cores,
                              "memory": memory, "job_name": job_name}
    kwargs.setdefault("python", sys.executable)
    # the scheduler runs in the driver, often on a shared login node: any free dashboard port
    kwargs["scheduler_options"] = {"dashboard_address": ":0", **(kwargs.get("scheduler_options") or {})}
    if walltime:
        kwargs["walltime"] = walltime
    _set_if_given(kwargs, "queue", options.get("partition"))
    _set_if_given(kwargs, "account" if "account" in cluster_keywords(cluster_cls) else "project",
                  options.get("account"))
    _set_if_given(kwargs, "job_extra_directives", _lines(system, options, "job_extra", strip="#"))
    _set_if_given(kwargs, "job_script_prologue", _lines(system, options, "env"))
    lifetime = _opt_positive(system, options, "lifetime")
    kwargs["worker_extra_args"] = _with_lifetime(list(kwargs.get("worker_extra_args") or []), lifetime,
                                                 walltime_seconds)
    return JobOptions(minimum, maximum, pending_timeout, check_request, job_name, walltime_seconds, kwargs)


def _refuse_unknown(system: str, cluster_cls: type, options: Mapping[str, Any]) -> None:
    accepted = cluster_keywords(cluster_cls)
    renamed = sorted(str(k) for k in options if k in RENAMED)
    if renamed:
        hints = ", ".join(f"{k!r} -> {RENAMED[k]!r}" for k in renamed)
        raise ArgumentTypeError(f"{system}={{...}}: give paramsurvey's name for {renamed}: {hints}")
    unknown = sorted(str(k) for k in options if k not in OWN_KEYS and k not in accepted)
    if unknown:
        raise ArgumentTypeError(
            f"unknown {system} option(s) {unknown}: {system}={{...}} takes {list(OWN_KEYS)} and the keywords "
            f"of dask-jobqueue's {cluster_cls.__name__} ({', '.join(sorted(accepted - set(RENAMED)))})")


def _job_counts(system: str, options: Mapping[str, Any]) -> tuple[int, int]:
    given = {k for k in ("jobs", "minimum_jobs", "maximum_jobs") if options.get(k) is not None}
    if "jobs" in given and given != {"jobs"}:
        raise ArgumentError(f"{system}={{...}}: give 'jobs' (a fixed number) or 'minimum_jobs'/'maximum_jobs' "
                            "(adaptive), not both")
    if "jobs" in given or not given:
        jobs = _positive_int(system, options, "jobs", 1)
        return jobs, jobs
    minimum = _int(system, options, "minimum_jobs", 0)
    maximum = _positive_int(system, options, "maximum_jobs", max(1, minimum))
    if minimum < 0 or minimum > maximum:
        raise ArgumentError(f"{system}={{...}}: minimum_jobs={minimum} must be 0 to maximum_jobs={maximum}")
    return minimum, maximum


def _int(system: str, options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{system}={{{key!r}: ...}} must be an integer, not {value!r}")
    return value


def _positive_int(system: str, options: Mapping[str, Any], key: str, default: int) -> int:
    value = _int(system, options, key, default)
    if value < 1:
        raise ArgumentError(f"{system}={{{key!r}: {value!r}}} must be at least 1")
    return value


def _opt_positive(system: str, options: Mapping[str, Any], key: str) -> float | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{system}={{{key!r}: ...}} must be a number of seconds, not {value!r}")
    if value <= 0:
        raise ArgumentError(f"{system}={{{key!r}: {value!r}}} must be more than 0 seconds")
    return float(value)


def _check_memory(system: str, memory: Any) -> None:
    from dask.utils import parse_bytes

    try:
        parse_bytes(memory)
    except (TypeError, ValueError):
        raise ArgumentError(f"{system}={{'memory': {memory!r}}} is not an amount of memory such as '4GB'") from None


def _lines(system: str, options: Mapping[str, Any], key: str, strip: str = "") -> list[str] | None:
    """A list of lines (or one string of lines); ``strip``: a directive prefix such as '#SBATCH'
    that users may write and dask-jobqueue adds itself."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ArgumentTypeError(f"{system}={{{key!r}: ...}} must be a list of strings, not {value!r}")
    lines = [v.strip() for v in value if v.strip()]
    if strip:  # '#SBATCH --qos=low' and '--qos=low' both mean the directive --qos=low
        lines = [re.sub(r"^#\s*[A-Z$]+\s+", "", v) for v in lines]
    return lines


def _set_if_given(kwargs: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        kwargs[key] = value


def _config_of(cluster_cls: type) -> dict[str, Any]:
    """dask-jobqueue's configuration for this system (a site's jobqueue.yaml): its defaults stand
    where the user gave none."""
    import dask

    name = getattr(getattr(cluster_cls, "job_cls", None), "config_name", None)
    try:
        return dict(dask.config.get(f"jobqueue.{name}", default={}) or {})
    except Exception:
        return {}


WALLTIME_FORMS = "minutes, 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS'"


def parse_walltime(system: str, walltime: Any) -> float:
    """Seconds of a walltime written as Slurm (and PBS, SGE) take it."""
    text = str(walltime).strip()
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            raise ArgumentError(f"{system}={{'walltime': {walltime!r}}}: expected {WALLTIME_FORMS}")
        days = int(head)
        parts = text.split(":")  # after a day count: hours first
        units = [3600, 60, 1][: len(parts)]
    else:
        parts = text.split(":")
        units = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}.get(len(parts), [])
    if not units or len(units) != len(parts) or not all(p.isdigit() for p in parts):
        raise ArgumentError(f"{system}={{'walltime': {walltime!r}}}: expected {WALLTIME_FORMS}")
    seconds = days * 86400 + sum(int(p) * u for p, u in zip(parts, units, strict=True))
    if seconds <= 0:
        raise ArgumentError(f"{system}={{'walltime': {walltime!r}}} must be more than 0")
    return float(seconds)


def retirement(walltime_seconds: float) -> tuple[float, float]:
    """(lifetime, stagger) in seconds for workers of jobs of this walltime."""
    margin = min(max(walltime_seconds * RETIRE_FRACTION, RETIRE_MIN_SECONDS), RETIRE_MAX_SECONDS)
    margin = min(margin, walltime_seconds / 2)  # a very short walltime: still half of it to work
    return walltime_seconds - margin, margin * STAGGER_FRACTION


def _with_lifetime(args: list[str], lifetime: float | None, walltime_seconds: float | None) -> list[str]:
    """The worker's command-line arguments, with ``--lifetime`` (unless the user gave one)."""
    if any(a.startswith("--lifetime") for a in args):
        return args
    if lifetime is not None:
        return [*args, "--lifetime", f"{round(lifetime)}s"]
    if walltime_seconds is None:
        return args
    life, stagger = retirement(walltime_seconds)
    return [*args, "--lifetime", f"{round(life)}s", "--lifetime-stagger", f"{round(stagger)}s"]
