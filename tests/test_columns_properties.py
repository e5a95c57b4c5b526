"""Property tests of paramsurvey._columns: random mixes of types and missing keys, random chunks in
random arrival order, compared cell by cell with an independent statement of the rules."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramsurvey import _columns

# COLUMNS_MAX_EXAMPLES=2000 for a deeper search than the quick default
EXAMPLES = int(os.environ.get("COLUMNS_MAX_EXAMPLES", "100"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# the two single-chunk round trips exercise less: half as many examples keep the suite quick
LIGHT = settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))

EDGE_INTS = [2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1,
             2**64, 10**30, 10**400]
VALUES = {
    "int": st.one_of(st.integers(-(2**31), 2**31), st.sampled_from(EDGE_INTS)),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "bool": st.booleans(),
    "str": st.text(max_size=4),
    "npint": st.one_of(st.integers(-100, 100).map(np.int32), st.integers(0, 2**64 - 1).map(np.uint64),
                       st.integers(-(2**63), 2**63 - 1).map(np.int64)),
    "npfloat": st.one_of(st.floats(width=32).map(np.float32), st.floats().map(np.float64)),
    "npbool": st.booleans().map(np.bool_),
    "obj": st.one_of(st.lists(st.integers(), max_size=3), st.tuples(st.integers()),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                     st.builds(np.arange, st.integers(0, 3)), st.lists(st.lists(st.integers(), min_size=2,
                                                                                 max_size=2), max_size=2)),
}
KINDS = sorted(VALUES)
ABSENT = object()  # a row without the key


def kind_of(v: Any) -> str:
    """The Python kind of a value, numpy scalars counting as their Python kind."""
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "str"
    return "other"


def expected_dtype(cells: list) -> str:
    present = [v for v in cells if v is not ABSENT and v is not None]
    gaps = len(present) < len(cells)
    kinds = {kind_of(v) for v in present}
    ints = [int(v) for v in present if kind_of(v) == "int"]
    if kinds == {"bool"}:
        return "boolean" if gaps else "bool"
    if kinds == {"int"} and all(-(2**63) <= i < 2**63 for i in ints):
        return "Int64" if gaps else "int64"
    if "float" in kinds and kinds <= {"int", "float"} and all(abs(i) <= 2**53 for i in ints):
        return "float64"
    return "object"


def assert_cell(got: Any, want: Any, dtype: str) -> None:
    if want is ABSENT or want is None:
        if dtype == "float64":
            assert isinstance(got, float) and math.isnan(got), repr(got)
        else:
            expect = pd.NA if dtype in ("Int64", "boolean") else None
            assert got is expect, f"{got!r} should be {expect!r}"
        return
    kind = kind_of(want)
    if kind == "float" and math.isnan(float(want)):
        assert kind_of(got) == "float" and math.isnan(float(got)), repr(got)
    elif kind == "float" or dtype == "float64":
        assert kind_of(got) == "float" and float(got) == float(want), f"{got!r} != {want!r}"
        if kind == "int":
            assert int(got) == int(want)  # never rounded
    elif kind in ("int", "bool"):
        assert kind_of(got) == kind and int(got) == int(want), f"{got!r} != {want!r}"
    else:  # str and any other object: the very object the worker returned
        assert got is want, f"{got!r} is not {want!r}"


@st.composite
def surveys(draw: st.DrawFn) -> tuple[list[int], list[dict[str, Any]]]:
    """Rows of result dicts (positions, rows) with per-column type mixes and missing keys."""
    n = draw(st.integers(0, 30))
    ncols = draw(st.integers(1, 4))
    profiles = [draw(st.one_of(st.lists(st.sampled_from(KINDS), min_size=1, max_size=1),
                               st.lists(st.sampled_from(KINDS), min_size=2, max_size=3)))
                for _ in range(ncols)]
    gap_pct = [draw(st.sampled_from([0, 0, 20, 90])) for _ in range(ncols)]
    runs = [draw(st.booleans()) for _ in range(ncols)]  # kinds in runs: whole chunks of one type
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {}
        for c in draw(st.permutations(range(ncols))):
            if gap_pct[c] and draw(st.integers(0, 99)) < gap_pct[c]:
                if draw(st.booleans()):
                    row[f"c{c}"] = None  # an explicit None counts as missing too
                continue
            kinds = profiles[c]
            kind = kinds[i * len(kinds) // n] if runs[c] else draw(st.sampled_from(kinds))
            row[f"c{c}"] = draw(VALUES[kind])
        rows.append(row)
    if draw(st.booleans()):
        positions = list(range(n))
    else:
        positions = draw(st.lists(st.integers(0, 3 * n + 5), min_size=n, max_size=n, unique=True))
    return positions, rows


def chunk_up(draw: Callable[[st.SearchStrategy[Any]], Any], positions: list[int],
             rows: list[dict]) -> list[tuple]:
    """Split into chunks as the workers build them (column-major, absent offsets), shuffled."""
    order = draw(st.permutations(range(len(rows))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(rows) - 1)), max_size=5))) if rows else []
    bounds = [0, *[c for c in cuts if c < len(rows)], len(rows)]
    chunks = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        keys = list(dict.fromkeys(k for i in idx for k in rows[i]))
        columns = {k: [rows[i].get(k) for i in idx] for k in keys}
        absent = {k: [j for j, i in enumerate(idx) if k not in rows[i]] for k in keys}
        chunks.append(([positions[i] for i in idx], columns, {k: v for k, v in absent.items() if v}))
    return draw(st.permutations(chunks)) if chunks else []


def check_frame(df: pd.DataFrame, positions: list[int], rows: list[dict]) -> None:
    by_pos = sorted(zip(positions, rows), key=lambda pr: pr[0])
    assert df.index.tolist() == [p for p, _ in by_pos]
    if positions == list(range(len(positions))):
        assert isinstance(df.index, pd.RangeIndex)
    keys = set().union(*rows) if rows else set()
    assert set(df.columns) == keys
    for key in keys:
        cells = [row.get(key, ABSENT) for _, row in by_pos]
        dtype = expected_dtype(cells)
        col = df[key]
        assert str(col.dtype) == dtype, f"{key}: {col.dtype} != {dtype} for {cells!r}"
        got = col.tolist() if dtype == "object" else list(col.array)
        for g, w in zip(got, cells):
            assert_cell(g, w, dtype)


@SETTINGS
@given(st.data())
def test_accumulator_round_trip(data: st.DataObject) -> None:
    positions, rows = data.draw(surveys())
    acc = _columns.ColumnAccumulator()
    for chunk in chunk_up(data.draw, positions, rows):
        acc.add_chunk(*chunk)
    assert len(acc) == len(rows)
    df = acc.to_frame()
    if not rows:
        assert df.shape == (0, 0)
        return
    check_frame(df, positions, rows)
    names = sorted(df.columns)
    assert list(acc.to_frame(["zz", *names]).columns) == names


@LIGHT
@given(surveys())
def test_frame_from_records_round_trip(survey: tuple[list[int], list[dict[str, Any]]]) -> None:
    positions, rows = survey
    df = _columns.frame_from_records(rows, positions=positions)
    if not rows:
        assert len(df) == 0 and len(df.columns) == 0
        return
    check_frame(df, positions, rows)


@LIGHT
@given(st.data())
def test_series_from_values_round_trip(data: st.DataObject) -> None:
    positions, rows = data.draw(surveys())
    cells = [row.get("c0", ABSENT) for row in rows]
    values = [None if v is ABSENT else v for v in cells]
    missing = [i for i, v in enumerate(cells) if v is ABSENT]
    s = _columns.series_from_values(values, missing=missing, name="c0")
    dtype = expected_dtype(cells)
    assert str(s.dtype) == dtype and s.name == "c0" and isinstance(s.index, pd.RangeIndex)
    for g, w in zip(s.tolist() if dtype == "object" else list(s.array), cells):
        assert_cell(g, w, dtype)
