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

from .._records import Status

if TYPE_CHECKING:
    from .._results import MapResults

# every status but ok: the psets that gave no result
FAILED = tuple(s.value for s in Status if s is not Status.OK)
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
THROUGHPUT_BINS = 100
THROUGHPUT_MIN_BIN_US = 1_000_000  # a second: narrower bins of a slow survey are mostly empty (spikes)
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
    values: dict[str, list[float | None]]  # None: no value; e.g. {'mean': ..., 'min': ..., 'max': ...} or {'rate': ...}
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
    throughput: pd.DataFrame | None = None  # per bin: time (its middle), end, ok and failed per second, cumulative
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
    from ..journal._read import JournalRows
    from ..journal._reading import check_journal
    from ..journal._status import metadata

    path = check_journal(path)
    meta, problem = metadata(path)
    rows = JournalRows.load(path)  # once: the state below is computed from these rows too
    latest = rows.latest()
    frame, pset_keys, result_keys, omitted = _journal_frame(rows, latest, meta)
    status = frame["_status"].to_numpy()
    failed_at = np.flatnonzero(status != "ok")
    exceptions, tracebacks = rows.failures(latest[failed_at])
    frame["_exception"] = _scattered(len(frame), failed_at, exceptions)
    frame["_traceback"] = _scattered(len(frame), failed_at, tracebacks)
    summary = _journal_state(path, meta, problem, rows)
    if problem:
        summary.warnings.append(problem)
    for part in rows.damaged:
        summary.warnings.append(f"part {part} cannot be read: skipped (its psets count as not run; the next run "
                                "of the survey sets it aside and runs them again)")
    _fill(summary, frame, pset_keys, result_keys, omitted, finished=rows.finished, history_status=rows.status)
    return summary


def _scattered(n: int, at: np.ndarray, values: list[Any]) -> pd.Series:
    out = np.full(n, None, dtype=object)
    out[at] = values if len(at) else []
    return pd.Series(out, dtype=object)


def _journal_state(path: str, meta: dict[str, Any], problem: str | None, rows: Any) -> Summary:
    """Where the survey stands, as ``journal.status`` says it, from rows already read: a second read
    of a big journal would double the report's time."""
    from ..journal._status import status_from_rows

    state = status_from_rows(path, meta, problem, rows)
    summary = Summary(
        title=path, source="journal", generated=_now(), state=state.state, total=state.total,
        counts={k: v for k, v in state.counts.items() if v}, remaining=state.remaining, rate=state.rate,
        eta=state.eta, elapsed=state.elapsed, last_finished=state.last_finished,
        runs=list(meta.get("runs") or []), meta={k: v for k, v in meta.items() if k != "runs"},
    )
    if state.rebuilt:
        summary.warnings.append("the metadata was rebuilt from the parts (paramsurvey repair): the survey's size "
                                "and earlier runs' provenance are unknown until its next run")
    return summary


def _journal_frame(rows: Any, latest: np.ndarray, meta: dict[str, Any]
                   ) -> tuple[pd.DataFrame, list[str], list[str], dict[str, str]]:
    """The latest outcome of each pset: its pset and result columns (pickled ones left out, never
    unpickled), ``_status``, ``_wallclock``, ``_position``."""
    from ..journal._arrow import PICKLED, encodings

    chunks: dict[str, list[tuple[np.ndarray, Any, str]]] = {}
    pset_keys: list[str] = list(meta.get("pset_keys") or [])
    result_keys: list[str] = []
    pickled_bytes: dict[str, int] = {}
    for sel, table, part_meta, local in rows._by_part(latest):
        encoded = encodings(part_meta)
        results = [column for column, _key in part_meta.get("results", ())]
        for name in part_meta.get("psets", ()):
            if name not in pset_keys:
                pset_keys.append(name)
        for name in results:
            if name not in result_keys:
                result_keys.append(name)
        whole = len(local) == table.num_rows and bool((np.diff(local) == 1).all())
        for name in list(part_meta.get("psets", ())) + results:
            if name not in table.column_names:
                continue
            column = table.column(name)
            if encoded.get(name) == PICKLED:
                pickled_bytes[name] = pickled_bytes.get(name, 0) + int(column.nbytes)
                continue
            chunks.setdefault(name, []).append((sel, column if whole else column.take(local),
                                                encoded.get(name, "")))
    n = len(latest)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    omitted = {name: f"stored pickled ({_size(k)}): not unpickled, not plotted" for name, k in pickled_bytes.items()}
    result_keys = [k for k in result_keys if k not in pset_keys]
    for name in pset_keys + result_keys:
        if name in chunks:
            frame[name] = _assembled(chunks[name], n)
    frame["_status"] = pd.Series(rows.status[latest], dtype=object)
    frame["_wallclock"] = rows.wall[latest]
    frame["_position"] = rows.position[latest]
    return frame, pset_keys, result_keys, omitted


