"""Graphite (carbon) monitoring: progress counters pushed in carbon's pickle protocol.

    ProgressReporter --send(name, MapProgress)--> bounded queue --> sender thread --> carbon-cache
                       (never blocks: a full          (drops the       (connects, retries,
                        queue drops its oldest)         oldest)          logs once per outage)

Each report becomes one point per counter, ``<prefix>.<name>.<counter>`` (``total``, ``active``,
``finished``, ``failures``, ``exceptions``, ``crashed``, ``timeouts``, ``cancelled``, ``retried``),
stamped with the time of the report. The wire format is carbon's pickle protocol: a 4-byte
big-endian length, then a pickled list of ``(path, (timestamp, value))``.

Monitoring is never worth slowing or stopping a survey: :meth:`CarbonSender.send` only appends to
a queue; a server that is unreachable, or goes away, is logged once per outage and tried again every
``RETRY_INTERVAL`` seconds while the points that cannot be sent pile up to ``MAX_QUEUED`` and then
make way for newer ones. :meth:`CarbonSender.close` gives the last points at most ``CLOSE_FLUSH``
seconds to leave.
"""

from __future__ import annotations

import collections
import logging
import pickle
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("paramsurvey.carbon")

__all__ = ["DEFAULT_PORT", "DEFAULT_PREFIX", "CarbonSender", "encode", "metric_path"]

DEFAULT_PORT = 2004  # carbon-cache's PICKLE_RECEIVER_PORT
DEFAULT_PREFIX = "paramsurvey"
# Points kept while the server is away: ~18 minutes of one report a second of 9 counters. Older
# points make way for newer ones: a dashboard wants the present more than the past.
MAX_QUEUED = 10_000
# Points per message; carbon refuses messages over PICKLE_RECEIVER_MAX_LENGTH (1 MiB by default).
MAX_BATCH = 500
CONNECT_TIMEOUT = 2.0  # loopback or a LAN answers in milliseconds; a dead host is given up quickly
SEND_TIMEOUT = 5.0  # a server that stops reading is treated as gone after this long
RETRY_INTERVAL = 10.0  # seconds between attempts to reach a server that was unreachable
CLOSE_FLUSH = 1.0  # the end of a map waits at most this long for the last points to leave

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
Point = tuple[str, tuple[float, float]]  # (path, (timestamp, value))


def _component(text: str) -> str:
    """One node of a graphite path: anything but letters, digits, ``_`` and ``-`` becomes ``_``
    (a dot would split the node, a space breaks graphite's other protocols)."""
    return _UNSAFE.sub("_", text) or "_"


def metric_path(prefix: str | None, name: str, counter: str) -> str:
    """``<prefix>.<name>.<counter>``; the prefix may hold dots (its own hierarchy), the map's name
    may not.

    Example
    -------
    >>> metric_path('paramsurvey', 'my survey', 'finished')
    'paramsurvey.my_survey.finished'
    """
    nodes = [_component(p) for p in (prefix or "").split(".") if p]
    return ".".join([*nodes, _component(name), _component(counter)])


def encode(points: list[Point]) -> bytes:
    """One message of carbon's pickle protocol.

    Example
    -------
    >>> msg = encode([('a.b', (1700000000, 3.0))])
    >>> import pickle, struct; pickle.loads(msg[4:]) == [('a.b', (1700000000, 3.0))]
    True
    """
    payload = pickle.dumps(points, protocol=2)  # carbon's unpickler reads protocol 2 on every version
    return struct.pack("!L", len(payload)) + payload


