"""The embedded local backend: worker processes forked by paramsurvey's own fork server.

    driver (this module)                      zygote (_zygote.py)           workers (_worker.py)
    --------------------                      -------------------           --------------------
    spawn ------- ('spawn', fds) ----------->  fork() ----------------------> serve(conn, slot)
    submit ------ ('setup'|'run') over each worker's own pipe -------------> run_group()
    poll:  wait(worker pipes + zygote socket + wake fd)
           <----- ('done', task, GroupResult) ------------------------------
           <----- EOF on a worker pipe: it died
           <----- ('exit', pid, status) --------  waitpid(): it died, and how

A dead worker is noticed at once: its pipe reads EOF inside the same wait() that gathers results, or,
when something it started still holds the pipe open, the zygote's word that it ended arrives there.
Each worker keeps a two-double shared slot: the position of the pset it runs and when it started. So
a death blames exactly that pset; the rest of its group goes back to the queue; a fresh worker takes
its place. A pset past its timeout gets its worker's process group SIGKILLed and is recorded as
'timeout' the same way.

A pset that cannot be pickled to send, or a result the driver cannot load, fails alone (or with its
group) as an 'exception': never the map.
"""

from __future__ import annotations

import collections
import fcntl
import math
import mmap
import os
import pickle
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import cloudpickle

from .. import _zygote
from .._config import Settings
from .._pickling import dumps_by_value
from .._records import GroupDone, GroupResult, MapContext, Outcome, PsetLost, Status, Task, failed_group
from .._worker import Slot
from ..exceptions import ArgumentError, ArgumentTypeError, BackendError
from ..utils import resolve_ncores
from .base import CRASH_ISOLATION, MAX_TASKS_PER_CHILD, TIMEOUT, Backend, describe_wait_status

# Groups queued on a worker beyond the one it runs: 1 hides the round trip between groups.
PREFETCH = 2
# How long to wait for the zygote's word on how a worker died before saying "unknown".
DEATH_REPORT_WAIT = 1.0
# Consecutive deaths of workers that never started: the environment is broken, stop trying.
MAX_STILLBORN = 3
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Pipe buffer asked of the kernel (Linux caps it at /proc/sys/fs/pipe-max-size, 1 MiB by default).
PIPE_SIZE = 1 << 20
# Bytes asked of a worker's pipe per read, unless more of a message is known to be on its way.
READ_CHUNK = 1 << 16
# Message framing, as multiprocessing.connection.Connection writes it (the worker's side uses one):
# a signed 4-byte big-endian length, or -1 then an 8-byte length for a message of 2 GiB or more.
SHORT_HEADER = struct.Struct("!i")
LONG_HEADER = struct.Struct("!Q")
LONG_MESSAGE = -1
# How a pickled value of a class defined in the user's script names its module. A worker's __main__
# is not the user's script, so a group holding such bytes is sent with cloudpickle, which ships those
# classes by value (a pset string that merely contains them just takes that slower way).
MAIN_MODULE = b"__main__"
# A group whose worker died this many times before starting any of its psets (while loading it:
# out of memory, an error outside any pset) is split, and a pset alone fails, rather than killing
# workers forever.
MAX_LOAD_DEATHS = 2
# Open files the driver holds per worker: the read end of its result pipe and the write end of its
# group pipe (the slot's memfd is closed once mapped). Forking one briefly takes four more.
FDS_PER_WORKER = 2
# With max_tasks_per_child, workers alive at once per worker asked for: each retiring worker's
# successor is forked early. (A dead worker's pipes are closed before its replacement is forked.)
WORKERS_PER_SLOT_RETIRING = 2
# Open files wanted beyond the workers' and those already open: the zygote's socket, a fork's
# transient pipes, the logfile, a journal, the Ctrl-C wake pipe, and some for the user's own work.
FD_HEADROOM = 64


def _frame(data: bytes) -> bytes:
    n = len(data)
    return SHORT_HEADER.pack(n) if n <= 0x7FFFFFFF else SHORT_HEADER.pack(LONG_MESSAGE) + LONG_HEADER.pack(n)


