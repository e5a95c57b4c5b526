"""The one value-kind classifier (paramsurvey._kinds) against an independent, value-by-value
definition, and against what each of its consumers makes of a column: result assembly's dtype, the
journal's Arrow type and hash, and params' dtype."""

from __future__ import annotations

import enum
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramsurvey import _kinds
from paramsurvey._columns import series_from_values
from paramsurvey._hashing import seed_for
from paramsurvey._kinds import BIGINT, BOOL, EMPTY, FLOAT, INT, NUMMIX, OBJECT, STR, classify
from paramsurvey.journal._arrow import PICKLED, PLAIN, SURROGATES, to_arrow, typed
from paramsurvey.journal._hash import typed_lanes, value_lanes
from paramsurvey.params import zip as pzip

SETTINGS = settings(max_examples=300, deadline=None)
BIG = 2**53


class Level(enum.IntEnum):
    LOW = 1


def reference_kind(values: list[Any]) -> str:
    """The kinds by their definition, one value at a time (slow, obviously right)."""
    present = [v for v in values if v is not None]
    if not present:
        return EMPTY

    def kind(v: Any) -> str:
        t = type(v)
        if t in (bool, np.bool_):
            return "bool"
        if t is int or (t.__module__ == "numpy" and issubclass(t, np.integer)):
            return "int"
        if t is float or t in (np.float16, np.float32, np.float64):
            return "float"
        return "str" if t in (str, np.str_) else "object"

    kinds = {kind(v) for v in present}
    ints = [int(v) for v in present if kind(v) == "int"]
    if kinds == {"bool"}:
        return BOOL
    if kinds == {"int"}:
        return INT if all(-(2**63) <= i < 2**63 for i in ints) else BIGINT
    if kinds == {"float"}:
        return FLOAT
    if kinds == {"int", "float"}:
        return NUMMIX if all(abs(i) <= BIG for i in ints) else OBJECT
    return STR if kinds == {"str"} else OBJECT


# each kind of value, including the edges of each rule
SCALARS = [
    st.booleans(), st.booleans().map(np.bool_),
    st.integers(-1000, 1000), st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([BIG - 1, BIG, BIG + 1, -BIG, -BIG - 1, 2**63 - 1, -(2**63)]),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**70, 10**400]),
    st.integers(-100, 100).map(np.int32), st.integers(0, 2**64 - 1).map(np.uint64),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 10).map(np.float32),
    st.sampled_from([np.float16(0.5), np.float64(2.5)]),
    st.text(max_size=3), st.text(max_size=3).map(np.str_),
    st.just(Level.LOW), st.lists(st.integers(), max_size=2), st.tuples(st.integers()),
]
# wider than a float64 where the platform has it (an object then)
LONG_DOUBLE = np.longdouble(1) / 3
WIDE = [st.just(LONG_DOUBLE)] if np.dtype(np.longdouble).itemsize > 8 else []


@st.composite
def columns(draw: Any, scalars: list[Any] = SCALARS + WIDE) -> list[Any]:
    """A column: values of one to three of the scalar strategies, with or without None."""
    chosen = draw(st.lists(st.sampled_from(scalars), min_size=1, max_size=3))
    parts = chosen + ([st.none()] if draw(st.booleans()) else [])
    return draw(st.lists(st.one_of(*parts), max_size=12))


def has_none(values: list[Any]) -> bool:
    return any(v is None for v in values)


@SETTINGS
@given(columns())
def test_the_kind_is_the_value_by_value_definition(values):
    column = classify(values)
    assert column.kind == reference_kind(values)
    assert (column.none is not None) == has_none(values)
    if column.none is not None:
        assert column.none.tolist() == [v is None for v in values]
    if column.array is not None:  # the numeric kinds: exact numbers, in the value's own rows
        for v, a, missing in zip(values, column.array.tolist(), [v is None for v in values]):
            if not missing:
                assert a == v or (isinstance(a, float) and math.isnan(a) and math.isnan(v))


RESULT_DTYPES = {EMPTY: ("object", "object"), BOOL: ("bool", "boolean"), INT: ("int64", "Int64"),
                 FLOAT: ("float64", "float64"), NUMMIX: ("float64", "float64"), BIGINT: ("object", "object"),
                 STR: ("object", "object"), OBJECT: ("object", "object")}


@SETTINGS
@given(columns())
def test_result_assembly_gives_the_kinds_dtype(values):
    kind = classify(values, na_is_missing=True).kind
    series = series_from_values(values)
    assert str(series.dtype) == RESULT_DTYPES[kind][has_none(values)]
    if series.dtype == object and kind != BIGINT:  # the very values the worker returned
        assert all(a is b for a, b in zip(series.tolist(), values))


