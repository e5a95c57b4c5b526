"""The watchdog of one Ray worker process: stops a pset that runs past its timeout where no signal
handler or thread of the worker can act (C code that holds the GIL, e.g. ``sum(range(10**11))``).

It is a separate, tiny process (``python -I -S _watchdog.py <worker pid>``, standard library only),
so the worker's interpreter being stuck does not stop it. The worker writes it one line per event
on its stdin::

    map <token> <driver host> <driver port> <limit seconds>    a group of a map begins
    run <position> <attempt>                                   a pset starts (its clock starts now)
    idle                                                       the group is done

When a pset has run ``limit`` seconds (its timeout plus a grace: the worker's own SIGALRM gets the
first chance), the watchdog tells the driver (``timeout <token> <position> <attempt>`` over TCP;
the driver answers ``ok``, records the pset as timed out and cancels its task, which ends the
worker), and, should the worker still run that pset ``STOP_WAIT`` seconds later (no driver, or it
did not act), SIGKILLs the worker itself: the pset is then recorded as crashed. It exits when the
worker does (end of file on stdin). ``StuckReports`` is the driver's end of that conversation.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

# Connecting to the driver and hearing its answer: a driver busy assembling results answers late.
REPORT_TIMEOUT = 5.0
# After telling the driver, the time it has to stop the worker before the watchdog does.
STOP_WAIT = 5.0
# A report is one short line, sent as the watchdog connects: a connection silent this long is not one.
REPORT_READ_TIMEOUT = 1.0
# While nothing is due, how often to check that the worker still exists: a process the worker
# forked (without exec) may hold the pipe open after the worker died.
ALIVE_CHECK = 5.0


class Watch:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.token = ""
        self.driver: tuple[str, int] | None = None
        self.limit = 0.0
        self.running: tuple[int, int] | None = None  # (position, attempt) of the pset that runs
        self.started = 0.0

    def hear(self, words: list[str]) -> None:
        if not words:
            return
        if words[0] == "map" and len(words) == 5:
            self.token, self.driver, self.limit = words[1], (words[2], int(words[3])), float(words[4])
        elif words[0] == "run" and len(words) == 3:
            self.running, self.started = (int(words[1]), int(words[2])), time.monotonic()
        elif words[0] == "idle":
            self.running = None

    def seconds_left(self) -> float | None:
        if self.running is None:
            return None
        return self.started + self.limit - time.monotonic()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the driver's to handle
    watch = Watch(int(argv[1]))
    pending = b""
    while True:
        left = watch.seconds_left()
        if left is not None and left <= 0:
            pending = stop(watch, pending)
            continue
        wait = ALIVE_CHECK if left is None else min(left, ALIVE_CHECK)
        if select.select([0], [], [], wait)[0]:
            rest = read(watch, pending)
            if rest is None:
                return  # end of file: the worker is gone
            pending = rest
        elif not alive(watch.worker):
            return


def read(watch: Watch, pending: bytes) -> bytes | None:
    data = os.read(0, 65536)
    if not data:
        return None
    *lines, rest = (pending + data).split(b"\n")
    for line in lines:
        watch.hear(line.decode("ascii", "replace").split())
    return rest


def stop(watch: Watch, pending: bytes) -> bytes:
    """The running pset is past its limit: have the driver stop it, else stop the worker here."""
    overdue = watch.running
    assert overdue is not None
    told = watch.driver is not None and report(watch.driver, watch.token, *overdue)
    deadline = time.monotonic() + (STOP_WAIT if told else 0.0)
    while watch.running == overdue and time.monotonic() < deadline:
        if select.select([0], [], [], max(0.0, deadline - time.monotonic()))[0]:
            rest = read(watch, pending)
            if rest is None:
                sys.exit(0)  # the driver stopped the worker
            pending = rest
    if watch.running == overdue:
        try:
            os.kill(watch.worker, signal.SIGKILL)
        except ProcessLookupError:
            pass
        watch.running = None  # what remains is the end of file
    return pending


def report(driver: tuple[str, int], token: str, position: int, attempt: int) -> bool:
    """Tell the driver; True once it answered."""
    try:
        with socket.create_connection(driver, timeout=REPORT_TIMEOUT) as conn:
            conn.sendall(f"timeout {token} {position} {attempt}\n".encode("ascii"))
            return conn.recv(16).startswith(b"ok")
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process now has that pid
        return False
    return True


class StuckReports:
    """The driver's side: a TCP listener where the watchdogs report psets stuck past their
    timeout (``timeout <token> <position> <attempt>``, answered ``ok``)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = (host, self.sock.getsockname()[1])

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[str, int, int]]:
        reports: list[tuple[str, int, int]] = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return reports
            with conn:
                report = self._one(conn)
            if report is not None:
                reports.append(report)

    @staticmethod
    def _one(conn: socket.socket) -> tuple[str, int, int] | None:
        conn.settimeout(REPORT_READ_TIMEOUT)  # the watchdog writes its line as it connects
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 256:
                chunk = conn.recv(256)
                if not chunk:
                    break
                data += chunk
            words = data.decode("ascii", "replace").split()
            if len(words) != 4 or words[0] != "timeout":
                return None
            conn.sendall(b"ok\n")
            return words[1], int(words[2]), int(words[3])
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.sock.close()


if __name__ == "__main__":
    main(sys.argv)
