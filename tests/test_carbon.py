"""Graphite monitoring against a real carbon-cache daemon (read back from its whisper files), an
unreachable server, and a server that goes away and comes back (a real loopback receiver)."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import whisper

import paramsurvey
from paramsurvey._carbon import CarbonSender, encode, metric_path

WAIT = 30.0  # deadlock guard only: carbon starts in ~1 s and writes its files within ~2 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def carbon_cache_script() -> str:
    for candidate in (os.path.join(os.path.dirname(sys.executable), "carbon-cache.py"),
                      shutil.which("carbon-cache.py")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.fail("carbon-cache.py not found: install the test extra (make test installs it)")


CARBON_CONF = """\
[cache]
LOCAL_DATA_DIR = {root}/whisper
STORAGE_DIR = {root}/storage
LOG_DIR = {root}/log
PID_DIR = {root}/run
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 1000
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
ENABLE_UDP_LISTENER = False
UDP_RECEIVER_INTERFACE = 127.0.0.1
UDP_RECEIVER_PORT = {udp}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query}
"""


@pytest.fixture(scope="module")
def carbon_cache(tmp_path_factory):
    """A carbon-cache daemon on loopback, on free ports, storing 1 s points in a temp dir."""
    root = tmp_path_factory.mktemp("graphite")
    ports = {name: free_port() for name in ("line", "udp", "pickle", "query")}
    (root / "carbon.conf").write_text(CARBON_CONF.format(root=root, **ports))
    (root / "storage-schemas.conf").write_text("[default]\npattern = .*\nretentions = 1s:1d\n")
    env = {**os.environ, "GRAPHITE_ROOT": str(root), "GRAPHITE_CONF_DIR": str(root),
           # carbon's generated protobuf module predates protobuf 4 (which Ray brings in)
           "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    log = open(root / "carbon.out", "w")
    command = [sys.executable, carbon_cache_script(), f"--config={root}/carbon.conf", "--debug", "start"]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            if proc.poll() is not None:
                output = (root / "carbon.out").read_text()
                pytest.fail(f"carbon-cache exited with {proc.returncode}:\n{output}")
            try:
                socket.create_connection(("127.0.0.1", ports["pickle"]), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"carbon-cache never listened:\n{(root / 'carbon.out').read_text()}")
                time.sleep(0.05)
        yield ports["pickle"], root / "whisper"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def last_value(path: Path) -> float | None:
    if not path.exists():
        return None
    try:
        _, values = whisper.fetch(str(path), time.time() - 600)
    except (whisper.WhisperException, OSError, struct.error):  # being created right now
        return None
    known = [v for v in values if v is not None]
    return known[-1] if known else None


def wait_for_values(directory: Path, expected: dict[str, float]) -> dict[str, float | None]:
    deadline = time.monotonic() + WAIT
    while True:
        got = {name: last_value(directory / f"{name}.wsp") for name in expected}
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_survey_counters_reach_graphite(carbon_cache):
    port, data = carbon_cache
    paramsurvey.init(ncores=2, verbose=0)
    # no carbon_prefix: the default prefix (the original crashed without one)
    results = paramsurvey.map(lambda p, s, u: {"y": 1 / (p["x"] % 3)}, [{"x": i} for i in range(30)],
                              name="test", carbon_server="127.0.0.1", carbon_port=port)
    assert len(results) == 20
    ended = time.monotonic()
    got = wait_for_values(data / "paramsurvey" / "test", {
        "total": 30.0, "finished": 20.0, "failures": 10.0, "exceptions": 10.0, "active": 0.0, "crashed": 0.0})
    assert got == {"total": 30.0, "finished": 20.0, "failures": 10.0, "exceptions": 10.0, "active": 0.0,
                   "crashed": 0.0}
    print(f"metrics read back from whisper {time.monotonic() - ended:.2f} s after the map returned")

    # a prefix of its own, and a name that is not a graphite node
    paramsurvey.map(lambda p, s, u: None, [{"x": i} for i in range(5)], name="sweep a",
                    carbon_server="127.0.0.1", carbon_port=port, carbon_prefix="lab.run1")
    got = wait_for_values(data / "lab" / "run1" / "sweep_a", {"total": 5.0, "finished": 5.0})
    assert got == {"total": 5.0, "finished": 5.0}


def test_unreachable_server_is_one_line_and_no_delay(capsys):
    closed = free_port()  # nothing listens there any more
    paramsurvey.init(backend="serial")
    start = time.monotonic()
    results = paramsurvey.map(lambda p, s, u: {"y": p["x"]}, [{"x": i} for i in range(50)],
                              carbon_server="127.0.0.1", carbon_port=closed)
    elapsed = time.monotonic() - start
    assert len(results) == 50 and results.progress.finished == 50
    err = capsys.readouterr().err
    carbon_lines = [line for line in err.splitlines() if "carbon" in line]
    assert len(carbon_lines) == 1, err
    assert f"127.0.0.1:{closed} unreachable" in carbon_lines[0]
    assert elapsed < 10  # deadlock guard: the sender never holds up the survey (~0.1 s here)


class Receiver:
    """A real carbon pickle receiver on loopback, in a thread: decodes every message."""

    def __init__(self, port: int = 0, rcvbuf: int | None = None, read: bool = True) -> None:
        self.points: list[tuple[str, tuple[float, float]]] = []
        self.read = read
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.read:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!L", buf[:4])[0]:
                size = struct.unpack("!L", buf[:4])[0]
                with self.lock:
                    self.points.extend(pickle.loads(buf[4:4 + size]))
                buf = buf[4 + size:]

    def values(self, path: str) -> list[float]:
        with self.lock:
            return [v for p, (_, v) in self.points if p == path]

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); a bare close() would not
        except OSError:
            pass
        self.listener.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self.thread.join(5)


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def carbon_log():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("paramsurvey.carbon")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_dying_server_logged_once_and_caught_up(carbon_log):
    receiver = Receiver()
    sender = CarbonSender("127.0.0.1", receiver.port, "pfx", retry_interval=0.2)
    try:
        sender.send("m", {"finished": 1})
        assert wait_until(lambda: receiver.values("pfx.m.finished") == [1.0])
        receiver.stop()  # the server dies
        for n in (2, 3, 4):
            sender.send("m", {"finished": n})
            time.sleep(0.3)  # a few retries while it is away
        warnings = [r for r in carbon_log if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        receiver = Receiver(receiver.port)  # and comes back on the same port
        assert wait_until(lambda: receiver.values("pfx.m.finished") == [2.0, 3.0, 4.0])
        assert any("connected to" in r.getMessage() and "again" in r.getMessage() for r in carbon_log)
        assert len([r for r in carbon_log if r.levelno >= logging.WARNING]) == 1
    finally:
        sender.close()
        receiver.stop()
    assert not sender._thread.is_alive()


def test_send_never_blocks_and_close_is_brief():
    # a server that accepts and never reads: once the socket buffers are full (the sender's grows
    # to 4 MB), the sender thread is blocked in sendall
    receiver = Receiver(rcvbuf=4096, read=False)
    sender = CarbonSender("127.0.0.1", receiver.port, retry_interval=0.2, max_queued=300_000)
    try:
        for n in range(100_000):  # 200,000 points, ~9 MB pickled
            sender.send("m", {"finished": n, "total": 100_000})

        def stuck() -> bool:
            before = sender.sent
            time.sleep(0.2)
            return sender.sent == before and len(sender._queue) > 0

        assert wait_until(stuck), (sender.sent, len(sender._queue))  # the caller never was
        start = time.monotonic()
        sender.close()
        closing = time.monotonic() - start
        assert not sender._thread.is_alive()
        # CLOSE_FLUSH (1 s) and the cut-off (0.2 s); a loaded machine may add seconds, but a close
        # that waited for the stuck send's own timeout would take SEND_TIMEOUT (5 s) or more
        from paramsurvey._carbon import SEND_TIMEOUT

        assert closing < SEND_TIMEOUT - 0.5
    finally:
        sender.close()
        receiver.stop()


def test_queue_is_bounded_and_keeps_the_newest():
    sender = CarbonSender("127.0.0.1", free_port(), retry_interval=60, max_queued=100)
    try:
        for n in range(1000):
            sender.send("m", {"finished": n, "total": 1000})
        with sender._cond:
            queued = list(sender._queue)
        assert len(queued) <= 100 and sender.dropped >= 2000 - 100 - 500  # (a batch may be in flight)
        assert [p for p, (_, v) in queued[-2:]] == ["paramsurvey.m.finished", "paramsurvey.m.total"]
        assert [v for _, (_, v) in queued[-2:]] == [999.0, 1000.0]
    finally:
        sender.close()


def test_paths_and_wire_format():
    assert metric_path("paramsurvey", "default", "finished") == "paramsurvey.default.finished"
    assert metric_path("a.b", "x.y z", "total") == "a.b.x_y_z.total"
    assert metric_path("", "n", "total") == "n.total"
    assert metric_path(None, "n", "total") == "n.total"
    msg = encode([("a.b", (1.0, 2.0))])
    assert struct.unpack("!L", msg[:4])[0] == len(msg) - 4
    assert pickle.loads(msg[4:]) == [("a.b", (1.0, 2.0))]
    sender = CarbonSender("127.0.0.1", free_port(), prefix=None, retry_interval=60)
    try:
        assert sender.prefix == "paramsurvey"
    finally:
        sender.close()
