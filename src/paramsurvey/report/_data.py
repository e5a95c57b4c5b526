"""A survey's journal or MapResults -> one ``Summary``: everything the page shows, already aggregated.

The data walks one way: journal / MapResults -> ``Summary`` (this module) -> figures (``_figures``)
-> page (``_page``). Nothing here draws and nothing there reads a journal.

Nothing in a journal is ever unpickled here: a column stored pickled is left out of the plots (the
page names it, with its size), and reading takes the Arrow columns as they are. A journal of a
million psets is summarised in a few seconds: the columns stay numpy/pandas, the per-parameter
curves and heat maps are aggregated (group by value, or by bin when a parameter has many values),
and only the parallel-coordinates plot samples rows (``EXPLORER_SAMPLE``).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .._results import MapResults

FAILED = ("exception", "crashed", "timeout", "cancelled")
# A parameter with at most this many distinct values is plotted value by value; one with more is
# binned into NUMERIC_BINS equal-width bins (a numeric one) or its most common values (a string one).
MAX_LEVELS = 50
NUMERIC_BINS = 40
# The parallel-coordinates plot draws one line per row: past this many rows it draws a uniform
# random sample (seeded, so the page is the same each time); the page says so.
EXPLORER_SAMPLE = 2000
# So that the explorer's menus stay usable (and the file small): results and parameters offered.
MAX_RESULTS = 8
MAX_PARAMS = 8
MAX_PAIRS = 6  # heat maps: pairs of parameters offered
# Failure groups: example psets listed per group, and text kept of a pset value, exception and traceback.
EXAMPLE_PSETS = 5
MAX_VALUE_CHARS = 200
MAX_TRACEBACK_CHARS = 20_000
DURATION_BINS = 60
THROUGHPUT_BINS = 200
SAMPLE_SEED = 0


@dataclass
class FailureGroup:
    """Failed psets sharing an exception type (or crash/timeout status)."""

    kind: str
    status: str
    count: int
    examples: list[tuple[int | None, str]]  # (pset position, its values as text)
    exception: str
    traceback: str


@dataclass
class Curve:
    """A per-value (or per-bin) aggregate of one column against one parameter."""

    x: list[Any]
    values: dict[str, list[float]]  # e.g. {'mean': ..., 'min': ..., 'max': ...} or {'rate': ...}
    count: list[int]
    binned: bool


@dataclass
class Grid:
    """The mean of a result over two parameters (values or bins)."""

    x: list[Any]
    y: list[Any]
    z: list[list[float | None]]


@dataclass
class Summary:
    """What the report shows, computed once from a journal or a MapResults."""

    title: str
    source: str  # 'journal' or 'results'
    generated: str
    state: str | None  # 'running', 'finished', 'stopped'; None for a MapResults
    total: int
    counts: dict[str, int]
    remaining: int
    rate: float | None = None
    eta: float | None = None
    elapsed: float | None = None
    last_finished: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # sampling, omissions: what the plots leave out
    warnings: list[str] = field(default_factory=list)  # damaged parts or metadata
    pset_keys: list[str] = field(default_factory=list)
    result_keys: list[str] = field(default_factory=list)
    omitted: dict[str, str] = field(default_factory=dict)  # column -> why it is not plotted
    failures: list[FailureGroup] = field(default_factory=list)
    failure_by_param: dict[str, Curve] = field(default_factory=dict)
    duration_by_param: dict[str, Curve] = field(default_factory=dict)
    result_by_param: dict[tuple[str, str], Curve] = field(default_factory=dict)
    result_grids: dict[tuple[str, str, str], Grid] = field(default_factory=dict)
    explorer: pd.DataFrame | None = None  # sampled rows: plottable parameters and results
    explorer_rows: int = 0  # rows it was sampled from
    durations: tuple[list[float], list[int]] | None = None  # bin edges, counts
    throughput: pd.DataFrame | None = None  # columns: time, ok, failed (psets per second), cumulative
    has_timing: bool = False

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(k for name, k in self.counts.items() if name != "ok")


# -- from a journal ------------------------------------------------------------------------------

def from_journal(path: str | os.PathLike[str]) -> Summary:
    """The summary of a journal, also while a survey writes it; a JournalError when ``path`` is not
    a journal. Damaged parts are skipped (named in the warnings), damaged metadata is a warning."""
    from ..journal import _status
    from ..journal._read import JournalRows
    from ..journal._reading import check_journal

    path = check_journal(path)
    info = _status.status(path)
    meta, _problem = _status._metadata(path)
    rows = JournalRows.load(path)
    latest = rows.latest()
    frame, pset_keys, result_keys, omitted = _journal_frame(rows, latest, meta)
    failed_rows = latest[frame["_status"].to_numpy() != "ok"]
    exceptions, tracebacks = rows.failures(failed_rows)
    failed_at = np.flatnonzero(frame["_status"].to_numpy() != "ok")
    frame["_exception"] = pd.Series(np.full(len(frame), None, dtype=object))
    frame["_traceback"] = pd.Series(np.full(len(frame), None, dtype=object))
    frame.loc[failed_at, "_exception"] = pd.Series(exceptions, index=failed_at, dtype=object)
    frame.loc[failed_at, "_traceback"] = pd.Series(tracebacks, index=failed_at, dtype=object)
    summary = Summary(
        title=path, source="journal", generated=_now(), state=info.state, total=info.total,
        counts={k: v for k, v in info.counts.items() if v}, remaining=info.remaining, rate=info.rate,
        eta=info.eta, elapsed=info.elapsed, last_finished=info.last_finished, runs=list(meta.get("runs") or []),
        meta={k: v for k, v in meta.items() if k != "runs"},
    )
    if info.metadata_problem:
        summary.warnings.append(info.metadata_problem)
    if info.rebuilt:
        summary.warnings.append("the metadata was rebuilt from the parts (paramsurvey repair): the survey's size "
                                "and earlier runs' provenance are unknown until its next run")
    for part in info.damaged_parts:
        summary.warnings.append(f"part {part} cannot be read: skipped (its psets count as not run; the next run "
                                "of the survey sets it aside and runs them again)")
    _fill(summary, frame, pset_keys, result_keys, omitted, finished=rows.finished, history_status=rows.status)
    return summary


def _journal_frame(rows: Any, latest: np.ndarray, meta: dict[str, Any]
                   ) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    """The latest outcome of each pset: its pset and result columns (pickled ones left out, never
    unpickled), ``_status``, ``_wallclock``, ``_position``."""
    from ..journal._arrow import PICKLED, SURROGATES, encodings

    columns: dict[str, list[pd.Series]] = {}
    pset_keys: list[str] = list(meta.get("pset_keys") or [])
    result_keys: list[str] = []
    omitted: dict[str, str] = {}
    pickled_bytes: dict[str, int] = {}
    for sel, table, part_meta, local in rows._by_part(latest):
        encoded = encodings(part_meta)
        names = list(part_meta.get("psets", ())) + [column for column, _key in part_meta.get("results", ())]
        for name in part_meta.get("psets", ()):
            if name not in pset_keys:
                pset_keys.append(name)
        for column, _key in part_meta.get("results", ()):
            if column not in result_keys:
                result_keys.append(column)
        take = None
        for name in names:
            if name not in table.column_names:
                continue
            if take is None:
                import pyarrow as pa

                take = pa.array(local)
            chunk = table.column(name).take(take)
            encoding = encoded.get(name)
            if encoding == PICKLED:
                pickled_bytes[name] = pickled_bytes.get(name, 0) + int(chunk.nbytes)
                continue
            series = chunk.to_pandas()
            if encoding == SURROGATES:
                series = series.map(lambda v: None if v is None else v.decode("utf-8", "surrogatepass"))
            columns.setdefault(name, []).append(pd.Series(series.to_numpy(), index=sel))
    n = len(latest)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for name in pset_keys + [k for k in result_keys if k not in pset_keys]:
        if name in pickled_bytes:
            omitted[name] = f"stored pickled ({_size(pickled_bytes[name])}): not unpickled, not plotted"
        if name not in columns:
            continue
        pieces = columns[name]
        series = pieces[0] if len(pieces) == 1 else pd.concat(pieces)
        frame[name] = series.reindex(pd.RangeIndex(n)).to_numpy()  # rows of parts without it: missing
    frame["_status"] = rows.status[latest]
    frame["_wallclock"] = rows.wall[latest]
    frame["_position"] = rows.position[latest]
    return frame, pset_keys, [k for k in result_keys if k not in pset_keys], omitted


# -- from a MapResults ---------------------------------------------------------------------------

def from_results(results: MapResults, title: str = "MapResults") -> Summary:
    """The summary of a map's results (in memory: no timing per pset, no provenance)."""
    ok = results.results
    missing = getattr(results.missing, "_frame", results.missing)
    psets = results.missing.to_psets() if hasattr(results.missing, "to_psets") else missing
    pset_keys = [c for c in psets.columns if c in ok.columns] or [c for c in psets.columns]
    if not pset_keys and not len(missing):  # no failure tells the pset columns: every column may be one
        pset_keys = list(ok.columns)
    result_keys = [c for c in ok.columns if c not in pset_keys and not str(c).startswith("_")]
    ok_frame = ok.assign(_status="ok")
    frame = pd.concat([ok_frame, missing], ignore_index=False, sort=False)
    frame["_position"] = frame.index if pd.api.types.is_integer_dtype(frame.index) else np.arange(len(frame))
    frame = frame.sort_values("_position", kind="stable").reset_index(drop=True)
    frame["_wallclock"] = np.nan
    progress = results.progress
    counts = {"ok": len(ok)}
    for status in missing["_status"].astype(object).tolist() if len(missing) else []:
        counts[status] = counts.get(status, 0) + 1
    total = int(getattr(progress, "total", len(frame)) or len(frame))
    summary = Summary(title=title, source="results", generated=_now(), state=None, total=total,
                      counts=counts, remaining=max(0, total - len(frame)))
    summary.notes.append("from a MapResults in memory: pset durations and finish times are in the journal "
                         "only (map(..., journal=PATH)), so their plots are not shown")
    omitted: dict[str, str] = {}
    _fill(summary, frame, [str(k) for k in pset_keys], [str(k) for k in result_keys], omitted,
          finished=None, history_status=None)
    return summary


