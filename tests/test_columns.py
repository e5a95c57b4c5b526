"""Dtype rules of paramsurvey._columns (results whose types never lie)."""
from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from paramsurvey import _columns

ColumnAccumulator = _columns.ColumnAccumulator
series_from_values = _columns.series_from_values
frame_from_records = _columns.frame_from_records

NA = pd.NA
NAN = float("nan")
INF = float("inf")


def assert_same(got: Any, want: Any) -> None:
    """Exact equality of one cell: pd.NA is pd.NA, NaN is NaN, numbers keep their kind and value."""
    if want is NA:
        assert got is NA, f"{got!r} should be pd.NA"
    elif want is None:
        assert got is None, f"{got!r} should be None"
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), f"{got!r} should be NaN"
    elif isinstance(want, (bool, np.bool_)):
        assert isinstance(got, (bool, np.bool_)) and bool(got) == bool(want), f"{got!r} != {want!r}"
    elif isinstance(want, (int, np.integer)):
        assert isinstance(got, (int, np.integer)) and not isinstance(got, (bool, np.bool_))
        assert int(got) == int(want), f"{got!r} != {want!r}"
    elif isinstance(want, (float, np.floating)):
        assert isinstance(got, (float, np.floating)) and float(got) == float(want), f"{got!r} != {want!r}"
    elif isinstance(want, np.ndarray):
        assert got is want
    else:
        assert type(got) is type(want) and got == want, f"{got!r} != {want!r}"


def assert_column(series: pd.Series, dtype: str, want: list) -> None:
    assert str(series.dtype) == dtype, f"dtype {series.dtype}, expected {dtype}"
    assert len(series) == len(want)
    for got, w in zip(series.tolist() if dtype == "object" else list(series.array), want):
        assert_same(got, w)


def accumulate(values: list, seed: int = 0, key: str = "x") -> pd.DataFrame:
    """Feed values as rows 0..n-1, split into random chunks arriving in random order."""
    rng = random.Random(seed)
    n = len(values)
    cuts = sorted(rng.sample(range(1, n), min(n - 1, rng.randint(0, 4)))) if n > 1 else []
    bounds = [0, *cuts, n]
    chunks = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    rng.shuffle(chunks)
    acc = ColumnAccumulator()
    for positions in chunks:
        rng.shuffle(positions)  # rows of a chunk need not be in order either
        acc.add_chunk(positions, {key: [values[p] for p in positions]})
    return acc.to_frame()


BIG = 2**64
ARR = np.arange(3)
LIST = [1, 2]
CASES = [
    # (id, values, dtype, expected cells)
    ("ints", [1, 2, -3], "int64", [1, 2, -3]),
    ("int64 bounds", [2**63 - 1, -(2**63)], "int64", [2**63 - 1, -(2**63)]),
    ("floats", [1.5, NAN, float("inf")], "float64", [1.5, NAN, float("inf")]),
    ("bools", [True, False], "bool", [True, False]),
    ("strs", ["a", "b"], "object", ["a", "b"]),
    ("int+float", [1, 2.5], "float64", [1.0, 2.5]),
    ("int 2**53 + float", [2**53, -(2**53), 0.5], "float64", [float(2**53), -float(2**53), 0.5]),
    ("int 2**53+1 + float", [2**53 + 1, 0.5], "object", [2**53 + 1, 0.5]),
    ("int beyond int64", [BIG, 1], "object", [BIG, 1]),
    ("negative beyond int64", [-(2**63) - 1, 1], "object", [-(2**63) - 1, 1]),
    ("big int + float", [BIG, 1.5], "object", [BIG, 1.5]),
    ("int beyond float range + float", [10**400, 1.5], "object", [10**400, 1.5]),
    ("huge floats + exact ints", [1e300, -(2**53), INF], "float64", [1e300, -float(2**53), INF]),
    ("bool + int", [True, 2], "object", [True, 2]),
    ("bool + float", [False, 2.5], "object", [False, 2.5]),
    ("str + int", ["a", 1], "object", ["a", 1]),
    ("ints with None", [1, None, 3], "Int64", [1, NA, 3]),
    ("bools with None", [True, None, False], "boolean", [True, NA, False]),
    ("floats with None", [1.5, None], "float64", [1.5, NAN]),
    ("int+float with None", [1, None, 0.5], "float64", [1.0, NAN, 0.5]),
    ("strs with None", ["a", None], "object", ["a", None]),
    ("big ints with None", [BIG, None], "object", [BIG, None]),
    ("all None", [None, None], "object", [None, None]),
    ("pd.NA is missing", [1, pd.NA, None], "Int64", [1, NA, NA]),
    ("NaN is a float", [1, NAN], "float64", [1.0, NAN]),
    ("numpy ints", [np.int32(1), np.uint8(2), np.int64(3)], "int64", [1, 2, 3]),
    ("numpy uint64 beyond int64", [np.uint64(2**64 - 1), 1], "object", [2**64 - 1, 1]),
    ("numpy floats", [np.float32(0.5), np.float64(1.25)], "float64", [0.5, 1.25]),
    ("numpy bools", [np.bool_(True), False], "bool", [True, False]),
    ("numpy int + float", [np.int64(3), 0.5], "float64", [3.0, 0.5]),
    ("numpy str", [np.str_("a"), "b"], "object", [np.str_("a"), "b"]),
    ("lists", [LIST, [3]], "object", [LIST, [3]]),
    ("tuples", [(1, 2), (3,)], "object", [(1, 2), (3,)]),
    ("dicts", [{"a": 1}, None], "object", [{"a": 1}, None]),
    ("arrays", [ARR, None], "object", [ARR, None]),
]


