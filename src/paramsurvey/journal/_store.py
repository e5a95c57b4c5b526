"""The journal on disk: a directory of Parquet part files plus one JSON file of metadata.

    JOURNAL/
        _paramsurvey.json                     metadata: the survey, and a provenance record per run
        part-r0001-00000001-00000001.parquet  rows written by run 1, flush 1
        part-r0001-00000002-00000017.parquet  flushes 2..17 of run 1, merged into one file
        part-r0002-00000001-00000001.parquet  the first flush after a resume
        .lock                                 held (flock) by the map writing the journal

Every file appears whole or not at all: it is written under a temporary name (a dot file), flushed
and fsync'd, then renamed over its final name, and the directory is fsync'd. A reader never sees a
half-written file, a ``kill -9`` or a power cut leaves at worst a temporary file behind (removed by
the next writer), and a merged file is written before the files it replaces are removed (a reader
that sees both ignores the covered ones). pyarrow, and so pandas, skips names starting with ``.``
or ``_``; a ``*.parquet`` glob (duckdb, polars) sees the parts only.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..exceptions import JournalError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one writer is the user's business
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("paramsurvey.journal")

FORMAT = "paramsurvey-journal"
FORMAT_VERSION = 1
META = "_paramsurvey.json"
LOCK = ".lock"
PART_META_KEY = b"paramsurvey"
_PART_RE = re.compile(r"^part-r(\d{4,})-(\d{8,})-(\d{8,})\.parquet$")
# How long a map waits for the lock: a reader (paramsurvey status) holds it shared for microseconds.
LOCK_WAIT = 3.0


@dataclass(frozen=True)
class PartName:
    run: int
    lo: int
    hi: int

    @property
    def name(self) -> str:
        return f"part-r{self.run:04d}-{self.lo:08d}-{self.hi:08d}.parquet"

    def covers(self, other: PartName) -> bool:
        return (self.run == other.run and self.lo <= other.lo and other.hi <= self.hi
                and (self.lo, self.hi) != (other.lo, other.hi))


def _parquet() -> Any:
    """pyarrow.parquet, imported on first use (~20 ms): a new journal's writer thread imports it
    while the map starts its workers, rather than the map waiting for it."""
    import pyarrow.parquet

    return pyarrow.parquet


def parse_part(name: str) -> PartName | None:
    m = _PART_RE.match(name)
    return PartName(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def list_parts(path: str) -> list[PartName]:
    """The journal's live parts, oldest first: parts covered by a merged part are left out."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    parts = [p for p in map(parse_part, names) if p is not None]
    merged = [p for p in parts if p.hi > p.lo]
    live = [p for p in parts if not any(m.covers(p) for m in merged)] if merged else parts
    return sorted(live, key=lambda p: (p.run, p.lo))


def covered_parts(path: str) -> list[PartName]:
    parts = [p for p in map(parse_part, os.listdir(path)) if p is not None]
    return [p for p in parts if any(m.covers(p) for m in parts if m.hi > m.lo)]


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, name: str, write: Any, durable: bool = True) -> None:
    """Write ``path/name`` whole or not at all: ``write(fileobj)`` into a temporary dot file,
    rename it over the final name. ``durable``: fsync the file before, and the directory after,
    so that the file survives a power cut too (a killed process needs no fsync: the kernel has
    the data)."""
    # not tempfile.mkstemp: its files are private (0600), a journal is for colleagues too (umask)
    tmp = os.path.join(path, f".tmp-{os.getpid()}-{secrets.token_hex(6)}-{name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, os.path.join(path, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path)


def write_part(path: str, part: PartName, table: pa.Table, options: dict[str, Any]) -> int:
    """Write one part file atomically; returns its size in bytes."""
    pq = _parquet()
    atomic_write(path, part.name, lambda f: pq.write_table(table, f, **options))
    return os.path.getsize(os.path.join(path, part.name))


def part_meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(PART_META_KEY)
    return json.loads(raw) if raw else {}


# Checking that the columns a light read leaves out decode too: this many rows at a time, so that
# a large part costs bounded memory.
VERIFY_ROWS = 65_536


def read_part(path: str, part: PartName, columns: list[str] | None = None) -> pa.Table | None:
    """A part as a table, or None if the file is damaged (logged) or gone (merged meanwhile).
    ``columns``: only these, but every other column is decoded too (and dropped), so that a part
    is damaged for a light reader (status) exactly when it is for a full one (read, resume)."""
    file = os.path.join(path, part.name)
    pq = _parquet()
    try:
        if columns is None:
            return pq.read_table(file, memory_map=False)
        with pq.ParquetFile(file, memory_map=False) as parquet:
            have = parquet.schema_arrow.names
            table = parquet.read(columns=[c for c in columns if c in have])
            others = [c for c in have if c not in columns]
            if others:
                for _batch in parquet.iter_batches(batch_size=VERIFY_ROWS, columns=others):
                    pass
        return table
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError) as exc:
        log.warning("paramsurvey journal %s: part %s is damaged and is skipped (its psets count as not "
                    "run): %s", path, part.name, exc)
        return None


