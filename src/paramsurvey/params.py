"""Build parameter sets (psets) for ``paramsurvey.map``.

Every builder returns a pandas DataFrame with a fresh RangeIndex, usable as psets and as an
argument of ``product``, so builders compose: a product of a zip and a sample, a concat of stars.

``product`` never loops over rows in Python. Each factor is factorized once into small integer
codes; its column in the product is those codes spread by index arithmetic::

    factor sizes s0, s1, ..., sK  ->  N = s0*s1*...*sK rows
    column k = tile(repeat(codes_k, s{k+1}*...*sK), s0*...*s{k-1})   # the last factor varies fastest

so 100 million rows of four 100-value factors take 400 MB of int8 codes.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._kinds import BOOL, FLOAT, INT, NUMMIX, classify

__all__ = ["Distribution", "add_column", "choice", "concat", "describe", "integers", "loguniform", "product",
           "repeat", "sample", "star", "uniform", "zip"]

# add_column gives func native Python values; converting a block of rows at a time bounds the
# temporary Python objects to a few MB instead of a copy of the whole frame
_ROW_BLOCK = 65536

# Object columns are categorized only when all values are of one kind: a hash table merges equal
# values of different types (1, True and 1.0), and a category would silently change a pset.
_SAFE_OBJECT_KINDS = {"string", "bytes", "integer", "floating", "boolean", "date", "datetime"}

_METHODS = ("random", "lhs", "sobol")

# the kinds of values a float column holds exactly (pandas also makes a float column of ints beyond
# 2**53 mixed with floats or None, rounding them)
_FLOAT_KINDS = (FLOAT, NUMMIX)


class _BadArgument(TypeError, ValueError):
    """A TypeError, and also the ValueError that paramsurvey 0.4.x raised for a bad argument."""


def _as_df(arg: Any, who: str) -> pd.DataFrame | None:
    """A DataFrame, or an object with ``to_df()`` (MapResults) as its DataFrame; else None."""
    if isinstance(arg, pd.DataFrame):
        return arg
    to_df = getattr(arg, "to_df", None)
    if not callable(to_df):
        return None
    df = to_df()
    if not isinstance(df, pd.DataFrame):
        raise _BadArgument(f"{who}: {type(arg).__name__}.to_df() returned a {type(df).__name__}")
    return df


def _series_from_values(values: list[Any], name: Hashable = None) -> pd.Series:
    """pandas' inference, except where it would change a value: ints or bools with None become
    Int64/boolean, not float/object; and a float dtype only holds values that are all floats, or ints
    and floats with every int exact as a float (``_kinds``, the rule of results and the journal) --
    ints that a float64 would round (beyond 2**53) keep an object column of the very values."""
    column = classify(values, na_is_missing=True)
    if column.none is not None and column.kind in (INT, BOOL):
        nullable = pd.Int64Dtype() if column.kind == INT else pd.BooleanDtype()
        try:
            return pd.Series(values, dtype=nullable, name=name)
        except (TypeError, ValueError, OverflowError):
            pass
    s = pd.Series(values, name=name)
    if s.dtype.kind != "f" and column.kind in _FLOAT_KINDS:  # e.g. uint64 beside negative ints and floats
        try:
            return pd.Series(values, dtype=np.float64, name=name)  # exact: the kind says so
        except (TypeError, ValueError):
            return s
    if s.dtype.kind == "f" and column.kind not in _FLOAT_KINDS:
        return pd.Series(np.fromiter(values, dtype=object, count=len(values)), name=name, dtype=object)
    return s


def _is_single(value: Any) -> bool:
    """A scalar or a string stands for one value; sequences stand for several."""
    if isinstance(value, np.ndarray):
        return value.ndim == 0
    return not isinstance(value, (list, tuple, range, pd.Series, pd.Index, Iterator, set, frozenset, Mapping))


def _values(key: Hashable, value: Any) -> pd.Series:
    """The values of one factor of a dict, as a Series named `key` with a RangeIndex."""
    if isinstance(value, (set, frozenset, Mapping)):
        raise _BadArgument(f"factor {key!r}: a {type(value).__name__} has no order; pass a list")
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"factor {key!r}: a {value.ndim}-dimensional array; pass a 1-d one")
        return pd.Series(value.reshape(-1), name=key)
    if isinstance(value, (pd.Series, pd.Index)):
        return pd.Series(value.to_numpy() if isinstance(value, pd.Index) else value.array, name=key)
    return _series_from_values([value] if _is_single(value) else list(value), key)


def _check_unique(keys: Iterable[Hashable], who: str) -> None:
    seen: set[Hashable] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{who}: key {key!r} appears more than once")
        seen.add(key)


def _factors(args: Sequence[Any], who: str) -> list[pd.DataFrame]:
    """The arguments as factors: one DataFrame each, whose rows stay together."""
    factors: list[pd.DataFrame] = []
    for arg in args:
        df = _as_df(arg, who)
        if df is not None:
            factors.append(df.reset_index(drop=True))
        elif isinstance(arg, pd.Series):
            if arg.name is None:
                raise ValueError(f"{who}: a Series argument needs a name, which becomes its key")
            factors.append(arg.reset_index(drop=True).to_frame())
        elif isinstance(arg, Mapping):
            factors.extend(_values(k, v).to_frame() for k, v in arg.items())
        else:
            raise _BadArgument(f"{who}: invalid argument of type {type(arg).__name__}; "
                               "expected a dict, a named Series or a DataFrame")
    _check_unique([c for f in factors for c in f.columns], who)
    return factors


def _factorize(s: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """Codes, in the smallest dtype (as pandas would store them), and categories; None if unsafe."""
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind == "c":
        return None
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in _SAFE_OBJECT_KINDS:
        return None
    try:
        codes, uniques = pd.factorize(s)
    except TypeError:  # unhashable values, e.g. lists
        return None
    narrow = next(t for t in (np.int8, np.int16, np.int32, np.int64) if len(uniques) < np.iinfo(t).max)
    return codes.astype(narrow), pd.Index(uniques)


def _spread(col: pd.Series, n_rows: int, inner: int, outer: int, infer: bool) -> Any:
    """Column `col` of a factor: each value repeated `inner` times, the whole tiled `outer` times."""

    def spread(a: np.ndarray) -> np.ndarray:
        return np.tile(np.repeat(a, inner), outer)

    if isinstance(col.dtype, pd.CategoricalDtype):
        return pd.Categorical.from_codes(spread(np.asarray(col.cat.codes)), dtype=col.dtype)
    factorized = _factorize(col) if infer and len(col) else None
    if factorized is not None:
        codes, uniques = factorized
        # estimated without building the plain column, which might not fit in memory
        plain = col.memory_usage(index=False, deep=True) * inner * outer
        if n_rows * codes.itemsize + uniques.memory_usage(deep=True) < plain:
            return pd.Categorical.from_codes(spread(codes), categories=uniques)
    if isinstance(col.dtype, np.dtype):
        return spread(col.to_numpy())
    return col.array.take(spread(np.arange(len(col))))


def product(*args: Any, infer_category: bool = True) -> pd.DataFrame:
    """The cartesian product of factors, the last varying fastest (like ``itertools.product``).

    A row per combination, with a fresh RangeIndex. An empty factor gives no rows (the columns are
    kept); no factor at all an empty DataFrame. A key given twice is a ValueError naming it; an
    argument of another type a TypeError (also a ValueError, as paramsurvey 0.4 raised).

    Parameters
    ----------
    *args : dict, named Series, DataFrame, or an object with ``to_df()`` (MapResults)
        In a dict each key is a factor, in dict order; its value is a list, tuple, range, array,
        Series or iterator of values, or a scalar or string standing for one value. The rows of a
        DataFrame stay together: it is one factor of several columns.
    infer_category : bool
        Store a column as a pandas categorical when that takes less memory (repeated values).
        A categorical input stays categorical either way.

    Examples
    --------
    >>> print(product({'a': [1, 2], 'b': ['x', 'y']}, {'c': 0}))
       a  b  c
    0  1  x  0
    1  1  y  0
    2  2  x  0
    3  2  y  0
    """
    factors = _factors(args, "product")
    sizes = [len(f) for f in factors]
    n_rows = math.prod(sizes) if factors else 0
    columns: dict[Hashable, Any] = {}
    for k, factor in enumerate(factors):
        inner, outer = math.prod(sizes[k + 1:]), math.prod(sizes[:k])
        for name in factor.columns:
            columns[name] = _spread(factor[name], n_rows, inner, outer, infer_category)
    # copy=False: the spread arrays are fresh, and a copy would double the peak memory
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows), copy=False)


def _infer_category(s: pd.Series) -> pd.Series:
    """s as a categorical if that takes less memory, as paramsurvey 0.4 did."""
    factorized = _factorize(s)
    if factorized is None:
        return s
    c = pd.Series(pd.Categorical.from_codes(*factorized), index=s.index, name=s.name)
    return c if c.memory_usage(index=False, deep=True) < s.memory_usage(index=False, deep=True) else s


def add_column(df: pd.DataFrame, name: Hashable, func: Callable[[dict[Hashable, Any]], Any],
               infer_category: bool = True) -> pd.DataFrame:
    """A copy of `df` with a column `name` holding ``func(row)`` for each row.

    `row` is a dict of the row's native Python values (int, float, str: no numpy scalars). Ints
    or bools with some None results give a nullable ``Int64``/``boolean`` column, never float.
    A column name already in `df` is a ValueError.

    Examples
    --------
    >>> psets = product({'a': [1, 2], 'b': [10, 20]})
    >>> print(add_column(psets, 'total', lambda row: row['a'] + row['b']))
       a   b  total
    0  1  10     11
    1  1  20     21
    2  2  10     12
    3  2  20     22
    """
    if name in df.columns:
        raise ValueError(f"add_column: df already has a column {name!r}")
    names = list(df.columns)
    values: list[Any] = []
    for start in range(0, len(df), _ROW_BLOCK):
        block = df.iloc[start:start + _ROW_BLOCK]
        cols = [block[c].tolist() for c in names]  # tolist() gives native scalars, categoricals too
        values.extend(func(dict(builtins.zip(names, row))) for row in builtins.zip(*cols))
    s = _series_from_values(values, name)
    s.index = df.index
    ret = df.copy()
    ret[name] = _infer_category(s) if infer_category else s
    return ret


def zip(*args: Any) -> pd.DataFrame:
    """Paired factors: row i holds the i-th value of each.

    The arguments (dicts of lists, named Series, DataFrames, objects with ``to_df()``) must all
    have the same length; a scalar or string in a dict is repeated on every row. Unequal lengths
    are a ValueError naming each factor's length.

    Examples
    --------
    >>> print(zip({'mass': [1.0, 2.0, 4.0], 'label': ['s', 'm', 'l'], 'run': 'a'}))
       mass label run
    0   1.0     s   a
    1   2.0     m   a
    2   4.0     l   a
    """
    columns: dict[Hashable, pd.Series] = {}
    singles: dict[Hashable, Any] = {}
    keys: list[Hashable] = []
    for arg in args:
        frames = [] if isinstance(arg, Mapping) else _factors([arg], "zip")
        for key, value in arg.items() if isinstance(arg, Mapping) else [(c, f[c]) for f in frames for c in f]:
            keys.append(key)
            if _is_single(value):
                singles[key] = value.item() if isinstance(value, np.ndarray) else value
            else:
                columns[key] = _values(key, value)
    _check_unique(keys, "zip")
    lengths = {k: len(s) for k, s in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("zip: unequal lengths: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    n = next(iter(lengths.values())) if lengths else int(bool(singles))
    columns.update((k, _series_from_values([v] * n, k)) for k, v in singles.items())
    return pd.DataFrame({k: columns[k] for k in keys}, index=pd.RangeIndex(n))


def _as_frame(psets: Any, who: str) -> pd.DataFrame:
    """Psets in any form ``map`` takes (DataFrame, dict of lists, dicts), as a DataFrame."""
    df = _as_df(psets, who)
    if df is not None:
        return df.reset_index(drop=True)
    if isinstance(psets, Mapping):
        return zip(psets)
    if isinstance(psets, (str, bytes, pd.Series)) or not isinstance(psets, Iterable):
        raise _BadArgument(f"{who}: invalid psets of type {type(psets).__name__}")
    records = list(psets)
    for r in records:
        if not isinstance(r, Mapping):
            raise _BadArgument(f"{who}: a pset must be a dict, not a {type(r).__name__}")
    keys = dict.fromkeys(k for r in records for k in r)
    return pd.DataFrame({k: _series_from_values([r.get(k) for r in records], k) for k in keys},
                        index=pd.RangeIndex(len(records)))


def _nullable(s: pd.Series) -> pd.Series:
    """s in a dtype that holds a missing value without changing the others (not int -> float)."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
        name = f"{'U' if s.dtype.kind == 'u' else ''}Int{8 * s.dtype.itemsize}"
        return s.astype(pd.api.types.pandas_dtype(name))
    return s.astype("boolean") if s.dtype == bool else s


