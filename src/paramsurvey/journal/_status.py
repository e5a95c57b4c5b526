"""Where a survey stands, from its journal (also while it runs): ``status`` and its ``JournalStatus``."""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._build import STATUSES
from ._reading import check_journal
from ._store import MetaDamaged, is_locked
from ._store import read_meta as read_meta_file

if TYPE_CHECKING:
    from ._read import JournalRows

# the rate is measured over the newest psets of this window, while the survey runs
RATE_WINDOW = 60.0


@dataclass(frozen=True)
class JournalStatus(Mapping[str, Any]):
    """Where a survey stands, from its journal: what ``paramsurvey status`` prints.

    Read its fields as attributes (``status(path).remaining``). It is also a read-only mapping of
    the field names to their values, as the dict that ``status()`` used to return:
    ``status(path)['remaining']``, ``.get()``, ``.keys()``, ``dict(status(path))`` all work;
    ``to_dict()`` gives a plain dict (for JSON).
    """

    journal: str
    """The journal's absolute path."""
    name: str | None
    """The survey's name (``map(name=...)``), or None when the metadata does not know it."""
    state: str
    """'running' (a survey holds the journal's lock now), 'finished' (its latest run ran every
    pset), or 'stopped' (interrupted or killed: run the survey again to resume)."""
    total: int
    """The survey's number of psets (or, when the metadata does not know it, of psets journaled)."""
    counts: dict[str, int]
    """Psets by the status of their outcome: 'ok', 'exception', 'crashed', 'timeout'."""
    failures: int
    """Psets whose outcome is a failure (exception, crash, timeout)."""
    remaining: int
    """Psets without an outcome yet."""
    run: int
    """The number of the latest run (1 for the first, 2 for the first resume, ...)."""
    runs: int
    """How many runs the metadata records."""
    this_run: int
    """Outcomes written by the latest run."""
    rate: float | None
    """Psets per second of the latest run: over the last minute while it runs, else over the run;
    None when it wrote nothing."""
    eta: float | None
    """Seconds until every pset has an outcome at that rate, while the survey runs; else None."""
    start_time: str | None
    """When the latest run started (ISO 8601, local time with its offset)."""
    end_time: str | None
    """When the latest run ended (ISO 8601), or None while it runs or when it was killed."""
    last_finished: str | None
    """When the newest outcome of the latest run reached the driver (ISO 8601, UTC), or None."""
    host: str | None
    """The host of the latest run."""
    pid: int | None
    """The process id of the latest run's driver."""
    command_line: str | None
    """The command line of the latest run."""
    git_commit: str | None
    """The git commit of the latest run's working directory, if it was in a git repository."""
    git_dirty: bool | None
    """Whether that working directory had uncommitted changes."""
    elapsed: float | None
    """Seconds the latest run has been running (while it runs) or ran (once ended)."""
    damaged_parts: list[str]
    """Part files that cannot be read: skipped, as ``read()`` skips them (the counts are those of the
    outcomes ``read()`` gives); the next run sets them aside and runs their psets again."""
    metadata_problem: str | None
    """What is wrong with a damaged metadata file and how to recover, or None when it is fine."""
    rebuilt: bool
    """The metadata was rebuilt from the parts (``paramsurvey repair``) and the survey has not run
    since: its size and earlier runs' provenance are unknown."""

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in _FIELD_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELD_NAMES)

    def __len__(self) -> int:
        return len(_FIELD_NAMES)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, in field order (what ``paramsurvey status --json`` prints)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(JournalStatus))


def status(path: str | os.PathLike[str]) -> JournalStatus:
    """Where a survey stands, from its journal (also while it runs): a ``JournalStatus`` with
    ``state`` ('running', 'finished' or 'stopped'), ``total``, ``counts`` by status, ``remaining``,
    and, for the latest run, ``rate`` (psets per second), ``eta`` (seconds, while running), its
    provenance; ``damaged_parts``, the parts that cannot be read (skipped, as by ``read()``: the
    counts are then those of the outcomes ``read()`` gives), and ``metadata_problem``, what is
    wrong with a damaged metadata file and how to recover (None when it is fine). Its fields read
    as attributes or, as from the dict ``status()`` returned before, by name.

    Example
    -------
    >>> paramsurvey.journal.status('survey.journal').remaining       # doctest: +SKIP
    """
    from ._read import JournalRows

    path = check_journal(path)
    meta, problem = metadata(path)
    return status_from_rows(path, meta, problem, JournalRows.load(path, light=True))


def status_from_rows(path: str, meta: dict[str, Any], problem: str | None, rows: JournalRows) -> JournalStatus:
    """``status()`` of rows already read (the report reads a journal once for everything it shows)."""
    running = bool(is_locked(path))
    runs = meta.get("runs") or [{}]
    last = runs[-1]
    run_no = int(last.get("run", rows.run.max() if rows.n else 1))
    this = rows.run == run_no
    counts = _counts(rows, last, this)
    total = int(last.get("total", sum(counts.values())))
    remaining = max(0, total - sum(counts.values()))  # a failure is an outcome too (a resume runs it again)
    finished_this = rows.finished[this]
    now = np.datetime64(datetime.datetime.now(datetime.UTC).replace(tzinfo=None), "us")
    start = _parse_time(last.get("start_time"))
    rate = _rate(finished_this, start, now if running else None)
    return JournalStatus(
        journal=path, name=meta.get("name"), state=_state(running, last), total=total, counts=counts,
        failures=sum(k for name, k in counts.items() if name != "ok"), remaining=remaining, run=run_no,
        runs=len(meta.get("runs") or []), this_run=int(this.sum()), rate=rate,
        eta=(remaining / rate) if running and rate else None,
        start_time=last.get("start_time"), end_time=last.get("end_time"),
        last_finished=(str(pd.Timestamp(finished_this.max()).tz_localize("UTC").isoformat())
                       if len(finished_this) else None),
        host=last.get("host"), pid=last.get("pid"), command_line=last.get("command_line"),
        git_commit=last.get("git_commit"), git_dirty=last.get("git_dirty"),
        elapsed=_seconds(start, now if running else _parse_time(last.get("end_time"))),
        damaged_parts=rows.damaged, metadata_problem=problem,
        rebuilt=bool(meta.get("rebuilt")) and "total" not in meta,  # until the survey runs again
    )


def metadata(path: str) -> tuple[dict[str, Any], str | None]:
    """The metadata ({} when there is none), and what is wrong with it when it is damaged: the
    counts then come from the parts, and the problem is reported."""
    try:
        return read_meta_file(path) or {}, None
    except MetaDamaged as exc:
        return {}, str(exc)


def _counts(rows: JournalRows, last: dict[str, Any], this: np.ndarray) -> dict[str, int]:
    """Psets by status: those the latest run adopted from the journal when it started, plus those
    it wrote."""
    if "adopted" not in last or rows.damaged:
        # No metadata, or a part that cannot be read (whose psets the counts adopted at the run's
        # start may include): count the latest outcomes the journal holds, as read() gives them.
        latest = rows.status[rows.latest()]
        return {name: int((latest == name).sum()) for name in set(latest.tolist()) | set(STATUSES)}
    counts = dict.fromkeys(STATUSES, 0)
    for name, k in (last.get("adopted") or {}).items():
        counts[name] = counts.get(name, 0) + int(k)
    this_status = rows.status[this]
    for name in set(this_status.tolist()):
        counts[name] = counts.get(name, 0) + int((this_status == name).sum())
    return counts


def _state(running: bool, last: dict[str, Any]) -> str:
    if running:
        return "running"
    return "finished" if last.get("state") == "finished" else "stopped"


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
