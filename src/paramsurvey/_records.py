"""The vocabulary every layer speaks (as ``concurrent.futures._base`` is for its executors): the
records that cross from the engine to a backend, to a worker and back, the statuses a pset can end
with, the one context a map ships to its workers, and what the engine asks of a journal.

    engine --Task--> backend --(MapContext once, then groups)--> worker: run_group()
    engine <--GroupDone(GroupResult) | PsetLost-- backend <--GroupResult-- worker
    engine --GroupResult / PsetLost / retries--> JournalSink

Standard library only: worker processes load this module, and must start in milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class Status(enum.StrEnum):
    """How a pset ended: the ``_status`` users see in ``results.missing``, in ``out_func`` and in
    a journal. A ``str`` enum, so that each member is equal to (and prints as) its string."""

    OK = "ok"  # returned a result (a dict or None): it is a row of ``results``
    EXCEPTION = "exception"  # raised, returned something else than a dict or None, or could not travel
    CRASHED = "crashed"  # its worker process died under it (or it ended its own run: sys.exit, Ctrl-C)
    TIMEOUT = "timeout"  # ran past its timeout and was stopped
    CANCELLED = "cancelled"  # the map was interrupted before it finished


class Failure(NamedTuple):
    """One pset that produced no result, as a worker (or a backend, for it) reports it."""

    position: int
    status: str  # a Status
    exception: str  # the repr of what it raised, or what happened to it
    traceback: str  # '' when there is none


class GroupResult(NamedTuple):
    """A group's outcome, column-major so that it pickles small and the driver turns it into numpy
    columns without touching a dict per row."""

    ran: Sequence[int]  # positions of every pset run, in order (array('q') from workers)
    wall: Sequence[float]  # wallclock seconds of each, aligned with ran (array('d'))
    iowait: Sequence[float]  # wallclock minus CPU seconds of each (floored at 0), aligned with ran
    ok: Sequence[int]  # positions of the psets that returned a result (a dict or None)
    columns: dict[str, list[Any]]  # result key -> values, aligned with ok (None where a row lacks it)
    absent: dict[str, list[int]]  # result key -> offsets into ok where the key was absent
    failures: list[Failure]  # each failed pset of the group
    raw: dict[str, list[float]]  # user timers: name -> seconds (system_kwargs['raw_stats'])


@dataclass
class Task:
    """One group of psets, sent to one worker as one message."""

    task_id: int
    positions: list[int]
    psets: list[dict[str, Any]]
    attempt: int = 0


@dataclass
class GroupDone:
    """A group that ran: its psets' results and failures."""

    task: Task
    result: GroupResult


@dataclass
class PsetLost:
    """One pset that killed its worker or ran past its timeout."""

    position: int
    pset: dict[str, Any]
    attempt: int
    status: str  # Status.CRASHED or Status.TIMEOUT
    message: str


Outcome = GroupDone | PsetLost


class GroupInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) in a group that runs in the driver itself (the serial backend): still a
    KeyboardInterrupt, carrying what the group finished before it (``result``) and, once the backend
    has added it, its ``task``, so that the engine keeps those psets: nothing finished is lost."""

    def __init__(self, result: GroupResult) -> None:
        super().__init__()
        self.result = result
        self.task: Task | None = None


@dataclass(frozen=True)
class MapContext:
    """Everything a worker needs for one map(), shipped once per map, not once per pset. Built once,
    by the engine, from the settings and what the backend declares it needs (``Backend.copies_psets``
    and its siblings); frozen: nothing downstream may change what the map means."""

    func: Callable[..., Any]
    user_kwargs: Any
    name: str
    backend: str
    seed: int = 0
    chdir: str | None = None
    out_subdirs: int | None = None
    copy_psets: bool = False  # in-process backends must not hand the user's own dict over
    catch_interrupt: bool = True  # in-process, Ctrl-C must interrupt, not fail a pset
    sys_path: Sequence[str] | None = None  # put before the worker's own, when the backend ships it
    timed: bool = False  # a timeout is set and the worker's slot records when each pset started
    # init(initializer=f, initargs=...): f(*initargs) runs once per worker process, before its
    # first pset; init_key tells one init() session's initializer from another's
    initializer: Callable[..., Any] | None = None
    initargs: Sequence[Any] = ()
    init_key: str = ""
    # may a pset hold a 'ray' key (the engine knows every key)? If not, no pset is looked at for it
    psets_have_ray: bool = True
    subdir_digits: int = field(init=False, default=0)  # of out_subdir names: ps00..ps99 for 100

    def __post_init__(self) -> None:
        # frozen: the derived and normalized fields are set once, here
        object.__setattr__(self, "initargs", tuple(self.initargs))
        if self.sys_path is not None:
            object.__setattr__(self, "sys_path", tuple(self.sys_path))
        if self.out_subdirs:
            object.__setattr__(self, "subdir_digits", max(1, len(str(self.out_subdirs - 1))))


def failed_group(positions: Sequence[int], psets: Sequence[dict[str, Any]],
                 message: str | Sequence[str]) -> GroupResult:
    """Every pset of a group that could not run (e.g. bad per-pset options) as an 'exception'
    failure, so the survey goes on and the reason lands in ``missing``. ``message``: one for all,
    or one per pset."""
    n = len(positions)
    messages = [message] * n if isinstance(message, str) else list(message)
    return GroupResult(list(positions), [0.0] * n, [0.0] * n, [], {}, {},
                       [Failure(p, Status.EXCEPTION, m, "") for p, m in zip(positions, messages)], {})


class PsetWatch(Protocol):
    """Hears of each pset of a group as it starts, and of the group's end, inside the worker
    (``run_group``'s ``watch``): the multiprocessing slot, the Ray alarm, the Dask cancel-watch.
    ``starting`` may raise a BaseException to end the group there."""

    def starting(self, position: int) -> None: ...

    def finished(self) -> None: ...


class JournalSink(Protocol):
    """What the engine asks of a map's journal writer: it only hands outcomes over, never waits."""

    def record_group(self, result: GroupResult) -> None: ...

    def record_lost(self, lost: PsetLost) -> None: ...

    def note_retry(self, position: int, attempt: int) -> None: ...

    def close(self) -> None: ...
