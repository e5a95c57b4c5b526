"""Reading a journal from Python: ``read``, ``read_meta``, ``pset_keys`` (see the package docstring).

Reading needs no write access, works while a survey writes (it reads what is on disk now) and with
damaged metadata (a warning: the outcomes are in the parts).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._columns import ColumnAccumulator
from ..exceptions import JournalError
from ._store import META, MetaDamaged, list_parts
from ._store import read_meta as read_meta_file
from ._writer import wait_for

if TYPE_CHECKING:
    from ._read import JournalRows

log = logging.getLogger("paramsurvey.journal")

# paramsurvey's columns in a read() frame, after the pset and result columns
TAIL_COLUMNS = ("_status", "_exception", "_traceback", "_wallclock", "_iowait", "_finished", "_attempt",
                "_run", "_position", "_hash")


def check_journal(path: str | os.PathLike[str]) -> str:
    """The absolute path of a journal to read, once this process's last write to it is on disk; a
    JournalError when it is not a journal."""
    path = os.path.abspath(os.fspath(path))
    wait_for(path)  # a map of this process may still be writing its last part
    if not os.path.isdir(path):
        raise JournalError(f"{path} is not a journal: no such directory")
    if meta_for_reading(path) is None and not list_parts(path):
        raise JournalError(f"{path} is not a paramsurvey journal (no {META}, no part files)")
    return path


def meta_for_reading(path: str) -> dict[str, Any] | None:
    """The metadata, for a reader: damaged metadata does not stop reading the outcomes (they are in
    the parts), it is a warning -- unless there are no parts either."""
    try:
        return read_meta_file(path)
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
    path = check_journal(path)
    return read_meta_file(path) or {}


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
    from ._read import JournalRows

    path = check_journal(path)
    rows = JournalRows.load(path)
    selected = np.arange(rows.n, dtype=np.int64) if history else rows.latest()
    return _frame(rows, selected, unpickle)


def _frame(rows: JournalRows, selected: np.ndarray, unpickle: bool) -> pd.DataFrame:
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
    path = check_journal(path)
    meta = meta_for_reading(path) or {}
    if meta.get("pset_keys"):
        return list(meta["pset_keys"])
    from ._read import JournalRows

    rows = JournalRows.load(path, light=True)
    return list(dict.fromkeys(key for _, _, part in rows.parts for key in part.get("psets", ())))
