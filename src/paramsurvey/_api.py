"""init(), map(), finalize() and friends: resolve settings, run a Survey, return MapResults.

The one piece of module state is the current session: the init() kwargs, the started backend and
the lock that lets one map() run at a time. A child made by os.fork() forgets the parent's backend
(it is the parent's to stop) and starts its own if it calls map().
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import _config, _logfile
from ._config import Settings
from ._engine import Survey, refuse_unsupported
from ._psets import PsetSource
from ._results import MapResults
from .backends import backend_class, create
from .backends.base import THREADS_SET_BY_PARAMSURVEY, Backend
from .exceptions import ArgumentTypeError, UsageError

log = logging.getLogger("paramsurvey")


# 0.4.x's words, kept so that a search of old logs finds them. Numeric libraries in the driver and in
# the programs it starts otherwise start a thread per core in every process.
OMP_NOTICE = 'paramsurvey warning: OMP_NUM_THREADS undefined, setting it to "1" to prevent foot-cannon'


class _Session:
    def __init__(self) -> None:
        self.init_kwargs: dict[str, Any] = {}
        self.backend: Backend | None = None
        self.atexit_registered = False
        # one map() at a time: the backend, the logfile's verbosity and Ctrl-C handling are per process
        self.map_lock = threading.Lock()


_session = _Session()
# Backends a forked child inherited: kept referenced so that nothing (a finalizer, the garbage
# collector) ever stops them from the child; they are the parent's.
_inherited_backends: list[Backend] = []


def _forget_parent_session() -> None:
    """os.fork() child: the parent's backend, map lock and logfile are not this process's."""
    if _session.backend is not None:
        _inherited_backends.append(_session.backend)
        _session.backend = None  # init_kwargs stay: the child's own backend gets the same settings
    _session.map_lock = threading.Lock()  # a map running in another parent thread is not ours
    _logfile.forget_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_parent_session)


def init(**kwargs: Any) -> None:
    """Start paramsurvey on a backend.

    Parameters
    ----------
    backend : {'multiprocessing', 'ray', 'dask', 'serial', 'slurm', 'pbs', 'sge', 'lsf'}, default 'multiprocessing'
    verbose, vstats, limit, ncores, max_tasks_per_child, group_size, timeout, retries, journal,
    carbon_server, carbon_port, carbon_prefix
        See the README; each but the carbon ones has a ``PARAMSURVEY_*`` environment variable,
        which wins over any argument.
    initializer, initargs : callable, tuple
        ``initializer(*initargs)`` runs once in every worker process, before its first pset.
    pslogger_prefix : str, default '.paramsurvey-'
        The hidden logfile is ``<prefix>YYYYMMDD-HHMMSS.log``.
    pslogger_fd : open text stream, optional
        Write the run's log there instead of a hidden logfile.
    ray, dask, slurm, pbs, sge, lsf, multiprocessing, serial : dict
        Options for that backend alone (ignored by the others). ``multiprocessing`` takes 0.4.x's
        Pool arguments ``initializer``, ``initargs``, ``maxtasksperchild``, ``processes``.

    Calling init() again with the same backend updates the settings; with another backend it is an
    error unless finalize() came first. init() sets ``OMP_NUM_THREADS=1`` in this process's
    environment when it is unset, as 0.4.x did.

    Example
    -------
    >>> import paramsurvey
    >>> paramsurvey.init(backend='serial', verbose=0)
    """
    kwargs = _config.split_init_kwargs(kwargs)
    # init() again: the new kwargs update the earlier ones
    merged = {**_session.init_kwargs, **kwargs} if _session.backend is not None else kwargs
    settings = _config.resolve(merged)
    if _session.backend is not None and _session.backend.name != settings.backend:
        raise UsageError(f"paramsurvey is already initialized with the {_session.backend.name} backend; "
                           f"call paramsurvey.finalize() before init(backend={settings.backend!r})")
    refuse_unsupported(backend_class(settings.backend), settings, at_init=True)
    _logfile.set_verbose(settings.verbose)  # first: verbose=0 must silence the logfile's own notices
    _logfile.open_logfile(settings.env_used, settings.pslogger_prefix, settings.pslogger_fd)
    _limit_omp_threads()
    if _session.backend is not None:
        _session.backend.update_settings(settings)  # first: settings it refuses must not stick
        _session.init_kwargs = merged
        log.info("paramsurvey: init() again: settings updated", extra={"ps_verbose": 2})
        return
    backend = create(settings)
    log.info("paramsurvey: starting the %s backend", settings.backend, extra={"ps_verbose": 2})
    backend.start()
    _session.init_kwargs = kwargs
    _session.backend = backend
    if not _session.atexit_registered:
        atexit.register(finalize)
        _session.atexit_registered = True


def _limit_omp_threads() -> None:
    """0.4.x's OMP_NUM_THREADS=1 in the driver, so what the program starts later inherits it. Ray and
    Dask tasks still get their own cores' worth: the backends tell this value from one the user set."""
    if "OMP_NUM_THREADS" not in os.environ:
        log.info(OMP_NOTICE, extra={"ps_verbose": 2})
        os.environ["OMP_NUM_THREADS"] = "1"
        THREADS_SET_BY_PARAMSURVEY["OMP_NUM_THREADS"] = "1"


