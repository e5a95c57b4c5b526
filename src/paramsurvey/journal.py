"""The journal: every finished pset on disk as it arrives, so that a survey survives ``kill -9``.

``paramsurvey.map(func, psets, journal='survey.journal')`` writes a directory of Parquet files (see
``docs/journal.md`` for the format and why). Running the same survey again with the same journal runs
only the psets without an outcome -- failed ones again unless ``rerun_failed=False`` -- and returns
the complete results, as if the survey had never stopped. Psets are recognised by a hash of their
content, so the psets may be rebuilt in another order.

Reading a journal, from Python or with the ``paramsurvey`` command line::

    >>> from paramsurvey import journal                           # doctest: +SKIP
    >>> df = journal.read('survey.journal')     # one row per pset: its latest outcome
    >>> meta = journal.read_meta('survey.journal')    # the survey, and provenance of each run

or directly, with any Parquet reader: ``pandas.read_parquet('survey.journal')``, duckdb's
``read_parquet('survey.journal/*.parquet', union_by_name=true)``, polars'
``scan_parquet('survey.journal/*.parquet')``. Reading never unpickles anything unless asked to.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import secrets
import time
from typing import Any

import numpy as np
import pandas as pd

from ._columns import ColumnAccumulator
from ._config import Settings
from ._journal_arrow import typed
from ._journal_build import STATUSES, pset_columns
from ._journal_hash import hash_columns
from ._journal_store import (
    FORMAT,
    FORMAT_VERSION,
    LOCK,
    META,
    Lock,
    MetaDamaged,
    covered_parts,
    damaged_parts,
    host,
    is_locked,
    list_parts,
    parse_part,
    write_meta,
)
from ._journal_store import read_meta as _read_meta
from ._journal_writer import Journal, wait_for
from ._psets import PsetSource
from ._worker import GroupResult
from .exceptions import JournalError

__all__ = ["JournalError", "open_for_map", "read", "read_meta", "repair", "status"]

log = logging.getLogger("paramsurvey.journal")

# paramsurvey's columns in a read() frame, after the pset and result columns
TAIL_COLUMNS = ("_status", "_exception", "_traceback", "_wallclock", "_iowait", "_finished", "_attempt",
                "_run", "_position", "_hash")
# status: the rate is measured over the newest psets of this window
RATE_WINDOW = 60.0


# -- reading --------------------------------------------------------------------------------------
def _check_journal(path: str) -> str:
    path = os.path.abspath(os.fspath(path))
    wait_for(path)  # a map of this process may still be writing its last part
    if not os.path.isdir(path):
        raise JournalError(f"{path} is not a journal: no such directory")
    if _meta_for_reading(path) is None and not list_parts(path):
        raise JournalError(f"{path} is not a paramsurvey journal (no {META}, no part files)")
    return path


def _meta_for_reading(path: str) -> dict[str, Any] | None:
    """The metadata, for a reader: damaged metadata does not stop reading the outcomes (they are in
    the parts), it is a warning -- unless there are no parts either."""
    try:
        return _read_meta(path)
    except MetaDamaged as exc:
        if not list_parts(path):
            raise
        log.warning("paramsurvey: %s", exc)
        return None


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The journal's metadata: the survey (name, number of psets, pset keys) and, in ``runs``, one
    record per run with its provenance (start and end time, host, user, command line, versions,
    git commit and whether the working tree had changes, ``PARAMSURVEY_*`` settings).

    Example
    -------
    >>> paramsurvey.journal.read_meta('survey.journal')['runs'][-1]['git_commit']   # doctest: +SKIP
    """
    path = _check_journal(os.fspath(path))
    return _read_meta(path) or {}