class _Worker:
    __slots__ = ("in_fd", "inbox", "wanted", "out_fd", "outbox", "mm", "view", "pid", "tasks", "assigned",
                 "retiring", "standby", "timed_out", "died_at", "blame")

    def __init__(self, in_fd: int, out_fd: int, mm: mmap.mmap) -> None:
        # Results come in on in_fd, non-blocking: a worker's death must never leave the driver
        # blocked on a half-written message (a process it started may hold the pipe open).
        self.in_fd = in_fd
        self.inbox = bytearray()  # bytes read but not yet a whole message
        self.wanted = 0  # bytes still missing from the message at the head of inbox
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
        self.queue_pickled(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def queue_pickled(self, data: bytes) -> None:
        self.outbox += _frame(data)
        self.outbox += data
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; the rest waits for the next poll()."""
        while self.outbox:
            try:
                written = os.write(self.out_fd, self.outbox[:PIPE_SIZE])
            except BlockingIOError:
                return
            except OSError:  # the worker is gone; its death is noticed on the other pipe
                self.outbox.clear()
                return
            del self.outbox[:written]

    def receive(self) -> tuple[list[bytes], bool]:
        """The whole messages readable now, and whether the worker's end of the pipe is closed."""
        messages: list[bytes] = []
        while True:
            size = max(READ_CHUNK, self.wanted)
            try:
                data = os.read(self.in_fd, size)
            except BlockingIOError:
                return messages, False
            except OSError:
                return messages, True
            if not data:
                return messages, True
            self.inbox += data
            self.wanted = 0
            messages += self._split()
            if len(data) < size:  # the pipe is empty now: spare a read
                return messages, False

    def _split(self) -> list[bytes]:
        inbox = self.inbox
        messages: list[bytes] = []
        start = 0
        with memoryview(inbox) as view:
            while len(inbox) - start >= SHORT_HEADER.size:
                (size,) = SHORT_HEADER.unpack_from(inbox, start)
                head = SHORT_HEADER.size
                if size == LONG_MESSAGE:
                    if len(inbox) - start < head + LONG_HEADER.size:
                        break
                    (size,) = LONG_HEADER.unpack_from(inbox, start + head)
                    head += LONG_HEADER.size
                end = start + head + size
                if end > len(inbox):
                    self.wanted = end - len(inbox)
                    break
                messages.append(bytes(view[start + head:end]))
                start = end
        del inbox[:start]
        return messages

    def close(self) -> None:
        for fd in (self.in_fd, self.out_fd):
            if fd >= 0:
                os.close(fd)
        self.in_fd = self.out_fd = -1
        self.inbox.clear()
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


def _open_fd_count() -> int:
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 0  # pragma: no cover - FD_HEADROOM stands in for them


def ensure_fd_room(nworkers: int, asked: int | None, retiring: bool) -> None:
    """Make room for nworkers' pipes under RLIMIT_NOFILE, raising the soft limit towards the hard one
    if needed; a ValueError naming ncores and the limit, before any fork, if they cannot fit."""
    alive = nworkers * (WORKERS_PER_SLOT_RETIRING if retiring else 1)
    workers_fds = FDS_PER_WORKER * alive + FD_HEADROOM
    need = _open_fd_count() + workers_fds
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard != resource.RLIM_INFINITY and need > hard:
        named = f"ncores={asked}" if asked == nworkers else f"ncores={asked} ({nworkers} workers)"
        raise ArgumentError(
            f"{named} is more worker processes than this process may open files for: they need about "
            f"{need} open files, and its limit is {hard} (RLIMIT_NOFILE, see `ulimit -Hn`). Use fewer "
            "workers, or raise the limit.")
    # on top of the old limit, so the program keeps the room it had for its own files
    raised = soft + workers_fds if hard == resource.RLIM_INFINITY else min(hard, soft + workers_fds)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))