def finalize() -> None:
    """Stop the backend and everything it started (worker processes, a local Ray or Dask).

    Safe to call twice; called at interpreter exit. init() may follow to start again.
    """
    backend, _session.backend = _session.backend, None
    _session.init_kwargs = {}
    try:
        if backend is not None:
            backend.shutdown()
    finally:
        _logfile.close_logfile()  # the run is over: its logfile gets its end time


def _current() -> Backend:
    if _session.backend is None:
        init(**_session.init_kwargs)  # the defaults; in a forked child, the parent's init() settings
    assert _session.backend is not None
    return _session.backend


def backend() -> str | None:
    """The name of the backend in use, or None before init()."""
    return _session.backend.name if _session.backend is not None else None


def current_core_count() -> int:
    """Cores the survey can use now (a Ray or Dask cluster's live count)."""
    return _current().core_count()


def current_resources() -> list[dict[str, Any]]:
    """A dict per node: ``num_cores``, ``num_gpus``, ``memory`` (bytes)."""
    return _current().resources()


def map(func: Callable[..., Any], psets: Any, **kwargs: Any) -> MapResults:
    """Run ``func(pset, system_kwargs, user_kwargs)`` once for each pset, in parallel.

    Parameters
    ----------
    func : callable
        Returns a dict (its keys become result columns) or None. A function of a module, of
        ``__main__``, a lambda, a closure or a functools.partial.
    psets : list of dicts, DataFrame, dict of equal-length lists, or iterable of dicts
    out_func, user_kwargs, chdir, out_subdirs, progress_dt, group_size, name, keep_results, verbose,
    vstats, limit, timeout, retries, journal, seed, carbon_server, carbon_port, carbon_prefix
        See the README.

    Returns
    -------
    MapResults

    Example
    -------
    >>> import paramsurvey
    >>> paramsurvey.init(backend='serial', verbose=0)
    >>> r = paramsurvey.map(lambda p, s, u: {'y': 2 * p['x']}, [{'x': 1}, {'x': 2}])
    >>> list(r.results['y'])
    [2, 4]
    """
    if not callable(func):
        raise ArgumentTypeError(f"the worker function must be callable, not {type(func).__name__}")
    _config.check_map_kwargs(kwargs)
    if not _session.map_lock.acquire(blocking=False):
        raise UsageError("paramsurvey.map() is already running in this process (another thread, or an "
                           "out_func): one map() at a time; call it again once that one has returned")
    try:
        return _map(func, psets, kwargs)
    finally:
        _session.map_lock.release()


def _map(func: Callable[..., Any], psets: Any, kwargs: dict[str, Any]) -> MapResults:
    backend = _current()
    settings = _config.resolve({**_session.init_kwargs, "backend": backend.name}, kwargs)
    refuse_unsupported(backend, settings)
    sys.stdout.flush()
    sys.stderr.flush()
    _logfile.set_verbose(settings.verbose)
    with _warnings_to_log(settings.verbose):
        source = PsetSource(psets, settings.limit)
        return _run(backend, settings, func, source)


def _run(backend: Backend, settings: Settings, func: Callable[..., Any], source: PsetSource) -> MapResults:
    journal = None
    todo = None
    if settings.journal is not None:
        from .journal import open_for_map

        journal, todo, done = open_for_map(settings, source)
    carbon = _carbon_for(settings)
    try:
        survey = Survey(backend, settings, func, source, todo=todo, journal=journal, carbon=carbon)
        if journal is not None:
            survey.adopt(done)
        return survey.run()
    finally:
        if journal is not None:  # already closed by the engine, unless the map failed: then write what finished
            journal.close()
            journal.wait()  # the last write, done while the engine assembled the results
        if carbon is not None:
            carbon.close()


@contextmanager
def _warnings_to_log(verbose: int) -> Iterator[None]:
    """verbose=0 prints nothing at all: a warning raised in the driver during the map (pandas while
    assembling results, an out_func) goes to the hidden logfile instead of stderr."""
    if verbose > 0:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            for w in caught:
                log.warning("%s:%s: %s: %s", w.filename, w.lineno, w.category.__name__, w.message)


def _carbon_for(settings: Settings) -> Any:
    if not settings.carbon_server:
        return None
    from ._carbon import CarbonSender

    return CarbonSender(settings.carbon_server, settings.carbon_port, settings.carbon_prefix)


__all__ = ["backend", "current_core_count", "current_resources", "finalize", "init", "map"]
