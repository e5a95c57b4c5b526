"""The embedded local backend: worker processes forked by paramsurvey's own fork server.

    driver (this module)                      zygote (_zygote.py)           workers (_worker.py)
    --------------------                      -------------------           --------------------
    spawn ------- ('spawn', fds) ----------->  fork() ----------------------> serve(conn, slot)
    submit ------ ('setup'|'run') over each worker's own socket -----------> run_group()
    poll:  wait(worker sockets + zygote socket + wake fd)
           <----- ('done', task, GroupResult) ------------------------------
           <----- EOF on a worker socket: it died
           <----- ('exit', pid, status) --------  waitpid(): how it died

A dead worker is noticed at once (its socket reads EOF inside the same wait() that gathers results,
as concurrent.futures watches process sentinels). Each worker keeps a two-double shared slot: the
position of the pset it runs and when it started. So a death blames exactly that pset; the rest of
its group goes back to the queue; a fresh worker takes its place. A pset past its timeout gets its
worker SIGKILLed and is recorded as 'timeout' the same way.
"""

from __future__ import annotations

import collections
import fcntl
import math
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from .. import _pickling, _zygote
from .._config import Settings
from .._worker import MapContext, Slot
from ..exceptions import BackendError
from ..utils import resolve_ncores
from .base import CRASH_ISOLATION, MAX_TASKS_PER_CHILD, TIMEOUT, Backend, GroupDone, Outcome, PsetLost, Task

# Groups queued on a worker beyond the one it runs: 1 hides the round trip between groups.
PREFETCH = 2
# How long to wait for the zygote's word on how a worker died before saying "unknown".
DEATH_REPORT_WAIT = 1.0
# Consecutive deaths of workers that never started: the environment is broken, stop trying.
MAX_STILLBORN = 3
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Pipe buffer asked of the kernel (Linux caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default).
PIPE_SIZE = 1 << 20


def describe_wait_status(status: int | None) -> str:
    if status is None:
        return "worker process died (exit status unknown)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown signal"
        return f"worker process killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"worker process exited with code {os.WEXITSTATUS(status)}"
    return f"worker process ended with wait status {status}"