def _decategorize(s: pd.Series) -> pd.Series:
    """A categorical as its categories' dtype, so frames with different categories concat faithfully."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s
    plain = pd.Series(s.cat.categories.take(np.asarray(s.cat.codes).clip(0)), name=s.name)
    if s.hasnans:
        plain = _nullable(plain)
        plain[np.asarray(s.isna())] = None
    return plain


def _concat_column(dfs: list[pd.DataFrame], name: Hashable, offsets: np.ndarray, infer: bool) -> pd.Series:
    present = [i for i, df in enumerate(dfs) if name in df.columns]
    pieces = [_decategorize(dfs[i][name]) for i in present]
    # empty pieces must not decide the dtype (pandas warns about them): leave them out
    joined = pd.concat([p for p in pieces if len(p)] or pieces[:1], ignore_index=True)
    positions = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in present])
    total = int(offsets[-1])
    if len(positions) < total:
        joined = _nullable(joined)
        joined.index = pd.Index(positions)
        joined = joined.reindex(pd.RangeIndex(total))
        if joined.dtype == object:  # None, not a NaN that a worker would find truthy
            gaps = np.ones(total, dtype=bool)
            gaps[positions] = False
            joined[gaps] = None
    joined.name = name
    if infer and any(isinstance(dfs[i][name].dtype, pd.CategoricalDtype) for i in present):
        joined = _infer_category(joined)
    return joined


def concat(*frames: Any, infer_category: bool = True) -> pd.DataFrame:
    """Sweeps one after another: the rows of each frame in turn, the columns united.

    The columns come in order of first appearance. Where a frame lacks a column its rows have a
    missing value, in a dtype that keeps the others faithful: ints become nullable ``Int64``, bools
    ``boolean``; floats get NaN and object columns None.

    Parameters
    ----------
    *frames : DataFrame, object with ``to_df()``, list of dicts, or dict of lists
        A single list or tuple of frames is taken as the frames, as ``pd.concat`` does.
    infer_category : bool
        Keep a column categorical (if an input had it so) when that takes less memory.

    Examples
    --------
    >>> print(concat(product({'a': [1, 2]}), product({'a': [3], 'flag': [True]})))
       a  flag
    0  1  <NA>
    1  2  <NA>
    2  3  True
    """
    if len(frames) == 1 and isinstance(frames[0], (list, tuple)) \
            and not any(isinstance(f, Mapping) for f in frames[0]):  # a list of dicts is one frame
        frames = tuple(frames[0])
    dfs = [_as_frame(f, "concat") for f in frames]
    for df in dfs:
        _check_unique(df.columns, "concat")
    offsets = np.cumsum([0] + [len(df) for df in dfs])
    names = dict.fromkeys(c for df in dfs for c in df.columns)
    out = {name: _concat_column(dfs, name, offsets, infer_category) for name in names}
    return pd.DataFrame(out, index=pd.RangeIndex(int(offsets[-1])))


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # e.g. arrays, whose == is elementwise
        return False


def star(base: Mapping[Hashable, Any], variations: Mapping[Hashable, Any]) -> pd.DataFrame:
    """A one-at-a-time sweep around a base point.

    The rows are: the base point; then, for each factor of `variations` in dict order, its values
    in the order given, each with every other factor at its base value. A value equal to the base
    value is skipped, so the base point appears once. A factor missing from `base` is a ValueError.

    Examples
    --------
    >>> print(star({'a': 1, 'b': 10}, {'a': [0, 1, 2], 'b': [20]}))
       a   b
    0  1  10
    1  0  10
    2  2  10
    3  1  20
    """
    unknown = [k for k in variations if k not in base]
    if unknown:
        raise ValueError(f"star: factors {unknown!r} of variations have no base value")
    rows = [dict(base)]
    for key, values in variations.items():
        rows.extend({**base, key: v} for v in _values(key, values).tolist() if not _same(v, base[key]))
    return _as_frame(rows, "star").reindex(columns=list(base))


def repeat(psets: Any, n: int, column: str = "repeat") -> pd.DataFrame:
    """Each pset `n` times, numbered 0..n-1 in `column`; the rows stay grouped pset by pset.

    Examples
    --------
    >>> print(repeat({'a': [1, 2]}, 2))
       a  repeat
    0  1       0
    1  1       1
    2  2       0
    3  2       1
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"repeat: n must be >= 0, got {n}")
    df = _as_frame(psets, "repeat")
    if column in df.columns:
        raise ValueError(f"repeat: psets already have a column {column!r}")
    out = df.take(np.repeat(np.arange(len(df)), n)).reset_index(drop=True)
    out[column] = np.tile(np.arange(n), len(df))
    return out


