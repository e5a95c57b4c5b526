"""init(), map(), finalize() and friends: resolve settings, run a Survey, return MapResults.

The one piece of module state is the current session: the init() kwargs and the started backend.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import _config, logfile
from ._config import Settings
from ._engine import Survey
from ._psets import PsetSource
from .backends import create
from .backends.base import TIMEOUT, Backend
from .results import MapResults

log = logging.getLogger("paramsurvey")


class _Session:
    def __init__(self) -> None:
        self.init_kwargs: dict[str, Any] = {}
        self.backend: Backend | None = None
        self.atexit_registered = False


_session = _Session()


def init(**kwargs: Any) -> None:
    """Start paramsurvey on a backend.

    Parameters
    ----------
    backend : {'multiprocessing', 'ray', 'dask', 'serial'}, default 'multiprocessing'
    verbose, vstats, limit, ncores, max_tasks_per_child, group_size, timeout, retries, journal,
    carbon_server, carbon_port, carbon_prefix
        See the README; each but the carbon ones has a ``PARAMSURVEY_*`` environment variable,
        which wins over any argument.
    ray, dask, multiprocessing, serial : dict
        Options for that backend alone (ignored by the others).

    Calling init() again with the same backend updates the settings; with another backend it is an
    error unless finalize() came first.

    Example
    -------
    >>> import paramsurvey
    >>> paramsurvey.init(backend='serial', verbose=0)
    """
    kwargs = _config.split_init_kwargs(kwargs)
    settings = _config.resolve(kwargs)
    logfile.open_logfile(settings.env_used)
    logfile.set_verbose(settings.verbose)
    if _session.backend is not None:
        if _session.backend.name != settings.backend:
            raise RuntimeError(f"paramsurvey is already initialized with the {_session.backend.name} backend; "
                               f"call paramsurvey.finalize() before init(backend={settings.backend!r})")
        _session.init_kwargs.update(kwargs)
        _session.backend.update_settings(_config.resolve(_session.init_kwargs))
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
        logfile.close_logfile()  # the run is over: its logfile gets its end time


def _current() -> Backend:
    if _session.backend is None:
        init()
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
        raise TypeError(f"the worker function must be callable, not {type(func).__name__}")
    _config.check_map_kwargs(kwargs)
    backend = _current()
    settings = _config.resolve({**_session.init_kwargs, "backend": backend.name}, kwargs)
    if settings.timeout is not None and TIMEOUT not in backend.capabilities:
        raise ValueError(f"timeout= is not supported by the {backend.name} backend: it cannot stop one pset "
                         "without stopping the survey (use the multiprocessing backend)")
    source = PsetSource(psets, settings.limit)
    sys.stdout.flush()
    sys.stderr.flush()
    logfile.set_verbose(settings.verbose)
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


def _carbon_for(settings: Settings) -> Any:
    if not settings.carbon_server:
        return None
    from .carbon import CarbonSender

    return CarbonSender(settings.carbon_server, settings.carbon_port, settings.carbon_prefix)


__all__ = ["backend", "current_core_count", "current_resources", "finalize", "init", "map"]
