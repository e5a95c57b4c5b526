"""Column-major accumulation of results into a DataFrame whose dtypes never lie.

Results reach the driver in chunks (one per group of psets, in any order).  Each chunk is
converted at once into compact numpy storage -- one array per column plus a boolean mask of the
missing rows -- so the caller can drop its Python lists; ``to_frame`` merges the chunks column by
column, promoting a column's dtype across all chunks with every value exact.

Dtype rules (also ``series_from_values``), from the kind ``_kinds.classify`` gives each chunk's
values (the kinds the journal and ``params`` use too):

============================================  ===============================================
values of a column (``None``/absent = missing)  dtype
============================================  ===============================================
bool only                                     ``bool``; with missing rows ``boolean`` (pd.NA)
int only, all within int64                    ``int64``; with missing rows ``Int64`` (pd.NA)
int beyond int64 anywhere                     ``object`` of Python ints (never wrapped)
float only                                    ``float64`` (missing = NaN)
int and float, every int with abs(i) <= 2**53  ``float64`` (missing = NaN)
int and float, some int beyond 2**53          ``object`` of the original ints and floats
str only                                      ``object`` of str (missing = None)
anything else (bool+int, lists, arrays, ...)  ``object``, values unchanged (missing = None)
no value at all                               ``object`` of None
============================================  ===============================================

``pd.NA`` returned as a value counts as missing, like ``None``; a float NaN is a float value.

numpy scalars count as their Python kind (``np.int32`` is an int, ``np.float32`` a float,
``np.bool_`` a bool, ``np.str_`` a str); ``np.longdouble`` (wider than float64) and subclasses such
as ``IntEnum`` stay objects, because converting them would lose information.

Strings stay ``object`` rather than the ``string``/``str`` extension dtype: the column then holds the
very str objects the worker returned, behaves the same on pandas 1.5 to 3.x (pandas 3 would infer
its ``str`` dtype, whose missing value is NaN), and ``.str``, comparisons and ``isin`` work as usual.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from ._kinds import BIGINT, BOOL, EMPTY, FLOAT, INT, MAX_EXACT, NUMMIX, classify

__all__ = ["ColumnAccumulator", "series_from_values", "frame_from_records"]

Dest = slice | np.ndarray  # where a chunk's rows go in the sorted frame


class _Piece:
    """One chunk's values of one column, in compact numpy storage; ``kind`` is the ``_kinds``
    kind of those values: BOOL, INT, FLOAT as numpy arrays (missing rows hold False, 0, NaN);
    BIGINT as an object array of Python ints; NUMMIX (every int exact as a float), STR and OBJECT
    as object arrays of the values; EMPTY with no array."""

    __slots__ = ("kind", "values", "mask")

    def __init__(self, kind: str, values: np.ndarray | None, mask: np.ndarray | None) -> None:
        self.kind = kind
        self.values = values
        self.mask = mask    # True where missing; None when no row is missing


def _object_array(values: Iterable[Any], n: int) -> np.ndarray:
    # fromiter never interprets nested sequences (np.array would turn lists into a 2-D array)
    return np.fromiter(values, dtype=object, count=n)


def _convert(values: Sequence[Any], absent: Sequence[int] | None = None) -> _Piece:
    """Convert one chunk's list of values to a _Piece, without a Python-level loop per value.

    ``_kinds.classify`` decides the kind from the exact types of the values: np.array's own
    inference cannot be trusted, since it turns [True, 2] into int64, [2**53 + 1, 0.5] into a rounded
    float64, ['a', 1] into '<U21' and lists into 2-D arrays.  ``pd.NA`` counts as missing, like None.
    """
    n = len(values)
    mask = None
    if absent is not None and len(absent):
        mask = np.zeros(n, dtype=bool)
        mask[np.asarray(absent, dtype=np.intp)] = True
    column = classify(values, mask, na_is_missing=True)
    kind, array, none, kept = column.kind, column.array, column.none, column.values
    if array is not None:  # BOOL, INT, FLOAT, NUMMIX: numpy arrays
        if kind == NUMMIX:  # the original ints and floats: another chunk may make the column object
            return _Piece(NUMMIX, _object_array(kept, n), none)
        # a copy when it is the caller's own array: a piece must not change with the caller's data
        return _Piece(kind, array.copy() if array is values else array, none)
    if kind == EMPTY:
        return _Piece(EMPTY, None, none)
    if kind == BIGINT:  # beyond int64: keep exact Python ints
        return _Piece(BIGINT, _object_array((None if v is None else int(v) for v in kept), n), none)
    return _Piece(kind, _object_array(kept, n), none)  # STR, OBJECT


def _int_exact(p: _Piece) -> bool:
    """Whether an INT piece's values all convert to float64 exactly."""
    assert p.values is not None
    v = p.values  # missing rows hold 0
    return v.size == 0 or (int(v.min()) >= -MAX_EXACT and int(v.max()) <= MAX_EXACT)


