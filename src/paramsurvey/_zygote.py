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

A worker's own messages go to the driver over its pipes (see _worker.serve), plus one of the zygote's
making: ('load_error', description, traceback) for a group it could not load (see Inbox).

Processes started by psets end with their worker. Each worker leads a process group of its own, and
the zygote is a child subreaper (Linux): a process whose parent dies is handed to the zygote rather
than to init. When a worker ends, the zygote kills its process group (what its psets started, unless
it left the group) and every orphan that is not in a live worker's group (what a dead worker left, and
daemons that left their worker's group: they cannot be told apart, so neither may live on). When the
driver goes away (exit, crash, SIGKILL) the socket reads EOF: the zygote kills every worker, their
groups and the orphans, and exits, so no process is left behind. Workers die with the zygote
(PR_SET_PDEATHSIG). Standard library only.
"""

from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from . import _worker

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# At exit, how long the zygote waits for the processes it killed to be reaped: SIGKILL is immediate
# but for a process in uninterruptible sleep (I/O on a dead NFS server), which must not hold the
# driver's shutdown (it waits 5 s for the zygote) forever.
REAP_GRACE = 3.0
# Exit code of a worker that failed outside any pset (EX_SOFTWARE): the driver reports it as the cause.
WORKER_FAILED = 70
# Errors meaning the driver closed this worker's pipes: it is gone or no longer wants this worker.
# The worker then ends quietly: a traceback on stderr would break verbose=0's silence.
DRIVER_GONE = (BrokenPipeError, ConnectionResetError, EOFError)


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


def become_subreaper() -> None:
    """Orphaned descendants come to this process instead of init (a no-op where unsupported)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Inbox(Connection):
    """A worker's inbox that reports a message it cannot load, rather than dying of it: a group
    whose psets hold something this process cannot import fails, and the worker serves on.

    Messages out: ('load_error', description, traceback)."""

    def __init__(self, fd: int, outbox: Connection) -> None:
        super().__init__(fd, writable=False)
        self.outbox = outbox

    def recv(self) -> Any:
        while True:
            data = self.recv_bytes()
            try:
                return pickle.loads(data)
            except Exception as exc:
                self.outbox.send(("load_error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _run_worker(in_fd: int, out_fd: int, slot_fd: int, home: str) -> None:
    set_parent_death_signal()
    view = memoryview(mmap.mmap(slot_fd, 16)).cast("d")
    os.close(slot_fd)
    outbox = Connection(out_fd, readable=False)
    inbox = Inbox(in_fd, outbox)
    _worker.serve(inbox, outbox, _worker.Slot(view, timed=False), home)


def _child_pids() -> list[int]:
    """This process's children (the zygote has one thread, so its task's list is complete)."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:  # pragma: no cover - a kernel without CONFIG_PROC_CHILDREN: read every ppid
        return _child_pids_by_scan(pid)


def _child_pids_by_scan(parent: int) -> list[int]:  # pragma: no cover - see _child_pids
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (macOS): no subreaper there either, so no orphan comes to us
        return found
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # the command name, in parentheses, may hold spaces: the fields follow the last ')'
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                found.append(int(entry))
    return found


# waitid(WNOWAIT) finds an ended child without reaping it (CPython offers no os.waitid on macOS).
CAN_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


def _collect_ended(workers: set[int]) -> list[tuple[int, int]]:
    """(pid, wait status) of every child that ended, reaped. A worker's process group is killed
    first, where the system allows while its zombie still holds the group's id (which then cannot be
    reused meanwhile); elsewhere just after (the id lives on while any member of the group does)."""
    ended = []
    while True:
        try:
            if CAN_PEEK:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is None:
                    break
                pid = info.si_pid
                if pid in workers:
                    _kill_group(pid)
                _, status = os.waitpid(pid, 0)  # a zombie: this does not block
            else:  # pragma: no cover - macOS
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid in workers:
                    _kill_group(pid)
        except ChildProcessError:
            break
        ended.append((pid, status))
    return ended


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Zygote:
    """The fork server's state: its live workers (each leads its own process group)."""

    def __init__(self, ctrl: socket.socket, home: str, wake_fds: tuple[int, int]) -> None:
        self.ctrl = ctrl
        self.home = home
        self.wake_fds = wake_fds
        self.workers: set[int] = set()
        self.killed: set[int] = set()  # orphans killed and not yet reaped

    def report(self, msg: Any) -> None:
        try:
            self.ctrl.send(pickle.dumps(msg))
        except OSError:  # the driver is gone: its EOF ends this process soon
            pass

    # -- workers ----------------------------------------------------------------------------------
    def spawn(self, fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:
            self._become_worker(fds)
        try:  # also here, so the group exists before anything may signal it
            os.setpgid(pid, pid)
        except OSError:  # the worker did it first, or is already gone
            pass
        self.workers.add(pid)
        for fd in fds:
            os.close(fd)

    def _become_worker(self, fds: list[int]) -> None:
        code = 0
        try:
            os.setpgid(0, 0)  # its own process group: killpg ends what its psets start
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a pset, and what it starts, keep the default
            for fd in self.wake_fds:
                os.close(fd)
            self.ctrl.close()
            _run_worker(fds[0], fds[1], fds[2], self.home)
        except DRIVER_GONE:
            pass
        except BaseException:
            traceback.print_exc()
            code = WORKER_FAILED
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def reap(self) -> None:
        """Collect every child that ended and report the workers; then, once a worker has ended or
        an orphan killed here (whose children then come to the zygote), kill the orphans no live
        worker owns."""
        sweep = False
        for pid, status in _collect_ended(self.workers):
            if pid in self.workers:
                self.workers.discard(pid)
                self.report(("exit", pid, status))
                sweep = True
            elif pid in self.killed:
                self.killed.discard(pid)
                sweep = True
        if sweep:
            self.kill_orphans()

    def kill_orphans(self) -> list[int]:
        """Kill every child that is neither a worker nor in a live worker's process group: what dead
        workers left, and daemons that left their worker's group (whose worker cannot be known)."""
        killed = []
        for pid in _child_pids():
            if pid in self.workers:
                continue
            try:
                group = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if group not in self.workers:
                _kill(pid)
                killed.append(pid)
        self.killed.update(killed)
        return killed

    def end_workers(self, report: bool) -> None:
        """Kill every worker with its group (Ctrl-C, exit), report them, then every orphan."""
        for pid in self.workers:
            _kill_group(pid)
            _kill(pid)
        ended = dict.fromkeys(self.workers, int(signal.SIGKILL))  # the wait status of a SIGKILL
        self.workers = set()
        for pid, status in _reap_all(ended, time.monotonic() + REAP_GRACE).items():
            if report:
                self.report(("exit", pid, status))
        self.kill_orphans()

    def end_everything(self) -> None:
        """The survey is over: no worker, and nothing any pset started, may outlive it."""
        self.end_workers(report=False)
        deadline = time.monotonic() + REAP_GRACE
        while time.monotonic() < deadline:
            left = self.kill_orphans()
            if not left:
                return
            _reap_all(dict.fromkeys(left, 0), deadline)  # their children come to us as they die

    # -- the loop ---------------------------------------------------------------------------------
    def serve(self) -> None:
        wake_r = self.wake_fds[0]
        watched: list[Any] = [self.ctrl, wake_r]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
                self.reap()
            if self.ctrl not in ready:
                continue
            try:
                data, fds, _, _ = socket.recv_fds(self.ctrl, 4096, 4)
            except OSError:
                data, fds = b"", []
            if not data:  # the driver is gone
                self.end_everything()
                return
            msg = pickle.loads(data)
            if msg[0] == "spawn":
                self.spawn(fds)
            elif msg[0] == "killall":  # Ctrl-C: every worker goes now
                self.end_workers(report=True)
            elif msg[0] == "exit":
                self.end_everything()
                return


def _reap_all(pids: dict[int, int], deadline: float) -> dict[int, int]:
    """Reap the given children (pid -> wait status to assume for one not reaped by the deadline)."""
    statuses = dict(pids)
    waiting = set(pids)
    while waiting:
        for pid in list(waiting):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waiting.discard(pid)
                continue
            if done:
                statuses[pid] = status
                waiting.discard(pid)
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    return statuses


def serve(ctrl_fd: int) -> None:
    ctrl = socket.socket(fileno=ctrl_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    # so is SIGTERM: a batch system (Slurm's time limit, scancel) sends it to every process of the
    # job at once, and the driver needs its fork server to stop the workers in order
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    become_subreaper()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd
    Zygote(ctrl, os.getcwd(), (wake_r, wake_w)).serve()


# Run as `python -S -c BOOTSTRAP <fd> <each entry of the driver's sys.path>`: -S skips site (~70 ms
# here); the driver's own sys.path stands in for it.
BOOTSTRAP = (
    "import sys; sys.path[:0] = sys.argv[2:]; "
    "import cloudpickle, paramsurvey._worker, paramsurvey._zygote as z; z.serve(int(sys.argv[1]))"
)