def _assembled(chunks: list[tuple[np.ndarray, Any, str]], n: int) -> Any:
    """One column from its pieces in the parts (``sel``: where each piece's rows go): numbers as
    numpy, strings as a pandas categorical (a million strings as Python objects would cost seconds)."""
    import pyarrow as pa

    from ..journal._arrow import SURROGATES

    pieces = []
    for sel, column, encoding in chunks:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if encoding == SURROGATES:
            array = pa.array([None if v is None else v.decode("utf-8", "surrogatepass") for v in array.to_pylist()],
                             type=pa.string())
        elif pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        pieces.append((sel, array))
    types = {array.type for _, array in pieces}
    if len(types) > 1:  # ints in one part and floats in another, say: as pandas would combine them
        series = pd.concat([pd.Series(array.to_pandas().to_numpy(), index=sel) for sel, array in pieces])
        return series.reindex(pd.RangeIndex(n)).to_numpy()
    order = np.concatenate([sel for sel, _ in pieces])
    combined = pa.concat_arrays([array for _, array in pieces])
    if len(order) != n or not (order == np.arange(n)).all():
        where = np.full(n, -1, dtype=np.int64)
        where[order] = np.arange(len(order))
        combined = combined.take(pa.array(where, mask=where < 0))  # rows of parts without it: null
    kind = combined.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return combined.dictionary_encode().to_pandas()
    if pa.types.is_floating(kind) or ((pa.types.is_integer(kind) or pa.types.is_boolean(kind))
                                      and combined.null_count == 0):
        return combined.to_numpy(zero_copy_only=False)
    return combined.to_pandas().to_numpy()


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
    results = _plottable_results(frame, result_keys, omitted)
    summary.omitted = omitted
    wall = frame["_wallclock"].to_numpy(dtype=float)
    summary.has_timing = bool(np.isfinite(wall).any())
    levels = {p: levels_of(frame[p]) for p in params}
    numbers = {r: _as_floats(frame[r]) for r in results}
    for p in params:
        level = levels[p]
        summary.failure_by_param[p] = _aggregate(level, failed.astype(float), rate=True)
        if summary.has_timing:
            summary.duration_by_param[p] = _aggregate(level, wall)
        for r in results:
            summary.result_by_param[(r, p)] = _aggregate(level, numbers[r])
    pairs = [(a, b) for i, a in enumerate(params) for b in params[i + 1:]][:MAX_PAIRS]
    for a, b in pairs:
        for r in results:
            summary.result_grids[(r, a, b)] = _grid(levels[a], levels[b], numbers[r])
    _explorer(summary, frame, params, results)
    if summary.has_timing:
        summary.durations = _histogram(wall[np.isfinite(wall)])
    if finished is not None and history_status is not None:
        summary.throughput = _throughput(finished, history_status)
    if any(level.binned for level in levels.values()):
        summary.notes.append(f"a parameter with more than {MAX_LEVELS} values is plotted by bins "
                             f"({NUMERIC_BINS} equal-width bins, or its {MAX_LEVELS - 1} most common values)")


def _plottable(frame: pd.DataFrame, pset_keys: list[str], omitted: dict[str, str]) -> list[str]:
    params = []
    for p in pset_keys:
        if p not in frame.columns or p in omitted:
            continue
        if _numeric(frame[p]) or _textual(frame[p]):
            params.append(p)
        else:
            omitted[p] = "neither numbers nor strings: not plotted"
    for p in params[MAX_PARAMS:]:
        omitted[p] = f"beyond the first {MAX_PARAMS} parameters: not plotted"
    return params[:MAX_PARAMS]


def _plottable_results(frame: pd.DataFrame, result_keys: list[str], omitted: dict[str, str]) -> list[str]:
    results: list[str] = []
    for r in result_keys:
        if r not in frame.columns or r in omitted:
            continue
        if not _numeric(frame[r]) or pd.api.types.is_bool_dtype(frame[r]):
            omitted[r] = "not a number: not plotted"
        elif len(results) >= MAX_RESULTS:
            omitted[r] = f"beyond the first {MAX_RESULTS} numeric results: not plotted"
        else:
            results.append(r)
    return results


def _numeric(column: pd.Series) -> bool:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return True
    if column.dtype == object:  # e.g. ints with None
        sample = column.dropna().head(1000)
        return len(sample) > 0 and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                                       for v in sample)
    return False


def _textual(column: pd.Series) -> bool:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return True
    sample = column.dropna().head(1000)
    return len(sample) > 0 and all(isinstance(v, (str, bool, np.bool_)) for v in sample)


