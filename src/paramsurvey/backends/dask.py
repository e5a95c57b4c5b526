"""The Dask backend: groups of psets as Dask tasks, on a cluster of paramsurvey's own or the user's.

    init(dask={...}) --> 'address': Client(address) | 'cluster': Client(cluster object, e.g.
                         dask-jobqueue's SLURMCluster) | neither: a local cluster of our own:
                         the scheduler in this process, the workers started from the ``dask
                         worker`` command line (so no worker ever re-imports the user's script:
                         no ``__main__`` guard needed), all stopped by finalize()
    begin_map ---------> a setup task holding the map's function, user_kwargs, sys.path...
                         (a task, not scattered data: if its worker dies it is computed again)
    submit(group) -----> client.submit(eval, TASK_EXPRESSION, {args: (token, setup, packed group, ...)},
                                       resources=...): _entry(...) on the worker
                         (a group is cut where the psets' own ``dask`` dict changes)
    poll --------------> done callbacks -> a pipe, waited on with the wake fd -> bytes -> GroupResult
                         KilledWorker (a task whose workers kept dying): a group is split and run
                         again; a pset alone is 'crashed'
    cancel (Ctrl-C) ---> client.cancel(force=True); on our own cluster the worker processes running
                         our tasks are killed (their nannies start fresh ones); on a user's cluster
                         a running group stops at its next pset (Dask cannot stop a running task)

Capabilities: CRASH_ISOLATION only. No TIMEOUT: Dask runs tasks in worker threads, which no signal
or exception can reliably stop mid-pset. No MAX_TASKS_PER_CHILD: Dask has no per-process task limit
(its workers' ``--lifetime`` is the time-based equivalent).
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._config import Settings
from .._records import MapContext, Outcome, Task
from ..exceptions import BackendError
from ..utils import resolve_ncores
from . import _remote, _task
from ._cluster import ClusterBackend, Flight
from ._dask_options import CLUSTER_KEYS, TASK_KEYS, check_settings, check_task_options
from .base import CRASH_ISOLATION, MAX_TASKS_PER_CHILD

log = logging.getLogger("paramsurvey")

# A running group looks whether its task was cancelled at most this often (between psets).
CANCEL_CHECK = 0.2
WORKERS_START_TIMEOUT = 120.0
# Our workers hold nothing worth saving: a short grace to close cleanly, then SIGKILL (a nanny
# restarting a worker killed by Ctrl-C would otherwise hold the closing for ~10 s).
STOP_GRACE = 2.0
# paramsurvey's own workers end with the driver, even one killed outright (which would leave busy
# workers running ~30 s, Dask's --death-timeout): the `dask worker` command line runs under this
# wrapper, which watches a pipe whose write end only the driver holds. At its end of file (the
# driver is gone) it SIGKILLs its process group, the session started for it: the nannies, their
# worker processes, and the commands psets started there.
WORKERS_WRAPPER = textwrap.dedent("""
    import os, signal, sys, threading

    def watch(fd):
        while os.read(fd, 64):
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, args=(int(sys.argv.pop(1)),), daemon=True).start()
    sys.argv[0] = 'dask-worker'
    from distributed.cli.dask_worker import main
    main()