@pytest.mark.parametrize(("values", "dtype", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_series_from_values(values: list, dtype: str, want: list) -> None:
    assert_column(series_from_values(values, name="x"), dtype, want)


@pytest.mark.parametrize(("values", "dtype", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", range(3))
def test_accumulator_any_chunk_order(values: list, dtype: str, want: list, seed: int) -> None:
    df = accumulate(values * 3, seed)
    assert_column(df["x"], dtype, want * 3)


def test_int_then_float_100k_exact() -> None:
    """The original library lost every result here (pandas-appender KeyError)."""
    n = 100_000
    values: list[Any] = [i * 7919 for i in range(60_000)] + [i + 0.25 for i in range(60_000, n)]
    chunks = [list(range(a, min(n, a + 1000))) for a in range(0, n, 1000)]
    random.Random(1).shuffle(chunks)
    acc = ColumnAccumulator()
    for positions in chunks:
        acc.add_chunk(positions, {"x": [values[p] for p in positions]})
    assert len(acc) == n
    df = acc.to_frame()
    assert df["x"].dtype == np.float64
    assert isinstance(df.index, pd.RangeIndex) and len(df) == n
    assert (df["x"].to_numpy() == np.array(values, dtype=np.float64)).all()
    assert df["x"].iloc[59_999] == 59_999 * 7919 and df["x"].iloc[60_000] == 60_000.25


def test_int_chunk_beyond_2_53_with_float_chunk_is_object() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([1], {"x": [0.5]})
    acc.add_chunk([0], {"x": [2**53 + 1]})
    assert_column(acc.to_frame()["x"], "object", [2**53 + 1, 0.5])


@pytest.mark.parametrize("first", [True, False])
def test_big_int_chunk_with_int64_chunk(first: bool) -> None:
    acc = ColumnAccumulator()
    chunks = [([0, 1], {"x": [2**70, 5]}), ([2], {"x": [-1]})]
    for c in chunks if first else chunks[::-1]:
        acc.add_chunk(*c)
    assert_column(acc.to_frame()["x"], "object", [2**70, 5, -1])


def test_missing_bool_is_na_never_truthy() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([0, 1], {"ok": [True, None]}, {"ok": [1]})
    acc.add_chunk([2, 3], {"other": [1, 2]})  # 'ok' absent from the whole chunk
    acc.add_chunk([4], {"ok": [False]})
    s = acc.to_frame()["ok"]
    assert_column(s, "boolean", [True, NA, NA, NA, False])
    with pytest.raises(TypeError):
        bool(s[1])
    assert s.fillna(False).tolist() == [True, False, False, False, False]
    assert int(s.sum()) == 1


def test_int_gap_stays_int() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([0, 1], {"n": [2**62, 3]})
    acc.add_chunk([2], {"m": ["x"]})
    df = acc.to_frame()
    assert_column(df["n"], "Int64", [2**62, 3, NA])
    assert_column(df["m"], "object", [None, None, "x"])


def test_explicit_none_is_missing_and_placeholder_ignored() -> None:
    acc = ColumnAccumulator()
    # row 1 absent, with a placeholder that is not None: it must not count as a value
    acc.add_chunk([0, 1, 2], {"x": [1, "junk", None]}, {"x": [1]})
    assert_column(acc.to_frame()["x"], "Int64", [1, NA, NA])


def test_objects_preserved_by_identity() -> None:
    objs = [[1, 2], {"a": [3]}, (4, 5), np.zeros((2, 2)), object(), [[1, 2], [3, 4]]]
    acc = ColumnAccumulator()
    acc.add_chunk([3, 4, 5], {"o": objs[3:]})
    acc.add_chunk([0, 1, 2], {"o": objs[:3]})
    got = acc.to_frame()["o"]
    assert got.dtype == object
    assert all(g is o for g, o in zip(got, objs))


def test_equal_length_lists_are_not_a_2d_array() -> None:
    s = series_from_values([[1, 2], [3, 4]])
    assert s.dtype == object and s[0] == [1, 2] and s[1] == [3, 4]


def test_strings_are_object_dtype() -> None:
    s = accumulate(["a", None, "c"])["x"]
    assert s.dtype == object  # also on pandas >= 3, whose default would be `str`
    assert s.str.upper().tolist() == ["A", None, "C"]
    assert (s == "a").tolist() == [True, False, False]


def test_index_is_positions() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([30, 10], {"x": [3, 1]})
    acc.add_chunk([20, 5], {"x": [2, 0]})
    df = acc.to_frame()
    assert df.index.tolist() == [5, 10, 20, 30] and df.index.dtype == np.int64
    assert df["x"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("shuffle_rows", [False, True])
def test_range_index_when_positions_are_0_to_n(shuffle_rows: bool) -> None:
    rng = random.Random(3)
    chunks = [list(range(a, a + 10)) for a in range(0, 100, 10)]
    rng.shuffle(chunks)
    acc = ColumnAccumulator()
    for c in chunks:
        if shuffle_rows:
            rng.shuffle(c)
        acc.add_chunk(c, {"x": [p * 2 for p in c]})
    df = acc.to_frame()
    assert isinstance(df.index, pd.RangeIndex) and list(df.index) == list(range(100))
    assert df["x"].tolist() == [p * 2 for p in range(100)]


def test_gap_in_positions_is_not_range_index() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([2, 3], {"x": [1, 2]})
    acc.add_chunk([0], {"x": [0]})
    df = acc.to_frame()
    assert df.index.tolist() == [0, 2, 3] and df["x"].tolist() == [0, 1, 2]


def test_duplicate_position_raises() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([0, 1], {"x": [1, 2]})
    acc.add_chunk([1], {"x": [3]})
    with pytest.raises(ValueError, match="position 1"):
        acc.to_frame()


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="'x'"):
        ColumnAccumulator().add_chunk([0, 1], {"x": [1]})


def test_column_order() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([2, 3], {"c": [1, 2], "a": [1, 2]})  # arrives first, but rows later
    acc.add_chunk([0, 1], {"b": [1, 2], "a": [3, 4]})
    assert list(acc.to_frame().columns) == ["b", "a", "c"]  # first seen in position order
    assert list(acc.to_frame(["c", "nope", "b"]).columns) == ["c", "b", "a"]
    assert list(acc.to_frame().columns) == ["b", "a", "c"]


def test_to_frame_twice_and_add_after() -> None:
    acc = ColumnAccumulator()
    acc.add_chunk([0], {"x": [1]})
    df = acc.to_frame()
    assert acc.to_frame() is df and len(acc) == 1
    with pytest.raises(RuntimeError):
        acc.add_chunk([1], {"x": [2]})


def test_empty() -> None:
    acc = ColumnAccumulator()
    assert len(acc) == 0
    df = acc.to_frame()
    assert df.shape == (0, 0) and len(df.columns) == 0
    assert pd.api.types.is_integer_dtype(df.index.dtype)
    acc2 = ColumnAccumulator()
    acc2.add_chunk([], {"x": []})
    assert acc2.to_frame().shape == (0, 0)


def test_series_from_values_missing_argument() -> None:
    assert_column(series_from_values([1, 99, 3], missing=[1]), "Int64", [1, NA, 3])
    mask = np.array([False, False, True])
    assert_column(series_from_values([True, False, True], missing=mask), "boolean", [True, False, NA])
    assert series_from_values([1], name="n").name == "n"


def test_frame_from_records() -> None:
    records = [{"a": 1, "b": True}, {"a": 2, "c": "x"}, {"a": 3.5, "b": False}]
    df = frame_from_records(records)
    assert list(df.columns) == ["a", "b", "c"] and isinstance(df.index, pd.RangeIndex)
    assert_column(df["a"], "float64", [1.0, 2.0, 3.5])
    assert_column(df["b"], "boolean", [True, NA, False])
    assert_column(df["c"], "object", [None, "x", None])
    df = frame_from_records(records[:2], positions=[7, 3])
    assert df.index.tolist() == [3, 7] and df["a"].tolist() == [2, 1]
    df = frame_from_records([{"a": 1, "b": "x"}, {"b": "y", "a": 2}])  # same keys, any order
    assert list(df.columns) == ["a", "b"] and df["a"].tolist() == [1, 2] and df["b"].tolist() == ["x", "y"]
    df = frame_from_records([{"a": 1}, {"b": 2}])  # same number of keys, different keys
    assert_column(df["a"], "Int64", [1, NA])
    assert_column(df["b"], "Int64", [NA, 2])
    assert frame_from_records([]).shape == (0, 0)
    assert frame_from_records([{}, {}]).shape == (2, 0)