# -- shared ----------------------------------------------------------------------------------------

def _fill(summary: Summary, frame: pd.DataFrame, pset_keys: list[str], result_keys: list[str],
          omitted: dict[str, str], finished: np.ndarray | None, history_status: np.ndarray | None) -> None:
    summary.pset_keys, summary.result_keys = pset_keys, result_keys
    failed = frame["_status"].to_numpy() != "ok"
    summary.failures = failure_groups(frame[failed], pset_keys)
    params = _plottable(frame, pset_keys, omitted)
    results = [k for k in result_keys if k in frame.columns and _numeric(frame[k])][:MAX_RESULTS]
    for k in result_keys:
        if k in frame.columns and k not in results and k not in omitted:
            omitted[k] = "not numeric: not plotted" if not _numeric(frame[k]) else "beyond the first " \
                f"{MAX_RESULTS} results: not plotted"
    summary.omitted = omitted
    wall = frame["_wallclock"].to_numpy(dtype=float)
    summary.has_timing = bool(np.isfinite(wall).any())
    levels = {p: _levels(frame[p]) for p in params}
    for p in params:
        key, binned = levels[p]
        summary.failure_by_param[p] = _aggregate(key, pd.Series(failed.astype(float)), binned, rate=True)
        if summary.has_timing:
            summary.duration_by_param[p] = _aggregate(key, pd.Series(wall), binned)
        for r in results:
            summary.result_by_param[(r, p)] = _aggregate(key, pd.to_numeric(frame[r], errors="coerce"), binned)
    pairs = [(a, b) for i, a in enumerate(params) for b in params[i + 1:]][:MAX_PAIRS]
    for a, b in pairs:
        for r in results:
            summary.result_grids[(r, a, b)] = _grid(levels[a][0], levels[b][0],
                                                     pd.to_numeric(frame[r], errors="coerce"))
    _explorer(summary, frame, params, results)
    if summary.has_timing:
        summary.durations = _histogram(wall[np.isfinite(wall)])
    if finished is not None and history_status is not None:
        summary.throughput = _throughput(finished, history_status)
    if any(binned for _, binned in levels.values()):
        summary.notes.append(f"a parameter with more than {MAX_LEVELS} values is plotted by bins "
                             f"({NUMERIC_BINS} equal-width bins, or its {MAX_LEVELS} most common values)")