def _as_floats(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


@dataclass
class Levels:
    """What a parameter's psets are grouped by: a code per pset (-1: no value) and each code's label
    (the value, or the bin's centre, or '(other)')."""

    codes: np.ndarray
    labels: list[Any]
    binned: bool


def levels_of(column: pd.Series) -> Levels:
    """The groups of a parameter: its values when it has at most MAX_LEVELS, else NUMERIC_BINS
    equal-width bins (numbers) or its most common values and '(other)' (strings)."""
    if _numeric(column) and not pd.api.types.is_bool_dtype(column):
        values = _as_floats(column)
        known = np.isfinite(values)
        uniques = np.unique(values[known])
        codes = np.full(len(values), -1, dtype=np.int64)
        if len(uniques) <= MAX_LEVELS:
            codes[known] = np.searchsorted(uniques, values[known])
            return Levels(codes, [_plain(v) for v in uniques], False)
        edges = np.linspace(uniques[0], uniques[-1], NUMERIC_BINS + 1)
        codes[known] = np.clip(np.searchsorted(edges, values[known], side="right") - 1, 0, NUMERIC_BINS - 1)
        return Levels(codes, [float(c) for c in (edges[:-1] + edges[1:]) / 2], True)
    categorical = column if isinstance(column.dtype, pd.CategoricalDtype) else \
        column.astype(object).map(lambda v: None if v is None else str(v)).astype("category")
    categorical = categorical.cat.remove_unused_categories()
    codes = categorical.cat.codes.to_numpy().astype(np.int64)
    labels = [str(c) for c in categorical.cat.categories]
    if len(labels) <= MAX_LEVELS:
        return Levels(codes, labels, False)
    counts = np.bincount(codes[codes >= 0], minlength=len(labels))
    keep = np.sort(np.argsort(-counts, kind="stable")[:MAX_LEVELS - 1])
    remap = np.full(len(labels), len(keep), dtype=np.int64)  # the rest: '(other)'
    remap[keep] = np.arange(len(keep))
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return Levels(codes, [labels[i] for i in keep] + ["(other)"], True)


def _aggregate(level: Levels, values: np.ndarray, rate: bool = False) -> Curve:
    """Per group: the mean (the failure rate, for 0/1 values) and, for results, min and max."""
    k = len(level.labels)
    use = (level.codes >= 0) & np.isfinite(values)
    codes, v = level.codes[use], values[use]
    count = np.bincount(codes, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(codes, weights=v, minlength=k) / count
    if rate:
        stats = {"rate": mean}
    else:
        low = np.full(k, np.inf)
        high = np.full(k, -np.inf)
        np.minimum.at(low, codes, v)
        np.maximum.at(high, codes, v)
        stats = {"mean": mean, "min": low, "max": high}
    present = count > 0
    return Curve(x=[label for label, keep in zip(level.labels, present) if keep],
                 values={name: _floats(a[present]) for name, a in stats.items()},
                 count=[int(c) for c in count[present]], binned=level.binned)


def _grid(a: Levels, b: Levels, values: np.ndarray) -> Grid:
    """The mean of ``values`` per (b, a) cell: rows are b's groups, columns a's."""
    ka, kb = len(a.labels), len(b.labels)
    use = (a.codes >= 0) & (b.codes >= 0) & np.isfinite(values)
    cell = b.codes[use] * ka + a.codes[use]
    count = np.bincount(cell, minlength=ka * kb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (np.bincount(cell, weights=values[use], minlength=ka * kb) / count).reshape(kb, ka)
    return Grid(x=list(a.labels), y=list(b.labels), z=[_floats(row) for row in mean])


def _explorer(summary: Summary, frame: pd.DataFrame, params: list[str], results: list[str]) -> None:
    columns = params + results
    if not columns or not len(frame):
        return
    summary.explorer_rows = len(frame)
    sample = frame[columns + ["_status"]]
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
    width = max(THROUGHPUT_MIN_BIN_US, -(-(hi - lo) // THROUGHPUT_BINS))
    index = (when - lo) // width
    nbins = int(index.max()) + 1
    ok_counts = np.bincount(index[ok], minlength=nbins)
    bad_counts = np.bincount(index[~ok], minlength=nbins)
    seconds = width / 1e6
    starts = lo + np.arange(nbins) * width
    return pd.DataFrame({"time": pd.to_datetime(starts + width // 2, unit="us", utc=True),  # the bin's middle
                         "end": pd.to_datetime(starts + width, unit="us", utc=True),
                         "ok": ok_counts / seconds, "failed": bad_counts / seconds,
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


def _floats(values: Any) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