def _target(pieces: Sequence[_Piece | None]) -> str:
    """The column's dtype, from the kinds of all its pieces (None: column absent from that chunk)."""
    kinds = {p.kind for p in pieces if p is not None and p.kind != EMPTY}
    missing = any(p is None or p.mask is not None for p in pieces)
    if kinds == {BOOL}:
        return "boolean" if missing else "bool"
    if kinds == {INT}:
        return "Int64" if missing else "int64"
    if kinds and kinds <= {INT, FLOAT, NUMMIX}:
        # ints of one chunk and floats of another: float64 only while every int is exact as a float
        # (a NUMMIX piece is exact by its kind)
        exact = all(_int_exact(p) for p in pieces if p is not None and p.kind == INT)
        return "float64" if exact else "object"
    return "object"


def _put(out: np.ndarray, dest: Dest, values: Any, mask: np.ndarray | None, fill: Any) -> None:
    """out[dest] = values, then `fill` in the rows the mask marks missing."""
    out[dest] = values
    if mask is not None:
        if isinstance(dest, slice):
            out[dest][mask] = fill  # a basic slice is a view: this writes into out
        else:
            out[dest[mask]] = fill


def _drain(pieces: list[tuple[Dest, _Piece | None]]) -> Iterator[tuple[Dest, _Piece | None]]:
    # Pop each piece as it is copied, so that its storage is freed while the column is built.
    while pieces:
        yield pieces.pop()


def _merge(pieces: list[tuple[Dest, _Piece | None]], n: int) -> tuple[Any, str]:
    """Build one column of n rows from its pieces (consumed): (numpy or pandas extension array, dtype)."""
    target = _target([p for _, p in pieces])
    if target == "object":
        out = np.empty(n, dtype=object)  # filled with None: the missing value of object columns
        for dest, p in _drain(pieces):
            if p is not None and p.values is not None:
                # numpy arrays of bool/int/float become Python bool/int/float objects here
                _put(out, dest, p.values if p.values.dtype == object else p.values.astype(object),
                     p.mask, None)
        return out, target
    if target == "float64":
        out = np.empty(n, dtype=np.float64)
        for dest, p in _drain(pieces):
            if p is None or p.values is None:
                out[dest] = np.nan
            else:  # int64 and object-of-numbers convert exactly: _target checked the magnitudes
                vals = p.values.astype(np.float64) if p.kind == NUMMIX else p.values
                _put(out, dest, vals, p.mask, np.nan)
        return out, target
    nptype = np.bool_ if target in ("bool", "boolean") else np.int64
    out = np.empty(n, dtype=nptype)
    if target in ("bool", "int64"):  # no missing row anywhere
        for dest, p in _drain(pieces):
            assert p is not None
            out[dest] = p.values
        return out, target
    isna = np.zeros(n, dtype=np.bool_)
    for dest, p in _drain(pieces):
        if p is None or p.values is None:
            out[dest] = 0
            isna[dest] = True
        else:
            out[dest] = p.values  # masked rows already hold 0 / False
            if p.mask is not None:
                isna[dest] = p.mask
    if target == "Int64":
        return pd.arrays.IntegerArray(out, isna), target
    return pd.arrays.BooleanArray(out, isna), target