def read(path: str | os.PathLike[str], unpickle: bool = False, history: bool = False) -> pd.DataFrame:
    """A journal as a DataFrame: the pset columns, the result columns, then paramsurvey's
    (``_status``, ``_exception``, ``_traceback``, ``_wallclock``, ``_iowait``, ``_finished``,
    ``_attempt``, ``_run``, ``_position``, ``_hash``).

    Parameters
    ----------
    path : the journal directory
    unpickle : bool, default False
        Values that Parquet cannot hold (lists, objects, ...) are stored pickled; they are returned
        as ``bytes`` unless ``unpickle=True``. Only unpickle a journal you trust.
    history : bool, default False
        False: one row per pset, its latest outcome (its newest success, else its newest failure).
        True: every row ever written, e.g. a failure and then the success of its re-run.

    Works on a journal that a survey is writing (it reads what is on disk now), on a read-only
    filesystem, and with damaged metadata (a warning: the outcomes are in the parts). A part that
    cannot be read is skipped, with a warning.

    Example
    -------
    >>> df = paramsurvey.journal.read('survey.journal')        # doctest: +SKIP
    >>> df[df._status != 'ok']                                  # doctest: +SKIP
    """
    from ._journal_read import JournalRows

    path = _check_journal(os.fspath(path))
    rows = JournalRows.load(path)
    selected = np.arange(rows.n, dtype=np.int64) if history else rows.latest()
    return _frame(rows, selected, unpickle)


def _frame(rows: Any, selected: np.ndarray, unpickle: bool) -> pd.DataFrame:
    n = len(selected)
    values = rows.gather(selected, "psets", unpickle, by_key=False)
    results = rows.gather(selected, "results", unpickle, by_key=False)
    for name, column in results.items():
        values.setdefault(name, column)
    acc = ColumnAccumulator()
    acc.add_chunk(range(n), values)
    frame = acc.to_frame() if n else pd.DataFrame({k: pd.Series([], dtype=object) for k in values})
    exc, tb = rows.failures(selected)
    tail = {
        "_status": pd.Series(rows.status[selected], dtype=object),
        "_exception": pd.Series(exc, dtype=object),
        "_traceback": pd.Series(tb, dtype=object),
        "_wallclock": rows.wall[selected],
        "_iowait": rows.iowait[selected],
        "_finished": pd.to_datetime(rows.finished[selected]).tz_localize("UTC"),
        "_attempt": rows.attempt[selected],
        "_run": rows.run[selected],
        "_position": rows.position[selected],
        "_hash": pd.Series(rows.hashes(selected), dtype=object),
    }
    frame = frame.reset_index(drop=True)
    for name in TAIL_COLUMNS:
        column = tail[name]
        # object, like the results' string columns (pandas 3 would infer its str dtype, NaN for None)
        frame[name] = column.set_axis(frame.index) if isinstance(column, pd.Series) else column
    return frame


def pset_keys(path: str | os.PathLike[str]) -> list[str]:
    """The journal's pset columns: from its metadata, or, when that is damaged, from its parts."""
    path = _check_journal(os.fspath(path))
    meta = _meta_for_reading(path) or {}
    if meta.get("pset_keys"):
        return list(meta["pset_keys"])
    from ._journal_read import JournalRows

    rows = JournalRows.load(path, light=True)
    return list(dict.fromkeys(key for _, _, part in rows.parts for key in part.get("psets", ())))