ARROW_TYPES = {EMPTY: pa.null(), BOOL: pa.bool_(), INT: pa.int64(), FLOAT: pa.float64(), NUMMIX: pa.float64(),
               BIGINT: pa.binary(), OBJECT: pa.binary()}


@SETTINGS
@given(columns())
def test_the_journal_stores_each_kind_as_its_arrow_type(values):
    column = typed(values)
    array, encoding, unstorable = to_arrow(column)
    assert column.kind == classify(values).kind and not unstorable
    if column.kind == STR:  # a lone surrogate makes the column binary, decoded on reading
        assert (array.type, encoding) in ((pa.string(), PLAIN), (pa.binary(), SURROGATES))
    else:
        assert array.type == ARROW_TYPES[column.kind]
        assert encoding == (PICKLED if column.kind in (BIGINT, OBJECT) else PLAIN)
    assert array.null_count == sum(v is None for v in values)


def lanes_of(values: list[Any]) -> list[tuple[int, int]]:
    a, b = value_lanes(values)
    return list(zip(a.tolist(), b.tolist()))


@SETTINGS
@given(columns(SCALARS))  # a long double cannot be hashed yet: see the next test
def test_the_journal_hashes_a_column_value_by_value_whatever_its_kind(values):
    alone = [lanes_of([v])[0] for v in values]
    assert lanes_of(values) == alone
    a, b = typed_lanes(typed(values))
    assert list(zip(a.tolist(), b.tolist())) == alone


@pytest.mark.skipif(not WIDE, reason="np.longdouble is a float64 on this platform")
def test_a_long_double_pset_value_can_be_hashed():
    """np.longdouble's .item() returns itself: the hash and the seed must not ask it forever."""
    third = value_lanes([LONG_DOUBLE])
    assert [x.tolist() for x in third] == [x.tolist() for x in value_lanes([np.longdouble(1) / 3])]
    assert [x.tolist() for x in third] != [x.tolist() for x in value_lanes([float(LONG_DOUBLE)])]
    assert seed_for(0, {"x": LONG_DOUBLE}) == seed_for(0, {"x": np.longdouble(1) / 3})


def same_value(got: Any, want: Any) -> bool:
    if want is None:
        return got is None or got is pd.NA or (isinstance(got, float) and math.isnan(got))
    if isinstance(want, (float, np.floating)) and math.isnan(want):
        return isinstance(got, (float, np.floating)) and math.isnan(got)
    return bool(got == want) if not isinstance(want, (list, tuple)) else got == want


@SETTINGS
@given(columns())
def test_params_keeps_every_value_and_uses_a_float_column_only_for_the_float_kinds(values):
    kind = classify(values, na_is_missing=True).kind
    column = pzip({"a": values})["a"] if values else pd.Series([], dtype=object)
    got = column.tolist()
    assert all(same_value(g, v) for g, v in zip(got, values)), (got, values)
    if column.dtype.kind == "f":
        assert kind in (FLOAT, NUMMIX, EMPTY)
    if kind in (FLOAT, NUMMIX):
        assert column.dtype.kind == "f"
    if has_none(values) and kind in (INT, BOOL):
        assert str(column.dtype) == ("Int64" if kind == INT else "boolean")


def test_pd_na_is_missing_only_when_asked():
    assert classify([1, pd.NA], na_is_missing=True).kind == INT
    assert classify([1, pd.NA]).kind == OBJECT  # the journal stores (and hashes) it as an object


@pytest.mark.parametrize("array, kind", [(np.array([1, 2], dtype=np.int32), INT), (np.array([0.5]), FLOAT),
                                         (np.array([True]), BOOL), (np.array([2**64 - 1], dtype=np.uint64), BIGINT),
                                         (np.array([1, "a"], dtype=object), OBJECT)])
def test_numpy_arrays_are_classified_by_dtype_or_elements(array, kind):
    column = classify(array)
    assert column.kind == kind
    absent = np.zeros(len(array), dtype=bool)
    absent[0] = True
    blanked = classify(array, absent)
    assert blanked.none is not None and blanked.none[0]
    if blanked.array is not None:  # absent rows hold the kind's placeholder
        assert blanked.array[0] in (0, False) or math.isnan(blanked.array[0])


def test_type_kinds():
    assert [_kinds.kind_of_type(t) for t in (bool, np.int8, np.float32, np.str_, type(None), Level, list)] == [
        BOOL, INT, FLOAT, STR, _kinds.NONE, OBJECT, OBJECT]
