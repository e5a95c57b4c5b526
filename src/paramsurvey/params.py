"""Build parameter sets (psets) for ``paramsurvey.map``.

Every builder returns a pandas DataFrame with a fresh RangeIndex: usable as psets, and as an
argument of ``product``, so builders compose (a product of a zip and a sample, a concat of stars...).

``product`` never loops over rows in Python. Each factor is factorized once into small integer
codes, and the column of the product is those codes spread with ``np.repeat`` (this factor repeats
for every combination of the factors after it) and ``np.tile`` (the whole block repeats for every
combination of the factors before it)::

    factor sizes s0, s1, s2  ->  N = s0*s1*s2 rows
    column k = tile(repeat(codes_k, s_{k+1}*...), s0*...*s_{k-1})   # the last factor varies fastest

so 100 million rows of four 100-value factors cost about 400 MB of int8 codes.
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

__all__ = [
    "Distribution",
    "add_column",
    "choice",
    "concat",
    "describe",
    "integers",
    "loguniform",
    "product",
    "repeat",
    "sample",
    "star",
    "uniform",
    "zip",
]

# add_column hands func native Python values; converting a block of rows at a time bounds the
# temporary lists to a few MB instead of a copy of the whole frame as Python objects
_ROW_BLOCK = 65536

# object columns whose values are all of one of these kinds can be categorized safely; for mixed
# ones (1 and True, 1 and 1.0, tuples of those) hashing merges equal-comparing values of different
# types and the category would silently change a pset
_SAFE_OBJECT_KINDS = {"string", "bytes", "integer", "floating", "boolean", "decimal", "date", "datetime"}

_METHODS = ("random", "lhs", "sobol")


class _BadArgument(TypeError, ValueError):
    """An argument of the wrong type: a TypeError, and a ValueError as the original 0.4.x raised."""


def _as_df(arg: Any, who: str) -> pd.DataFrame | None:
    """A DataFrame, or an object with ``to_df()`` (MapResults) as its DataFrame; else None."""
    if isinstance(arg, pd.DataFrame):
        return arg
    to_df = getattr(arg, "to_df", None)
    if callable(to_df):
        df = to_df()
        if not isinstance(df, pd.DataFrame):
            raise _BadArgument(f"{who}: {type(arg).__name__}.to_df() returned {type(df).__name__}")
        return df
    return None


def _series_from_values(values: list[Any], name: Hashable = None) -> pd.Series:
    """pandas' inference, except that ints or bools with None stay nullable ints/bools, not floats."""
    s = pd.Series(values, name=name)
    if s.hasnans and pd.api.types.infer_dtype(values, skipna=True) in ("integer", "boolean"):
        if any(v is None or v is pd.NA for v in values):
            integer = pd.api.types.infer_dtype(values, skipna=True) == "integer"
            try:
                return pd.Series(values, dtype=pd.Int64Dtype() if integer else pd.BooleanDtype(), name=name)
            except (TypeError, ValueError, OverflowError):  # e.g. ints beyond int64
                pass
    return s


def _is_single(value: Any) -> bool:
    """A scalar or a string stands for one value; sequences stand for several."""
    if isinstance(value, np.ndarray):
        return value.ndim == 0
    return not isinstance(value, (list, tuple, range, pd.Series, pd.Index, Iterator, set, frozenset, Mapping))


def _values(key: Hashable, value: Any) -> pd.Series:
    """The values of one factor of a dict, as a Series with a RangeIndex."""
    if isinstance(value, (set, frozenset, Mapping)):
        raise _BadArgument(f"factor {key!r}: a {type(value).__name__} has no order; pass a list")
    if isinstance(value, pd.Series):
        s = value.reset_index(drop=True)
        s.name = key
        return s
    if isinstance(value, pd.Index):
        return pd.Series(value, name=key)
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"factor {key!r}: a {value.ndim}-dimensional array; pass a 1-d one")
        return pd.Series(value.reshape(-1), name=key)
    if _is_single(value):
        value = [value]
    return _series_from_values(list(value), key)


def _factors(args: Sequence[Any], who: str) -> list[pd.DataFrame]:
    """Split arguments into factors: one DataFrame each, whose rows stay together."""
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


