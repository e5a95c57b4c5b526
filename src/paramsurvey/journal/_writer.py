"""The journal writer of one map(): outcomes in, Parquet part files out, from a background thread.

    engine (main thread)               writer thread
    record_group / record_lost  -->  pending --(every BUILD_SECONDS)--> Arrow tables (hashes, psets,
                                                                        results, timings)
                                              --(every FLUSH_SECONDS)--> one part file, fsync'd
                                              --(FANIN parts)---------> merged into one file

The engine's side costs one list append per group: everything else -- building the pset columns,
hashing them, typing the result columns, writing and fsync'ing the file -- happens in the thread,
mostly in numpy and Arrow code, so the survey loop never waits on the disk. Tables are built as
outcomes arrive, so that little is left to do when the map ends. A finished pset is on disk at most
FLUSH_SECONDS (plus the time of one write) after it arrived.

``close()`` (the engine, when the survey ends) starts the last write; ``wait()`` (map(), before it
returns) waits for it: the results are assembled meanwhile, and whoever reads the journal after map()
returned sees all of it. A journal never closed (a map that failed before its survey started) is
closed at the interpreter's exit, by an atexit hook.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from .._psets import PsetSource
from .._records import GroupResult, PsetLost
from ._arrow import PLAIN, SURROGATES, encodings
from ._build import DICT_COLUMNS, STATUSES, PartBuilder
from ._store import PART_META_KEY, Lock, PartName, fsync_dir, part_meta, read_part, write_meta, write_part

log = logging.getLogger("paramsurvey.journal")

# A finished pset reaches the disk within this many seconds (plus one write): the promise is that at
# most one second of finished work to be lost; half of it leaves room for a slow write.
FLUSH_SECONDS = 0.5
# Outcomes are turned into Arrow tables this often, so that little is left to do when the map ends.
BUILD_SECONDS = 0.05
# ... and written as soon as this many rows are built, however recent the last write: a fast survey
# then writes in the background as it goes, and its last write (which the map waits for) is small.
FLUSH_ROWS = 20_000
# Merge this many consecutive parts of one level into one file: a week-long survey flushing twice a
# second stays at a few dozen files, and each row is rewritten only log_FANIN(parts) times.
FANIN = 16
# ... unless they hold more rows than this: big parts are few anyway, and a merge must stay short.
MERGE_MAX_ROWS = 2_000_000


def write_options(schema: pa.Schema, compact: bool = False) -> dict[str, Any]:
    """Parquet options. A live part is written plain and fast: compressing it would cost a survey
    of trivial psets more than the rest of the journal (benchmarks/bench_journal.py); a merged part,
    written in the background, is zstd-compressed (about half the size). Dictionaries only where
    values repeat, statistics only where a reader filters."""
    dictionary = [f.name for f in schema if f.name in DICT_COLUMNS or pa.types.is_string(f.type)
                  and f.name != "_hash"]
    if not compact:
        return {"compression": "none", "use_dictionary": dictionary,
                "write_statistics": ["_position", "_finished"]}
    compression = {name: ("none" if name == "_hash" else "zstd") for name in schema.names}
    return {"compression": compression, "use_dictionary": dictionary}


def _fingerprint(table: pa.Table, meta: dict[str, Any]) -> tuple[Any, ...]:
    """Parts with equal fingerprints hold the same columns with the same types and encodings, and
    can be merged."""
    return (table.schema.remove_metadata(),
            json.dumps([meta["psets"], meta["results"], meta["pickled"], meta.get(SURROGATES, [])]))


def _same_encodings(a: tuple[pa.Table, dict[str, Any]], b: tuple[pa.Table, dict[str, Any]]) -> bool:
    """Can two tables' rows share one table? Not when a column that has values in both is stored
    one way in one and another way in the other (pickled bytes, surrogatepass bytes, strings): one
    binary column could not say how to read each of its rows."""
    (ta, ma), (tb, mb) = a, b
    ea, eb = encodings(ma), encodings(mb)
    for column in set(ea) | set(eb):
        if ea.get(column, PLAIN) == eb.get(column, PLAIN):
            continue
        if column not in ta.column_names or column not in tb.column_names:
            continue  # rows without the column are nulls in the combined table
        if not (pa.types.is_null(ta.schema.field(column).type) or pa.types.is_null(tb.schema.field(column).type)):
            return False
    return True


def _combine(built: list[tuple[pa.Table, dict[str, Any]]]) -> list[tuple[pa.Table, dict[str, Any]]]:
    """Tables built since the last write, as few as possible: consecutive ones concatenated while
    their columns agree (a column absent from one, or of null type, takes the other's type)."""
    out: list[tuple[pa.Table, dict[str, Any]]] = []
    for table, meta in built:
        joined = _join(out[-1], (table, meta)) if out else None
        if joined is None:
            out.append((table, meta))
        else:
            out[-1] = joined
    return [(t.replace_schema_metadata({PART_META_KEY: json.dumps(m).encode()}), m) for t, m in out]


def _join(a: tuple[pa.Table, dict[str, Any]], b: tuple[pa.Table, dict[str, Any]]
          ) -> tuple[pa.Table, dict[str, Any]] | None:
    """Two built tables as one, or None when their columns do not agree."""
    if not _same_encodings(a, b):
        return None
    try:
        joined = pa.concat_tables([a[0].replace_schema_metadata(None), b[0].replace_schema_metadata(None)],
                                  promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return joined, _merge_meta(a[1], b[1])


def _merge_meta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    raw = {name: list(values) for name, values in a.get("raw", {}).items()}
    for name, values in b.get("raw", {}).items():
        raw.setdefault(name, []).extend(values)
    counts = dict(a.get("counts", {}))
    for status, k in b.get("counts", {}).items():
        counts[status] = counts.get(status, 0) + k
    merged = {**a, "psets": list(dict.fromkeys(a["psets"] + b["psets"])),
              "results": a["results"] + [r for r in b["results"] if r not in a["results"]],
              "pickled": list(dict.fromkeys(a["pickled"] + b["pickled"])), "raw": raw, "counts": counts}
    surrogates = list(dict.fromkeys(a.get(SURROGATES, []) + b.get(SURROGATES, [])))
    if surrogates:
        merged[SURROGATES] = surrogates
    return merged


def _split(entry: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """A pending outcome as outcomes of one pset each."""
    if entry[0] != "g" or len(entry[1].ran) <= 1:
        return [entry]
    return [("g", group, *entry[2:]) for group in split_group(entry[1])]


def _position(entry: tuple[Any, ...]) -> int:
    """The position of the pset of a one-pset outcome."""
    return int(entry[1].ran[0]) if entry[0] == "g" else int(entry[1].position)


def split_group(result: GroupResult) -> list[GroupResult]:
    """A group's outcome as one GroupResult per pset, in ``ran`` order; the workers' own timers
    (per group, not per pset) go with the first."""
    failed = {f[0]: f for f in result.failures}
    out: list[GroupResult] = []
    k = 0  # result columns hold the ok psets' values, in ran order
    for i, position in enumerate(result.ran):
        failure = failed.get(position)
        if failure is None:
            columns = {key: [values[k]] for key, values in result.columns.items()}
            k += 1
        else:
            columns = {}
        out.append(GroupResult(ran=[position], wall=[result.wall[i]], iowait=[result.iowait[i]],
                               ok=[position] if failure is None else [], columns=columns, absent={},
                               failures=[] if failure is None else [failure], raw=result.raw if i == 0 else {}))
    return out


def _count(entries: Sequence[tuple[Any, ...]]) -> int:
    """How many psets these pending outcomes hold."""
    return sum(len(e[1].ran) if e[0] == "g" else 1 for e in entries)


# journals of this process whose writer thread is still running, by path
_active: dict[str, Journal] = {}
_active_lock = threading.Lock()


def wait_for(path: str) -> None:
    """Wait until this process has finished writing the journal at ``path`` (its last write after
    map() returned); journals still being written by a running map are not waited for."""
    with _active_lock:
        journal = _active.get(path)
    if journal is not None and journal.closed:
        journal.wait()


@atexit.register
def _finish_all() -> None:
    with _active_lock:
        journals = list(_active.values())
    for journal in journals:
        journal.close()
        journal.wait(timeout=60.0)


class Journal:
    """What the engine talks to during one map(); see the module docstring."""


    def __init__(self, path: str, run: int, source: PsetSource, lock: Lock, meta: dict[str, Any],
                 todo_count: int, known: dict[str, tuple[Any, pa.DataType, str]] | None = None) -> None:
        self.path = path
        self.run = run
        self.builder = PartBuilder(source, known)
        self.lock = lock
        self.meta = meta
        self.todo_count = todo_count
        self.pending: list[tuple[Any, ...]] = []
        self.built: list[tuple[pa.Table, dict[str, Any]]] = []
        self.mutex = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.closed = False
        self.done = threading.Event()
        self.last_write = time.monotonic()
        self.seq = 0
        self.levels: list[list[tuple[PartName, tuple[Any, ...], int]]] = []
        self.written: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self.retry_attempts: dict[int, int] = {}
        self.write_failing = False  # the last write failed (a full disk?): it is retried at the next flush
        self.lost = 0  # finished psets that could not be made into a part, and so are not journaled
        self.thread = threading.Thread(target=self._thread_main, name="paramsurvey-journal", daemon=True)

    def start(self) -> None:
        with _active_lock:
            _active[self.path] = self
        self.thread.start()

    # -- called by the engine (main thread): cheap --------------------------------------------
    def record_group(self, result: GroupResult) -> None:
        attempt = 0
        if len(result.ran) == 1 and self.retry_attempts:  # a retry runs alone
            attempt = self.retry_attempts.pop(result.ran[0], 0)
        with self.mutex:
            self.pending.append(("g", result, time.time(), attempt))

    def record_lost(self, lost: PsetLost) -> None:
        self.retry_attempts.pop(lost.position, None)
        with self.mutex:
            self.pending.append(("l", lost, time.time()))

    def note_retry(self, position: int, attempt: int) -> None:
        self.retry_attempts[position] = attempt

    def close(self) -> None:
        """The map is over: the thread writes what is left, finishes the metadata and releases the
        lock, while the engine assembles the results; ``wait()`` (which map() calls before it
        returns) until it is all on disk. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self.stopping = True
        self.wake.set()
        if not self.thread.is_alive() and not self.done.is_set():  # never started, or died
            self._finish()

    def wait(self, timeout: float | None = None) -> None:
        """Until the last write is on disk and the lock released."""
        try:
            self.done.wait(timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: the last write is under way, let it land
            log.warning("paramsurvey: finishing the journal's last write, one moment")
            self.done.wait(timeout)
            raise

    # -- the writer thread ------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            import pyarrow.parquet  # noqa: F401  (now, while the map starts: see _store._parquet)

            self._write_provenance()
        except Exception as exc:  # provenance is a nicety: never let it stop the journal
            log.warning("paramsurvey journal %s: cannot record provenance: %s", self.path, exc)
        try:
            while True:
                self.wake.wait(BUILD_SECONDS)
                stopping = self.stopping
                try:
                    self._build()
                    if self.built and (stopping or time.monotonic() - self.last_write >= FLUSH_SECONDS
                                       or sum(t.num_rows for t, _ in self.built) >= FLUSH_ROWS):
                        self._write_built()
                except Exception as exc:  # a bug, not the disk: keep the thread (and what it holds) alive
                    log.error("paramsurvey journal %s: unexpected error, will retry: %r", self.path, exc)
                if stopping:
                    return
        finally:
            self._finish()

    def _finish(self) -> None:
        try:
            if self.pending or self.built:  # the thread died: a last attempt from here
                self._build()
                self._write_built()
            self._finish_meta()
        except Exception as exc:
            log.error("paramsurvey journal %s: cannot finish the journal: %r", self.path, exc)
        finally:
            self.lock.release()
            with _active_lock:
                if _active.get(self.path) is self:
                    del _active[self.path]
            self.done.set()

    def _build(self) -> None:
        with self.mutex:
            batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            built = [self.builder.build(batch)]
        except Exception as exc:  # not the disk: something in these outcomes; find it, keep the rest
            built = self._build_apart(batch, exc)
        self.built.extend(b for b in built if b is not None)

    def _build_apart(self, batch: list[tuple[Any, ...]], exc: Exception
                     ) -> list[tuple[pa.Table, dict[str, Any]] | None]:
        """Build a batch that failed as a whole outcome by outcome, and a group that fails pset by
        pset: building is deterministic (no disk, no network), so a pset that fails alone would fail
        every time; it is left out (a resumed survey runs it again) rather than holding back every
        outcome that arrives after it."""
        built: list[tuple[pa.Table, dict[str, Any]] | None] = []
        lost: list[int] = []
        for entry in batch:
            pieces = _split(entry)
            if len(pieces) > 1:
                try:
                    built.append(self.builder.build([entry]))
                    continue
                except Exception:
                    pass
            for piece in pieces:
                try:
                    built.append(self.builder.build([piece]))
                except Exception as error:
                    exc = error
                    lost.append(_position(piece))
        if lost:
            self.lost += len(lost)
            log.error("paramsurvey journal %s: %d finished pset(s) cannot be written to the journal (%r) and are "
                      "not journaled: a resumed survey runs them again (pset positions %s%s)", self.path, len(lost),
                      exc, ", ".join(map(str, lost[:10])), ", ..." if len(lost) > 10 else "")
        return built

    def _write_built(self) -> None:
        try:
            combined = _combine(self.built)
            for i, (table, meta) in enumerate(combined):
                self._write(table, meta)
                self.built = combined[i + 1:]
            self.built = []
            self.last_write = time.monotonic()
            if self.write_failing:
                log.warning("paramsurvey journal %s: writing works again: the finished psets held back are on "
                            "disk", self.path)
                self.write_failing = False
        except Exception as exc:
            if not self.write_failing or self.stopping:
                log.error("paramsurvey journal %s: cannot write %d finished psets (will retry): %r", self.path,
                          sum(t.num_rows for t, _ in self.built), exc)
            self.write_failing = True

    def _write(self, table: pa.Table, meta: dict[str, Any]) -> None:
        self.seq += 1
        part = PartName(self.run, self.seq, self.seq)
        write_part(self.path, part, table, write_options(table.schema))
        for status, k in meta.get("counts", {}).items():
            self.written[status] = self.written.get(status, 0) + k
        try:
            self._add_level(0, part, _fingerprint(table, meta), table.num_rows)
        except Exception as exc:  # merging only tidies: the part is written, the journal complete
            log.warning("paramsurvey journal %s: cannot merge its parts: %r", self.path, exc)

    def _add_level(self, level: int, part: PartName, fingerprint: tuple[Any, ...], nrows: int) -> None:
        while len(self.levels) <= level:
            self.levels.append([])
        parts = self.levels[level]
        parts.append((part, fingerprint, nrows))
        # the newest consecutive run of same-shaped parts; merged only when contiguous, so that a
        # merged file's range never covers a part it does not contain
        k = len(parts) - 1
        while (k > 0 and parts[k - 1][1] == fingerprint and parts[k - 1][0].hi + 1 == parts[k][0].lo
               and len(parts) - k < FANIN):
            k -= 1
        group = parts[k:]
        if len(group) < FANIN or sum(g[2] for g in group) > MERGE_MAX_ROWS:
            return
        merged = self._merge([g[0] for g in group])
        if merged is not None:
            del parts[k:]
            self._add_level(level + 1, merged, fingerprint, sum(g[2] for g in group))

    def _merge(self, group: list[PartName]) -> PartName | None:
        tables = [read_part(self.path, p) for p in group]
        if any(t is None for t in tables):
            return None
        metas = [part_meta(t.schema) for t in tables if t is not None]
        meta = metas[0]
        for m in metas[1:]:
            meta = _merge_meta(meta, m)
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables if t is not None])
        table = table.replace_schema_metadata({PART_META_KEY: json.dumps(meta).encode()})
        merged = PartName(self.run, group[0].lo, group[-1].hi)
        write_part(self.path, merged, table, write_options(table.schema, compact=True))
        for p in group:  # the merged file is on disk: the parts it covers can go
            try:
                os.unlink(os.path.join(self.path, p.name))
            except FileNotFoundError:
                pass
        fsync_dir(self.path)
        return merged

    # -- metadata -----------------------------------------------------------------------------
    def _write_provenance(self) -> None:
        from .._logfile import provenance

        run = self.meta["runs"][-1]
        info = provenance(run.pop("env_used", None))
        info.pop("start_time", None)  # the map's own start, recorded when the journal opened
        run.update(info)
        write_meta(self.path, self.meta)

    def _finish_meta(self) -> None:
        run = self.meta["runs"][-1]
        run["end_time"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        run["written"] = dict(self.written)
        left = self.todo_count - sum(self.written.values())
        held = _count(self.pending) + sum(t.num_rows for t, _ in self.built)  # a write that kept failing
        unwritten = held + self.lost + self.builder.dropped
        run["state"] = "finished" if left <= 0 and not unwritten else "stopped"
        if unwritten:
            run["not_written"] = unwritten
        if held:
            log.error("paramsurvey journal %s: %d finished psets could not be written: a resumed survey "
                      "runs them again", self.path, held)
        write_meta(self.path, self.meta)