def _plottable(frame: pd.DataFrame, pset_keys: list[str], omitted: dict[str, str]) -> list[str]:
    params = []
    for p in pset_keys:
        if p not in frame.columns:
            continue
        column = frame[p]
        if _numeric(column) or _textual(column):
            params.append(p)
        elif p not in omitted:
            omitted[p] = "neither numbers nor strings: not plotted"
    for p in params[MAX_PARAMS:]:
        omitted[p] = f"beyond the first {MAX_PARAMS} parameters: not plotted"
    return params[:MAX_PARAMS]


def _numeric(column: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return True
    if column.dtype == object:  # e.g. ints with None
        sample = column.dropna().head(1000)
        return len(sample) > 0 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                                       for v in sample)
    return False


def _textual(column: pd.Series) -> bool:
    sample = column.dropna().head(1000)
    return len(sample) > 0 and all(isinstance(v, (str, bool, np.bool_)) for v in sample)


def _levels(column: pd.Series) -> tuple[pd.Series, bool]:
    """The value to group a parameter by: itself when it has few values, else its bin (the bin's
    centre) or, for strings, its most common values and 'other'."""
    if _numeric(column) and not pd.api.types.is_bool_dtype(column):
        values = pd.to_numeric(column, errors="coerce").astype(float)
        if values.nunique() <= MAX_LEVELS:
            return values, False
        lo, hi = np.nanmin(values), np.nanmax(values)
        edges = np.linspace(lo, hi, NUMERIC_BINS + 1)
        which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, NUMERIC_BINS - 1)
        centres = (edges[:-1] + edges[1:]) / 2
        binned = pd.Series(centres[which], index=column.index).where(values.notna())
        return binned, True
    text = column.astype(object).map(lambda v: None if v is None else str(v))
    counts = text.value_counts()
    if len(counts) <= MAX_LEVELS:
        return text, False
    keep = set(counts.index[:MAX_LEVELS - 1])
    return text.where(text.isin(keep) | text.isna(), "(other)"), True


