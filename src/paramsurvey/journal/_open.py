"""Opening a journal for one map(): the engine's side of the journal (``open_for_map``).

In order: check the path (a journal directory, or a new one; writable), lock it, tidy it and read
what is there, match the survey's psets with the outcomes it holds, decide what to run, record the
run in the metadata, and start the writer.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._config import Settings
from .._psets import PsetSource
from .._records import Failure, GroupResult, Status
from ..exceptions import JournalError
from ._arrow import typed
from ._build import STATUSES, pset_columns
from ._hash import hash_columns
from ._prepare import lock_journal, make_journal_directory, set_aside, tidy, unwritable
from ._store import FORMAT, FORMAT_VERSION, Lock, host, list_parts, now, write_meta
from ._store import read_meta as read_meta_file
from ._writer import Journal, wait_for

if TYPE_CHECKING:
    from ._read import JournalRows, Match

log = logging.getLogger("paramsurvey.journal")


@dataclass
class _Plan:
    """What a map does with the journal's outcomes."""

    todo: list[int] | None  # the positions still to run; None: all of them
    done: list[GroupResult]  # the outcomes the journal already holds, for the engine to adopt
    adopted: dict[str, int]  # their number by status (the run's record in the metadata)


def open_for_map(settings: Settings, source: PsetSource) -> tuple[Journal, list[int] | None, list[GroupResult]]:
    """Open (or create) ``settings.journal`` for one map(): returns the journal the engine writes
    to, the positions still to run (None: all) and the outcomes the journal already holds."""
    path = settings.journal
    assert path is not None
    started = time.perf_counter()
    wait_for(path)  # the previous map of this process on this journal: its last write
    make_journal_directory(path)
    lock = lock_journal(path)
    try:
        meta, rows = _read_what_is_there(path)
        plan = _plan(path, rows, meta, settings, source)
        meta, run = _record_run(path, meta, rows, plan, settings, source)
        journal = _start_writer(path, run, meta, rows, plan, source, lock)
    except OSError as exc:  # the disk, not the survey: say which journal, and what to do
        lock.release()
        raise JournalError(unwritable(path, exc, "cannot be opened")) from exc
    except BaseException:
        lock.release()
        raise
    if _holds_outcomes(rows):
        todo = plan.todo or []
        log.info("%s: journal %s holds %d of %d psets; %d to run (opened in %.2f s)", settings.name, path,
                 len(source) - len(todo), len(source), len(todo), time.perf_counter() - started,
                 extra={"ps_verbose": 1})
    return journal, plan.todo, plan.done


def _holds_outcomes(rows: JournalRows | None) -> bool:
    return rows is not None and rows.n > 0


def _read_what_is_there(path: str) -> tuple[dict[str, Any] | None, JournalRows | None]:
    """Holding the lock: tidy the journal, then its metadata (None: a new journal) and its rows
    (None: no part yet -- the reader is not even imported), damaged parts set aside."""
    tidy(path)
    meta = read_meta_file(path)
    if not list_parts(path):
        return meta, None
    from ._read import JournalRows

    rows = JournalRows.load(path)
    set_aside(path, rows.damaged, "unreadable")
    return meta, rows


def _plan(path: str, rows: JournalRows | None, meta: dict[str, Any] | None, settings: Settings,
          source: PsetSource) -> _Plan:
    """Decide what to run: everything for a new journal; else the psets without an outcome (and
    the failed ones, with ``rerun_failed``), adopting the others' outcomes."""
    if rows is None or not _holds_outcomes(rows):
        return _Plan(None, [], dict.fromkeys(STATUSES, 0))
    match = _match_psets(path, rows, meta, settings, source)
    return _adopt(rows, match)


def source_hashes(source: PsetSource) -> tuple[np.ndarray, np.ndarray]:
    """The journal hash (two uint64 lanes) of every pset of a survey, in position order: computed
    in the driver, but only on resume."""
    columns = {key: (typed(values, present), present)
               for key, (values, present) in pset_columns(source, range(len(source))).items()}
    return hash_columns(columns, len(source))