def _check_unique(keys: Iterable[Hashable], who: str) -> None:
    seen: set[Hashable] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{who}: key {key!r} appears more than once")
        seen.add(key)


def _code_dtype(n_categories: int) -> type[np.signedinteger[Any]]:
    """The smallest code type, as pandas picks it, so codes are not copied to narrow them later."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _categorizable(s: pd.Series) -> bool:
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype.kind == "c":
        return False
    if s.dtype == object:
        return pd.api.types.infer_dtype(s, skipna=True) in _SAFE_OBJECT_KINDS
    return True


def _factorize(s: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """Codes (narrowed) and categories of s, or None if its values cannot be categories."""
    if not _categorizable(s):
        return None
    try:
        codes, uniques = pd.factorize(s)
    except TypeError:  # unhashable values, e.g. lists
        return None
    return codes.astype(_code_dtype(len(uniques))), pd.Index(uniques)


def _spread(col: pd.Series, n_rows: int, inner: int, outer: int, infer: bool) -> Any:
    """Column `col` of one factor, repeated `inner` times per value and tiled `outer` times."""

    def spread(a: np.ndarray) -> np.ndarray:
        return np.tile(np.repeat(a, inner), outer)

    if isinstance(col.dtype, pd.CategoricalDtype):
        return pd.Categorical.from_codes(spread(np.asarray(col.cat.codes)), dtype=col.dtype)
    factorized = _factorize(col) if infer and len(col) else None
    if factorized is not None:
        codes, uniques = factorized
        # the memory the plain column would take, against codes plus one copy of each value
        plain = col.memory_usage(index=False, deep=True) * inner * outer
        if n_rows * codes.itemsize + uniques.memory_usage(deep=True) < plain:
            return pd.Categorical.from_codes(spread(codes), categories=uniques)
    if isinstance(col.dtype, np.dtype):
        return spread(col.to_numpy())
    return col.array.take(spread(np.arange(len(col))))


def product(*args: Any, infer_category: bool = True) -> pd.DataFrame:
    """The cartesian product of factors, the last varying fastest (like ``itertools.product``).

    Parameters
    ----------
    *args : dict, Series, DataFrame, or an object with ``to_df()`` (e.g. MapResults)
        In a dict, each key is a factor, in dict order; its value is a list, tuple, range, array or
        Series of values, or a scalar or string standing for one value. A Series is one factor
        named after it. The rows of a DataFrame stay together: it is one factor of many columns.
    infer_category : bool
        Store a column as a pandas categorical when that takes less memory (repeated values).
        Categorical inputs stay categorical either way.

    Returns
    -------
    DataFrame
        One row per combination, a column per key, a fresh RangeIndex. An empty factor gives an
        empty DataFrame with all the columns; no factor at all gives an empty DataFrame.

    Raises
    ------
    ValueError
        A key given twice, or an unnamed Series.
    TypeError
        An argument that is none of the above (also a ValueError, as in paramsurvey 0.4).

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
    if not factors:
        return pd.DataFrame(index=pd.RangeIndex(0))
    sizes = [len(f) for f in factors]
    n_rows = math.prod(sizes)
    columns: dict[Hashable, Any] = {}
    for k, factor in enumerate(factors):
        inner = math.prod(sizes[k + 1:])  # rows spanned by one value: the later factors' combinations
        outer = math.prod(sizes[:k])
        for name in factor.columns:
            columns[name] = _spread(factor[name], n_rows, inner, outer, infer_category)
    # copy=False: the spread arrays are fresh; copying them would double the peak memory
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows), copy=False)


def _infer_category(s: pd.Series) -> pd.Series:
    """s as a categorical if that takes less memory, as the original 0.4.x did."""
    factorized = _factorize(s)
    if factorized is None:
        return s
    codes, uniques = factorized
    c = pd.Series(pd.Categorical.from_codes(codes, categories=uniques), index=s.index, name=s.name)
    if c.memory_usage(index=False, deep=True) < s.memory_usage(index=False, deep=True):
        return c
    return s