def _scaled(u: np.ndarray, k: int) -> np.ndarray:
    """Uniform [0, 1) numbers as ints 0..k-1."""
    return np.minimum(np.floor(u * k).astype(np.int64), k - 1)


@dataclass(frozen=True)
class Distribution:
    """A factor of ``sample``; build it with ``uniform``, ``loguniform``, ``integers`` or ``choice``.

    Its bounds are checked by ``sample``, so that the error can name the factor.
    """

    kind: str
    low: Any = None
    high: Any = None
    values: tuple[Any, ...] = ()

    def _check(self, name: str) -> None:
        low, high, what = self.low, self.high, f"sample: factor {name!r}: {self.kind}"
        if self.kind == "choice":
            if not self.values:
                raise ValueError(f"{what} needs at least one value")
            return
        if self.kind == "integers" and not all(isinstance(b, (int, np.integer)) for b in (low, high)):
            raise ValueError(f"{what} bounds must be ints, got {low!r}, {high!r}")
        try:
            finite = all(math.isfinite(b) for b in (low, high, high - low))
        except TypeError:
            finite = False
        if not finite:
            raise ValueError(f"{what} bounds must be finite numbers, got {low!r}, {high!r}")
        if not low < high:
            raise ValueError(f"{what} needs low < high, got {low!r}, {high!r}")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"{what} needs low > 0, got {low!r}")

    def _from_unit(self, u: np.ndarray) -> Any:
        if self.kind == "choice":
            picks = _series_from_values(list(self.values)).take(_scaled(u, len(self.values)))
            return picks.reset_index(drop=True)
        if self.kind == "integers":
            return _scaled(u, int(self.high) - int(self.low)) + np.int64(self.low)
        if self.kind == "loguniform":
            lo, hi = math.log(self.low), math.log(self.high)
            x = np.exp(lo + u * (hi - lo))
        else:
            x = self.low + u * (self.high - self.low)
        # rounding can land on high (or, through exp, just outside); the promise is [low, high)
        return np.clip(x, self.low, np.nextafter(self.high, -math.inf))


