"""What kind of column a sequence of values makes: the one rule behind every dtype paramsurvey picks.

Result assembly (``_columns``), the journal's Arrow typing and its pset hash (``journal/_arrow.py``,
``journal/_hash.py``) and the pset builders (``params``) all ask ``classify``, so that a value is
the same kind everywhere: a pset value that the journal stores as an int is an int in the results
and in ``params``' frames too.

=========  ===============================================================================
kind       the values (None, and absent rows, aside)
=========  ===============================================================================
EMPTY      none at all
BOOL       bool, np.bool_
INT        ints (Python or numpy) all within int64
BIGINT     ints, some beyond int64 (kept as exact Python ints)
FLOAT      floats (Python, np.float16/32/64)
NUMMIX     ints and floats, every int exact as a float64 (abs(i) <= 2**53)
STR        str, np.str_
OBJECT     anything else: other types, a mix of kinds (bool with int, str with float), or ints
           and floats with some int that a float64 would round
=========  ===============================================================================

The kind is decided by the exact types of the values, never ``isinstance``: bool is an int
subclass, and an ``IntEnum`` (or any other subclass) would lose its type if flattened to a number;
``np.longdouble`` is wider than a float64. numpy scalars count as their Python kind.

Fast: one C-level pass for the types (``map(type, ...)``), one for the None rows, one numpy
conversion for the numeric kinds, and a look at only the few values whose magnitude reaches 2**53.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

EMPTY, BOOL, INT, BIGINT, FLOAT, NUMMIX, STR, OBJECT = (
    "empty", "bool", "int", "bigint", "float", "nummix", "str", "object")
NONE = "none"  # the kind of the value None, for code that looks at one type at a time (kind_of_type)

NONE_TYPE = type(None)
NA_TYPE = type(pd.NA)
BOOL_TYPES = frozenset({bool, np.bool_})
INT_TYPES = frozenset({int} | {np.dtype(c).type for c in "bhilqpBHILQP"})
# np.longdouble only where it is a float64 (some platforms): wider, it holds values a float64 rounds
FLOAT_TYPES = frozenset({float} | {t for t in (np.float16, np.float32, np.float64, np.longdouble)
                                   if np.dtype(t).itemsize <= 8})
NUM_TYPES = INT_TYPES | FLOAT_TYPES
STR_TYPES = frozenset({str, np.str_})
MAX_EXACT = 2**53  # every int of magnitude up to this is a float64 exactly; beyond, some are not

Values = np.ndarray | Sequence[Any]

# the numpy dtype of each kind that has one
_ARRAY_DTYPES = {BOOL: np.dtype(np.bool_), INT: np.dtype(np.int64), FLOAT: np.dtype(np.float64),
                 NUMMIX: np.dtype(np.float64)}


class Column(NamedTuple):
    """A classified column."""

    kind: str
    array: np.ndarray | None
    """BOOL: bool, INT: int64, FLOAT and NUMMIX: float64 -- rows without a value hold False, 0 or NaN;
    None for the other kinds."""
    none: np.ndarray | None
    """Rows without a value (None, absent, ``pd.NA`` when it counts as missing), or None when every
    row has one."""
    values: Values
    """The values; a row without a value holds None (the caller's sequence when nothing needed
    replacing)."""
    types: frozenset[type]
    """The exact types of the values, None aside (a numpy array: its dtype's scalar type)."""


def kind_of_type(t: type) -> str:
    """The kind of a single value of exact type ``t``: BOOL, INT, FLOAT, STR, NONE or OBJECT (an
    int of type ``t`` may still be beyond int64: that is a property of the value, not of its type)."""
    if t in BOOL_TYPES:
        return BOOL
    if t in INT_TYPES:
        return INT
    if t in FLOAT_TYPES:
        return FLOAT
    if t in STR_TYPES:
        return STR
    return NONE if t is NONE_TYPE else OBJECT


def numpy_kind(dtype: np.dtype) -> str | None:
    """The kind of a numpy array's values from its dtype alone, or None when the dtype does not say
    (uint64 may exceed int64; float wider than 64 bits; anything not a number)."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return BOOL
    if kind == "i" or (kind == "u" and size < 8):
        return INT
    if kind == "f" and size <= 8:
        return FLOAT
    return None


def classify(values: Values, absent: np.ndarray | None = None, na_is_missing: bool = False) -> Column:
    """Classify one column.

    ``absent``: a boolean mask of rows that have no value whatever they hold (a key a pset or result
    lacks). ``na_is_missing``: ``pd.NA`` counts as a missing value, like None (results and params);
    otherwise it is an object like any other (the journal stores and hashes it as one).

    A numpy array of bool, int or float dtype is classified by its dtype; any other array by its
    elements (numpy scalars).
    """
    if absent is not None and not absent.any():
        absent = None
    if isinstance(values, np.ndarray):
        kind = numpy_kind(values.dtype) if values.dtype != object else None
        if kind is not None:
            return _numpy_column(values, kind, absent)
        values = list(values)
    n = len(values)
    if absent is not None:
        values = _blank(values, absent)
    # list.count compares by identity first: twice as fast as a set when, as usual, one type is used
    tlist = list(map(type, values))
    types = {tlist[0]} if n and tlist.count(tlist[0]) == n else set(tlist)
    del tlist
    if na_is_missing and NA_TYPE in types:  # rare: a Python loop
        values = [None if v is pd.NA else v for v in values]
        types.discard(NA_TYPE)
        types.add(NONE_TYPE)
    none = None
    if NONE_TYPE in types:
        types.discard(NONE_TYPE)
        none = np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=n)
    kinds = frozenset(types)
    kind = _kind_of_types(kinds)
    if kind in (EMPTY, STR, OBJECT):
        return Column(kind, None, none, values, kinds)
    if kind == FLOAT:  # fromiter is faster; np.array also turns None into NaN
        return Column(FLOAT, np.fromiter(values, np.float64, n) if none is None
                      else np.array(values, dtype=np.float64), none, values, kinds)
    if kind == BOOL:
        return Column(BOOL, np.array(values, dtype=np.bool_), none, values, kinds)  # None -> False
    if kind == INT:
        try:
            return Column(INT, np.fromiter(_zero_filled(values, none), np.int64, n), none, values, kinds)
        except OverflowError:  # beyond int64
            return Column(BIGINT, None, none, values, kinds)
    return _number_mix(values, none, kinds)


def _kind_of_types(types: frozenset[type]) -> str:
    """The kind of a column whose values (None aside) have these exact types."""
    if not types:
        return EMPTY
    if types <= FLOAT_TYPES:
        return FLOAT
    if types <= BOOL_TYPES:
        return BOOL
    if types <= INT_TYPES:
        return INT
    if types <= NUM_TYPES:
        return NUMMIX  # until _number_mix looks at the magnitudes
    if types <= STR_TYPES:
        return STR
    return OBJECT


def _numpy_column(values: np.ndarray, kind: str, absent: np.ndarray | None) -> Column:
    array = values.astype(_ARRAY_DTYPES[kind], copy=False)
    if absent is not None:
        array = array.copy()
        array[absent] = np.nan if kind == FLOAT else 0
    return Column(kind, array, absent, values, frozenset({values.dtype.type}))


def _blank(values: Sequence[Any], absent: np.ndarray) -> Sequence[Any]:
    """values with None in the absent rows (a copy, unless they hold None already)."""
    rows = np.flatnonzero(absent).tolist()
    if all(values[i] is None for i in rows):
        return values
    blanked = list(values)
    for i in rows:
        blanked[i] = None
    return blanked


def _zero_filled(values: Sequence[Any], none: np.ndarray | None) -> Sequence[Any]:
    if none is None:
        return values
    filled = list(values)
    for i in np.flatnonzero(none).tolist():
        filled[i] = 0
    return filled


def _number_mix(values: Sequence[Any], none: np.ndarray | None, types: frozenset[type]) -> Column:
    """Ints and floats: NUMMIX when every int is exact as a float64, else OBJECT. Only values of
    magnitude >= 2**53 as float64 can be inexact ints: their types alone are checked."""
    try:  # fromiter is faster; np.array also turns None into NaN
        array = np.fromiter(values, np.float64, len(values)) if none is None else np.array(values, dtype=np.float64)
        big = np.flatnonzero(np.abs(array) >= MAX_EXACT).tolist()
        exact = all(abs(int(values[i])) <= MAX_EXACT for i in big if type(values[i]) in INT_TYPES)
    except OverflowError:  # an int beyond the float64 range
        exact = False
    return Column(NUMMIX, array, none, values, types) if exact else Column(OBJECT, None, none, values, types)