def _aggregate(key: pd.Series, values: pd.Series, binned: bool, rate: bool = False) -> Curve:
    grouped = pd.DataFrame({"k": key.to_numpy(), "v": values.to_numpy(dtype=float)}).groupby("k", sort=True)["v"]
    if rate:
        stats = {"rate": grouped.mean()}
    else:
        stats = {"mean": grouped.mean(), "min": grouped.min(), "max": grouped.max()}
    count = grouped.count() if not rate else grouped.size()
    x = [v.item() if hasattr(v, "item") else v for v in count.index]
    return Curve(x=x, values={name: _floats(s) for name, s in stats.items()},
                 count=[int(c) for c in count.to_numpy()], binned=binned)


def _grid(a: pd.Series, b: pd.Series, values: pd.Series) -> Grid:
    table = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy(), "v": values.to_numpy(dtype=float)})
    pivot = table.groupby(["b", "a"])["v"].mean().unstack("a")
    return Grid(x=[_plain(v) for v in pivot.columns], y=[_plain(v) for v in pivot.index],
                z=[_floats(pivot.loc[row]) for row in pivot.index])


def _explorer(summary: Summary, frame: pd.DataFrame, params: list[str], results: list[str]) -> None:
    columns = params + results
    if not columns or not len(frame):
        return
    sample = frame[columns + ["_status"]]
    summary.explorer_rows = len(sample)
    if len(sample) > EXPLORER_SAMPLE:
        sample = sample.sample(EXPLORER_SAMPLE, random_state=SAMPLE_SEED).sort_index()
        summary.notes.append(f"the parallel-coordinates plot draws a random sample of {EXPLORER_SAMPLE} of the "
                             f"{len(frame)} psets; the other plots aggregate every pset")
    summary.explorer = sample.reset_index(drop=True)