def _series(data: Any, dtype: str, index: pd.Index, name: str | None) -> pd.Series:
    # dtype=object is explicit so that pandas >= 3 does not re-infer an object column of str as `str`
    return pd.Series(data, index=index, name=name, copy=False,
                     dtype=object if dtype == "object" else None)


def _missing_offsets(missing: Sequence[int] | np.ndarray | None, n: int) -> Sequence[int] | None:
    if isinstance(missing, np.ndarray) and missing.dtype == np.bool_:
        if len(missing) != n:
            raise ValueError(f"missing mask has {len(missing)} entries for {n} values")
        return np.flatnonzero(missing).tolist()
    return None if missing is None else [int(i) for i in missing]


def series_from_values(values: Sequence[Any], missing: Sequence[int] | np.ndarray | None = None,
                       name: str | None = None) -> pd.Series:
    """One column of Python values -> a Series with the module's dtype rules.

    `missing`: offsets of missing rows, or a boolean mask; a None value is missing too.
    The index is a RangeIndex.
    """
    n = len(values)
    piece = _convert(values, _missing_offsets(missing, n))
    data, dtype = _merge([(slice(0, n), piece)], n)
    return _series(data, dtype, pd.RangeIndex(n), name)


class _Chunk:
    __slots__ = ("positions", "first", "columns")

    def __init__(self, positions: range | np.ndarray, columns: dict[str, _Piece]) -> None:
        # A run of consecutive positions (the usual group) is kept as a range: no 8 bytes per row.
        if isinstance(positions, np.ndarray):
            n, first, last = len(positions), int(positions[0]), int(positions[-1])
            if last - first == n - 1 and (n < 2 or bool((positions[1:] > positions[:-1]).all())):
                positions = range(first, last + 1)
        self.positions = positions
        self.first = positions[0] if isinstance(positions, range) else int(positions.min())
        self.columns = columns