def read_parts(path: str, columns: list[str] | None = None, damaged: list[str] | None = None
               ) -> list[tuple[PartName, pa.Table]]:
    """Every live part, oldest first, damaged ones skipped (and their names added to ``damaged``).
    A part merged away while we read is found again in the merged file: list again, a few times,
    until a listing reads whole."""
    skipped: list[str] = []
    for _attempt in range(5):
        out: list[tuple[PartName, pa.Table]] = []
        skipped = []
        vanished = False
        for part in list_parts(path):
            if not os.path.exists(os.path.join(path, part.name)):
                vanished = True
                break
            table = read_part(path, part, columns)
            if table is None and not os.path.exists(os.path.join(path, part.name)):
                vanished = True
                break
            if table is not None:
                out.append((part, table))
            else:
                skipped.append(part.name)
        if not vanished:
            break
    if damaged is not None:
        damaged.extend(skipped)
    return out


def damaged_parts(path: str) -> Iterator[PartName]:
    """Parts whose footer cannot be read (only the writer, holding the lock, acts on this)."""
    parts = list_parts(path)
    if not parts:
        return
    pq = _parquet()
    for part in parts:
        try:
            pq.read_metadata(os.path.join(path, part.name))
        except (pa.ArrowException, OSError, ValueError):
            yield part


class MetaDamaged(JournalError):
    """The journal's metadata file is damaged; its parts, which hold the outcomes, may be fine."""


def read_meta(path: str) -> dict[str, Any] | None:
    """The metadata, or None if there is none yet. Raises MetaDamaged (a JournalError that says
    how to recover) if the file is not the metadata of a journal."""
    file = os.path.join(path, META)
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"journal {path}: its metadata {file} cannot be read: {exc.strerror or exc}") from exc
    problem = None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        problem = "it is not text"
    except ValueError as exc:
        problem = f"it is not valid JSON ({exc})" if raw.strip() else "it is empty"
    else:
        if not isinstance(meta, dict):
            problem = "it is not a JSON object"
        elif meta.get("format") != FORMAT:
            problem = f"its format is {meta.get('format')!r}, not {FORMAT!r}"
        elif not isinstance(meta.get("version", 0), int):
            problem = f"its version is {meta.get('version')!r}, not a number"
    if problem is not None:
        raise MetaDamaged(_damaged_meta(path, file, problem))
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise JournalError(f"journal {path} has format version {meta.get('version')}; this paramsurvey "
                           f"reads up to version {FORMAT_VERSION}: upgrade paramsurvey")
    return meta


def _damaged_meta(path: str, file: str, problem: str) -> str:
    parts = len(list_parts(path))
    if not parts:
        return (f"journal {path}: its metadata file {file} is damaged: {problem}. The journal holds no part "
                "files, so no outcome is lost by removing that file (or by giving a new journal).")
    return (f"journal {path}: its metadata file {file} is damaged: {problem}. The outcomes are in its "
            f"{parts} part file(s), untouched: paramsurvey.journal.read() and `paramsurvey export` still read "
            f"them. To recover, run `paramsurvey repair {path}`: it sets the damaged file aside and rebuilds the "
            "metadata from the parts (the provenance of earlier runs -- hosts, command lines, versions -- is "
            "lost); or move the file aside yourself: the next run of the survey writes a new one.")


def now() -> str:
    """The local time, ISO 8601 with its offset, to the second: as the metadata records times."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def write_meta(path: str, meta: dict[str, Any]) -> None:
    """Atomic, not fsync'd: after a power cut the metadata may be one version old (a run's end
    time missing), which costs nothing a resume needs; the part files are what must survive."""
    data = json.dumps(meta, indent=1, default=str).encode()
    atomic_write(path, META, lambda f: f.write(data), durable=False)


class Lock:
    """An exclusive flock on JOURNAL/.lock for as long as a map writes the journal. The kernel drops
    it when the process dies, kill -9 included, so a stale lock cannot exist."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, holder: str) -> None:
        if fcntl is None:  # pragma: no cover
            return
        file = os.path.join(self.path, LOCK)
        try:
            self.fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # a .lock made by a colleague (0644): flock needs only a read descriptor
            self.fd = os.open(file, os.O_RDONLY)
        deadline = time.monotonic() + LOCK_WAIT
        while not self._try():
            if time.monotonic() > deadline:
                os.close(self.fd)
                self.fd = None
                raise JournalError(f"journal {self.path} is being written by another survey ({holder}); "
                                   "wait for it to finish or use another journal")
            time.sleep(0.05)

    def _try(self) -> bool:
        assert self.fd is not None and fcntl is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # e.g. ENOLCK: a network filesystem without locks
            log.warning("paramsurvey journal %s: cannot lock it (%s); make sure no other survey writes to it",
                        self.path, exc)
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def is_locked(path: str) -> bool | None:
    """Is a map writing this journal now? None when that cannot be told (no flock here)."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def host() -> str:
    return socket.gethostname()
