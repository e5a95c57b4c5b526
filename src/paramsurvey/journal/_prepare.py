"""Getting a journal directory ready to be written, by a survey (``_open``) or by ``repair``: the
checks made before any pset runs, the lock, and the tidying that only the lock's holder does."""

from __future__ import annotations

import errno
import logging
import os
import secrets

from ..exceptions import JournalError
from ._store import LOCK, META, Lock, covered_parts, damaged_parts, parse_part
from ._store import read_meta as read_meta_file

log = logging.getLogger("paramsurvey.journal")

# Entries that do not tell a journal from another directory: what a map killed before its first
# write leaves (.lock, .tmp-*), and what NFS (.nfs*: a file removed while open) and macOS add.
_NEUTRAL_NAMES = frozenset({LOCK, ".DS_Store"})
_NEUTRAL_PREFIXES = (".tmp-", ".nfs")
_DAMAGED_PREFIX = "_damaged-"  # a damaged part set aside: only a journal has one

_MOVE = ("give a journal on a writable filesystem (to resume a journal that is here, copy it there "
         "first)")
_FREE = "free some space, or give a journal on another filesystem"
# why a journal cannot be written, and what to do about it, by errno
_UNWRITABLE = {errno.EROFS: ("it is on a read-only filesystem", _MOVE),
               errno.EACCES: ("no permission to write there", _MOVE),
               errno.EPERM: ("no permission to write there", _MOVE),
               errno.ENOSPC: ("the disk is full", _FREE),
               getattr(errno, "EDQUOT", errno.ENOSPC): ("the disk quota is exhausted", _FREE)}


def _is_journal_file(name: str) -> bool:
    return name == META or name.startswith(_DAMAGED_PREFIX) or parse_part(name) is not None


def make_journal_directory(path: str) -> None:
    """Make ``path`` a journal directory, or refuse: a file, or a directory holding anything but a
    journal (the current directory given by mistake, a home directory of dot files), is never
    turned into one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise JournalError(f"journal={path!r} is a file; a journal is a directory (give a new path)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise JournalError(unwritable(path, exc, "cannot be created")) from exc
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc}") from exc
    foreign = [n for n in names if n not in _NEUTRAL_NAMES and not n.startswith(_NEUTRAL_PREFIXES)]
    if foreign and not any(map(_is_journal_file, names)):
        shown = ", ".join(map(repr, foreign[:3])) + (", ..." if len(foreign) > 3 else "")
        raise JournalError(f"journal={path!r} is a directory that is not a paramsurvey journal (it holds {shown}): "
                           "give a new or empty directory")
    check_writable(path)


def check_writable(path: str) -> None:
    """A journal a survey cannot write is an error now, before any pset runs, not a failure of
    every write later: create (and remove) a file as the writer will."""
    probe = os.path.join(path, f".tmp-{os.getpid()}-{secrets.token_hex(6)}-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise JournalError(unwritable(path, exc, "cannot be written")) from exc
    try:
        os.unlink(probe)
    except OSError:  # removed meanwhile by the tidying of a writer that holds the lock: gone either way
        pass


def unwritable(path: str, exc: OSError, what: str) -> str:
    """The message of a JournalError for a journal the disk refuses: why, and what to do."""
    reason, advice = _UNWRITABLE.get(exc.errno or 0, (exc.strerror or str(exc), _MOVE))
    return (f"journal {path} {what}: {reason} ({exc.strerror or exc}). A survey writes its journal as it "
            f"runs: {advice}. Reading a journal needs no writing: paramsurvey.journal.read(), `paramsurvey "
            "status` and `paramsurvey export` work here.")


def lock_journal(path: str) -> Lock:
    """The journal's lock, held: a JournalError when another survey holds it (naming that survey)
    or when it cannot be taken."""
    lock = Lock(path)
    try:
        lock.acquire(_holder(path))
    except OSError as exc:
        raise JournalError(unwritable(path, exc, "cannot be locked")) from exc
    return lock


def _holder(path: str) -> str:
    try:
        run = (read_meta_file(path) or {}).get("runs", [{}])[-1]
    except JournalError:
        return "unknown"
    return f"pid {run.get('pid')} on {run.get('host')}, started {run.get('start_time')}"


def tidy(path: str) -> list[str]:
    """Holding the lock: remove what a killed writer left behind, set damaged parts aside. Returns
    what it did."""
    done = []
    leftovers = [name for name in os.listdir(path) if name.startswith(".tmp-")]
    for name in leftovers:
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    if leftovers:
        done.append(f"removed {len(leftovers)} temporary file(s) left by a killed survey")
    covered = covered_parts(path)
    for part in covered:
        try:
            os.unlink(os.path.join(path, part.name))
        except OSError:
            pass
    if covered:
        done.append(f"removed {len(covered)} part(s) already merged into another")
    return done + set_aside(path, [part.name for part in damaged_parts(path)], "cut short?")


def set_aside(path: str, names: list[str], why: str) -> list[str]:
    """Rename damaged parts out of the way (kept, for whoever wants to look): every reader skips
    them anyway, and their psets run again."""
    done = []
    for name in names:
        aside = f"{_DAMAGED_PREFIX}{name[:-len('.parquet')]}.bin"
        log.warning("paramsurvey journal %s: part %s is damaged (%s): set aside as %s; its psets will run again",
                    path, name, why, aside)
        os.replace(os.path.join(path, name), os.path.join(path, aside))
        done.append(f"set the damaged part {name} aside as {aside}: its psets run again at the next run")
    return done