def _kill_process_group(pid: int) -> None:
    """SIGKILL a worker and what its psets started (it leads its own process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:  # not a group leader yet: the worker alone
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _why_unpicklable(pset: dict[str, Any]) -> str | None:
    """None if the pset can travel to a worker process, else the reason, naming the culprit."""
    try:
        cloudpickle.dumps(pset, protocol=pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as exc:
        error = exc
    for key, value in pset.items():
        try:
            cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            return repr(TypeError(f"pset key {key!r} holds a {_type_name(value)}, which cannot be pickled to "
                                  f"send it to a worker process: {exc}"))
    return repr(TypeError(f"the pset cannot be pickled to send it to a worker process: "
                          f"{type(error).__name__}: {error}"))


class MultiprocessingBackend(Backend):
    name = "multiprocessing"
    capabilities = frozenset({TIMEOUT, CRASH_ISOLATION, MAX_TASKS_PER_CHILD})
    # the zygote took the driver's sys.path when init() started it: a map ships the path of its day
    ships_sys_path = True
    times_psets = True  # timeouts are the driver's: it reads when each pset started from the slot

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.nworkers = resolve_ncores(settings.ncores)
        ensure_fd_room(self.nworkers, settings.ncores, settings.max_tasks_per_child is not None)
        self.max_tasks = settings.max_tasks_per_child
        self.zygote: subprocess.Popen[bytes] | None = None
        self.ctrl: socket.socket | None = None
        self.workers: list[_Worker] = []
        self.dying: dict[int, _Worker] = {}  # pid -> dead worker waiting for its exit status
        self.statuses: dict[int, int] = {}  # pid -> wait status reported by the zygote
        self.unknown_dead: list[_Worker] = []  # died before saying hello: no pid
        self.queue: collections.deque[Task] = collections.deque()
        self.ready: list[Outcome] = []  # outcomes found outside poll(), handed over by the next one
        self.load_deaths: dict[tuple[int, int], int] = {}  # (task id, first position) -> deaths
        self.map_id = 0
        self.setup: tuple[str, int, bytes] | None = None
        self.timeout: float | None = None
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
        os.set_blocking(from_worker_r, False)
        worker = _Worker(from_worker_r, to_worker_w, mm)
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
    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        try:
            blob = dumps_by_value(ctx)
        except Exception as exc:
            raise ArgumentTypeError(f"the worker function, user_kwargs or out_subdirs could not be pickled "
                            f"to send to worker processes: {exc!r}") from exc
        if self.zygote is None:
            self.start()
        self.map_id += 1
        self.load_deaths.clear()  # task ids start again with each map
        self.setup = ("setup", self.map_id, blob)
        self.timeout = settings.timeout
        for worker in list(self.workers):
            worker.queue_message(self.setup)

    def end_map(self) -> None:
        self.setup = None
        self.drain_wakeups()

    def free_slots(self) -> int:
        running = sum(len(w.tasks) for w in self.workers)
        return max(0, PREFETCH * self.nworkers - running - len(self.queue))

    def worker_count(self) -> int:
        return self.nworkers

    def busy(self) -> bool:
        return bool(self.queue or self.ready or self.dying or self.unknown_dead
                    or any(w.tasks for w in self.workers))

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
            sendable = self._pickle_run(task)
            if sendable is None:  # not one of its psets can travel: each is already a failure
                continue
            task, data = sendable
            if self.max_tasks is not None:
                worker.assigned += len(task.positions)
                if worker.assigned >= self.max_tasks:
                    worker.retiring = True
                    # its successor starts now, loading the map while the last psets run, so
                    # max_tasks_per_child=1 costs a fork, not a fork plus a start-up in series
                    self._spawn().standby = True
            worker.tasks.append(task)
            worker.queue_pickled(data)

    def _pickle_run(self, task: Task) -> tuple[Task, bytes] | None:
        """The 'run' message of a group, pickled. Psets that cannot be pickled become failures of
        their own (handed over by the next poll) and the rest of the group travels."""
        try:
            return task, self._run_message(task)
        except Exception:  # rare: find the culprits, pset by pset
            pass
        keep: list[int] = []
        for i, pset in enumerate(task.psets):
            reason = _why_unpicklable(pset)
            if reason is None:
                keep.append(i)
            else:
                position = task.positions[i]
                alone = Task(task.task_id, [position], [pset], task.attempt)
                self.ready.append(GroupDone(alone, failed_group([position], [pset], reason)))
        if not keep:
            return None
        rest = Task(task.task_id, [task.positions[i] for i in keep], [task.psets[i] for i in keep], task.attempt)
        return rest, self._run_message(rest)

    def _run_message(self, task: Task) -> bytes:
        """pickle, the fast way; cloudpickle for values only it takes (lambdas, local classes) and for
        values of the script's own classes (which pickle names by reference to __main__)."""
        msg = ("run", task.task_id, self.map_id, task.positions, task.psets, task.attempt)
        try:
            data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return cloudpickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        if MAIN_MODULE in data:
            try:
                return cloudpickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # pragma: no cover - cloudpickle takes what pickle takes
                pass
        return data

    # -- outcomes ---------------------------------------------------------------------------
    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        assert self.ctrl is not None
        now = time.monotonic()
        outcomes: list[Outcome] = self.ready
        self.ready = []
        deadline = self._enforce_timeouts(now)
        if self.dying or self.unknown_dead:
            deadline = min(deadline, now + DEATH_REPORT_WAIT)
        if outcomes:  # hand them over now, after a look at what else is ready
            deadline = now
        wait_for = None if timeout is None else max(0.0, timeout)
        if deadline != float("inf"):
            wait_for = max(0.0, deadline - now) if wait_for is None else min(wait_for, max(0.0, deadline - now))
        poller = select.poll()
        readers: dict[int, _Worker] = {}
        writers: dict[int, _Worker] = {}
        for worker in self.workers:
            readers[worker.in_fd] = worker
            poller.register(worker.in_fd, select.POLLIN)
            if worker.outbox:
                writers[worker.out_fd] = worker
                poller.register(worker.out_fd, select.POLLOUT)
        poller.register(self.ctrl.fileno(), select.POLLIN)
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
            self._read_ctrl(outcomes)
        self._finish_deaths(outcomes)
        self._dispatch()
        return outcomes

    def _read_worker(self, worker: _Worker, outcomes: list[Outcome]) -> None:
        messages, closed = worker.receive()
        for data in messages:
            self._on_message(worker, data, outcomes)
        if closed:
            self._on_death(worker)
            return
        if worker.retiring and not worker.tasks:
            worker.queue_message(("exit",))
            worker.close()
            self.workers.remove(worker)
            self._replace()

    def _on_message(self, worker: _Worker, data: bytes, outcomes: list[Outcome]) -> None:
        try:
            msg = pickle.loads(data)
        except Exception as exc:  # 'hello' and 'setup_error' hold plain values: this was a group's result
            if worker.tasks:
                outcomes.append(self._unloadable(worker.tasks.popleft(), exc))
            return
        kind = msg[0]
        if kind == "done":
            task = worker.tasks.popleft()
            result = msg[2]
            if not isinstance(result, GroupResult):  # sent as the bytes of an encoded result
                try:
                    result = pickle.loads(result)
                except Exception as exc:
                    outcomes.append(self._unloadable(task, exc))
                    return
            outcomes.append(GroupDone(task, result))
        elif kind == "hello":
            worker.pid = msg[1]
            self.stillborn = 0
        elif kind == "load_error" and worker.tasks:  # it could not load the group it was sent next
            self._unloaded(worker.tasks.popleft(), msg[1], outcomes)
        elif kind == "setup_error":
            if msg[1] == self.map_id:
                raise BackendError(
                    f"a worker process could not load the worker function: {msg[2]}\n{msg[3]}"
                    "(Is it defined in a module the workers can import? Functions from __main__, "
                    "lambdas and closures are shipped by value.)")

    def _unloaded(self, task: Task, error: str, outcomes: list[Outcome]) -> None:
        """A group its worker could not load: each of its psets goes again alone, so that only the
        ones at fault fail."""
        if len(task.positions) > 1:
            self.queue.extendleft(reversed([Task(task.task_id, [position], [pset], task.attempt)
                                            for position, pset in zip(task.positions, task.psets)]))
            return
        message = repr(RuntimeError(f"the worker process could not load this pset: {error}"))
        outcomes.append(GroupDone(task, failed_group(task.positions, task.psets, message)))

    def _unloadable(self, task: Task, exc: Exception) -> GroupDone:
        """A group whose results reached the driver but cannot be loaded here (e.g. a class the worker
        could import and the driver cannot): each of its psets fails, naming why."""
        message = repr(RuntimeError(f"this pset's group finished, but the driver could not load its results "
                                    f"from the worker process: {type(exc).__name__}: {exc}"))
        return GroupDone(task, failed_group(task.positions, task.psets, message))

    def _read_ctrl(self, outcomes: list[Outcome]) -> None:
        assert self.ctrl is not None
        ended: list[int] = []
        while True:
            try:
                data = self.ctrl.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                raise BackendError("the multiprocessing backend's fork server died unexpectedly; "
                                   "call paramsurvey.finalize() and init() again")
            msg = pickle.loads(data)
            if msg[0] == "exit":
                self.statuses[msg[1]] = msg[2]
                ended.append(msg[1])
        for pid in ended:
            self._ended(pid, outcomes)

    def _ended(self, pid: int, outcomes: list[Outcome]) -> None:
        """The zygote reaped this pid. If it is a worker still thought alive (a process it started
        holds its pipe open, so no EOF comes), read what it sent before dying, then bury it."""
        worker = next((w for w in self.workers if w.pid == pid), None)
        if worker is None:
            for unnamed in [w for w in self.workers if w.pid is None]:  # its hello may be unread
                self._read_worker(unnamed, outcomes)
            worker = next((w for w in self.workers if w.pid == pid), None)
        if worker is None:
            return
        self._read_worker(worker, outcomes)
        if worker in self.workers:
            self._on_death(worker)

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
                    status_name = Status.TIMEOUT
                    message = f"pset ran past its timeout of {self.timeout:g} s; its worker was killed"
                else:
                    status_name, message = Status.CRASHED, describe_wait_status(status)
                outcomes.append(PsetLost(position, task.psets[where], task.attempt, status_name, message))
                rest = [j for j in range(len(task.positions)) if j != where]
                if rest:
                    requeue.append(Task(task.task_id, [task.positions[j] for j in rest],
                                        [task.psets[j] for j in rest], task.attempt))
            elif i == 0 and blame == Slot.SENDING:
                for position, pset in zip(task.positions, task.psets):
                    outcomes.append(PsetLost(position, pset, task.attempt, Status.CRASHED,
                                             describe_wait_status(status, " while sending its results")))
            elif i == 0 and timed_out is None and status != 0 and self._fatal_to_load(task):
                if len(task.positions) > 1:  # each pset goes again alone: only the one at fault fails
                    requeue.extend(Task(task.task_id, [position], [pset], task.attempt)
                                   for position, pset in zip(task.positions, task.psets))
                else:
                    outcomes.append(PsetLost(task.positions[0], task.psets[0], task.attempt, Status.CRASHED,
                                             describe_wait_status(status, " each time it loaded this pset")))
            else:
                requeue.append(task)
        self.queue.extendleft(reversed(requeue))
        self._replace()

    def _fatal_to_load(self, task: Task) -> bool:
        """A worker died holding this group next, before running any of it: has that happened
        MAX_LOAD_DEATHS times now? (A worker ending cleanly between groups is no such death.)"""
        key = (task.task_id, task.positions[0])
        self.load_deaths[key] = self.load_deaths.get(key, 0) + 1
        return self.load_deaths[key] >= MAX_LOAD_DEATHS

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
                _kill_process_group(worker.pid)
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
        self.ready.clear()
        self.setup = None
        if self.zygote is not None and self.ctrl is not None:
            for _ in range(self.nworkers):
                self._spawn()
