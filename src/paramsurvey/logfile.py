"""The hidden logfile and stderr output, both as handlers of the ``paramsurvey`` logger.

Every message goes to ``.paramsurvey-YYYYMMDD-HHMMSS.log`` in the current directory (one per run of
the program), whatever the verbosity. A message reaches stderr only when the map's ``verbose`` is at
least the message's ``ps_verbose`` (an ``extra`` on the record, default 1); ``verbose=0`` prints
nothing at all.
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

_file_handler: logging.FileHandler | None = None
_stderr_handler: StderrHandler | None = None


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
    return _file_handler.baseFilename if _file_handler is not None else None


def ensure_handlers() -> None:
    global _stderr_handler
    if _stderr_handler is None:
        _stderr_handler = StderrHandler()
        _stderr_handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(_stderr_handler)
        LOGGER.setLevel(logging.DEBUG)
        LOGGER.propagate = False


def open_logfile(env_used: Mapping[str, str] | None = None) -> str | None:
    """Create the hidden logfile (once per process) and write its header."""
    global _file_handler
    ensure_handlers()
    if _file_handler is not None:
        return _file_handler.baseFilename
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.abspath(f".paramsurvey-{stamp}.log")
    try:
        handler = logging.FileHandler(path, delay=False, encoding="utf-8")
    except OSError as exc:
        LOGGER.warning("paramsurvey: cannot write the hidden logfile %s: %s", path, exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    LOGGER.addHandler(handler)
    _file_handler = handler
    for key, value in provenance(env_used).items():
        LOGGER.debug("header %s: %s", key, value, extra={"ps_verbose": 99})
    return path


def close_logfile() -> None:
    global _file_handler
    if _file_handler is not None:
        LOGGER.debug("end time: %s", datetime.datetime.now().isoformat(timespec="seconds"), extra={"ps_verbose": 99})
        LOGGER.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None


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
