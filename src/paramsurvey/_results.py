"""MapResults: what map() returns — the results table, the psets that failed, progress and stats.

``results.results`` (also ``.df``, ``.to_df()``) is a DataFrame: pset columns, then result columns,
rows in pset order, indexed by each pset's position in the input. Code written against 0.4.x's
DataFrame-like MapResults keeps working: unknown attributes and ``[]`` go to that DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from ._progress import MapProgress
from .stats import PerfStats

__all__ = ["MapResults", "MissingPsets", "MISSING_COLUMNS"]

MISSING_COLUMNS = ("_status", "_exception", "_traceback")


def iterdicts(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Rows as dicts with the original column names and native values (NA as None)."""
    columns = list(frame.columns)
    for row in frame.itertuples(index=False, name=None):
        yield {c: (None if v is pd.NA else v) for c, v in zip(columns, row)}


class _FrameFace:
    """Delegates DataFrame-style use to ``self._frame`` (pandas code written against 0.4.x)."""

    _frame: pd.DataFrame

    def to_df(self) -> pd.DataFrame:
        """The DataFrame itself (not a copy)."""
        return self._frame

    @property
    def df(self) -> pd.DataFrame:
        return self._frame

    def __len__(self) -> int:
        return len(self._frame)

    def __getitem__(self, key: Any) -> Any:
        return self._frame[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._frame)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_frame":
            raise AttributeError(name)
        return getattr(self._frame, name)

    def itertuples(self, index: bool = True, name: str | None = "Pandas") -> Iterator[Any]:
        """Rows as namedtuples, with pandas' semantics."""
        return self._frame.itertuples(index=index, name=name)

    def iterdicts(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts keyed by the original column names."""
        return iterdicts(self._frame)

    def to_dict(self, orient: Any = "records", *args: Any, **kwargs: Any) -> Any:
        return self._frame.to_dict(orient, *args, **kwargs)

    @property
    def empty(self) -> bool:
        return self._frame.empty

    def _repr_html_(self) -> Any:
        return self._frame._repr_html_()  # type: ignore[operator]


class MissingPsets(_FrameFace):
    """The psets that produced no result: pset columns plus ``_status`` (exception, crashed, timeout,
    cancelled), ``_exception`` and ``_traceback`` — three columns that always exist."""

    def __init__(self, frame: pd.DataFrame) -> None:
        for column in MISSING_COLUMNS:
            if column not in frame.columns:
                frame[column] = pd.Series([], dtype=object) if len(frame) == 0 else None
        self._frame = frame

    def to_psets(self) -> pd.DataFrame:
        """The failed psets, without paramsurvey's columns: ready to pass to map() again."""
        return self._frame.drop(columns=[c for c in self._frame.columns if c.startswith("_")])

    def __repr__(self) -> str:
        return f"MissingPsets({len(self._frame)} psets)\n{self._frame!r}"


class MapResults(_FrameFace):
    """What map() returns.

    Attributes
    ----------
    results : DataFrame
        Pset columns then result columns; rows in pset order, index = position in the input.
    missing : MissingPsets
        Psets that produced no result, with ``_status``, ``_exception``, ``_traceback``.
    progress : MapProgress
        Final counters: ``finished + failures == total``.
    stats : PerfStats
        Timers: ``<name>_wallclock``, ``<name>_iowait`` and the worker's own.
    verbose : int
        The verbosity the map ran with.

    Examples
    --------
    >>> results = paramsurvey.map(worker, psets)          # doctest: +SKIP
    >>> results.df.head(); results.missing.to_psets()     # doctest: +SKIP
    """

    def __init__(self, results: pd.DataFrame, missing: pd.DataFrame | MissingPsets,
                 progress: MapProgress, stats: PerfStats, verbose: int = 1) -> None:
        self._frame = results
        self._missing = missing if isinstance(missing, MissingPsets) else MissingPsets(missing)
        self._progress = progress
        self._stats = stats
        self._verbose = verbose

    @property
    def results(self) -> pd.DataFrame:
        return self._frame

    @property
    def missing(self) -> MissingPsets:
        return self._missing

    @property
    def progress(self) -> MapProgress:
        return self._progress

    @property
    def stats(self) -> PerfStats:
        return self._stats

    @property
    def verbose(self) -> int:
        return self._verbose

    def __repr__(self) -> str:
        return (f"MapResults({len(self._frame)} results, {len(self._missing)} missing; "
                f"{self._progress})\n{self._frame!r}")