def add_column(df: pd.DataFrame, name: Hashable, func: Callable[[dict[Hashable, Any]], Any],
               infer_category: bool = True) -> pd.DataFrame:
    """A copy of `df` with a column `name` holding ``func(row)`` for each row.

    `row` is a dict of the row's native Python values (ints, floats, strs; no numpy scalars).
    Ints with missing values become a nullable ``Int64`` column, never floats.

    Raises
    ------
    ValueError
        `df` already has a column `name`.

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
        # Series.tolist() gives native Python scalars, categoricals included
        cols = [block[c].tolist() for c in names]
        values.extend(func(dict(builtins.zip(names, row))) for row in builtins.zip(*cols))
    s = _series_from_values(values, name)
    s.index = df.index
    ret = df.copy()
    ret[name] = _infer_category(s) if infer_category else s
    return ret


def zip(*args: Any) -> pd.DataFrame:
    """Paired factors: row i holds the i-th value of every factor.

    Parameters
    ----------
    *args : dict of lists, Series, DataFrame, or an object with ``to_df()``
        All lists, Series and DataFrames must have the same length. A scalar or string in a dict
        is one value, repeated on every row.

    Raises
    ------
    ValueError
        Unequal lengths (the message names each factor's length), or a key given twice.

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
        if isinstance(arg, Mapping):
            for key, value in arg.items():
                keys.append(key)
                if _is_single(value) and not isinstance(value, np.ndarray):
                    singles[key] = value
                else:
                    columns[key] = _values(key, value)
        else:
            for factor in _factors([arg], "zip"):
                keys.extend(factor.columns)
                columns.update((c, factor[c]) for c in factor.columns)
    _check_unique(keys, "zip")
    lengths = {k: len(s) for k, s in columns.items()}
    if len(set(lengths.values())) > 1:
        named = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"zip: unequal lengths: {named}")
    n = next(iter(lengths.values())) if lengths else (1 if singles else 0)
    for key, value in singles.items():
        columns[key] = _series_from_values([value] * n, key)
    ordered = {k: columns[k] for k in keys}
    return pd.DataFrame(ordered, index=pd.RangeIndex(n))


def _as_frame(psets: Any, who: str) -> pd.DataFrame:
    """Psets in any form ``map`` accepts, as a DataFrame with a RangeIndex."""
    df = _as_df(psets, who)
    if df is not None:
        return df.reset_index(drop=True)
    if isinstance(psets, pd.Series):
        return psets.reset_index(drop=True).to_frame()
    if isinstance(psets, Mapping):
        return zip(psets)  # a dict of equal-length lists, as map() takes it
    if isinstance(psets, (str, bytes)) or not isinstance(psets, Iterable):
        raise _BadArgument(f"{who}: invalid psets of type {type(psets).__name__}")
    records = list(psets)
    for r in records:
        if not isinstance(r, Mapping):
            raise _BadArgument(f"{who}: a pset must be a dict, not {type(r).__name__}")
    keys = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame({k: _series_from_values([r.get(k) for r in records], k) for k in keys},
                        index=pd.RangeIndex(len(records)))


def _nullable(s: pd.Series) -> pd.Series:
    """s in a dtype that can hold a missing value without changing its other values."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
        name = f"{'U' if s.dtype.kind == 'u' else ''}Int{8 * s.dtype.itemsize}"
        return s.astype(pd.api.types.pandas_dtype(name))
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "b":
        return s.astype("boolean")
    return s


def _decategorize(s: pd.Series) -> pd.Series:
    """A categorical as its categories' dtype: frames with different categories concat faithfully."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s
    plain = pd.Series(s.cat.categories.take(np.asarray(s.cat.codes).clip(0)), name=s.name)
    if s.hasnans:
        plain = _nullable(plain)
        plain[np.asarray(s.isna())] = None
    return plain


