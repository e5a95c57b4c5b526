"""The psets of one map(): checked once before any work starts, then served to the engine by position.

Accepted: a list of dicts, a DataFrame (or anything with ``to_df()``, like MapResults), a
dict of equal-length lists, or any iterable of dicts (a generator too). Keys must be strings that are
Python identifiers, not keywords, and not start with ``_`` (reserved for paramsurvey's own columns).
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, islice
from typing import Any

import numpy as np
import pandas as pd

from ._columns import frame_from_records
from .exceptions import ArgumentError, ArgumentTypeError


def check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise ArgumentError(f"pset key {key!r} ({where}) is not a string; pset keys must be strings")
    if not key.isidentifier():
        raise ArgumentError(f"pset key {key!r} ({where}) is not a Python identifier")
    if keyword.iskeyword(key):
        raise ArgumentError(f"pset key {key!r} ({where}) is a Python keyword")
    if key.startswith("_"):
        raise ArgumentError(f"pset key {key!r} ({where}) starts with '_', which is reserved for "
                         "paramsurvey's own columns")


class PsetSource:
    """Psets by position; a DataFrame stays a DataFrame (no per-row dicts until a group needs them)."""

    def __init__(self, psets: Any, limit: int = 0) -> None:
        self.frame: pd.DataFrame | None = None
        self.records: Sequence[dict[str, Any]] | None = None
        if hasattr(psets, "to_df") and not isinstance(psets, pd.DataFrame):
            psets = psets.to_df()
        if isinstance(psets, pd.DataFrame):
            frame = psets
            for column in frame.columns:
                check_key(column, "DataFrame column")
            duplicated = list(dict.fromkeys(frame.columns[frame.columns.duplicated()]))
            if duplicated:  # a pset is a dict: one of the columns would be silently dropped
                raise ArgumentError(f"the DataFrame of psets has duplicate column name(s) "
                                 f"{', '.join(map(repr, duplicated))}")
            if limit > 0:
                frame = frame.iloc[:limit]
            self.frame = frame.reset_index(drop=True)
            self.n = len(self.frame)
            self.keys = list(self.frame.columns)
        elif isinstance(psets, Mapping):
            _check_dict_of_lists(psets)
            lengths = {k: len(v) for k, v in psets.items()}
            if len(set(lengths.values())) > 1:
                raise ArgumentError(f"a dict of psets needs lists of equal length, got {lengths}")
            for key in psets:
                check_key(key, "dict of lists")
            self.__init__(pd.DataFrame(dict(psets)), limit)  # type: ignore[misc]
            return
        elif isinstance(psets, (str, bytes)) or not isinstance(psets, Iterable):
            raise ArgumentTypeError(f"psets must be a list of dicts, a DataFrame or a dict of lists, "
                            f"not {type(psets).__name__}")
        else:
            if limit > 0:  # read only what runs: a generator may be endless
                records = psets[:limit] if isinstance(psets, list) else list(islice(psets, limit))
            else:
                records = psets if isinstance(psets, list) else list(psets)
            self.keys = _check_records(records)
            self.records = _native(records)
            self.n = len(records)

    def __len__(self) -> int:
        return self.n

    def get_range(self, start: int, stop: int) -> list[dict[str, Any]]:
        if self.records is not None:
            return list(self.records[start:stop])
        assert self.frame is not None
        return self.frame.iloc[start:stop].to_dict("records")  # type: ignore[return-value]  # native values

    def get(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        if self.records is not None:
            records = self.records
            return [records[p] for p in positions]
        assert self.frame is not None
        return self.frame.iloc[list(positions)].to_dict("records")  # type: ignore[return-value]

    def frame_for(self, positions: Sequence[int] | np.ndarray) -> pd.DataFrame:
        """The pset columns of the given positions (sorted), indexed by position."""
        where = np.asarray(positions, dtype=np.int64)
        if self.frame is not None:
            frame = self.frame.iloc[where]
            frame.index = pd.Index(where) if len(where) else pd.RangeIndex(0)
            return frame
        if self.records is not None and len(where) == self.n and (
                len(where) == 0 or (where[0] == 0 and where[-1] == self.n - 1)):
            return frame_from_records(self.records, where)  # type: ignore[arg-type]  # all, in order: no copy
        return frame_from_records(self.get(where.tolist()), where)  # type: ignore[arg-type]


def _check_dict_of_lists(psets: Mapping[Any, Any]) -> None:
    for key, values in psets.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ArgumentError(f"a dict of psets maps each key to a list of values, but {key!r} holds "
                             f"{values!r:.100} (a {type(values).__name__}); for a single pset pass [{{...}}]")


# numpy scalar types whose .item() is the Python value a worker expects (datetime64 and timedelta64
# are left alone: .item() of a nanosecond one is a bare int)
_NUMPY_SCALARS = (np.bool_, np.integer, np.floating, np.complexfloating, np.str_, np.bytes_)


def _native(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The psets, with numpy scalars made Python values (a worker gets native values, as from a
    DataFrame). One C-level pass over the value types; plain psets are returned as they are."""
    try:
        types = set(map(type, chain.from_iterable(map(dict.values, records))))
    except TypeError:  # Mappings that are not dicts
        types = {type(v) for pset in records for v in pset.values()}
    numpy_types = {t for t in types if issubclass(t, _NUMPY_SCALARS)}
    if not numpy_types:
        return records
    converted = list(records)
    for i, pset in enumerate(records):
        if not numpy_types.isdisjoint(map(type, pset.values())):
            converted[i] = {k: v.item() if type(v) in numpy_types else v for k, v in pset.items()}
    return converted


def _check_records(records: Sequence[Any]) -> list[str]:
    """Every pset a dict with good keys; returns the union of keys in first-seen order.

    C-level passes (map, set, all) rather than a Python loop: a million psets are checked in
    well under a second."""
    if not records:
        return []
    plain = set(map(type, records)) == {dict}
    if not plain:
        for i, pset in enumerate(records):
            if not isinstance(pset, Mapping):
                raise ArgumentError(f"pset {i} is a {type(pset).__name__}, not a dict: {pset!r:.100}")
    first = records[0].keys()
    # the common case, one set of keys: every pset has len(first) keys, all of them among first's
    if plain and set(map(len, records)) == {len(first)} and set().union(*records) == first:
        keys = list(first)
    else:
        keys = list(dict.fromkeys(chain.from_iterable(records)))
    for key in keys:
        if not (isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)
                and not key.startswith("_")):
            where = next(i for i, pset in enumerate(records) if key in pset)
            check_key(key, f"in pset {where}")
    return keys