def status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Where a survey stands, from its journal (also while it runs): a dict with ``state``
    ('running', 'finished' or 'stopped'), ``total``, ``counts`` by status, ``remaining``, and, for
    the latest run, ``rate`` (psets per second), ``eta`` (seconds, while running), its provenance;
    ``damaged_parts``, the parts that cannot be read (skipped, as by ``read()``: the counts are
    then those of the outcomes ``read()`` gives), and ``metadata_problem``, what is wrong with a
    damaged metadata file and how to recover (None when it is fine).

    Example
    -------
    >>> paramsurvey.journal.status('survey.journal')['remaining']       # doctest: +SKIP
    """
    from ._journal_read import JournalRows

    path = _check_journal(os.fspath(path))
    problem = None
    try:
        meta = _read_meta(path) or {}
    except MetaDamaged as exc:  # the counts come from the parts; the problem is reported
        problem, meta = str(exc), {}
    rows = JournalRows.load(path, light=True)
    running = is_locked(path)
    runs = meta.get("runs") or [{}]
    last = runs[-1]
    run_no = int(last.get("run", rows.run.max() if rows.n else 1))
    this = rows.run == run_no
    counts = dict.fromkeys(STATUSES, 0)
    for name, k in (last.get("adopted") or {}).items():
        counts[name] = counts.get(name, 0) + int(k)
    this_status = rows.status[this]
    for name in set(this_status.tolist()):
        counts[name] = counts.get(name, 0) + int((this_status == name).sum())
    if "adopted" not in last or rows.damaged:
        # No metadata, or a part that cannot be read (whose psets the counts adopted at the run's
        # start may include): count the latest outcomes the journal holds, as read() gives them.
        latest = rows.status[rows.latest()]
        counts = {name: int((latest == name).sum()) for name in set(latest.tolist()) | set(STATUSES)}
    total = int(last.get("total", sum(counts.values())))
    done = sum(counts.values())  # a failure is an outcome too (a resume runs it again)
    remaining = max(0, total - done)
    finished_this = rows.finished[this]
    now = np.datetime64(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None), "us")
    start = _parse_time(last.get("start_time"))
    rate = _rate(finished_this, start, now if running else None)
    state = "running" if running else ("finished" if last.get("state") == "finished" else "stopped")
    info: dict[str, Any] = {
        "journal": path, "name": meta.get("name"), "state": state, "total": total, "counts": counts,
        "failures": counts["exception"] + counts["crashed"] + counts["timeout"] + sum(
            v for k, v in counts.items() if k not in STATUSES),
        "remaining": remaining, "run": run_no, "runs": len(meta.get("runs") or []),
        "this_run": int(this.sum()), "rate": rate,
        "eta": (remaining / rate) if running and rate else None,
        "start_time": last.get("start_time"), "end_time": last.get("end_time"),
        "last_finished": (str(pd.Timestamp(finished_this.max()).tz_localize("UTC").isoformat())
                          if len(finished_this) else None),
        "host": last.get("host"), "pid": last.get("pid"), "command_line": last.get("command_line"),
        "git_commit": last.get("git_commit"), "git_dirty": last.get("git_dirty"),
        "elapsed": _seconds(start, now if running else _parse_time(last.get("end_time"))),
        "damaged_parts": rows.damaged, "metadata_problem": problem,
        "rebuilt": bool(meta.get("rebuilt")) and "total" not in meta,  # until the survey runs again
    }
    return info


def _seconds(start: np.datetime64 | None, end: np.datetime64 | None) -> float | None:
    return float((end - start) / np.timedelta64(1, "s")) if start is not None and end is not None else None


def _parse_time(text: Any) -> np.datetime64 | None:
    if not text:
        return None
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_datetime64().astype("datetime64[us]")


def _rate(finished: np.ndarray, start: np.datetime64 | None, now: np.datetime64 | None) -> float | None:
    """Psets per second: over the last RATE_WINDOW seconds while running, else over the run."""
    if not len(finished):
        return None
    last = finished.max()
    end = now if now is not None else last
    if now is not None:
        since = end - np.timedelta64(int(RATE_WINDOW * 1e6), "us")
        if start is None or start < since:
            recent = finished[finished > since]
            if len(recent) >= 10:
                return len(recent) / RATE_WINDOW
    begin = start if start is not None else finished.min()
    seconds = float((end - begin) / np.timedelta64(1, "s"))
    return len(finished) / seconds if seconds > 0 else None


# -- writing: the map's side -----------------------------------------------------------------------
# Entries that do not tell a journal from another directory: what a map killed before its first
# write leaves (.lock, .tmp-*), and what NFS (.nfs*: a file removed while open) and macOS add.
_NEUTRAL_NAMES = frozenset({LOCK, ".DS_Store"})
_NEUTRAL_PREFIXES = (".tmp-", ".nfs")
_DAMAGED_PREFIX = "_damaged-"  # a damaged part set aside: only a journal has one


def _is_journal_file(name: str) -> bool:
    return name == META or name.startswith(_DAMAGED_PREFIX) or parse_part(name) is not None


def _prepare(path: str) -> None:
    """Make ``path`` a journal directory, or refuse: a file, or a directory holding anything but a
    journal (the current directory given by mistake, a home directory of dot files), is never
    turned into one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise JournalError(f"journal={path!r} is a file; a journal is a directory (give a new path)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise JournalError(_unwritable(path, exc, "cannot be created")) from exc
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc}") from exc
    foreign = [n for n in names if n not in _NEUTRAL_NAMES and not n.startswith(_NEUTRAL_PREFIXES)]
    if foreign and not any(map(_is_journal_file, names)):
        shown = ", ".join(map(repr, foreign[:3])) + (", ..." if len(foreign) > 3 else "")
        raise JournalError(f"journal={path!r} is a directory that is not a paramsurvey journal (it holds {shown}): "
                           "give a new or empty directory")
    _check_writable(path)


