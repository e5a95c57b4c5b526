"""Small helpers for users and for the package: memory, usable cores, a command-line worker."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

__all__ = ["subprocess_run_worker", "usable_cores", "vmem"]


def vmem() -> float:
    """The calling process's resident memory, in GB.

    Example
    -------
    >>> from paramsurvey.utils import vmem
    >>> vmem() > 0
    True
    """
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**30
    except Exception:  # pragma: no cover - psutil is a dependency; keep a fallback anyway
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / (2**30 if sys.platform == "darwin" else 2**20)


def _cgroup_cpu_limit() -> float | None:
    # cgroup v2, then v1: a CPU quota (containers, batch jobs) caps what "all cores" means
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may use: CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


def resolve_ncores(ncores: int | None) -> int:
    """The worker count ncores asks for: None or 0 = all usable cores; negative = leave that many free
    (at least 1 worker)."""
    usable = usable_cores()
    if not ncores:
        return usable
    if ncores < 0:
        return max(1, usable + ncores)
    return ncores


def subprocess_run_worker(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """A worker that runs one command line per pset: ``pset['run_args']`` (a list, or a string with
    ``shell=True``), with ``subprocess.run`` keyword arguments from ``pset['run_kwargs']`` or else
    ``user_kwargs['run_kwargs']``. Returns ``{'cli': CompletedProcess}``.

    Example
    -------
    >>> psets = [{'run_args': ['echo', str(i)]} for i in range(3)]
    >>> # paramsurvey.map(subprocess_run_worker, psets,
    >>> #                 user_kwargs={'run_kwargs': {'stdout': subprocess.PIPE, 'encoding': 'utf-8'}})
    """
    if "run_args" not in pset:
        raise ValueError("run_args key not found in pset")
    run_kwargs: dict[str, Any] = {}
    if "run_kwargs" in pset:
        run_kwargs = pset["run_kwargs"]
    elif user_kwargs:
        run_kwargs = user_kwargs.get("run_kwargs", {})
    try:
        ret = subprocess.run(pset["run_args"], **run_kwargs)
    except FileNotFoundError:
        if not run_kwargs.get("shell", False) and isinstance(pset["run_args"], str) and " " in pset["run_args"]:
            raise FileNotFoundError(
                f"{pset['run_args']!r}: a command string with spaces needs run_kwargs={{'shell': True}} "
                "or a list of arguments") from None
        raise
    return {"cli": ret}