""")


# A task's function travels by reference: a worker where paramsurvey cannot be imported fails to
# unpickle it, which Dask treats as a broken scheduler connection: the worker closes, the task
# waits for a worker forever. So the function Dask sees is a builtin, eval of this constant
# expression, which imports paramsurvey as the task runs: there, an ImportError is the task's
# error, which the driver reports (see _lost).
TASK_EXPRESSION = '__import__("paramsurvey.backends.dask", fromlist=["_entry"])._entry(*args)'


def _entry(token: str, setup: bytes, packed: bytes, attempt: int, watch: bool) -> Any:
    """The Dask task. ``setup`` is the result of the map's setup task, fetched once per worker.
    ``watch``: stop at the next pset once the task is cancelled (on a cluster whose worker
    processes paramsurvey may not kill)."""
    return _task.run_task(token, lambda: setup, packed, attempt, 1, _CancelWatch.create() if watch else None)


class _Abandoned(BaseException):
    """Our task was cancelled while it ran: stop the group at once."""


class _CancelWatch:
    """A ``PsetWatch``: as each pset starts (at most every CANCEL_CHECK seconds), ask this worker
    whether our task still stands; if not, end the group there."""

    def __init__(self, worker: Any, key: Any) -> None:
        self.worker = worker
        self.key = key
        self.next_check = time.monotonic() + CANCEL_CHECK

    @classmethod
    def create(cls) -> _CancelWatch | None:
        try:
            from distributed import get_worker
            from distributed.worker import thread_state

            return cls(get_worker(), thread_state.key)
        except Exception:  # not in a worker thread (or Dask changed): run without the check
            return None

    def starting(self, position: int) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CANCEL_CHECK
        state = self.worker.state.tasks.get(self.key)
        if state is None or state.state in ("cancelled", "released", "forgotten"):
            raise _Abandoned()

    def finished(self) -> None:
        pass  # nothing to stop once the group is done


class DaskBackend(ClusterBackend):
    name = "dask"
    option_key = "dask"
    infeasible_warning = "dask: no worker has the resources %r now; psets asking for them wait until one joins"
    capabilities = frozenset({CRASH_ISOLATION})
    refusal_hints = {MAX_TASKS_PER_CHILD: "Dask cannot retire a worker process after N tasks; its workers' "
                                          "--lifetime option retires them by age"}
    # A task costs ~1.6 ms and a round trip >= 10 ms on a 2-core machine: groups of about a second.
    target_group_seconds = 1.0
    # A round trip is >= 10 ms (Dask batches messages): the tail of a map stops splitting at groups
    # of ~5 round trips, else 100,000 trivial psets end in a chain of tiny latency-bound tasks.
    min_group_seconds = 0.05

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        check_settings(settings)
        self.client: Any = None
        self.scheduler: Any = None  # our own in-process scheduler (a LocalCluster with no workers)
        self.workers_proc: subprocess.Popen[bytes] | None = None
        self.lifeline: int | None = None  # see WORKERS_WRAPPER
        self.local_dir: str | None = None
        # Psets alone in a task that Dask gave up on (KilledWorker). Dask also blames the tasks
        # merely queued on each worker that died, so such a pset may be innocent: it runs again
        # with no other task of ours in flight, where a KilledWorker can only be its own doing.
        self.suspects: collections.deque[Flight] = collections.deque()
        self.finished: collections.deque[Any] = collections.deque()
        self.pipe_r, self.pipe_w = os.pipe()
        os.set_blocking(self.pipe_r, False)
        os.set_blocking(self.pipe_w, False)
        self.setup: Any = None
        self.keys = 0
        self.lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------------
    def update_settings(self, settings: Settings) -> None:
        check_settings(settings)
        late = [k for k in _remote.changed_keys(self.settings.backend_options, settings.backend_options)
                if k in CLUSTER_KEYS]
        if late and self.client is not None:
            log.warning("dask: init(dask=...) options %s cannot take effect: the cluster is already chosen "
                        "(call paramsurvey.finalize() first)", late)
        super().update_settings(settings)

    def start(self) -> None:
        from distributed import Client

        options = self.settings.backend_options
        address, cluster = options.get("address"), options.get("cluster")
        try:
            if cluster is not None:
                self.client = Client(cluster, set_as_default=False)
            elif address is not None:
                self.client = Client(address, set_as_default=False)
            else:
                self._start_local(options)
        except BackendError:
            self.shutdown()
            raise
        except Exception as exc:
            self.shutdown()
            where = f"connect to the Dask scheduler at {address!r}" if address else "start a Dask cluster"
            raise BackendError(f"could not {where}: {exc}") from exc

    def _start_local(self, options: Any) -> None:
        from distributed import Client, LocalCluster

        n_workers = int(options.get("n_workers") or resolve_ncores(self.settings.ncores))
        threads = int(options.get("threads_per_worker") or 1)
        quiet = logging.CRITICAL if self.settings.verbose < 2 else logging.WARNING
        self.scheduler = LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                      scheduler_port=0, dashboard_address=":0", silence_logs=quiet)
        self.local_dir = tempfile.mkdtemp(prefix="psdask", dir="/tmp")
        env = dict(os.environ)
        env.setdefault("DASK_LOGGING__DISTRIBUTED", "critical" if self.settings.verbose < 2 else "warning")
        lifeline, self.lifeline = os.pipe()  # the workers hold the read end, this process the write end
        command = [sys.executable, "-c", WORKERS_WRAPPER, str(lifeline), self.scheduler.scheduler_address,
                   "--nworkers", str(n_workers), "--nthreads", str(threads), "--no-dashboard",
                   "--host", "127.0.0.1", "--local-directory", self.local_dir, "--death-timeout", "30"]
        if options.get("memory_limit") is not None:
            command += ["--memory-limit", str(options["memory_limit"])]
        # its own session: a Ctrl-C at the terminal reaches the driver alone, which stops the workers
        try:
            self.workers_proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                                 pass_fds=(lifeline,))
        finally:
            os.close(lifeline)
        self.client = Client(self.scheduler, set_as_default=False)
        deadline = time.monotonic() + WORKERS_START_TIMEOUT
        while len(self.client.nthreads()) < n_workers:
            if self.workers_proc.poll() is not None:
                raise BackendError(f"the Dask workers exited as they started (status {self.workers_proc.returncode}); "
                                   "see their errors above")
            if time.monotonic() > deadline:
                raise BackendError(f"the Dask workers did not start within {WORKERS_START_TIMEOUT:g} s")
            time.sleep(0.05)
        try:  # load paramsurvey in every worker now rather than in the first map
            self.client.run(importlib.import_module, __name__)
        except Exception as exc:
            log.info("dask: warming up workers failed: %r", exc, extra={"ps_verbose": 2})

    def shutdown(self) -> None:
        self._forget_tasks()
        self.suspects.clear()
        self.setup = None
        proc, self.workers_proc = self.workers_proc, None
        if proc is not None:
            _stop_process_tree(proc)
        lifeline, self.lifeline = self.lifeline, None
        if lifeline is not None:
            os.close(lifeline)
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            try:
                scheduler.close()
            except Exception:
                pass
        if self.local_dir is not None:
            shutil.rmtree(self.local_dir, ignore_errors=True)
            self.local_dir = None

    def __del__(self) -> None:
        for fd in (getattr(self, "pipe_r", None), getattr(self, "pipe_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        super().__del__()

    def core_count(self) -> int:
        return int(sum(self.client.nthreads().values()))

    def resources(self) -> list[dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = {}
        for info in self.client.scheduler_info(n_workers=-1)["workers"].values():
            node = nodes.setdefault(info.get("host", "?"), {"num_cores": 0, "num_gpus": 0, "memory": 0})
            node["num_cores"] += int(info.get("nthreads", 0))
            node["num_gpus"] += int((info.get("resources") or {}).get("GPU", 0))
            node["memory"] += int(info.get("memory_limit") or 0)
        return list(nodes.values())

    # -- one map ----------------------------------------------------------------------------
    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        check_task_options(_remote.map_given(self.settings.backend_options, settings.backend_options), "map")
        self.map_options = {k: v for k, v in settings.backend_options.items() if k in TASK_KEYS}
        setup = _remote.make_setup(ctx, None)
        self._new_map()
        # bytes(setup) is a copy: the setup is a task's result (computed again if its worker dies),
        # by a builtin (see TASK_EXPRESSION)
        self.setup = self.client.submit(bytes, setup, key=f"paramsurvey-setup-{self.token}", pure=False)

    def end_map(self) -> None:
        if self.pending and self.client is not None:  # only after a failure of the map itself
            try:
                self.client.cancel(list(self.pending), force=True)
            except Exception:
                pass
        self._forget_tasks()
        self.suspects.clear()
        with self.lock:
            self.finished.clear()
        self.setup = None
        self.drain_wakeups()

    def free_slots(self) -> int:
        if self.suspects:  # drain, then run them one by one
            return 0
        return super().free_slots()

    def busy(self) -> bool:
        return super().busy() or bool(self.suspects)

    def _pset_options(self, options: Any) -> dict[str, Any]:
        check_task_options(options, "a pset's")
        return dict(options)

    def _launch(self, task: Task, options: dict[str, Any], solo: bool = False) -> None:
        self.keys += 1
        wanted = options.get("resources")
        if wanted:
            self._warn_if_infeasible(_remote.options_key(dict(wanted)), wanted)
        watch = self.workers_proc is None  # not our workers: they cannot be killed on Ctrl-C
        sendable = self._packed(task)
        if sendable is None:
            return
        task, packed = sendable
        args = (self.token, self.setup, packed, task.attempt, watch)
        future = self.client.submit(eval, TASK_EXPRESSION, {"args": args},
                                    key=f"paramsurvey-{self.token[:12]}-{self.keys}", pure=False, **options)
        self.pending[future] = Flight(task, options, solo)
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Any) -> None:  # in a Dask callback thread
        with self.lock:
            self.finished.append(future)
        try:
            os.write(self.pipe_w, b".")
        except OSError:  # the pipe is full: the reader is already due
            pass

    def _capacities(self) -> list[Mapping[str, Any]]:
        return [w.get("resources") or {} for w in self.client.scheduler_info(n_workers=-1)["workers"].values()]

    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        if self.suspects and not self.pending:
            suspect = self.suspects.popleft()
            self._launch(suspect.task, suspect.options, solo=True)
        outcomes, self.ready = self.ready, []
        if not outcomes and not self.finished:
            waited = [self.pipe_r, self.wake_fd]
            select.select(waited, [], [], 1.0 if timeout is None else min(timeout, 1.0))
        try:
            while os.read(self.pipe_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self.lock:
            finished = [f for f in self.finished if f in self.pending]
            self.finished.clear()
        if not finished and self.client.status == "closed":
            raise BackendError("the Dask client lost its scheduler; call paramsurvey.finalize() and init() again")
        done = [f for f in finished if f.status == "finished"]
        if done:
            try:
                payloads = self.client.gather(done)  # one round trip for all of them
            except Exception:  # one of them went wrong since: take them one by one
                payloads = None
            for i, future in enumerate(done):
                try:
                    payload = payloads[i] if payloads is not None else future.result()
                except Exception:
                    continue  # its status says what happened; handled below
                self._finished(self.pending.pop(future), payload, outcomes)
        for future in finished:
            if future in self.pending:
                self._lost(self.pending.pop(future), future, outcomes)
        return outcomes

    def _lost(self, flight: Flight, future: Any, outcomes: list[Outcome]) -> None:
        """The task's workers kept dying (KilledWorker), or the cluster lost it."""
        task, options, solo = flight
        if future.status == "error":
            from distributed import KilledWorker

            exc = future.exception()
            if isinstance(exc, ImportError):
                raise BackendError(f"a Dask worker cannot run paramsurvey's tasks: {exc!r} (install paramsurvey, "
                                   "and what it needs, alike on every worker)") from exc
            if not isinstance(exc, KilledWorker):  # raised outside any pset: every task would
                raise BackendError(f"a Dask task of the survey failed outside any pset (is paramsurvey "
                                   f"installed alike on every worker?): {exc!r}") from exc
            first_line = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first_line}"
        else:  # cancelled or lost by the cluster, not by us: run it again
            reason = f"task {future.status}"
        if len(task.positions) > 1:
            for piece in self._lost_pieces(task, reason):
                if len(piece.positions) == 1 and future.status == "error":
                    self.suspects.append(Flight(piece, options))  # Dask gave up on its group: alone at once
                else:
                    self._launch(piece, options)
        elif future.status != "error":
            self._launch(task, options, solo)
        elif solo:
            outcomes.append(self._crashed(task, f"Dask says {reason}"))
        else:
            self.suspects.append(flight)

    def cancel(self) -> None:
        futures = list(self.pending)
        self._forget_tasks()
        self.suspects.clear()
        if not futures or self.client is None:
            return
        victims: list[int] = []
        if self.workers_proc is not None:  # our own workers: kill those running our tasks
            try:
                ours = {f.key for f in futures}
                busy = [w for w, keys in self.client.processing().items() if ours & set(keys)]
                # our scheduler runs in this process: its worker states hold the pids (the
                # client's scheduler_info() does not)
                states = self.scheduler.scheduler.workers
                victims = [states[w].pid for w in busy if w in states]
            except Exception:
                victims = []
        try:
            self.client.cancel(futures, force=True)
        except Exception:
            pass
        if victims and self.workers_proc is not None:
            _kill_workers(self.workers_proc.pid, victims)


def _kill_workers(root: int, victims: list[int]) -> None:
    """SIGKILL those of our worker processes (under ``root``), with the commands their psets
    started (their nannies start fresh workers; orphaned commands would run on unseen)."""
    import psutil

    try:
        mine = {p.pid: p for p in psutil.Process(root).children(recursive=True)}
    except psutil.NoSuchProcess:
        return
    doomed = []
    for pid in victims:
        if pid in mine:  # never a process that is not ours
            try:
                doomed += [mine[pid], *mine[pid].children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    for process in doomed:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _stop_process_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the nannies close their workers), then SIGKILL whatever of the tree is left."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    lingering = []
    for child in family:  # the nannies have told them to close: whatever lingers is killed
        try:
            if child.status() != psutil.STATUS_ZOMBIE:  # a zombie waits for its reaper, not for us
                child.kill()
                lingering.append(child)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(lingering, timeout=STOP_GRACE)