def _check_writable(path: str) -> None:
    """A journal a survey cannot write is an error now, before any pset runs, not a failure of
    every write later: create (and remove) a file as the writer will."""
    probe = os.path.join(path, f".tmp-{os.getpid()}-{secrets.token_hex(6)}-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise JournalError(_unwritable(path, exc, "cannot be written")) from exc
    try:
        os.unlink(probe)
    except OSError:  # removed meanwhile by the tidying of a writer that holds the lock: gone either way
        pass


_MOVE = ("give a journal on a writable filesystem (to resume a journal that is here, copy it there "
         "first)")
_FREE = "free some space, or give a journal on another filesystem"
# why a journal cannot be written, and what to do about it, by errno
_UNWRITABLE = {errno.EROFS: ("it is on a read-only filesystem", _MOVE),
               errno.EACCES: ("no permission to write there", _MOVE),
               errno.EPERM: ("no permission to write there", _MOVE),
               errno.ENOSPC: ("the disk is full", _FREE),
               getattr(errno, "EDQUOT", errno.ENOSPC): ("the disk quota is exhausted", _FREE)}


def _unwritable(path: str, exc: OSError, what: str) -> str:
    reason, advice = _UNWRITABLE.get(exc.errno or 0, (exc.strerror or str(exc), _MOVE))
    return (f"journal {path} {what}: {reason} ({exc.strerror or exc}). A survey writes its journal as it "
            f"runs: {advice}. Reading a journal needs no writing: paramsurvey.journal.read(), `paramsurvey "
            "status` and `paramsurvey export` work here.")


def _holder(path: str) -> str:
    try:
        run = (_read_meta(path) or {}).get("runs", [{}])[-1]
    except JournalError:
        return "unknown"
    return f"pid {run.get('pid')} on {run.get('host')}, started {run.get('start_time')}"


def _tidy(path: str) -> list[str]:
    """Holding the lock: remove what a killed writer left behind, set damaged parts aside. Returns
    what it did."""
    done = []
    leftovers = [name for name in os.listdir(path) if name.startswith(".tmp-")]
    for name in leftovers:
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    if leftovers:
        done.append(f"removed {len(leftovers)} temporary file(s) left by a killed survey")
    covered = covered_parts(path)
    for part in covered:
        try:
            os.unlink(os.path.join(path, part.name))
        except OSError:
            pass
    if covered:
        done.append(f"removed {len(covered)} part(s) already merged into another")
    return done + _set_aside(path, [part.name for part in damaged_parts(path)], "cut short?")


def _set_aside(path: str, names: list[str], why: str) -> list[str]:
    """Rename damaged parts out of the way (kept, for whoever wants to look): every reader skips
    them anyway, and their psets run again."""
    done = []
    for name in names:
        aside = f"{_DAMAGED_PREFIX}{name[:-len('.parquet')]}.bin"
        log.warning("paramsurvey journal %s: part %s is damaged (%s): set aside as %s; its psets will run again",
                    path, name, why, aside)
        os.replace(os.path.join(path, name), os.path.join(path, aside))
        done.append(f"set the damaged part {name} aside as {aside}: its psets run again at the next run")
    return done


def repair(path: str | os.PathLike[str]) -> list[str]:
    """Repair a journal without running anything, as the next run of its survey would, and rebuild
    damaged metadata from the parts: temporary files of a killed survey removed, damaged parts set
    aside (their psets run again at the next run), a damaged ``_paramsurvey.json`` set aside as
    ``_paramsurvey.json.damaged-<time>`` and rebuilt -- the pset keys and, per run, when its psets
    finished and their counts; the survey's name, size and seed come back at its next run; the
    provenance of earlier runs is lost. Returns what was done (nothing: the journal was fine).
    What ``paramsurvey repair JOURNAL`` runs."""
    from ._journal_read import JournalRows

    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise JournalError(f"{path} is not a journal: no such directory")
    wait_for(path)
    _check_writable(path)
    lock = Lock(path)
    try:
        lock.acquire(_holder(path))
    except OSError as exc:
        raise JournalError(_unwritable(path, exc, "cannot be locked")) from exc
    try:
        done = _tidy(path)
        rows = JournalRows.load(path)
        done += _set_aside(path, rows.damaged, "unreadable")
        try:
            meta = _read_meta(path)
        except MetaDamaged:
            aside = f"{META}.damaged-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
            os.replace(os.path.join(path, META), os.path.join(path, aside))
            done.append(f"set the damaged metadata aside as {aside}")
            meta = None
        if meta is None and (rows.n or done):
            write_meta(path, _rebuilt_meta(rows))
            done.append(f"rebuilt the metadata from {len(rows.parts)} part(s): {rows.n} outcomes of "
                        f"{len(set(rows.run.tolist()))} run(s)")
    except OSError as exc:
        raise JournalError(_unwritable(path, exc, "cannot be repaired")) from exc
    finally:
        lock.release()
    return done


def _rebuilt_meta(rows: Any) -> dict[str, Any]:
    """Metadata from what the parts hold: pset keys, and per run the span and counts of its
    outcomes. What the parts do not hold (the survey's name, size, seed; each run's provenance)
    is left out: the next run of the survey records its own."""
    runs = []
    for run in sorted(set(rows.run.tolist())):
        this = rows.run == run
        finished = rows.finished[this]
        status = rows.status[this]
        runs.append({"run": int(run), "state": "stopped", "start_time": _utc(finished.min()),
                     "end_time": _utc(finished.max()), "rebuilt": True,
                     "written": {name: int((status == name).sum()) for name in STATUSES if (status == name).any()}})
    keys = list(dict.fromkeys(key for _, _, meta in rows.parts for key in meta.get("psets", ())))
    return {"format": FORMAT, "version": FORMAT_VERSION, "name": None,
            "created": runs[0]["start_time"] if runs else _now(), "rebuilt": _now(), "pset_keys": keys,
            "runs": runs}


def _utc(when: np.datetime64) -> str | None:
    return None if np.isnat(when) else pd.Timestamp(when).tz_localize("UTC").isoformat()


def source_hashes(source: PsetSource) -> tuple[np.ndarray, np.ndarray]:
    """The journal hash (two uint64 lanes) of every pset of a survey, in position order: computed
    in the driver, but only on resume."""
    columns = {key: (typed(values, present), present)
               for key, (values, present) in pset_columns(source, range(len(source))).items()}
    return hash_columns(columns, len(source))


def open_for_map(settings: Settings, source: PsetSource) -> tuple[Journal, list[int] | None, list[GroupResult]]:
    """Open (or create) ``settings.journal`` for one map(): returns the journal the engine writes
    to, the positions still to run (None: all) and the outcomes the journal already holds."""
    path = settings.journal
    assert path is not None
    started = time.perf_counter()
    wait_for(path)  # the previous map of this process on this journal: its last write
    _prepare(path)
    lock = Lock(path)
    try:
        lock.acquire(_holder(path))
    except OSError as exc:
        raise JournalError(_unwritable(path, exc, "cannot be locked")) from exc
    try:
        _tidy(path)
        meta = _read_meta(path)
        rows = None
        if list_parts(path):  # a journal to resume from (the reader is not imported for a new one)
            from ._journal_read import JournalRows

            rows = JournalRows.load(path)
            _set_aside(path, rows.damaged, "unreadable")
        runs = (meta or {}).get("runs", [])
        run = 1 + max([0] + [int(r.get("run", 0)) for r in runs] + ([int(rows.run.max())] if rows and rows.n else []))
        todo: list[int] | None = None
        done: list[GroupResult] = []
        adopted = dict.fromkeys(STATUSES, 0)
        if rows is not None and rows.n:
            todo, done, adopted = _resume(path, rows, meta, settings, source)
        if meta is None or not rows or not rows.n:
            meta = {"format": FORMAT, "version": FORMAT_VERSION, "name": settings.name,
                    "created": _now(), "runs": runs}
        meta.update(name=settings.name, total=len(source), pset_keys=list(source.keys), seed=settings.seed)
        meta.setdefault("runs", []).append({
            "run": run, "start_time": _now(), "pid": os.getpid(), "host": host(), "state": "running",
            "total": len(source), "todo": len(source) if todo is None else len(todo), "adopted": adopted,
            "env_used": dict(settings.env_used), "rerun_failed": settings.rerun_failed,
            "extend_journal": settings.extend_journal})
        write_meta(path, meta)
        journal = Journal(path, run, source, lock, meta, len(source) if todo is None else len(todo),
                          known=rows.result_types() if rows is not None else None)
        journal.start()
    except OSError as exc:  # the disk, not the survey: say which journal, and what to do
        lock.release()
        raise JournalError(_unwritable(path, exc, "cannot be opened")) from exc
    except BaseException:
        lock.release()
        raise
    if rows is not None and rows.n:
        log.info("%s: journal %s holds %d of %d psets; %d to run (opened in %.2f s)", settings.name, path,
                 len(source) - len(todo or []), len(source), len(todo or []), time.perf_counter() - started,
                 extra={"ps_verbose": 1})
    return journal, todo, done


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _resume(path: str, rows: Any, meta: dict[str, Any] | None, settings: Settings,
            source: PsetSource) -> tuple[list[int], list[GroupResult], dict[str, int]]:
    from ._journal_read import Match

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
    ok_columns = rows.gather(match.ok_row, "results", unpickle=True, by_key=True)
    in_group = ~np.isnan(rows.wall[match.fail_row])  # exceptions were timed; crashes were not
    ran_rows = np.concatenate([match.ok_row, match.fail_row[in_group]])
    ran_pos = np.concatenate([match.ok_pos, match.fail_pos[in_group]])
    exc, tb = rows.failures(match.fail_row)
    failures = [(int(p), str(s), e or "", t or "") for p, s, e, t in
                zip(match.fail_pos.tolist(), rows.status[match.fail_row].tolist(), exc, tb)]
    done = GroupResult(ran=ran_pos.tolist(), wall=rows.wall[ran_rows].tolist(),
                       iowait=np.nan_to_num(rows.iowait[ran_rows]).tolist(), ok=match.ok_pos.tolist(),
                       columns=ok_columns, absent={}, failures=failures, raw=rows.raw_timers(), digests=None)
    adopted = dict.fromkeys(STATUSES, 0)
    adopted["ok"] = len(match.ok_pos)
    for _, status, _, _ in failures:
        adopted[status] = adopted.get(status, 0) + 1
    return match.todo.tolist(), [done], adopted