class CarbonSender:
    """Pushes progress counters to a carbon server from a background thread.

    Parameters
    ----------
    server : str
        Host name or address of the carbon server (carbon-cache or carbon-relay).
    port : int
        Its pickle receiver port, 2004 by default.
    prefix : str, optional
        First nodes of every path, ``'paramsurvey'`` by default (``None`` too); ``''`` for none.
    retry_interval, max_queued : optional
        Seconds between attempts to reach an unreachable server; points kept meanwhile.
    clock : callable
        Wall-clock seconds for the points' timestamps.

    Example
    -------
    >>> sender = CarbonSender('127.0.0.1', 9)  # discard port: nothing listens, nothing breaks
    >>> sender.send('demo', {'finished': 3, 'total': 10})
    >>> sender.close()
    """

    def __init__(self, server: str, port: int = DEFAULT_PORT, prefix: str | None = DEFAULT_PREFIX, *,
                 retry_interval: float = RETRY_INTERVAL, max_queued: int = MAX_QUEUED,
                 clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.port = int(port) if port else DEFAULT_PORT
        self.prefix = DEFAULT_PREFIX if prefix is None else prefix
        self.retry_interval = retry_interval
        self.clock = clock
        self.sent = 0  # points handed to the server
        self.dropped = 0  # points that made way for newer ones
        self._queue: collections.deque[Point] = collections.deque(maxlen=max_queued)
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._down = False  # an outage has been logged and not yet ended
        self._stopping = False
        self._deadline = float("inf")  # monotonic time after which close() stops waiting
        self._thread = threading.Thread(target=self._run, name="paramsurvey-carbon", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"CarbonSender({self.server!r}, {self.port}, prefix={self.prefix!r})"

    # -- the caller's side: never blocks ---------------------------------------------------------
    def send(self, name: str, progress: Any, timestamp: float | None = None) -> None:
        """Queue one point per counter of ``progress`` (a MapProgress or a dict of numbers)."""
        counters: Mapping[str, Any] = progress.asdict() if hasattr(progress, "asdict") else progress
        # whole seconds, as graphite's own clients send: a later report in the same second then
        # replaces the earlier one (a float stamp made carbon keep the first of the two)
        stamp = int(self.clock() if timestamp is None else timestamp)
        points: list[Point] = [(metric_path(self.prefix, name, k), (stamp, float(v)))
                               for k, v in counters.items()]
        with self._cond:
            if self._stopping:
                return
            self._enqueue(points)
            self._cond.notify()

    def _enqueue(self, points: list[Point]) -> None:
        assert self._queue.maxlen is not None
        self.dropped += max(0, len(self._queue) + len(points) - self._queue.maxlen)
        self._queue.extend(points)

    def close(self, timeout: float = CLOSE_FLUSH) -> None:
        """Give the queued points up to ``timeout`` seconds to leave, then stop the thread."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck sending to a server that stopped reading: cut it off
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(0.2)
        with self._cond:
            left = len(self._queue)
        if left:
            log.debug("carbon: %d points not sent to %s:%d at the end of the map", left, self.server,
                      self.port, extra={"ps_verbose": 99})

    # -- the sender thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._next_batch():
                pass
        finally:
            self._disconnect()

    def _next_batch(self) -> bool:
        """Send what is queued (or wait for it); False when the thread should end."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue or time.monotonic() >= self._deadline:
                return False
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
        if self._sock is None or self._peer_closed():
            self._disconnect()
            if not self._connect():
                self._put_back(batch)
                self._wait_retry()
                return not self._stopping
        assert self._sock is not None
        try:
            self._sock.sendall(encode(batch))
        except OSError as exc:
            self._outage(f"sending failed: {exc}")
            self._disconnect()
            self._put_back(batch)
            self._wait_retry()
            return not self._stopping
        self.sent += len(batch)
        return True

    def _put_back(self, batch: list[Point]) -> None:
        """Unsent points go back in front of newer ones, as far as the queue's bound allows."""
        with self._cond:
            newer = list(self._queue)
            self._queue.clear()
            self._enqueue(batch)
            self._enqueue(newer)

    def _wait_retry(self) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait_for(lambda: self._stopping, self.retry_interval)

    def _connect(self) -> bool:
        timeout = CONNECT_TIMEOUT
        if self._stopping:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        try:
            sock = socket.create_connection((self.server, self.port), timeout=timeout or 0.001)
        except OSError as exc:
            self._outage(f"cannot connect: {exc}")
            return False
        sock.settimeout(SEND_TIMEOUT)
        self._sock = sock
        if self._down:
            log.info("carbon: connected to %s:%d again", self.server, self.port)
            self._down = False
        else:
            log.debug("carbon: connected to %s:%d", self.server, self.port, extra={"ps_verbose": 3})
        return True

    def _peer_closed(self) -> bool:
        """Carbon never writes to its clients: a readable socket means the server went away,
        and knowing it before sending keeps the batch from vanishing into a dead connection."""
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return False
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _outage(self, why: str) -> None:
        if self._down:
            return
        self._down = True
        log.warning("carbon: %s:%d unreachable (%s); progress metrics are kept for it and sent when it "
                    "answers again (retrying every %g s)", self.server, self.port, why, self.retry_interval)

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