def uniform(low: float, high: float) -> Distribution:
    """Floats uniform in [low, high)."""
    return Distribution("uniform", low, high)


def loguniform(low: float, high: float) -> Distribution:
    """Floats in [low, high) whose logarithm is uniform; 0 < low."""
    return Distribution("loguniform", low, high)


def integers(low: int, high: int) -> Distribution:
    """Ints from low (included) to high (excluded), equally likely."""
    return Distribution("integers", low, high)


def choice(values: Iterable[Any]) -> Distribution:
    """One of `values`, equally likely."""
    return Distribution("choice", values=tuple(values))


def sample(n: int, /, seed: int | None = 0, method: str = "random", **factors: Distribution) -> pd.DataFrame:
    """`n` psets drawn from the factors' ranges, reproducible from `seed`.

    Bad bounds (low >= high, loguniform low <= 0) are a ValueError naming the factor.

    Parameters
    ----------
    n : int
        The number of psets (positional, so a factor may be called ``n``).
    seed : int or None
        The same seed, `n`, method and factors (in the same order) give the same frame, on a given
        numpy/scipy version. None draws fresh entropy.
    method : {'random', 'lhs', 'sobol'}
        'random': independent draws of ``numpy.random.default_rng(seed)``. 'lhs': a Latin
        hypercube (``scipy.stats.qmc.LatinHypercube``): each range cut into `n` equal strata, one
        pset in each. 'sobol': a scrambled Sobol' sequence (``scipy.stats.qmc.Sobol``), most even
        when `n` is a power of 2; for other `n` scipy warns, and the sample is still valid.
    **factors : Distribution
        ``uniform(low, high)``, ``loguniform(low, high)``, ``integers(low, high)`` or
        ``choice(values)``, one column each in the order given; values lie in [low, high).

    Examples
    --------
    >>> psets = sample(8, seed=1, method='lhs', x=uniform(0, 1), dt=loguniform(1e-3, 1e-1),
    ...                k=integers(1, 5), solver=choice(['cg', 'gmres']))
    >>> psets.shape
    (8, 4)
    >>> bool(psets['x'].between(0, 1).all() and psets['k'].isin(range(1, 5)).all())
    True
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"sample: n must be >= 0, got {n}")
    if method not in _METHODS:
        raise ValueError(f"sample: unknown method {method!r}; use one of {', '.join(_METHODS)}")
    if not factors:
        raise ValueError("sample: give at least one factor, e.g. x=uniform(0, 1)")
    for name, spec in factors.items():
        if not isinstance(spec, Distribution):
            raise _BadArgument(f"sample: factor {name!r} is a {type(spec).__name__}; "
                               "use uniform(), loguniform(), integers() or choice()")
        spec._check(name)
    d = len(factors)
    if n == 0:
        u = np.empty((0, d))
    elif method == "random":
        u = np.random.default_rng(seed).random((n, d))
    else:
        from scipy.stats import qmc  # here: importing scipy.stats takes longer than all of paramsurvey

        lhs = method == "lhs"
        u = (qmc.LatinHypercube(d, seed=seed) if lhs else qmc.Sobol(d, scramble=True, seed=seed)).random(n)
    columns = {name: spec._from_unit(u[:, j]) for j, (name, spec) in enumerate(factors.items())}
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def _summary_row(name: Hashable, s: pd.Series) -> list[str]:
    values: pd.Series | pd.Index = s
    dtype = str(s.dtype)
    if isinstance(s.dtype, pd.CategoricalDtype):  # the categories seen, without expanding the codes
        codes = np.asarray(s.cat.codes)
        values = s.cat.categories[np.bincount(codes[codes >= 0], minlength=len(s.cat.categories)) > 0]
        dtype = f"category[{s.cat.categories.dtype}]"
    try:
        distinct = int(values.nunique())
    except TypeError:  # unhashable values, e.g. lists
        distinct = len(set(map(repr, values)))
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    low_high = [str(values.min()), str(values.max())] if numeric and len(values) else []
    return [str(name), dtype, str(distinct), *low_high]


def describe(psets: Any) -> str:
    """A summary of psets before running them: how many, and for each factor its dtype, number of
    distinct values, and the min and max of numbers. `psets` may be any form ``map`` takes.

    Examples
    --------
    >>> print(describe(product({'a': [1, 2, 3], 'b': ['x', 'y']})))
    6 psets, 2 factors
    factor  dtype            distinct  min  max
    a       category[int64]  3         1    3
    b       category[str]    2
    """
    df = _as_frame(psets, "describe")
    table = [["factor", "dtype", "distinct", "min", "max"]] + [_summary_row(c, df[c]) for c in df.columns]
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in builtins.zip(r, widths)).rstrip() for r in table]
    plural = "" if len(df.columns) == 1 else "s"
    return "\n".join([f"{len(df)} psets, {len(df.columns)} factor{plural}", *lines])