def concat(*frames: Any, infer_category: bool = True) -> pd.DataFrame:
    """Sweeps one after another: the rows of each frame in turn, the columns united.

    Parameters
    ----------
    *frames : DataFrame, object with ``to_df()``, list of dicts, or dict of lists
        A single list or tuple of these is taken as the frames.
    infer_category : bool
        Keep a column categorical (if any input had it so) when that takes less memory.

    Returns
    -------
    DataFrame
        Columns in order of first appearance. A row whose frame lacks a column has a missing value
        there, in a dtype that keeps the others faithful: ints become nullable ``Int64``, bools
        ``boolean``, objects get ``None``, floats ``NaN``.

    Examples
    --------
    >>> print(concat(product({'a': [1, 2]}), product({'a': [3], 'flag': [True]})))
       a  flag
    0  1  <NA>
    1  2  <NA>
    2  3  True
    """
    if len(frames) == 1 and isinstance(frames[0], (list, tuple)) and frames[0] \
            and all(not isinstance(f, Mapping) for f in frames[0]):
        frames = tuple(frames[0])
    dfs = [_as_frame(f, "concat") for f in frames]
    for df in dfs:
        _check_unique(df.columns, "concat")
    offsets = np.cumsum([0] + [len(df) for df in dfs])
    total = int(offsets[-1])
    names = list(dict.fromkeys(c for df in dfs for c in df.columns))
    out: dict[Hashable, pd.Series] = {}
    for name in names:
        present = [i for i, df in enumerate(dfs) if name in df.columns]
        pieces = [_decategorize(dfs[i][name]) for i in present]
        # pandas does not let empty pieces decide the dtype, and warns about them: leave them out
        joined = pd.concat([p for p in pieces if len(p)] or pieces[:1], ignore_index=True)
        positions = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in present])
        if len(positions) < total:
            joined = _nullable(joined)
            joined.index = pd.Index(positions)
            joined = joined.reindex(pd.RangeIndex(total))
            if joined.dtype == object:
                gaps = np.ones(total, dtype=bool)
                gaps[positions] = False
                joined[gaps] = None
        joined.name = name
        if infer_category and any(isinstance(dfs[i][name].dtype, pd.CategoricalDtype) for i in present):
            joined = _infer_category(joined)
        out[name] = joined
    return pd.DataFrame(out, index=pd.RangeIndex(total))


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # e.g. arrays, whose == is elementwise
        return False


def star(base: Mapping[Hashable, Any], variations: Mapping[Hashable, Any]) -> pd.DataFrame:
    """A one-at-a-time sweep around a base point.

    The order is: the base row first; then, for each factor of `variations` in dict order, one row
    per value in the given order, with every other factor at its base value. A value equal to the
    base value is skipped, so the base point appears exactly once.

    Raises
    ------
    ValueError
        A factor of `variations` that `base` lacks.

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
    """Each pset `n` times, with `column` counting 0..n-1; rows stay grouped pset by pset.

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


@dataclass(frozen=True)
class Distribution:
    """A factor of ``sample``: maps uniform numbers in [0, 1) to its values.

    Build one with ``uniform``, ``loguniform``, ``integers`` or ``choice``. The bounds are checked
    by ``sample``, so its errors can name the factor.
    """

    def _check(self, name: str) -> None:
        raise NotImplementedError

    def _from_unit(self, u: np.ndarray) -> Any:
        raise NotImplementedError


def _check_bounds(name: str, low: Any, high: Any, kind: str) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)):
        raise ValueError(f"sample: factor {name!r}: {kind} bounds must be finite, got {low}, {high}")
    if not low < high:
        raise ValueError(f"sample: factor {name!r}: {kind} needs low < high, got {low}, {high}")


@dataclass(frozen=True)
class Uniform(Distribution):
    low: float
    high: float

    def _check(self, name: str) -> None:
        _check_bounds(name, self.low, self.high, "uniform")

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        # rounding of low + u*(high-low) can land on high itself; [low, high) is the promise
        return np.minimum(self.low + u * (self.high - self.low), np.nextafter(self.high, -math.inf))


@dataclass(frozen=True)
class LogUniform(Distribution):
    low: float
    high: float

    def _check(self, name: str) -> None:
        _check_bounds(name, self.low, self.high, "loguniform")
        if self.low <= 0:
            raise ValueError(f"sample: factor {name!r}: loguniform needs low > 0, got {self.low}")

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        lo, hi = math.log(self.low), math.log(self.high)
        return np.clip(np.exp(lo + u * (hi - lo)), self.low, np.nextafter(self.high, 0.0))


@dataclass(frozen=True)
class Integers(Distribution):
    low: int
    high: int

    def _check(self, name: str) -> None:
        for bound in (self.low, self.high):
            if not isinstance(bound, (int, np.integer)) or isinstance(bound, bool):
                raise ValueError(f"sample: factor {name!r}: integers bounds must be ints, got {bound!r}")
        _check_bounds(name, self.low, self.high, "integers")

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        span = int(self.high) - int(self.low)
        k = np.minimum(np.floor(u * span).astype(np.int64), span - 1)
        return k + np.int64(self.low)


