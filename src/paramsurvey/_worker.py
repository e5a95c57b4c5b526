"""What runs inside a worker: call the user's function on each pset of a group, time it, catch what
it raises, and hand back compact records.

Standard library only at import (plus cloudpickle, lazily, to load the function): worker processes
import this module and must start in milliseconds, not in the quarter second pandas takes.

A group's outcome is one ``GroupResult`` (column-major: see ``_records``, where every record that
crosses layers is defined), its failures ``Failure`` records with a ``Status``.

Before a process's first pset, ``ensure_initialized`` runs init()'s initializer once (every
backend). ``serve`` is the multiprocessing worker's loop; after each group it puts back what a
pset may have broken for the next ones (``ProcessGuard``: standard fds, resource limits). How the
result is pickled and checked before it travels: ``_sending``.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import resource
import sys
import threading
import time
import traceback
from array import array
from collections.abc import Sequence
from typing import Any

from ._hashing import seed_for
from ._records import Failure, GroupInterrupted, GroupResult, MapContext, PsetWatch, Status
from ._sending import encode_message
from ._sending import encode_result as encode_result  # the Ray/Dask task's too, reached from here
from ._sending import scrub_unpicklable as scrub_unpicklable

# Psets shorter than this are timed without the (costly) CPU clock: see run_group.
CPU_CLOCK_WORTH = 50e-6
# A Failure made without a Python-level frame (a NamedTuple's own __new__ is one): a pset's
# timeout alarm (backends._task) that lands in a frame not of paramsurvey's own files is raised
# there, and raised in __new__ it would escape the try block that records the pset's failure.
_failure = functools.partial(tuple.__new__, Failure)


class SystemKwargs(dict):  # type: ignore[type-arg]
    """system_kwargs handed to the worker. ``seed`` is computed on first access: hashing every pset
    would cost more than a trivial pset itself, and most workers never ask for it."""

    __slots__ = ("_pset", "_map_seed")
    _pset: dict[str, Any]
    _map_seed: int

    def __missing__(self, key: str) -> Any:
        if key == "seed":
            value = seed_for(self._map_seed, self._pset)
            self["seed"] = value
            return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key == "seed":
            return self["seed"]
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key == "seed" or super().__contains__(key)


class Slot:
    """A shared 2-double slot the driver reads: which pset this worker runs now and since when.

    It lets the driver blame exactly one pset when a worker dies, and enforce per-pset timeouts,
    without a message per pset. ``position`` is -1 when idle, -2 while sending results. The
    multiprocessing worker's ``PsetWatch``: run_group calls ``starting`` as each pset starts.
    """

    IDLE, SENDING = -1.0, -2.0

    def __init__(self, view: Any, timed: bool = True) -> None:  # a memoryview cast to doubles
        self.view = view
        self.timed = timed  # a timeout is set: the driver also reads when each pset started

    def starting(self, position: int) -> None:
        view = self.view
        if self.timed:
            view[1] = time.monotonic()
        view[0] = position + 0.0

    def finished(self) -> None:
        self.view[0] = Slot.IDLE

    def set(self, state: float) -> None:
        self.view[0] = state


class InitializerFailed(Exception):
    """The per-worker initializer raised: no pset can run in this worker. ``message`` names the
    initializer and its error; ``traceback`` is the initializer's."""

    def __init__(self, message: str, tb: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = tb


# The init_key of the initializer that has run in this process (None: none yet). A Dask worker
# runs groups in several threads of one process: the lock makes the others wait for the first.
_initialized_key: str | None = None
_init_lock = threading.Lock()


def ensure_initialized(ctx: MapContext) -> None:
    """Run ``ctx.initializer(*ctx.initargs)`` once in this process for each init_key, before any
    pset of it. Raises InitializerFailed, naming the initializer, if it raises."""
    global _initialized_key
    if ctx.initializer is None or _initialized_key == ctx.init_key:
        return
    with _init_lock:
        if _initialized_key == ctx.init_key:
            return
        try:
            ctx.initializer(*ctx.initargs)
        except KeyboardInterrupt:
            if not ctx.catch_interrupt:  # in the driver: Ctrl-C stops the map, as anywhere else
                raise
            raise _initializer_failed(ctx) from None
        except BaseException:  # SystemExit too: the initializer must not end a driver or a worker
            raise _initializer_failed(ctx) from None
        _initialized_key = ctx.init_key


def _initializer_failed(ctx: MapContext) -> InitializerFailed:
    exc = sys.exc_info()[1]
    return InitializerFailed(f"the initializer {callable_name(ctx.initializer)} raised {exc!r}",
                             traceback.format_exc())


def callable_name(func: Any) -> str:
    """``module.qualname`` of a function (or of a partial's function, or of a callable's class)."""
    if isinstance(func, functools.partial):
        return f"functools.partial({callable_name(func.func)}, ...)"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def _describe_bad_return(ret: Any) -> str:
    text = repr(ret)
    if len(text) > 200:
        text = text[:200] + "..."
    return repr(TypeError(f"worker returned {type(ret).__name__}, not a dict or None: {text}"))


def run_group(ctx: MapContext, positions: Sequence[int], psets: Sequence[dict[str, Any]], attempt: int,
              watch: PsetWatch | None = None) -> GroupResult:
    """Run ctx.func on each pset of one group; never raises for a pset's failure (an initializer
    that fails raises InitializerFailed before any pset runs). ``watch`` hears of each pset as it
    starts, and of the group's end (it may end the group early by raising)."""
    ensure_initialized(ctx)
    perf, cpu = time.perf_counter, time.process_time
    func, user_kwargs = ctx.func, ctx.user_kwargs
    base = {"name": ctx.name, "backend": ctx.backend, "attempt": attempt}
    if ctx.chdir:
        base["chdir"] = ctx.chdir
    # Hot loop: every statement here is paid once per pset, and a trivial pset costs ~1 us, so
    # positions and timings go into arrays (they pickle as raw bytes) and ran/ok are derived after.
    wall = array("d")
    iowait = array("d")
    columns: dict[str, list[Any]] = {}
    absent: dict[str, list[int]] = {}
    failures: list[Failure] = []
    raw: dict[str, list[float]] = {}
    catch: type[BaseException] | tuple[type[BaseException], ...] = (
        BaseException if ctx.catch_interrupt else (Exception, SystemExit))
    starting = watch.starting if watch is not None else None
    copy_psets, out_subdirs, map_seed, have_ray = ctx.copy_psets, ctx.out_subdirs, ctx.seed, ctx.psets_have_ray
    n_ok = 0
    # Reading the CPU clock costs ~2 us here (a system call), more than a trivial pset: read it per
    # pset only once psets are slow enough for that to be noise, else share the group's iowait.
    precise = True
    estimated: list[int] = []
    group_c0 = cpu()
    try:  # free in 3.11 when nothing is raised
        for position, pset in zip(positions, psets):
            if starting is not None:  # e.g. tell the driver which pset runs, and since when (timeouts)
                starting(position)
            if copy_psets:
                pset = dict(pset)
            raw_stats: dict[str, list[float]] = {}
            system_kwargs = SystemKwargs(base, pset_index=position, raw_stats=raw_stats)
            system_kwargs._pset = pset
            system_kwargs._map_seed = map_seed
            if out_subdirs:
                system_kwargs["out_subdir"] = f"ps{position % out_subdirs:0{ctx.subdir_digits}d}"
            if have_ray and "ray" in pset:  # 0.4.x handed a pset's own ray options to its worker, on every backend
                ray_options = pset["ray"]
                # None or NaN: a row of a DataFrame whose pset has no options
                if ray_options is not None and not (isinstance(ray_options, float) and ray_options != ray_options):
                    system_kwargs["ray"] = ray_options
            c0 = cpu() if precise else 0.0
            t0 = perf()
            try:
                ret = func(pset, system_kwargs, user_kwargs)
                status = None
            except catch as exc:
                status = Status.EXCEPTION if isinstance(exc, Exception) else Status.CRASHED
                failure = _failure((position, status, repr(exc), traceback.format_exc()))
            t1 = perf()
            wall.append(t1 - t0)
            if precise:
                io = (t1 - t0) - (cpu() - c0)
                iowait.append(io if io > 0.0 else 0.0)
            else:
                estimated.append(len(iowait))
                iowait.append(t1 - t0)
            precise = t1 - t0 > CPU_CLOCK_WORTH
            if raw_stats:
                for key, values in raw_stats.items():
                    raw.setdefault(key, []).extend(values if isinstance(values, list) else [values])
            if status is None and ret is not None and not isinstance(ret, dict):
                status = Status.EXCEPTION
                failure = _failure((position, status, _describe_bad_return(ret), ""))
            if status is not None:
                failures.append(failure)
                continue
            if ret:
                for key, value in ret.items():
                    column = columns.get(key)
                    if column is None:
                        columns[key] = column = [None] * n_ok
                        if n_ok:
                            absent[key] = list(range(n_ok))
                    column.append(value)
                if len(ret) != len(columns):
                    _pad(columns, absent, n_ok)
            elif columns:
                _pad(columns, absent, n_ok)
            n_ok += 1
    except KeyboardInterrupt:  # only where psets run in the driver (serial): the others catch it per pset
        # the psets recorded in full; a row half-recorded when the interrupt came is dropped
        done = n_ok + len(failures)
        del wall[done:], iowait[done:]
        for column in columns.values():
            del column[n_ok:]
        for key in absent:
            absent[key] = [i for i in absent[key] if i < n_ok]
        raise GroupInterrupted(_group_result(positions[:done], wall, iowait, columns, absent, failures, raw)) from None
    if watch is not None:
        watch.finished()
    if estimated:
        _share_iowait(iowait, estimated, wall, cpu() - group_c0)
    return _group_result(positions, wall, iowait, columns, absent, failures, raw)


def _group_result(positions: Sequence[int], wall: Any, iowait: Any, columns: dict[str, list[Any]],
                  absent: dict[str, list[int]], failures: list[Failure], raw: dict[str, list[float]]) -> GroupResult:
    ran = array("q", positions)
    if failures:
        failed = {f.position for f in failures}
        ok = array("q", [p for p in positions if p not in failed])
    else:
        ok = ran
    return GroupResult(ran, wall, iowait, ok, columns, absent, failures, raw)


def _share_iowait(iowait: Any, estimated: list[int], wall: Any, group_cpu: float) -> None:
    """Give the psets timed without the CPU clock the group's own fraction of time not on the CPU."""
    total = sum(wall)
    fraction = max(0.0, 1.0 - group_cpu / total) if total > 0 else 0.0
    for i in estimated:
        iowait[i] = wall[i] * fraction


def _pad(columns: dict[str, list[Any]], absent: dict[str, list[int]], n_ok: int) -> None:
    for key, column in columns.items():
        if len(column) == n_ok:
            column.append(None)
            absent.setdefault(key, []).append(n_ok)


def load_context(blob: bytes) -> MapContext:
    ctx = pickle.loads(blob)
    assert isinstance(ctx, MapContext)
    if ctx.sys_path is not None:
        for entry in reversed(ctx.sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
    if ctx.chdir:
        os.chdir(ctx.chdir)
    return ctx


# -- the multiprocessing worker's loop -----------------------------------------------------------
# Limits a pset may lower for itself that would break every later pset of its worker process.
GUARDED_LIMITS = tuple(getattr(resource, name) for name in (
    "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_FSIZE")
    if hasattr(resource, name))
STD_FDS = (0, 1, 2)


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class ProcessGuard:
    """What one pset may change about its worker process and ruin for the psets after it: the
    standard fds (closed or pointed elsewhere) and resource limits (lowered). ``capture`` notes them
    (keeping a copy of each standard fd); ``restore`` puts them back after each group, and says
    False when it cannot (a hard limit lowered without the privilege to raise it again)."""

    def __init__(self) -> None:
        self.backups: list[int] = []
        self.identities: list[tuple[int, int] | None] = []
        self.limits: dict[int, tuple[int, int]] = {}
        self.key: str | None = None

    def capture(self, key: str) -> None:
        self.key = key
        for fd in STD_FDS:
            if _fd_identity(fd) is None:  # started closed: /dev/null, so that prints never fail
                _devnull_onto(fd)
        for fd in self.backups:
            os.close(fd)
        self.backups = [os.dup(fd) for fd in STD_FDS]
        self.identities = [_fd_identity(fd) for fd in STD_FDS]
        self.limits = {limit: resource.getrlimit(limit) for limit in GUARDED_LIMITS}

    def restore(self) -> bool:
        restored = True
        for limit, wanted in self.limits.items():  # first: a lowered RLIMIT_NOFILE could stop the rest
            if resource.getrlimit(limit) != wanted:
                try:
                    resource.setrlimit(limit, wanted)
                except (ValueError, OSError):  # a lowered hard limit, and no privilege to raise it
                    restored = False
        for fd, backup, identity in zip(STD_FDS, self.backups, self.identities):
            if _fd_identity(fd) != identity:
                try:
                    if _fd_identity(backup) == identity:
                        os.dup2(backup, fd)
                    else:  # the pset closed our copy too
                        _devnull_onto(fd)
                except OSError:  # no fd left to open: a fresh worker will do better
                    restored = False
        return restored


def _devnull_onto(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _initialize(ctx: MapContext, slot: Slot, first_position: int) -> None:
    """ensure_initialized, with the slot naming the pset about to run: a worker that dies in the
    initializer (os._exit, a segfault) then costs that pset, recorded 'crashed', where an idle slot
    would have its group sent to a fresh worker that dies the same way, forever. Its timeout has
    not started (the deadline is infinitely far): set-up time is not the pset's."""
    if ctx.initializer is None or _initialized_key == ctx.init_key:
        return
    if slot.timed:
        slot.view[1] = math.inf
    slot.view[0] = float(first_position)
    try:
        ensure_initialized(ctx)
    finally:
        slot.set(Slot.IDLE)


def _done_message(task_id: int, result: GroupResult) -> tuple[str, int, GroupResult]:
    return ("done", task_id, result)


def serve(inbox: Any, outbox: Any, slot: Slot, home: str) -> None:
    """A worker's life: receive setups and groups, send back results, until told to stop or EOF, or
    until a pset left the process in a state it cannot undo (then it ends between groups, idle,
    and the backend forks a fresh worker in its place: no pset is lost).

    Messages in: ('setup', map_id, blob), ('run', task_id, map_id, positions, psets, attempt),
    ('exit',). Messages out: ('hello', pid), ('done', task_id, GroupResult),
    ('setup_error', map_id, message, traceback) (the map's function could not be loaded, or the
    initializer failed).
    """
    contexts: dict[int, MapContext] = {}
    guard = ProcessGuard()
    guard.capture("")
    outbox.send(("hello", os.getpid()))
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        if kind == "run":
            _, task_id, map_id, positions, psets, attempt = msg
            ctx = contexts.get(map_id)
            if ctx is None:  # its setup failed: the driver has been told and abandons the map
                continue
            try:
                _initialize(ctx, slot, positions[0])
            except InitializerFailed as exc:
                del contexts[map_id]
                outbox.send(("setup_error", map_id, exc.message, exc.traceback))
                continue
            if ctx.initializer is not None and guard.key != ctx.init_key:
                guard.capture(ctx.init_key)  # what the initializer set up is the state to keep
            result = run_group(ctx, positions, psets, attempt, slot)
            slot.set(Slot.SENDING)
            outbox.send_bytes(encode_message(result, functools.partial(_done_message, task_id)))
            slot.set(Slot.IDLE)
            if not guard.restore():
                return
        elif kind == "setup":
            _, map_id, blob = msg
            contexts.clear()  # one map at a time: drop the previous function and its kwargs
            os.chdir(home)
            try:
                contexts[map_id] = ctx = load_context(blob)
                slot.timed = ctx.timed
            except BaseException as exc:
                outbox.send(("setup_error", map_id, repr(exc), traceback.format_exc()))
        elif kind == "exit":
            return