class _Worker:
    __slots__ = ("conn", "out_fd", "outbox", "mm", "view", "pid", "tasks", "assigned", "retiring", "standby",
                 "timed_out", "died_at", "blame")

    def __init__(self, conn: Connection, out_fd: int, mm: mmap.mmap) -> None:
        self.conn = conn  # results come in here (blocking reads, only when readable)
        self.out_fd = out_fd  # groups go out here, non-blocking: the driver never waits on a busy worker
        self.outbox = bytearray()
        self.mm = mm
        self.view = memoryview(mm).cast("d")
        self.view[0] = Slot.IDLE
        self.pid: int | None = None
        self.tasks: collections.deque[Task] = collections.deque()
        self.assigned = 0  # psets sent to this worker over its life (max_tasks_per_child)
        self.retiring = False
        self.standby = False  # a spare, forked early to take over from a retiring worker
        self.timed_out: int | None = None  # position it was killed for
        self.died_at = 0.0
        self.blame = Slot.IDLE

    def queue_message(self, msg: Any) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        n = len(data)
        # the framing multiprocessing.connection.Connection reads on the other side
        self.outbox += struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
        self.outbox += data
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; the rest waits for the next poll()."""
        while self.outbox:
            try:
                written = os.write(self.out_fd, self.outbox[:PIPE_SIZE])
            except BlockingIOError:
                return
            except OSError:  # the worker is gone; its EOF tells the rest
                self.outbox.clear()
                return
            del self.outbox[:written]

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.out_fd >= 0:
            os.close(self.out_fd)
            self.out_fd = -1
        try:
            self.view.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        try:  # fewer wake-ups for big groups; the kernel may refuse beyond its pipe-max-size
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    return read_fd, write_fd


def _slot_fd() -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("paramsurvey-slot", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS
        f = tempfile.TemporaryFile()
        fd = os.dup(f.fileno())
        f.close()
    os.ftruncate(fd, 16)
    return fd


class MultiprocessingBackend(Backend):
    name = "multiprocessing"
    capabilities = frozenset({TIMEOUT, CRASH_ISOLATION, MAX_TASKS_PER_CHILD})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.nworkers = resolve_ncores(settings.ncores)
        self.max_tasks = settings.max_tasks_per_child
        self.zygote: subprocess.Popen[bytes] | None = None
        self.ctrl: socket.socket | None = None
        self.workers: list[_Worker] = []
        self.dying: dict[int, _Worker] = {}  # pid -> dead worker waiting for its exit status
        self.statuses: dict[int, int] = {}  # pid -> wait status reported by the zygote
        self.unknown_dead: list[_Worker] = []  # died before saying hello: no pid
        self.queue: collections.deque[Task] = collections.deque()
        self.map_id = 0
        self.setup: tuple[str, int, bytes] | None = None
        self.timeout: float | None = None
        self.wake_fd: int | None = None
        self.stillborn = 0

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        for var in THREAD_VARS:  # numeric libraries must not oversubscribe the cores
            env.setdefault(var, "1")
        try:
            self.zygote = subprocess.Popen(
                [sys.executable, "-S", "-c", _zygote.BOOTSTRAP, str(child.fileno()), *sys.path],
                pass_fds=[child.fileno()], env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.ctrl = parent
        for _ in range(self.nworkers):
            self._spawn()

    def _spawn(self) -> _Worker:
        assert self.ctrl is not None
        to_worker_r, to_worker_w = _pipe()
        from_worker_r, from_worker_w = _pipe()
        fd = _slot_fd()
        try:
            socket.send_fds(self.ctrl, [pickle.dumps(("spawn",))], [to_worker_r, from_worker_w, fd])
            mm = mmap.mmap(fd, 16)
        except OSError as exc:
            for end in (to_worker_w, from_worker_r):
                os.close(end)
            raise BackendError("the multiprocessing backend's fork server is gone; "
                               "call paramsurvey.finalize() and init() again") from exc
        finally:
            for end in (fd, to_worker_r, from_worker_w):  # the worker's ends now live in the worker only
                os.close(end)
        os.set_blocking(to_worker_w, False)
        worker = _Worker(Connection(from_worker_r, writable=False), to_worker_w, mm)
        if self.setup is not None:
            worker.queue_message(self.setup)
        self.workers.append(worker)
        return worker

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers.clear()
        if self.ctrl is not None:
            try:
                self.ctrl.send(pickle.dumps(("exit",)))
            except OSError:
                pass
            self.ctrl.close()
            self.ctrl = None
        if self.zygote is not None:
            try:
                self.zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - the zygote never blocks
                self.zygote.kill()
                self.zygote.wait()
            self.zygote = None

    def core_count(self) -> int:
        return self.nworkers

    def resources(self) -> list[dict[str, Any]]:
        import psutil

        return [{"num_cores": self.nworkers, "num_gpus": 0, "memory": psutil.virtual_memory().total}]

    # -- one map ----------------------------------------------------------------------------
    def begin_map(self, ctx: MapContext, settings: Settings, wake_fd: int | None) -> None:
        ctx.sys_path = list(sys.path)
        ctx.timed = settings.timeout is not None
        try:
            blob = _pickling.dumps_by_value(ctx)
        except Exception as exc:
            raise TypeError(f"the worker function, user_kwargs or out_subdirs could not be pickled "
                            f"to send to worker processes: {exc!r}") from exc
        if self.zygote is None:
            self.start()
        self.map_id += 1
        self.setup = ("setup", self.map_id, blob)
        self.timeout = settings.timeout
        self.wake_fd = wake_fd
        for worker in list(self.workers):
            self._send(worker, self.setup)

    def end_map(self) -> None:
        self.setup = None
        self.wake_fd = None

    def _send(self, worker: _Worker, msg: Any) -> None:
        worker.queue_message(msg)

    def free_slots(self) -> int:
        running = sum(len(w.tasks) for w in self.workers)
        return max(0, PREFETCH * self.nworkers - running - len(self.queue))

    def worker_count(self) -> int:
        return self.nworkers

    def busy(self) -> bool:
        return bool(self.queue or self.dying or self.unknown_dead or any(w.tasks for w in self.workers))

    def submit(self, task: Task) -> None:
        self.queue.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue:
            live = [w for w in self.workers if not w.retiring and not w.standby and len(w.tasks) < PREFETCH]
            if not live:
                return
            worker = min(live, key=lambda w: len(w.tasks))
            task = self.queue.popleft()
            if self.max_tasks is not None:
                room = self.max_tasks - worker.assigned
                if len(task.positions) > room:  # the rest waits for the next worker
                    rest = Task(task.task_id, task.positions[room:], task.psets[room:], task.attempt)
                    self.queue.appendleft(rest)
                    task = Task(task.task_id, task.positions[:room], task.psets[:room], task.attempt)
                worker.assigned += len(task.positions)
                if worker.assigned >= self.max_tasks:
                    worker.retiring = True
                    # its successor starts now, loading the map while the last psets run, so
                    # max_tasks_per_child=1 costs a fork, not a fork plus a start-up in series
                    self._spawn().standby = True
            worker.tasks.append(task)
            self._send(worker, ("run", task.task_id, self.map_id, task.positions, task.psets, task.attempt))

    # -- outcomes ---------------------------------------------------------------------------
    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        assert self.ctrl is not None
        now = time.monotonic()
        outcomes: list[Outcome] = []
        deadline = self._enforce_timeouts(now)
        if self.dying or self.unknown_dead:
            deadline = min(deadline, now + DEATH_REPORT_WAIT)
        wait_for = None if timeout is None else max(0.0, timeout)
        if deadline != float("inf"):
            wait_for = max(0.0, deadline - now) if wait_for is None else min(wait_for, max(0.0, deadline - now))
        poller = select.poll()
        readers: dict[int, _Worker] = {}
        writers: dict[int, _Worker] = {}
        for worker in self.workers:
            readers[worker.conn.fileno()] = worker
            poller.register(worker.conn.fileno(), select.POLLIN)
            if worker.outbox:
                writers[worker.out_fd] = worker
                poller.register(worker.out_fd, select.POLLOUT)
        poller.register(self.ctrl.fileno(), select.POLLIN)
        if self.wake_fd is not None:
            poller.register(self.wake_fd, select.POLLIN)
        ready = poller.poll(None if wait_for is None else math.ceil(wait_for * 1000))
        ctrl_ready = False
        for fd, _ in ready:
            if fd in writers:
                writers[fd].flush()
        for fd, _ in ready:
            reader = readers.get(fd)
            if reader is not None and reader in self.workers:
                self._read_worker(reader, outcomes)
            elif fd == self.ctrl.fileno():
                ctrl_ready = True
        if ctrl_ready:
            self._read_ctrl()
        self._finish_deaths(outcomes)
        self._dispatch()
        return outcomes

    def _read_worker(self, worker: _Worker, outcomes: list[Outcome]) -> None:
        try:
            while worker.conn.poll():
                msg = worker.conn.recv()
                kind = msg[0]
                if kind == "done":
                    task = worker.tasks.popleft()
                    outcomes.append(GroupDone(task, msg[2]))
                elif kind == "hello":
                    worker.pid = msg[1]
                    self.stillborn = 0
                elif kind == "setup_error":
                    if msg[1] == self.map_id:
                        raise BackendError(
                            f"a worker process could not load the worker function: {msg[2]}\n{msg[3]}"
                            "(Is it defined in a module the workers can import? Functions from __main__, "
                            "lambdas and closures are shipped by value.)")
        except (EOFError, OSError):
            self._on_death(worker)
            return
        if worker.retiring and not worker.tasks:
            self._send(worker, ("exit",))
            worker.close()
            self.workers.remove(worker)
            self._replace()

    def _read_ctrl(self) -> None:
        assert self.ctrl is not None
        while True:
            try:
                data = self.ctrl.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                raise BackendError("the multiprocessing backend's fork server died unexpectedly; "
                                   "call paramsurvey.finalize() and init() again")
            msg = pickle.loads(data)
            if msg[0] == "exit":
                self.statuses[msg[1]] = msg[2]

    def _on_death(self, worker: _Worker) -> None:
        worker.blame = worker.view[0]
        worker.died_at = time.monotonic()
        self.workers.remove(worker)
        if worker.pid is None:
            self.unknown_dead.append(worker)
        else:
            self.dying[worker.pid] = worker

    def _finish_deaths(self, outcomes: list[Outcome]) -> None:
        now = time.monotonic()
        for pid, worker in list(self.dying.items()):
            if pid in self.statuses or now - worker.died_at > DEATH_REPORT_WAIT:
                del self.dying[pid]
                self._bury(worker, self.statuses.pop(pid, None), outcomes)
        for worker in list(self.unknown_dead):
            if now - worker.died_at > DEATH_REPORT_WAIT:
                self.unknown_dead.remove(worker)
                self.stillborn += 1
                if self.stillborn >= MAX_STILLBORN:
                    raise BackendError("worker processes die as they start; see their errors on stderr")
                self._bury(worker, None, outcomes)
        self.statuses = {pid: s for pid, s in self.statuses.items() if pid in self.dying}

    def _bury(self, worker: _Worker, status: int | None, outcomes: list[Outcome]) -> None:
        """Blame the one pset the dead worker was running; requeue everything else it held."""
        blame = int(worker.blame)
        timed_out = worker.timed_out
        worker.close()
        requeue: list[Task] = []
        for i, task in enumerate(worker.tasks):
            if i == 0 and (timed_out is not None or blame >= 0) and (timed_out or blame) in task.positions:
                position = timed_out if timed_out is not None else blame
                where = task.positions.index(position)
                if timed_out is not None:
                    status_name = "timeout"
                    message = f"pset ran past its timeout of {self.timeout:g} s; its worker was killed"
                else:
                    status_name, message = "crashed", describe_wait_status(status)
                outcomes.append(PsetLost(position, task.psets[where], task.attempt, status_name, message))
                rest = [j for j in range(len(task.positions)) if j != where]
                if rest:
                    requeue.append(Task(task.task_id, [task.positions[j] for j in rest],
                                        [task.psets[j] for j in rest], task.attempt))
            elif i == 0 and blame == Slot.SENDING:
                for position, pset in zip(task.positions, task.psets):
                    outcomes.append(PsetLost(position, pset, task.attempt, "crashed",
                                             describe_wait_status(status) + " while sending its results"))
            else:
                requeue.append(task)
        self.queue.extendleft(reversed(requeue))
        self._replace()

    def _replace(self) -> None:
        """Keep nworkers taking work: wake a spare if there is one, else fork a new worker."""
        active = sum(1 for w in self.workers if not w.retiring and not w.standby)
        if active >= self.nworkers or self.zygote is None:
            return
        spare = next((w for w in self.workers if w.standby), None)
        if spare is not None:
            spare.standby = False
        else:
            self._spawn()

    def _enforce_timeouts(self, now: float) -> float:
        """Kill workers whose pset is past its timeout; return the next deadline."""
        if self.timeout is None:
            return float("inf")
        nearest = float("inf")
        for worker in self.workers:
            if not worker.tasks or worker.pid is None or worker.timed_out is not None:
                continue
            position = worker.view[0]
            if position < 0:
                continue
            deadline = worker.view[1] + self.timeout
            if now >= deadline:
                worker.timed_out = int(position)
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                nearest = min(nearest, deadline)
        return nearest

    def cancel(self) -> None:
        """Ctrl-C: the zygote kills every worker at once; fresh ones are forked for the next map."""
        if self.ctrl is not None:
            try:
                self.ctrl.send(pickle.dumps(("killall",)))
            except OSError:
                pass
        for worker in self.workers + list(self.dying.values()) + self.unknown_dead:
            worker.close()
        self.workers.clear()
        self.dying.clear()
        self.unknown_dead.clear()
        self.queue.clear()
        self.setup = None
        if self.zygote is not None and self.ctrl is not None:
            for _ in range(self.nworkers):
                self._spawn()