@dataclass(frozen=True)
class Choice(Distribution):
    values: tuple[Any, ...]

    def _check(self, name: str) -> None:
        if not self.values:
            raise ValueError(f"sample: factor {name!r}: choice needs at least one value")

    def _from_unit(self, u: np.ndarray) -> pd.Series:
        k = np.minimum(np.floor(u * len(self.values)).astype(np.int64), len(self.values) - 1)
        return _series_from_values(list(self.values)).take(k).reset_index(drop=True)


def uniform(low: float, high: float) -> Distribution:
    """Floats uniform in [low, high)."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> Distribution:
    """Floats in [low, high) whose logarithm is uniform; needs 0 < low."""
    return LogUniform(low, high)


def integers(low: int, high: int) -> Distribution:
    """Ints from low (inclusive) to high (exclusive), each equally likely."""
    return Integers(low, high)


def choice(values: Iterable[Any]) -> Distribution:
    """One of `values`, each equally likely."""
    return Choice(tuple(values))


def sample(n: int, /, seed: int | None = 0, method: str = "random", **factors: Distribution) -> pd.DataFrame:
    """`n` psets drawn from ranges of the factors, reproducible from `seed`.

    Parameters
    ----------
    n : int
        Number of psets.
    seed : int or None
        The same seed, `n`, method and factors (in the same order) give the same frame. None draws
        fresh entropy.
    method : {'random', 'lhs', 'sobol'}
        'random': independent draws from ``numpy.random.default_rng(seed)``. 'lhs': a Latin
        hypercube (``scipy.stats.qmc.LatinHypercube``): each factor's range cut in `n` equal
        strata, one pset in each. 'sobol': a scrambled Sobol' sequence (``scipy.stats.qmc.Sobol``),
        most even when `n` is a power of 2; scipy warns otherwise, and the sample is still valid.
    **factors : Distribution
        ``uniform(low, high)``, ``loguniform(low, high)``, ``integers(low, high)`` or
        ``choice(values)``; columns in the order given. Values lie in [low, high).

    Raises
    ------
    ValueError
        Bad bounds (low >= high, loguniform low <= 0), naming the factor; an unknown method.
    TypeError
        A factor that is not a Distribution.

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
        # imported here: scipy.stats takes longer to import than all the rest of paramsurvey
        from scipy.stats import qmc

        engine = qmc.LatinHypercube(d, seed=seed) if method == "lhs" else qmc.Sobol(d, scramble=True, seed=seed)
        u = engine.random(n)
    columns = {name: spec._from_unit(u[:, j]) for j, (name, spec) in enumerate(factors.items())}
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def _summary_row(name: Hashable, s: pd.Series) -> list[str]:
    values: Any = s
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes)
        observed = np.bincount(codes[codes >= 0], minlength=len(s.cat.categories)) > 0
        values = pd.Series(s.cat.categories[observed])
        dtype = f"category[{s.cat.categories.dtype}]"
    else:
        dtype = str(s.dtype)
    try:
        distinct = int(values.nunique())
    except TypeError:  # unhashable values, e.g. lists
        distinct = len(set(map(repr, values)))
    low = high = ""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype) \
            and len(values):
        low, high = str(values.min()), str(values.max())
    return [str(name), dtype, str(distinct), low, high]


def describe(psets: Any) -> str:
    """A summary of psets before running them: how many, and for each factor its dtype, number of
    distinct values, and min/max for numbers.

    `psets` may be anything ``map`` takes: a DataFrame, a list of dicts, a dict of lists.

    Examples
    --------
    >>> print(describe(product({'a': [1, 2, 3], 'b': ['x', 'y']})))
    6 psets, 2 factors
    factor  dtype            distinct  min  max
    a       category[int64]  3         1    3
    b       category[str]    2
    """
    df = _as_frame(psets, "describe")
    rows = [["factor", "dtype", "distinct", "min", "max"]]
    rows += [_summary_row(name, df[name]) for name in df.columns]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in builtins.zip(r, widths)).rstrip() for r in rows]
    head = f"{len(df)} psets, {len(df.columns)} factor{'' if len(df.columns) == 1 else 's'}"
    return "\n".join([head, *lines])
