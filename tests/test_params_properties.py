"""Property tests of paramsurvey.params: the builders against their definitions."""

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramsurvey.params import choice, concat, integers, loguniform, product, sample, star, uniform
from paramsurvey.params import zip as pzip

# enough examples to find edge cases (empty factors, base values repeated) while the suite stays fast
SETTINGS = settings(max_examples=50, deadline=None)

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", "z"]), st.floats(-2, 2, allow_nan=False))


def rows(df):
    return [tuple(r) for r in df.itertuples(index=False)]


@st.composite
def factor_dicts(draw):
    """A few dicts of factors with distinct keys, each factor 0..4 values."""
    keys = draw(st.lists(KEYS, min_size=1, max_size=4, unique=True))
    factors = {k: draw(st.lists(VALUES, max_size=4)) for k in keys}
    split = draw(st.integers(1, len(keys)))
    # the same factors split over one or two arguments must give the same product
    return [dict(list(factors.items())[:split]), dict(list(factors.items())[split:])], factors


@SETTINGS
@given(factor_dicts(), st.booleans())
def test_product_is_itertools_product(args_factors, infer):
    args, factors = args_factors
    df = product(*args, infer_category=infer)
    assert len(df) == math.prod(len(v) for v in factors.values())
    assert list(df.columns) == list(factors)
    # the same order as itertools.product (last fastest), so each combination exactly once
    assert rows(df) == list(itertools.product(*factors.values()))
    assert df.index.equals(pd.RangeIndex(len(df)))


@SETTINGS
@given(st.lists(st.tuples(st.integers(-5, 5), st.sampled_from(["p", "q"])), max_size=5),
       st.lists(st.integers(0, 9), max_size=4))
def test_product_keeps_frame_rows_together(frame_rows, cs):
    frame = pd.DataFrame(frame_rows, columns=["m", "n"])
    df = product(frame, {"c": cs})
    assert rows(df) == [(m, n, c) for (m, n) in frame_rows for c in cs]


@SETTINGS
@given(st.integers(0, 6), st.lists(KEYS, min_size=1, max_size=4, unique=True), st.data())
def test_zip_pairs_row_by_row(n, keys, data):
    columns = {k: data.draw(st.lists(VALUES, min_size=n, max_size=n)) for k in keys}
    df = pzip(columns)
    assert rows(df) == list(zip(*columns.values()))


@SETTINGS
@given(st.lists(st.integers(0, 5), min_size=2, max_size=4, unique=True))
def test_zip_unequal_lengths_raise(lengths):
    with pytest.raises(ValueError, match="unequal lengths"):
        pzip({f"k{i}": list(range(n)) for i, n in enumerate(lengths)})


@SETTINGS
@given(st.dictionaries(KEYS, st.integers(0, 3), min_size=1), st.data())
def test_star_row_count_and_shape(base, data):
    variations = {k: data.draw(st.lists(st.integers(0, 3), max_size=4))
                  for k in data.draw(st.lists(st.sampled_from(list(base)), unique=True))}
    df = star(base, variations)
    expected = 1 + sum(len(v) - v.count(base[k]) for k, v in variations.items())
    assert len(df) == expected
    got = df.to_dict("records")
    assert got[0] == base
    # every other row differs from the base in exactly one factor, in the order of variations
    changed = [[k for k in base if r[k] != base[k]] for r in got[1:]]
    assert all(len(c) == 1 for c in changed)
    assert [c[0] for c in changed] == [k for k, v in variations.items() for x in v if x != base[k]]


bounds = st.tuples(st.floats(-1e6, 1e6), st.floats(1e-3, 1e6)).map(lambda t: (t[0], t[0] + t[1]))
log_bounds = st.tuples(st.floats(1e-6, 1e3), st.floats(1.001, 1e4)).map(lambda t: (t[0], t[0] * t[1]))
int_bounds = st.tuples(st.integers(-1000, 1000), st.integers(1, 1000)).map(lambda t: (t[0], t[0] + t[1]))


@SETTINGS
@given(st.integers(0, 40), st.integers(0, 2**32), st.sampled_from(["random", "lhs", "sobol"]),
       bounds, log_bounds, int_bounds, st.lists(VALUES, min_size=1, max_size=5))
def test_sample_in_bounds_and_reproducible(n, seed, method, ub, lb, ib, values):
    def draw():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Sobol' off a power of 2: allowed
            return sample(n, seed=seed, method=method, u=uniform(*ub), g=loguniform(*lb),
                          i=integers(*ib), c=choice(values))

    df = draw()
    assert df.shape == (n, 4)
    assert ((df["u"] >= ub[0]) & (df["u"] < ub[1])).all()
    assert ((df["g"] >= lb[0]) & (df["g"] < lb[1])).all()
    assert ((df["i"] >= ib[0]) & (df["i"] < ib[1])).all() and df["i"].dtype == np.int64
    assert all(any(v == w for w in values) for v in df["c"])
    pd.testing.assert_frame_equal(df, draw())


@SETTINGS
@given(st.floats(-1e6, 1e6), st.floats(-1e6, 0))
def test_sample_rejects_empty_ranges(low, minus):
    with pytest.raises(ValueError, match="'v'"):
        sample(2, v=uniform(low, low + minus))


COLUMN_KINDS = {
    "i": (st.integers(-100, 100), np.int64, "Int64"),
    "b": (st.booleans(), np.bool_, "boolean"),
    "f": (st.floats(-1, 1), np.float64, np.float64),
}


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 4), st.sets(st.sampled_from(sorted(COLUMN_KINDS)))),
                min_size=1, max_size=4), st.data())
def test_concat_dtypes_are_faithful(shapes, data):
    def column(kind, n):
        values, dtype = COLUMN_KINDS[kind][:2]
        return pd.Series(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)

    frames = [pd.DataFrame({c: column(c, n) for c in sorted(cols)}, index=pd.RangeIndex(n))
              for n, cols in shapes]
    df = concat(*frames)
    assert len(df) == sum(n for n, _ in shapes)
    start = 0
    for frame in frames:
        part = df.iloc[start:start + len(frame)]
        for c in df.columns:
            if c in frame.columns:
                assert part[c].tolist() == frame[c].tolist() or (c == "f" and np.allclose(part[c], frame[c]))
            else:
                assert part[c].isna().all()
        start += len(frame)
    for c in df.columns:
        gaps = any(c not in f.columns and len(f) for f in frames)
        kind, plain, nullable = COLUMN_KINDS[c]
        assert df[c].dtype == (nullable if gaps else plain)
