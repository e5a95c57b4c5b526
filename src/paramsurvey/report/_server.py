"""The live dashboard: the report page of a journal, served read-only over HTTP while a survey runs.

A stdlib ``ThreadingHTTPServer`` in a daemon thread answers these paths, GET only:

- ``/``            the report page (plotly's JavaScript loaded from ``/plotly.min.js``);
- ``/plotly.min.js`` plotly's JavaScript, cached by the browser (it is megabytes: a reload of the page
                   should not fetch it again);
- ``/favicon.ico``  nothing (204), rather than a 404 in the browser's console;
- ``/version``     the journal's version: a digest of its part files and metadata (names, sizes,
                   modification times) and whether a survey holds it. The page asks for it every
                   two seconds and reloads itself when it changes.

The page is built again only when the version changes (one build at a time, shared by every
browser). It binds 127.0.0.1 unless told otherwise: a journal's pset values and tracebacks are the
user's business, and ``ssh -L`` reaches a dashboard on a cluster's node.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("paramsurvey.report")

# A page older than this is built again for a new request even if no file changed, so that the
# elapsed time, rate and time remaining a newly opened page shows stay true.
MAX_PAGE_AGE = 10.0
# A page that takes seconds to build (a journal of a million psets) tells its browser to wait this
# many times its build time between reloads: the server spends at most a fifth of its time building.
BUILD_SHARE = 5


def journal_version(path: str) -> str:
    """A digest of what the page is made of: the journal's files and whether a survey holds its lock."""
    from ..journal._store import is_locked

    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as exc:
        return f"unreadable: {exc}"
    digest = hashlib.blake2b(digest_size=12)
    for entry in entries:
        if entry.name.endswith(".parquet") or entry.name.startswith("_"):
            try:
                st = entry.stat()
            except OSError:  # merged away meanwhile
                continue
            digest.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    digest.update(f"locked:{is_locked(path)}".encode())
    return digest.hexdigest()


class _Pages:
    """The page of the journal's current version, built on demand, once per version."""

    def __init__(self, journal: str) -> None:
        self.journal = journal
        self.lock = threading.Lock()
        self.version: str | None = None
        self.page = b""
        self.built = 0.0
        self.build_seconds = 0.0

    def current(self) -> tuple[str, bytes]:
        import time

        with self.lock:
            version = journal_version(self.journal)
            if version != self.version or time.monotonic() - self.built > MAX_PAGE_AGE:
                started = time.monotonic()
                self.page = self._build(version).encode("utf-8")
                self.version, self.built = version, time.monotonic()
                self.build_seconds = self.built - started
            return self.version or version, self.page

    def _build(self, version: str) -> str:
        import html

        from ..exceptions import JournalError
        from ._data import from_journal
        from ._page import POLL_MILLISECONDS, render

        try:
            summary = from_journal(self.journal)
        except JournalError as exc:  # e.g. removed while served: say so, keep serving
            return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>paramsurvey</title></head><body>"
                    f"<p>{html.escape(str(exc))}</p>{_reload_script(version)}</body></html>")
        poll = max(POLL_MILLISECONDS, int(BUILD_SHARE * self.build_seconds * 1000))
        return render(summary, plotlyjs=None, plotly_src="plotly.min.js", live_version=version,
                      poll_milliseconds=poll)


def _reload_script(version: str) -> str:
    import json

    from ._page import LIVE_SCRIPT, POLL_MILLISECONDS

    return LIVE_SCRIPT % (json.dumps(version), POLL_MILLISECONDS)


class _Handler(BaseHTTPRequestHandler):
    server: Any  # the _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        route = self.path.split("?", 1)[0]
        try:
            if route in ("/", "/index.html"):
                _version, page = self.server.pages.current()
                self._send(200, "text/html; charset=utf-8", page, cache=False)
            elif route == "/version":
                self._send(200, "text/plain; charset=utf-8", journal_version(self.server.pages.journal).encode(),
                           cache=False)
            elif route == "/favicon.ico":  # browsers ask for it: no icon, and no error in their console
                self._send(204, "image/x-icon", b"", cache=True)
            elif route == "/plotly.min.js":
                self._send(200, "text/javascript; charset=utf-8", self.server.plotly, cache=True)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found", cache=False)
        except (BrokenPipeError, ConnectionResetError):  # the browser went away
            pass

    def _send(self, code: int, kind: str, body: bytes, cache: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("dashboard: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pages: _Pages, plotly: bytes) -> None:
        self.pages = pages
        self.plotly = plotly
        super().__init__(address, _Handler)


class Dashboard:
    """A running dashboard: ``url``, ``port``, ``stop()``."""

    def __init__(self, server: _Server, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = int(server.server_address[1])

    @classmethod
    def start(cls, journal: str | os.PathLike[str], port: int = 0, host: str = "127.0.0.1") -> Dashboard:
        from ..journal._reading import check_journal
        from . import plotly_js

        path = check_journal(journal)  # not a journal: a JournalError now, not a page of errors later
        server = _Server((host, port), _Pages(path), plotly_js().encode("utf-8"))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="paramsurvey-dashboard", daemon=True)
        thread.start()
        return cls(server, thread, host)

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{shown}:{self.port}/"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
