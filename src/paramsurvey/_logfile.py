"""The hidden logfile and stderr output, both as handlers of the ``paramsurvey`` logger.

Every message goes to ``.paramsurvey-YYYYMMDD-HHMMSS.log`` in the current directory (one per run of
the program), whatever the verbosity; ``init(pslogger_prefix=...)`` changes the name's prefix and
``init(pslogger_fd=stream)`` sends the log to an open stream instead, as 0.4.x's pslogger did. A
message reaches stderr only when the map's ``verbose`` is at least the message's ``ps_verbose`` (an
``extra`` on the record, default 1); ``verbose=0`` prints nothing at all.

The logfile is created with ``O_EXCL``: two programs started in the same second in one directory
never share a file; the second gets the process id in its name.
"""

from __future__ import annotations

import datetime
import functools
import getpass
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

LOGGER = logging.getLogger("paramsurvey")

DEFAULT_PREFIX = ".paramsurvey-"
# Names tried after the plain one is taken: <stamp>-<pid>.log, then <stamp>-<pid>-1.log, ... A pid is
# unique among live processes; the counter covers a process that reopens its logfile in the same second.
MAX_NAME_TRIES = 100

_file_handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
_stderr_handler: StderrHandler | None = None
_log_path: str | None = None  # the file's path, or a description of the pslogger_fd stream
_log_target: tuple[str, object] | None = None  # ('file', prefix) or ('stream', the stream)
_owns_stream = False  # a file we created (closed at the end) or the user's stream (never closed by us)
# Logfile streams a forked child inherited: kept referenced, never flushed or closed by the child.
_inherited: list[Any] = []


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (pytest and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.verbose = 1

    def emit(self, record: logging.LogRecord) -> None:
        if self.verbose <= 0 or getattr(record, "ps_verbose", 1) > self.verbose:
            return
        self.stream = sys.stderr
        super().emit(record)


def set_verbose(verbose: int) -> None:
    ensure_handlers()
    assert _stderr_handler is not None
    _stderr_handler.verbose = verbose


def logfile_path() -> str | None:
    """The hidden logfile's path (or a description of the pslogger_fd stream), None if there is none."""
    return _log_path if _file_handler is not None else None


def ensure_handlers() -> None:
    global _stderr_handler
    if _stderr_handler is None:
        _stderr_handler = StderrHandler()
        _stderr_handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(_stderr_handler)
        LOGGER.setLevel(logging.DEBUG)
        LOGGER.propagate = False


def _create_unique(prefix: str) -> tuple[int, str]:
    """Create ``<prefix><stamp>.log`` exclusively, or the first free name with this process's id."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.abspath(f"{prefix}{stamp}")
    pid = os.getpid()
    names = [f"{base}.log"] + [f"{base}-{pid}{f'-{i}' if i else ''}.log" for i in range(MAX_NAME_TRIES)]
    for path in names:
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"every logfile name from {names[0]} on is taken")


def _describe(stream: Any) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else f"the pslogger_fd stream ({type(stream).__name__})"


def _same_target(current: tuple[str, object] | None, wanted: tuple[str, object]) -> bool:
    if current is None or current[0] != wanted[0]:
        return False
    # a stream is the same only if it is the same object (two StringIOs may compare equal)
    return current[1] is wanted[1] if wanted[0] == "stream" else current[1] == wanted[1]


def open_logfile(env_used: Mapping[str, str] | None = None, prefix: str = DEFAULT_PREFIX,
                 stream: Any = None) -> str | None:
    """Start the run's log (once per process, unless asked for another destination) and write its
    header: a new hidden logfile named by ``prefix``, or the open text ``stream`` if given."""
    global _file_handler, _log_path, _log_target, _owns_stream
    ensure_handlers()
    wanted: tuple[str, object] = ("stream", stream) if stream is not None else ("file", prefix)
    if _file_handler is not None:
        if _same_target(_log_target, wanted):
            return _log_path
        close_logfile()
    if stream is not None:
        path, target, owns = _describe(stream), stream, False
    else:
        try:
            fd, path = _create_unique(prefix)
        except OSError as exc:
            # a read-only or full directory must not stop the survey; verbose=0 keeps this off stderr
            LOGGER.warning("paramsurvey: cannot write the hidden logfile %s...: %s",
                           os.path.abspath(prefix), exc)
            return None
        # a worker's exception may carry a lone surrogate: write it escaped rather than fail the record
        target, owns = os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace"), True
    handler = logging.StreamHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    LOGGER.addHandler(handler)
    _file_handler, _log_path, _log_target, _owns_stream = handler, path, wanted, owns
    for key, value in provenance(env_used).items():
        LOGGER.debug("header %s: %s", key, value, extra={"ps_verbose": 99})
    return path


def close_logfile() -> None:
    global _file_handler, _log_target
    if _file_handler is not None:
        LOGGER.debug("end time: %s", datetime.datetime.now().isoformat(timespec="seconds"), extra={"ps_verbose": 99})
        handler, _file_handler, _log_target = _file_handler, None, None
        LOGGER.removeHandler(handler)
        handler.flush()
        handler.close()
        if _owns_stream:  # our own file; a pslogger_fd stream stays open: it is the caller's
            handler.stream.close()


def forget_in_child() -> None:
    """In a child made by os.fork(): the parent's log is not this process's. Stop writing to it
    without flushing or closing it (the parent owns it); the child's own init() starts its own."""
    global _file_handler, _log_target
    if _file_handler is not None:
        LOGGER.removeHandler(_file_handler)
        _inherited.append(_file_handler)
        _file_handler, _log_target = None, None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache  # a package's version cannot change in a process; a lookup costs ~1.5 ms
def _version(package: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(package)
    except PackageNotFoundError:
        return None


def provenance(env_used: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where and how this run happened: for the logfile header and the journal's metadata."""
    commit = _git("rev-parse", "HEAD")
    info: dict[str, Any] = {
        "start_time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "user": getpass.getuser() if hasattr(os, "getuid") else os.environ.get("USERNAME", ""),
        "command_line": " ".join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: v for p in ("paramsurvey", "pandas", "numpy", "cloudpickle", "ray",
                                    "dask", "distributed", "pyarrow") if (v := _version(p))},
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain")) if commit else None,
        "env": {k: v for k, v in os.environ.items() if k.startswith("PARAMSURVEY_")},
    }
    if env_used:
        info["env_used"] = dict(env_used)
    return info
