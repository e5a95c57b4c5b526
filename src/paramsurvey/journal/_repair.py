"""``repair``: what ``paramsurvey repair JOURNAL`` runs -- a journal made whole without running anything."""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import JournalError
from ._build import STATUSES
from ._prepare import check_writable, lock_journal, set_aside, tidy, unwritable
from ._store import FORMAT, FORMAT_VERSION, META, MetaDamaged, now, write_meta
from ._store import read_meta as read_meta_file
from ._writer import wait_for

if TYPE_CHECKING:
    from ._read import JournalRows


def repair(path: str | os.PathLike[str]) -> list[str]:
    """Repair a journal without running anything, as the next run of its survey would, and rebuild
    damaged metadata from the parts: temporary files of a killed survey removed, damaged parts set
    aside (their psets run again at the next run), a damaged ``_paramsurvey.json`` set aside as
    ``_paramsurvey.json.damaged-<time>`` and rebuilt -- the pset keys and, per run, when its psets
    finished and their counts; the survey's name, size and seed come back at its next run; the
    provenance of earlier runs is lost. Returns what was done (nothing: the journal was fine).
    What ``paramsurvey repair JOURNAL`` runs."""
    from ._read import JournalRows

    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise JournalError(f"{path} is not a journal: no such directory")
    wait_for(path)
    check_writable(path)
    lock = lock_journal(path)
    try:
        done = tidy(path)
        rows = JournalRows.load(path)
        done += set_aside(path, rows.damaged, "unreadable")
        meta, moved = _metadata_or_set_aside(path)
        done += moved
        if meta is None and (rows.n or done):
            write_meta(path, _rebuilt_meta(rows))
            done.append(f"rebuilt the metadata from {len(rows.parts)} part(s): {rows.n} outcomes of "
                        f"{len(set(rows.run.tolist()))} run(s)")
    except OSError as exc:
        raise JournalError(unwritable(path, exc, "cannot be repaired")) from exc
    finally:
        lock.release()
    return done


def _metadata_or_set_aside(path: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The metadata (None: there is none, or it was damaged and is now set aside), and what was done."""
    try:
        return read_meta_file(path), []
    except MetaDamaged:
        aside = f"{META}.damaged-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        os.replace(os.path.join(path, META), os.path.join(path, aside))
        return None, [f"set the damaged metadata aside as {aside}"]


def _rebuilt_meta(rows: JournalRows) -> dict[str, Any]:
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
            "created": runs[0]["start_time"] if runs else now(), "rebuilt": now(), "pset_keys": keys,
            "runs": runs}


def _utc(when: np.datetime64) -> str | None:
    return None if np.isnat(when) else pd.Timestamp(when).tz_localize("UTC").isoformat()
