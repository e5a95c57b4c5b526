"""Columns of Python values <-> Arrow arrays, for the journal's part files.

A column takes the narrowest Arrow type that holds every value exactly (its kind, from
``_kinds.classify``, as in the results): bool, int64, float64 (ints mixed with floats only while
every int is exact as a float), string, or null when no row has a value. Anything else -- lists,
dicts, big ints, datetimes, arrays, a column mixing kinds -- is stored as the pickle of each value in
a binary column, and the part's metadata names that column as pickled: a reader gets the bytes, and
only unpickles when asked to.

A string that UTF-8 cannot encode -- a lone surrogate, as Python makes of bytes that were not UTF-8
(``os.fsdecode``, ``sys.argv``) -- cannot be in a Parquet string column. A string column holding one
is stored as binary instead, every value encoded with ``surrogatepass`` (which round-trips every
Python string exactly), and the part's metadata names the column as ``surrogatepass``: readers decode
it back to the exact strings, with nothing unpickled. The other parts keep their string columns.

A column is typed once (``typed``), then both hashed (``_hash``) and converted to Arrow.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .._kinds import EMPTY, STR, Column, classify, numpy_kind

Values = np.ndarray | Sequence[Any]

# How a column's values are stored, beyond its Arrow type; the part's metadata lists the columns of
# each non-plain encoding under this name ("pickled": pickled values; "surrogatepass": str values
# whose UTF-8 needed the surrogatepass error handler).
PLAIN, PICKLED, SURROGATES = "", "pickled", "surrogatepass"
ENCODINGS = (PICKLED, SURROGATES)

# One column, typed: ``kind`` (``_kinds``: EMPTY, BOOL, INT, BIGINT, FLOAT, NUMMIX, STR, OBJECT),
# ``array`` a numpy array for BOOL/INT/FLOAT/NUMMIX (placeholder values in the rows that ``none``
# marks), else None; ``values`` the values (np.str_ as str).
Typed = Column


def typed(values: Values, present: np.ndarray | None = None) -> Typed:
    """Type one column. ``present``: rows that have the key at all (None: every row)."""
    if isinstance(values, np.ndarray) and values.dtype != object and numpy_kind(values.dtype) is None:
        # Python values, not numpy scalars: what journals were always typed and hashed by (a
        # uint64 beyond int64 becomes a Python int; a long double, a float)
        values = values.tolist()
    column = classify(values, None if present is None else ~present)
    if column.kind == STR and np.str_ in column.types:  # Arrow and the hash take str
        return column._replace(values=[None if v is None else str(v) for v in column.values],
                               types=frozenset({str}))
    return column


def to_arrow(column: Typed) -> tuple[pa.Array, str, list[int]]:
    """A typed column -> (Arrow array, its encoding, rows whose value could not be stored).

    A value that cannot be pickled is stored as missing and its row reported, so that the caller
    can leave that row out rather than journal a result it cannot give back.
    """
    kind, array, none, values = column.kind, column.array, column.none, column.values
    if kind == EMPTY:
        return pa.nulls(len(values)), PLAIN, []
    if array is not None:
        return pa.array(array, mask=none), PLAIN, []
    if kind == STR:
        strings, encoding = string_array(values, none)
        return strings, encoding, []
    return _pickled(list(values), none)


def string_array(values: Values, none: np.ndarray | None = None) -> tuple[pa.Array, str]:
    """str values (None, or the rows ``none`` marks, missing) -> (Arrow array, encoding): a string
    array, or, when some value holds a lone surrogate, their surrogatepass UTF-8 in a binary array."""
    try:
        return pa.array(values, type=pa.string(), mask=none), PLAIN
    except UnicodeEncodeError:  # rare: the common case pays nothing for the check
        encoded = [None if v is None or (none is not None and none[i]) else v.encode("utf-8", "surrogatepass")
                   for i, v in enumerate(values)]
        return pa.array(encoded, type=pa.binary()), SURROGATES


def _pickled(values: Sequence[Any], none: np.ndarray | None) -> tuple[pa.Array, str, list[int]]:
    out: list[bytes | None] = []
    bad: list[int] = []
    dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
    for i, v in enumerate(values):
        if v is None or (none is not None and none[i]):
            out.append(None)
            continue
        try:
            out.append(dumps(v, protocol=protocol))
        except Exception:
            out.append(None)
            bad.append(i)
    return pa.array(out, type=pa.binary()), PICKLED, bad


def from_arrow(array: pa.Array | pa.ChunkedArray, encoding: str, unpickle: bool) -> list[Any]:
    """An Arrow column -> Python values (None where missing); pickled values stay bytes unless
    ``unpickle``."""
    values = array.to_pylist()
    if encoding == SURROGATES:
        return [None if v is None else v.decode("utf-8", "surrogatepass") for v in values]
    if encoding == PICKLED and unpickle:
        loads = pickle.loads
        return [None if v is None else loads(v) for v in values]
    return values


def encodings(meta: dict[str, Any]) -> dict[str, str]:
    """A part's columns that are not stored plainly: column name -> encoding (from its metadata)."""
    return {column: encoding for encoding in ENCODINGS for column in meta.get(encoding, ())}


# -- result keys in the part metadata -------------------------------------------------------------
# A result dict's keys are any hashable values; the metadata (JSON) maps each result column to its
# key. Keys JSON holds exactly (str, int, bool, None, a finite float) are stored as themselves;
# anything else (a tuple, a frozenset, bytes, a numpy scalar, ...) as {"pickle": base64 of its
# pickle}, so that a resumed survey gets back the very key an uninterrupted one has. (A dict is
# never a key, so the two forms cannot be confused.)
_JSON_KEY_TYPES = frozenset({str, int, bool, type(None)})
_PICKLED_KEY = "pickle"


class UnstorableKey(ValueError):
    """A result key that can be neither JSON nor pickled."""


def encode_key(key: Any) -> Any:
    """A result key as the part metadata's JSON holds it (raises UnstorableKey)."""
    if type(key) in _JSON_KEY_TYPES or (type(key) is float and math.isfinite(key)):
        return key
    try:
        data = pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise UnstorableKey(f"result key {key!r} cannot be pickled: {exc!r}") from exc
    return {_PICKLED_KEY: base64.b64encode(data).decode("ascii")}


def decode_key(stored: Any) -> Any:
    """The key ``encode_key`` stored (unpickled: only a resumed survey, reading its own results,
    asks for keys; a reader of the journal gets column names)."""
    if isinstance(stored, dict) and _PICKLED_KEY in stored:
        return pickle.loads(base64.b64decode(stored[_PICKLED_KEY]))
    return stored
