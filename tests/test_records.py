"""The one vocabulary (_records): statuses, failure records, the frozen map context."""

from __future__ import annotations

import dataclasses

import pytest

import paramsurvey
from paramsurvey._records import Failure, GroupResult, MapContext, Status
from paramsurvey.backends import backend_class
from paramsurvey.journal._build import STATUSES


def _fails(pset, system_kwargs, user_kwargs):
    if pset["x"] % 2:
        raise ValueError("odd")
    return {"y": pset["x"]}


def test_the_map_context_is_frozen():
    ctx = MapContext(_fails, None, "frozen", "serial", out_subdirs=100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.copy_psets = True  # type: ignore[misc]
    assert ctx.subdir_digits == 2 and ctx.initargs == ()


@pytest.mark.parametrize("name", ["serial", "multiprocessing"])
def test_what_a_backend_needs_of_the_context_is_declared_not_written(name):
    cls = backend_class(name)
    assert {k: getattr(cls, k) for k in ("copies_psets", "catches_interrupt", "times_psets", "ships_sys_path")} \
        == {"serial": {"copies_psets": True, "catches_interrupt": False, "times_psets": False, "ships_sys_path": False},
            "multiprocessing": {"copies_psets": False, "catches_interrupt": True, "times_psets": True,
                                "ships_sys_path": True}}[name]


def test_statuses_are_one_str_enum_and_the_journal_knows_each_in_its_code_order():
    assert [s.value for s in Status] == ["ok", "exception", "crashed", "timeout", "cancelled"]
    assert Status.CRASHED == "crashed" and f"{Status.CRASHED}" == "crashed"
    # a journal's codes: the four written before the enum keep their places
    assert STATUSES == ("ok", "exception", "crashed", "timeout", "cancelled")
    assert all(type(s) is str for s in STATUSES)


def test_a_failure_is_a_named_record_that_still_unpacks_as_before():
    failure = Failure(3, Status.TIMEOUT, "E()", "tb")
    position, status, exc, tb = failure
    assert (failure.position, failure.status, failure.exception, failure.traceback) == (position, status, exc, tb)
    result = GroupResult([3], [0.1], [0.0], [], {}, {}, [failure], {})
    assert result.failures[0].status == "timeout"


@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_users_see_plain_string_statuses(backend):
    seen = []
    paramsurvey.init(backend=backend, verbose=0, ncores=2)
    try:
        results = paramsurvey.map(_fails, [{"x": i} for i in range(4)],
                                  out_func=lambda ret, sk, uk: seen.append(ret.get("status")))
    finally:
        paramsurvey.finalize()
    statuses = results.missing["_status"].tolist()
    assert statuses == ["exception", "exception"]
    assert all(type(s) is str for s in statuses), [type(s) for s in statuses]
    assert [s for s in seen if s is not None] == ["exception", "exception"]
    assert all(type(s) is str for s in seen if s is not None)


class _Heard:
    """A PsetWatch that notes what it hears, and ends the group at ``stop_at`` (as Dask's
    cancel-watch does when its task was cancelled)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[object] = []
        self.stop_at = stop_at

    def starting(self, position: int) -> None:
        self.events.append(position)
        if position == self.stop_at:
            raise _Stop

    def finished(self) -> None:
        self.events.append("end")


class _Stop(BaseException):
    pass


def _noted(pset, system_kwargs, user_kwargs):
    return {"seen": pset["x"]}


def test_run_group_tells_its_watch_each_pset_as_it_starts_and_the_groups_end():
    from paramsurvey._worker import run_group

    ctx = MapContext(_noted, None, "watch", "serial")
    watch = _Heard()
    result = run_group(ctx, [5, 7, 9], [{"x": 5}, {"x": 7}, {"x": 9}], 0, watch)
    assert watch.events == [5, 7, 9, "end"]
    assert result.columns["seen"] == [5, 7, 9]
    stopping = _Heard(stop_at=7)
    with pytest.raises(_Stop):  # a watch ends the group before the pset it was told of runs
        run_group(ctx, [5, 7, 9], [{"x": 5}, {"x": 7}, {"x": 9}], 0, stopping)
    assert stopping.events == [5, 7]


def test_the_multiprocessing_slot_is_a_watch_over_its_shared_memory():
    import mmap
    import time

    from paramsurvey._worker import Slot

    view = memoryview(mmap.mmap(-1, 16)).cast("d")
    slot = Slot(view, timed=True)
    before = time.monotonic()
    slot.starting(12)
    assert view[0] == 12.0 and before <= view[1] <= time.monotonic()
    slot.finished()
    assert view[0] == Slot.IDLE