class ColumnAccumulator:
    """Collects column-major result chunks; ``to_frame`` gives the faithful DataFrame.

    ``to_frame`` releases each column's chunk storage as soon as that column is built, so that the
    peak memory stays near the size of the final frame.  It can be called again: later calls return
    the same DataFrame object (reordered, as a new frame, when `column_order` is given).  ``add_chunk``
    after ``to_frame`` raises RuntimeError.
    """

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._nrows = 0
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return self._nrows

    def add_chunk(self, positions: Sequence[int], columns: Mapping[str, Sequence[Any]],
                  absent: Mapping[str, Sequence[int]] | None = None) -> None:
        """Store one chunk: `positions[i]` is row i's position in the pset list; `columns[key][i]` its
        value (None where absent); `absent[key]` the row offsets where the key was absent.  A key that
        this chunk lacks is missing from all its rows.  The caller may drop its lists afterwards."""
        if self._frame is not None:
            raise RuntimeError("add_chunk() after to_frame()")
        pos: range | np.ndarray
        if isinstance(positions, range) and positions.step == 1:
            pos = positions
        else:
            pos = np.asarray(positions, dtype=np.int64)
            if pos.ndim != 1:
                raise ValueError("positions must be one-dimensional")
        n = len(pos)
        for key, vals in columns.items():
            if len(vals) != n:
                raise ValueError(f"column {key!r} has {len(vals)} values for {n} positions")
        if n == 0:
            return
        absent = absent or {}
        pieces = {key: _convert(vals, absent.get(key)) for key, vals in columns.items()}
        self._chunks.append(_Chunk(pos, pieces))
        self._nrows += n

    def _destinations(self) -> tuple[list[Dest], pd.Index]:
        """Where each chunk's rows go so that rows are sorted by position, and the index."""
        chunks = self._chunks  # sorted by first position
        if not chunks:
            return [], pd.RangeIndex(0)
        bounds = np.cumsum([0] + [len(c.positions) for c in chunks]).tolist()
        n = bounds[-1]
        slices: list[Dest] = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        ranges = [c.positions for c in chunks if isinstance(c.positions, range)]
        if len(ranges) == len(chunks) and all(a[-1] < b[0] for a, b in zip(ranges[:-1], ranges[1:])):
            # The usual case: each group is a run of consecutive psets, and runs do not overlap.
            if ranges[0][0] == 0 and ranges[-1][-1] == n - 1:
                return slices, pd.RangeIndex(n)
            return slices, pd.Index(np.concatenate([np.arange(r.start, r.stop) for r in ranges]))
        pos = np.concatenate([np.asarray(c.positions, dtype=np.int64) for c in chunks])
        dests: list[Dest]
        if (pos[1:] > pos[:-1]).all():
            dests, sorted_pos = slices, pos
        else:
            order = np.argsort(pos, kind="stable")
            sorted_pos = pos[order]
            if (sorted_pos[1:] == sorted_pos[:-1]).any():
                dup = sorted_pos[1:][sorted_pos[1:] == sorted_pos[:-1]][0]
                raise ValueError(f"position {dup} appears in more than one row")
            rank = np.empty(n, dtype=np.intp)
            rank[order] = np.arange(n, dtype=np.intp)
            dests = [rank[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if sorted_pos[0] == 0 and sorted_pos[-1] == n - 1:  # unique and sorted: exactly 0..n-1
            return dests, pd.RangeIndex(n)
        return dests, pd.Index(sorted_pos, dtype=np.int64)

    def to_frame(self, column_order: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows sorted by position, index = the positions (a RangeIndex when they are 0..n-1).

        Columns come in first-seen order with chunks taken in position order -- so the order does
        not depend on which group finished first -- unless `column_order` is given: its known names
        first, unknown names skipped, the remaining columns after them."""
        if self._frame is None:
            self._chunks.sort(key=lambda c: c.first)
            dests, index = self._destinations()
            names = list(dict.fromkeys(chain.from_iterable(c.columns for c in self._chunks)))
            data = {}
            for name in names:
                # pop: each chunk's storage for this column is freed once the column is built
                pieces = [(d, c.columns.pop(name, None)) for d, c in zip(dests, self._chunks)]
                arr, dtype = _merge(pieces, len(index))
                data[name] = _series(arr, dtype, index, name)
            self._chunks = []
            # copy=False: no consolidation copy of same-dtype columns, so no second frame in memory
            try:
                self._frame = pd.DataFrame(data, index=index, columns=names, copy=False)
            except UnicodeEncodeError:  # pandas 3 stores labels with pyarrow, which refuses a lone surrogate
                frame = pd.DataFrame(dict(enumerate(data.values())), index=index, copy=False)
                frame.columns = pd.Index(names, dtype=object)
                self._frame = frame
        frame = self._frame
        if column_order is None:
            return frame
        known = [c for c in dict.fromkeys(column_order) if c in frame.columns]
        order = known + [c for c in frame.columns if c not in set(known)]
        return frame if order == list(frame.columns) else frame[order]


def _record_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, Sequence[Any]]:
    """Transpose records into columns (None where a key is absent)."""
    keys = list(records[0]) if records else []
    if keys and set(map(len, records)) == {len(keys)}:
        # The usual case, every record with the same keys: map(itemgetter) is the fastest transpose
        # (zip(*rows) would create a tuple per record, and the garbage collector chases them all).
        try:
            return {k: list(map(operator.itemgetter(k), records)) for k in keys}
        except KeyError:
            pass
    return {k: [r.get(k) for r in records] for k in dict.fromkeys(chain.from_iterable(records))}


def frame_from_records(records: Sequence[Mapping[str, Any]],
                       positions: Sequence[int] | None = None) -> pd.DataFrame:
    """A list of dicts -> a DataFrame with the module's dtype rules (a missing key is a missing value).

    The index is `positions` (default 0..n-1, a RangeIndex); columns in first-seen order."""
    records = records if isinstance(records, Sequence) else list(records)
    n = len(records)
    if positions is not None and len(positions) != n:
        raise ValueError(f"{len(positions)} positions for {n} records")
    columns = _record_columns(records)
    acc = ColumnAccumulator()
    acc.add_chunk(range(n) if positions is None else positions, columns)
    if n == 0 and positions is not None:
        return pd.DataFrame(index=pd.Index(np.asarray(positions, dtype=np.int64)))
    return acc.to_frame()
