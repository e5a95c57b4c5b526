"""What runs inside a worker: call the user's function on each pset of a group, time it, catch what
it raises, and hand back compact records.

Standard library only at import (plus cloudpickle, lazily, to load the function): worker processes
import this module and must start in milliseconds, not in the quarter second pandas takes.

A group's outcome is one ``GroupResult`` tuple, column-major so that it pickles small and the driver
can turn it into numpy columns without touching a dict per row::

    ran       positions of every pset run, in order
    wall      wallclock seconds of each, aligned with ran
    iowait    wallclock minus CPU seconds of each (floored at 0), aligned with ran
    ok        positions of the psets that returned a result (a dict or None)
    columns   result key -> values, aligned with ok (None where a row lacks the key)
    absent    result key -> offsets into ok where the key was absent
    failures  (position, status, repr of exception, traceback) for each failed pset
    raw       user timers: name -> list of seconds (from system_kwargs['raw_stats'])
    digests   pset content hashes aligned with ran, when a journal asked for them, else None
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ._hashing import pset_hash, seed_for

# Psets shorter than this are timed without the (costly) CPU clock: see run_group.
CPU_CLOCK_WORTH = 50e-6


class GroupResult(NamedTuple):
    ran: Sequence[int]  # array('q') from workers; any sequence of ints is accepted
    wall: Sequence[float]  # array('d')
    iowait: Sequence[float]  # array('d')
    ok: Sequence[int]  # array('q')
    columns: dict[str, list[Any]]
    absent: dict[str, list[int]]
    failures: list[tuple[int, str, str, str]]
    raw: dict[str, list[float]]
    digests: list[str] | None


class MapContext:
    """Everything a worker needs for one map(), shipped once per map, not once per pset."""

    def __init__(self, func: Callable[..., Any], user_kwargs: Any, name: str, backend: str,
                 seed: int = 0, chdir: str | None = None, out_subdirs: int | None = None,
                 want_digests: bool = False, copy_psets: bool = False, catch_interrupt: bool = True,
                 sys_path: Sequence[str] | None = None, timed: bool = False,
                 initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 init_key: str = "") -> None:
        self.func = func
        self.user_kwargs = user_kwargs
        self.name = name
        self.backend = backend
        self.seed = seed
        self.chdir = chdir
        self.out_subdirs = out_subdirs
        self.want_digests = want_digests
        self.copy_psets = copy_psets  # in-process backends must not hand the user's own dict over
        self.catch_interrupt = catch_interrupt  # in-process, Ctrl-C must interrupt, not fail a pset
        self.sys_path = list(sys_path) if sys_path is not None else None
        self.timed = timed  # a timeout is set: the slot also records when each pset started
        # init(initializer=f, initargs=...): f(*initargs) runs once per worker process, before its
        # first pset; init_key tells one init() session's initializer from another's
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.init_key = init_key
        if out_subdirs:
            self.subdir_digits = max(1, len(str(out_subdirs - 1)))


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
    without a message per pset. ``position`` is -1 when idle, -2 while sending results.
    """

    IDLE, SENDING = -1.0, -2.0

    def __init__(self, view: Any, timed: bool = True) -> None:  # a memoryview cast to doubles
        self.view = view
        self.timed = timed

    def mark(self, position: int) -> None:
        if self.view is not None:
            if self.timed:
                self.view[1] = time.monotonic()
            self.view[0] = float(position)

    def set(self, state: float) -> None:
        if self.view is not None:
            self.view[0] = state


NO_SLOT = Slot(None)


