"""Building one part of a journal: a batch of outcomes -> one Arrow table.

Rows are outcomes in arrival order; columns, in order: ``_hash``, ``_position``, ``_status``, the pset
columns, the result columns, ``_exception``, ``_traceback``, ``_wallclock``, ``_iowait``,
``_finished``, ``_attempt``. The part's metadata (``paramsurvey`` in the Parquet key-value metadata)
names the pset and result columns, the pickled ones, the counts by status and the workers' timers.
Everything here is vectorised: about half a microsecond a pset (benchmarks/bench_journal.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._psets import PsetSource
from .._records import GroupResult, PsetLost, Status
from ._arrow import (
    PICKLED,
    PLAIN,
    SURROGATES,
    UnstorableKey,
    decode_key,
    encode_key,
    string_array,
    to_arrow,
    typed,
)
from ._hash import HASH_VERSION, hash_columns, hex_bytes, list_columns
from ._store import PART_META_KEY

log = logging.getLogger("paramsurvey.journal")

# Every status, in the order of their codes in a part file (new statuses only ever go last)
STATUSES = tuple(status.value for status in Status)
_STATUS_DICTIONARY = pa.array(STATUSES, type=pa.string())
# Columns worth dictionary-encoding (few distinct values); the rest would pay for a dictionary
# they then abandon (pyarrow tries, then falls back to plain: 2-5x slower on unique values).
DICT_COLUMNS = ("_status", "_exception", "_traceback", "_attempt", "_finished")


def result_column(key: Any, pset_keys: frozenset[str]) -> str:
    """The part-file column of a result key: the key itself, unless it could be mistaken for a pset
    column or one of paramsurvey's own, or is not a string UTF-8 can encode (then ``_result_<key>``,
    lone surrogates backslash-escaped: a Parquet column name is UTF-8)."""
    if isinstance(key, str) and not key.startswith("_") and key not in pset_keys and _encodable(key):
        return key
    return "_result_" + _escaped(key if isinstance(key, str) else _repr(key))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    return text if _encodable(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _repr(key: Any) -> str:
    try:
        return repr(key)
    except Exception:  # a key's own __repr__ may fail: the column is still named, by its type
        return f"<{type(key).__qualname__}>"


def pset_columns(source: PsetSource, positions: Sequence[int] | np.ndarray,
                 psets: Sequence[Mapping[str, Any]] | None = None) -> dict[str, tuple[Any, np.ndarray | None]]:
    """The psets at these positions, column by column: key -> (values, present mask or None).
    A DataFrame's numeric columns stay numpy arrays; other values are what the worker receives.
    ``psets``: the pset dicts at these positions, when the caller already has them."""
    frame = source.frame
    if frame is None:
        return list_columns(source.get(list(positions)) if psets is None else psets, source.keys)
    pos = np.asarray(positions, dtype=np.int64)
    out: dict[str, tuple[Any, np.ndarray | None]] = {}
    for key in frame.columns:
        series = frame[key]
        if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
            out[key] = (series.to_numpy()[pos], None)
        else:
            out[key] = (series.iloc[pos].tolist(), None)
    return out


def _contiguous(ran: Sequence[int]) -> bool:
    """Is ran a run of consecutive positions? (Checked at both ends: the engine's groups are either
    a range of its todo list or a single retry; a sorted todo with gaps fails the length test.)"""
    return len(ran) > 0 and ran[-1] - ran[0] == len(ran) - 1 and (len(ran) < 3 or ran[1] == ran[0] + 1)


class _Rows:
    """The rows of one part being built: outcomes in arrival order, then columns."""

    def __init__(self, source: PsetSource) -> None:
        self.source = source
        self.n = 0
        self.positions: list[np.ndarray] = []
        self.psets: list[Any] | None = [] if source.frame is None else None
        self.wall: list[np.ndarray] = []
        self.iowait: list[np.ndarray] = []
        self.when: list[int] = []  # per entry: microseconds since the epoch
        self.attempt: list[int] = []  # per entry
        self.counts: list[int] = []  # rows per entry
        self.failed: dict[int, tuple[int, str, str]] = {}  # row -> (status code, exception, traceback)
        self.results: dict[Any, list[tuple[int, Sequence[Any], list[int] | None]]] = {}
        self.raw: dict[str, list[float]] = {}

    def _add_rows(self, ran: Sequence[int], when: float, attempt: int) -> int:
        base, k = self.n, len(ran)
        if _contiguous(ran):  # the usual group: a slice of the psets
            self.positions.append(np.arange(ran[0], ran[0] + k, dtype=np.int64))
            if self.psets is not None:
                self.psets.extend(self.source.get_range(ran[0], ran[0] + k))
        else:
            self.positions.append(np.array(ran, dtype=np.int64))
            if self.psets is not None:
                self.psets.extend(self.source.get(ran))
        self.when.append(int(when * 1e6))
        self.attempt.append(attempt)
        self.counts.append(k)
        self.n += k
        return base

    def add_group(self, result: GroupResult, when: float, attempt: int) -> None:
        ran = result.ran
        base = self._add_rows(ran, when, attempt)
        self.wall.append(np.array(result.wall, dtype=np.float64))  # array('d') from workers: a memcpy
        self.iowait.append(np.array(result.iowait, dtype=np.float64))
        if not result.failures:  # the usual case: every pset of the group ok, in ran order
            for key, column in result.columns.items():
                self.results.setdefault(key, []).append((base, column, None))
        else:
            failed = {f[0]: f for f in result.failures}
            rows: list[int] = []
            for i, position in enumerate(ran):
                f = failed.get(position)
                if f is None:
                    rows.append(base + i)
                else:
                    self.failed[base + i] = (_code(f[1]), f[2], f[3])
            for key, column in result.columns.items():
                self.results.setdefault(key, []).append((base, column, rows))
        for name, values in result.raw.items():
            self.raw.setdefault(name, []).extend(values)

    def add_lost(self, lost: PsetLost, when: float) -> None:
        row = self._add_rows([lost.position], when, lost.attempt)
        self.wall.append(np.array([np.nan]))
        self.iowait.append(np.array([np.nan]))
        self.failed[row] = (_code(lost.status), lost.message, "")

    def rows_with(self, key: Any) -> list[int]:
        """The rows of the ok psets of the groups in which some pset returned this result key."""
        out: list[int] = []
        for base, column, rows in self.results[key]:
            out.extend(range(base, base + len(column)) if rows is None else rows)
        return out

    def result_values(self, key: Any) -> list[Any]:
        full: list[Any] = [None] * self.n
        for base, column, rows in self.results[key]:
            if rows is None:
                full[base:base + len(column)] = column
            else:
                for row, value in zip(rows, column):
                    full[row] = value
        return full


def _code(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else STATUSES.index(Status.CRASHED)


class PartBuilder:
    """Turns pending outcomes into one Arrow table: system columns, psets, results."""

    def __init__(self, source: PsetSource, known: dict[str, tuple[Any, pa.DataType, str]] | None = None) -> None:
        self.source = source
        self.pset_keys = frozenset(source.keys)
        self.warned: set[Any] = set()
        # result columns this journal has had: name -> (stored key, Arrow type, encoding)
        self.known: dict[str, tuple[Any, pa.DataType, str]] = dict(known or {})
        # the column of each result key, and the names taken: two keys whose names would be the same
        # (a custom repr) must not share a column; a resumed journal's names stay with their keys
        self.names: dict[Any, str] = {}
        self.taken: set[str] = set(self.known)
        for name, (stored, _, _) in self.known.items():
            try:
                self.names.setdefault(decode_key(stored), name)
            except Exception:  # a key pickled by code this process cannot import: its name stays taken
                pass
        self.dropped = 0  # psets left out because a value of theirs cannot be stored

    def build(self, entries: list[tuple[Any, ...]]) -> tuple[pa.Table, dict[str, Any]] | None:
        rows = _Rows(self.source)
        for entry in entries:
            if entry[0] == "g":
                rows.add_group(entry[1], entry[2], entry[3])
            else:
                rows.add_lost(entry[1], entry[2])
        n = rows.n
        if not n:
            return None
        positions = np.concatenate(rows.positions)
        columns: dict[str, pa.Array] = {}
        encoded: dict[str, str] = {}  # column -> encoding, for the columns not stored plainly
        bad: set[int] = set()
        pcols = {key: (typed(values, present), present)
                 for key, (values, present) in pset_columns(self.source, positions, rows.psets).items()}
        hexes = hex_bytes(*hash_columns(pcols, n))
        offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
        columns["_hash"] = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexes))
        columns["_position"] = pa.array(positions)
        codes = np.zeros(n, dtype=np.int8)
        for row, (code, _, _) in rows.failed.items():
            codes[row] = code
        # dictionary-encoded: free to build (a string array from 100,000 objects takes ~20 ms), and
        # what Parquet would store anyway; pandas reads it as a categorical
        columns["_status"] = pa.DictionaryArray.from_arrays(pa.array(codes), _STATUS_DICTIONARY)
        psets: list[str] = []
        for key, (column, _) in pcols.items():
            array, encoding, unstorable = to_arrow(column)
            columns[key] = array
            psets.append(key)
            if encoding != PLAIN:
                encoded[key] = encoding
            bad.update(unstorable)
        results = self._result_columns(rows, n, columns, encoded, bad)
        encoded.update(self._failure_columns(rows, n, columns))
        wall = np.concatenate(rows.wall)
        nan = np.isnan(wall) if rows.failed else None
        mask = nan if nan is not None and nan.any() else None
        columns["_wallclock"] = pa.array(wall, mask=mask)
        columns["_iowait"] = pa.array(np.concatenate(rows.iowait), mask=mask)
        counts = np.array(rows.counts, dtype=np.int64)
        columns["_finished"] = pa.array(np.repeat(np.array(rows.when, dtype=np.int64), counts),
                                        type=pa.timestamp("us", tz="UTC"))
        columns["_attempt"] = pa.array(np.repeat(np.array(rows.attempt, dtype=np.int32), counts))
        keep = None
        if bad:
            keep = np.ones(n, dtype=bool)
            keep[sorted(bad)] = False
        counts_by_code = np.bincount(codes if keep is None else codes[keep], minlength=len(STATUSES))
        meta: dict[str, Any] = {
            "version": 1, "hash_version": HASH_VERSION, "psets": psets, "results": results,
            "pickled": [c for c, e in encoded.items() if e == PICKLED], "raw": rows.raw,
            "counts": {name: int(k) for name, k in zip(STATUSES, counts_by_code.tolist()) if k}}
        surrogates = [c for c, e in encoded.items() if e == SURROGATES]
        if surrogates:  # only then: the parts of every other survey stay as they were
            meta[SURROGATES] = surrogates
        table = pa.table(columns).replace_schema_metadata({PART_META_KEY: json.dumps(meta).encode()})
        if keep is not None:
            table = table.filter(pa.array(keep))
            self.dropped += len(bad)
        return table, meta

    def _name(self, key: Any) -> str:
        name = self.names.get(key)
        if name is None:
            base = name = result_column(key, self.pset_keys)
            copy = 1
            while name in self.taken:
                copy += 1
                name = f"{base}~{copy}"
            self.names[key] = name
            self.taken.add(name)
        return name

    def _result_columns(self, rows: _Rows, n: int, columns: dict[str, pa.Array], encoded: dict[str, str],
                        bad: set[int]) -> list[list[Any]]:
        results: list[list[Any]] = []
        for key in rows.results:
            try:
                stored = encode_key(key)
            except UnstorableKey as exc:
                unstorable = rows.rows_with(key)
                self._warn_once(key, f"{exc}; the {len(unstorable)} pset(s) that returned it are not journaled "
                                     "(a resumed survey runs them again)")
                bad.update(unstorable)
                continue
            name = self._name(key)
            array, encoding, unstorable = to_arrow(typed(rows.result_values(key)))
            if unstorable:
                self._warn_once(key, f"result {_repr(key)} of {len(unstorable)} pset(s) cannot be pickled; those "
                                     "psets are not journaled (a resumed survey runs them again)")
            known = self.known.get(name)
            if pa.types.is_null(array.type) and known is not None:  # all missing here: the known type
                array, encoding = pa.nulls(n, known[1]), known[2]
            elif known is None or pa.types.is_null(known[1]):
                self.known[name] = (stored, array.type, encoding)
            columns[name] = array
            results.append([name, stored])
            if encoding != PLAIN:
                encoded[name] = encoding
            bad.update(unstorable)
        # the columns this journal had that this batch lacks (every pset failed, a key not returned):
        # typed nulls, so that parts have the same columns and Parquet readers read them alike
        for name, (stored, type_, encoding) in self.known.items():
            if name not in columns:
                columns[name] = pa.nulls(n, type_)
                results.append([name, stored])
                if encoding != PLAIN:
                    encoded[name] = encoding
        return results

    def _warn_once(self, key: Any, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning("paramsurvey journal: %s", message)

    @staticmethod
    def _failure_columns(rows: _Rows, n: int, columns: dict[str, pa.Array]) -> dict[str, str]:
        """Adds ``_exception`` and ``_traceback``; returns the encodings of those not stored plainly
        (a worker's exception text may hold a lone surrogate)."""
        if not rows.failed:
            columns["_exception"] = pa.nulls(n, pa.string())
            columns["_traceback"] = pa.nulls(n, pa.string())
            return {}
        exc: list[str | None] = [None] * n
        tb: list[str | None] = [None] * n
        for row, (_, e, t) in rows.failed.items():
            exc[row], tb[row] = e, t
        encoded = {}
        for name, values in (("_exception", exc), ("_traceback", tb)):
            columns[name], encoding = string_array(values)
            if encoding != PLAIN:
                encoded[name] = encoding
        return encoded