def _match_psets(path: str, rows: JournalRows, meta: dict[str, Any] | None, settings: Settings,
                 source: PsetSource) -> Match:
    """Which psets of the survey the journal has outcomes for; a JournalError when the journal
    was made for another survey (unless ``extend_journal``)."""
    from ._read import Match

    match = Match(rows, source_hashes(source), settings.rerun_failed)
    journal_total = (meta or {}).get("total")
    other_size = journal_total is not None and int(journal_total) != len(source)
    if (match.foreign or other_size) and not settings.extend_journal:
        problems = []
        if match.foreign:
            problems.append(f"{match.foreign} of the {match.journal_psets} psets it has outcomes for are not "
                            "in this survey")
        if other_size:
            problems.append(f"it was made for a survey of {journal_total} psets, this one has {len(source)}")
        raise JournalError(f"journal {path} does not match this survey: {'; '.join(problems)}. Pass "
                           "extend_journal=True to add this survey's psets to it, or use another journal. "
                           "(Psets are matched by content: a value whose repr changes from run to run, like "
                           "an object without a repr of its own, never matches.)")
    return match


def _adopt(rows: JournalRows, match: Match) -> _Plan:
    """The matched outcomes as one GroupResult for the engine (results unpickled: the survey's own
    data), and the positions left to run."""
    ok_columns = rows.gather(match.ok_row, "results", unpickle=True, by_key=True)
    in_group = ~np.isnan(rows.wall[match.fail_row])  # exceptions were timed; crashes were not
    ran_rows = np.concatenate([match.ok_row, match.fail_row[in_group]])
    ran_pos = np.concatenate([match.ok_pos, match.fail_pos[in_group]])
    exc, tb = rows.failures(match.fail_row)
    failures = [Failure(int(p), str(s), e or "", t or "") for p, s, e, t in
                zip(match.fail_pos.tolist(), rows.status[match.fail_row].tolist(), exc, tb)]
    done = GroupResult(ran=ran_pos.tolist(), wall=rows.wall[ran_rows].tolist(),
                       iowait=np.nan_to_num(rows.iowait[ran_rows]).tolist(), ok=match.ok_pos.tolist(),
                       columns=ok_columns, absent={}, failures=failures, raw=rows.raw_timers())
    adopted = dict.fromkeys(STATUSES, 0)
    adopted[Status.OK.value] = len(match.ok_pos)
    for failure in failures:
        adopted[failure.status] = adopted.get(failure.status, 0) + 1
    return _Plan(match.todo.tolist(), [done], adopted)


def _record_run(path: str, meta: dict[str, Any] | None, rows: JournalRows | None, plan: _Plan,
                settings: Settings, source: PsetSource) -> tuple[dict[str, Any], int]:
    """Write the metadata with a record of this run (the survey, and the run's number, settings and
    what it adopted); returns it and the run's number."""
    runs = (meta or {}).get("runs", [])
    journaled_runs = [int(rows.run.max())] if rows is not None and _holds_outcomes(rows) else []
    run = 1 + max([0] + [int(r.get("run", 0)) for r in runs] + journaled_runs)
    if meta is None or not _holds_outcomes(rows):
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "name": settings.name, "created": now(), "runs": runs}
    meta.update(name=settings.name, total=len(source), pset_keys=list(source.keys), seed=settings.seed)
    meta.setdefault("runs", []).append({
        "run": run, "start_time": now(), "pid": os.getpid(), "host": host(), "state": "running",
        "total": len(source), "todo": _todo_count(plan, source), "adopted": plan.adopted,
        "env_used": dict(settings.env_used), "rerun_failed": settings.rerun_failed,
        "extend_journal": settings.extend_journal})
    write_meta(path, meta)
    return meta, run


def _todo_count(plan: _Plan, source: PsetSource) -> int:
    return len(source) if plan.todo is None else len(plan.todo)


def _start_writer(path: str, run: int, meta: dict[str, Any], rows: JournalRows | None, plan: _Plan,
                  source: PsetSource, lock: Lock) -> Journal:
    """The journal's writer thread, started; it holds the lock from now on. A resumed journal's
    result columns keep their types and names."""
    journal = Journal(path, run, source, lock, meta, _todo_count(plan, source),
                      known=rows.result_types() if rows is not None else None)
    journal.start()
    return journal
