"""The fork server of the multiprocessing backend: a clean Python that forks workers on request.

Why not ``multiprocessing``: with ``spawn`` and ``forkserver`` every child re-runs the user's
``__main__`` (an unguarded script respawns forever; a worker typed into stdin or a notebook cannot be
found), and ``fork`` of the driver is unsafe once it has threads. This process is started as its own
program (``python -S -c ...``), never imports the user's ``__main__``, has no threads, and so can
``fork()`` a fresh worker in about a millisecond — which is what makes crash recovery and
``max_tasks_per_child=1`` cheap.

Protocol, over one SOCK_SEQPACKET socket to the driver (one pickled tuple per packet):

    driver -> zygote   ('spawn',) with three fds attached: the worker's inbox (read end of a pipe),
                       its outbox (write end of another) and its slot memfd
                       ('killall',)  every worker, now (Ctrl-C)
                       ('exit',)
    zygote -> driver   ('exit', pid, wait_status) for every worker that ends

When the driver goes away (exit, crash, SIGKILL) the socket reads EOF: the zygote kills every worker
and exits, so no process is ever left behind. Workers die with the zygote (PR_SET_PDEATHSIG).
Standard library only.
"""

from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import socket
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

from . import _worker

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:  # pragma: no cover - best effort; the EOF path still cleans up
        return None


# Loaded once here, before any fork: every import a worker does after fork() is paid per worker.
_PRCTL = _load_prctl()


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to kill this process when its parent dies (a no-op where unsupported)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _run_worker(in_fd: int, out_fd: int, slot_fd: int, home: str) -> None:
    set_parent_death_signal()
    view = memoryview(mmap.mmap(slot_fd, 16)).cast("d")
    os.close(slot_fd)
    inbox = Connection(in_fd, writable=False)
    outbox = Connection(out_fd, readable=False)
    _worker.serve(inbox, outbox, _worker.Slot(view, timed=False), home)


def _kill_all(children: set[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def serve(ctrl_fd: int) -> None:
    ctrl = socket.socket(fileno=ctrl_fd)
    home = os.getcwd()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd
    children: set[int] = set()

    def send(msg: Any) -> None:
        try:
            ctrl.send(pickle.dumps(msg))
        except OSError:
            pass

    while True:
        watched: list[Any] = [ctrl, wake_r]
        ready, _, _ = select.select(watched, [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            send(("exit", pid, status))
        if ctrl not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(ctrl, 4096, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            _kill_all(children)
            return
        msg = pickle.loads(data)
        if msg[0] == "spawn":
            pid = os.fork()
            if pid == 0:  # the new worker
                code = 0
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    os.close(wake_r)
                    os.close(wake_w)
                    ctrl.close()
                    _run_worker(fds[0], fds[1], fds[2], home)
                except BaseException:
                    traceback.print_exc()
                    code = 70
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children.add(pid)
            for fd in fds:
                os.close(fd)
        elif msg[0] == "killall":  # Ctrl-C: every worker goes now
            _kill_all(children)
            for pid in children:
                send(("exit", pid, 9))
            children.clear()
        elif msg[0] == "exit":
            _kill_all(children)
            return


# Run as `python -S -c BOOTSTRAP <fd> <each entry of the driver's sys.path>`: -S skips site (~70 ms
# here); the driver's own sys.path stands in for it.
BOOTSTRAP = (
    "import sys; sys.path[:0] = sys.argv[2:]; "
    "import cloudpickle, paramsurvey._worker, paramsurvey._zygote as z; z.serve(int(sys.argv[1]))"
)