class InitializerFailed(Exception):
    """The per-worker initializer raised: no pset can run in this worker. ``message`` names the
    initializer and its error; ``traceback`` is the initializer's."""

    def __init__(self, message: str, tb: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = tb


def ensure_initialized(ctx: MapContext) -> None:
    """Run ctx.initializer once in this process (raises InitializerFailed). Interface stub."""


def encode_result(result: GroupResult) -> bytes:
    """A group's result as bytes the driver can load; a row whose value cannot travel becomes that
    pset's failure. Interface stub: the real version also checks that values load again."""
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return pickle.dumps(scrub_unpicklable(result, exc), protocol=pickle.HIGHEST_PROTOCOL)


def _describe_bad_return(ret: Any) -> str:
    text = repr(ret)
    if len(text) > 200:
        text = text[:200] + "..."
    return repr(TypeError(f"worker returned {type(ret).__name__}, not a dict or None: {text}"))


def run_group(ctx: MapContext, positions: Sequence[int], psets: Sequence[dict[str, Any]], attempt: int,
              slot: Slot = NO_SLOT) -> GroupResult:
    """Run ctx.func on each pset of one group; never raises for a pset's failure."""
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
    failures: list[tuple[int, str, str, str]] = []
    raw: dict[str, list[float]] = {}
    digests: list[str] | None = [] if ctx.want_digests else None
    catch: type[BaseException] | tuple[type[BaseException], ...] = (
        BaseException if ctx.catch_interrupt else (Exception, SystemExit))
    view, timed, mono = slot.view, slot.timed, time.monotonic
    copy_psets, out_subdirs, map_seed = ctx.copy_psets, ctx.out_subdirs, ctx.seed
    n_ok = 0
    # Reading the CPU clock costs ~2 us here (a system call), more than a trivial pset: read it per
    # pset only once psets are slow enough for that to be noise, else share the group's iowait.
    precise = True
    estimated: list[int] = []
    group_c0 = cpu()
    for position, pset in zip(positions, psets):
        if view is not None:  # tell the driver which pset runs, and since when (timeouts)
            if timed:
                view[1] = mono()
            view[0] = position + 0.0
        if copy_psets:
            pset = dict(pset)
        if digests is not None:
            digests.append(pset_hash(pset))
        raw_stats: dict[str, list[float]] = {}
        system_kwargs = SystemKwargs(base, pset_index=position, raw_stats=raw_stats)
        system_kwargs._pset = pset
        system_kwargs._map_seed = map_seed
        if out_subdirs:
            system_kwargs["out_subdir"] = f"ps{position % out_subdirs:0{ctx.subdir_digits}d}"
        c0 = cpu() if precise else 0.0
        t0 = perf()
        try:
            ret = func(pset, system_kwargs, user_kwargs)
            status = None
        except catch as exc:
            status = "exception" if isinstance(exc, Exception) else "crashed"
            failure = (position, status, repr(exc), traceback.format_exc())
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
            status = "exception"
            failure = (position, status, _describe_bad_return(ret), "")
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
    slot.set(Slot.IDLE)
    if estimated:
        _share_iowait(iowait, estimated, wall, cpu() - group_c0)
    ran = array("q", positions)
    if failures:
        failed = {f[0] for f in failures}
        ok = array("q", [p for p in positions if p not in failed])
    else:
        ok = ran
    return GroupResult(ran, wall, iowait, ok, columns, absent, failures, raw, digests)


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


def scrub_unpicklable(result: GroupResult, error: BaseException) -> GroupResult:
    """Turn the rows whose values cannot be pickled into failures, so the rest still travels."""
    bad_rows: set[int] = set()
    for column in result.columns.values():
        try:
            pickle.dumps(column, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            for i, value in enumerate(column):
                try:
                    pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:
                    bad_rows.add(i)
    if not bad_rows:  # not a result value: something else is wrong; fail every row rather than hang
        bad_rows = set(range(len(result.ok)))
    keep = [i for i in range(len(result.ok)) if i not in bad_rows]
    failures = list(result.failures)
    for i in sorted(bad_rows):
        message = repr(TypeError(f"the worker's result could not be pickled to send it back: {error!r}"))
        failures.append((result.ok[i], "exception", message, ""))
    columns = {k: [v[i] for i in keep] for k, v in result.columns.items()}
    remap = {old: new for new, old in enumerate(keep)}
    absent = {k: [remap[i] for i in v if i in remap] for k, v in result.absent.items()}
    return result._replace(ok=array("q", [result.ok[i] for i in keep]), columns=columns,
                           absent={k: v for k, v in absent.items() if v}, failures=failures)


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


def serve(inbox: Any, outbox: Any, slot: Slot, home: str) -> None:
    """A worker's life: receive setups and groups, send back results, until told to stop or EOF.

    Messages in: ('setup', map_id, blob), ('run', task_id, map_id, positions, psets, attempt),
    ('exit',). Messages out: ('hello', pid), ('done', task_id, GroupResult),
    ('setup_error', map_id, repr, traceback).
    """
    contexts: dict[int, MapContext] = {}
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
            result = run_group(ctx, positions, psets, attempt, slot)
            slot.set(Slot.SENDING)
            try:
                outbox.send(("done", task_id, result))
            except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
                outbox.send(("done", task_id, scrub_unpicklable(result, exc)))
            slot.set(Slot.IDLE)
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