def _histogram(wall: np.ndarray) -> tuple[list[float], list[int]] | None:
    wall = wall[wall > 0]
    if not len(wall):
        return None
    lo, hi = float(wall.min()), float(wall.max())
    edges = np.geomspace(lo, hi, DURATION_BINS + 1) if hi > lo * 100 else np.linspace(lo, hi or 1.0, DURATION_BINS + 1)
    counts, edges = np.histogram(wall, bins=edges)
    return [float(e) for e in edges], [int(c) for c in counts]


def _throughput(finished: np.ndarray, status: np.ndarray) -> pd.DataFrame | None:
    """Psets finished per second over time (every outcome written, resumes included), in at most
    THROUGHPUT_BINS bins."""
    known = ~np.isnat(finished)
    if known.sum() < 2:
        return None
    when = finished[known].astype("datetime64[us]").astype(np.int64)
    ok = status[known] == "ok"
    lo, hi = int(when.min()), int(when.max())
    width = max(1_000_000, -(-(hi - lo) // THROUGHPUT_BINS))  # at least a second a bin
    index = (when - lo) // width
    nbins = int(index.max()) + 1
    ok_counts = np.bincount(index[ok], minlength=nbins)
    bad_counts = np.bincount(index[~ok], minlength=nbins)
    seconds = width / 1e6
    start = pd.to_datetime(lo + np.arange(nbins) * width, unit="us", utc=True)
    return pd.DataFrame({"time": start, "ok": ok_counts / seconds, "failed": bad_counts / seconds,
                         "cumulative": np.cumsum(ok_counts + bad_counts)})


def failure_groups(failed: pd.DataFrame, pset_keys: list[str]) -> list[FailureGroup]:
    """Failed psets grouped by exception type (or status, for crashes and timeouts), largest first."""
    if not len(failed):
        return []
    exceptions = failed["_exception"].tolist() if "_exception" in failed else [None] * len(failed)
    statuses = failed["_status"].astype(object).tolist()
    kinds = pd.Series([exception_type(e, s) for e, s in zip(exceptions, statuses)], index=failed.index)
    groups = []
    for kind, members in kinds.groupby(kinds, sort=False).groups.items():
        first = failed.loc[members[0]]
        examples = [(_position(failed.loc[i]), pset_text(failed.loc[i], pset_keys)) for i in members[:EXAMPLE_PSETS]]
        groups.append(FailureGroup(kind=str(kind), status=str(first["_status"]), count=len(members),
                                   examples=examples, exception=_clip(first.get("_exception"), MAX_VALUE_CHARS * 5),
                                   traceback=_clip(first.get("_traceback"), MAX_TRACEBACK_CHARS)))
    return sorted(groups, key=lambda g: -g.count)


def exception_type(text: str | None, status: str) -> str:
    """The group a failure belongs to: its exception's type, or its status (crashed, timeout)."""
    if status != "exception":
        return status
    m = re.match(r"([A-Za-z_][\w.]*)\(", text or "")
    return m.group(1) if m else (text or "exception").split(":")[0][:60]


def pset_text(row: Any, columns: list[str]) -> str:
    """A pset's values as text; a value stored pickled shows as its size, never unpickled."""
    parts = []
    for c in columns:
        if c not in row.index:
            continue
        v = row[c]
        if isinstance(v, bytes):
            text = f"<pickled, {len(v)} bytes>"
        else:
            item = getattr(v, "item", None)  # a numpy scalar: show the Python value
            text = repr(item() if callable(item) and getattr(v, "ndim", 1) == 0 else v)
        parts.append(f"{c}={_clip(text, MAX_VALUE_CHARS)}")
    return "{" + ", ".join(parts) + "}"


def _position(row: Any) -> int | None:
    value = row.get("_position")
    return int(value) if value is not None and not pd.isna(value) and int(value) >= 0 else None


def _clip(text: Any, limit: int) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _floats(series: pd.Series) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in series.to_numpy(dtype=float)]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
