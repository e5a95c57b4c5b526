"""Worker jobs on a batch system: ``init(backend='slurm', slurm={'jobs': 4, 'walltime': '02:00:00'})``.

The survey's driver runs where jobs are submitted (a login node); its workers are Dask workers in
batch jobs that dask-jobqueue submits. Everything about running groups of psets is the Dask
backend's (this backend drives one, connected to the jobqueue cluster); this module adds what a
batch queue needs:

    init() ------> options checked (_jobqueue_options); on Slurm ``sbatch --test-only`` of the job
                   script: a refused request is a BackendError in sbatch's words before any job is
                   queued; the cluster created, its jobs submitted; a refusal at submission (which
                   dask-jobqueue only logs) raised as well
    poll() ------> every HEALTH_INTERVAL: a refusal caught since -> BackendError; no worker for
                   pending_timeout seconds -> BackendError saying how the jobs stand
    keeper ------> a thread: while a map runs, jobs lost (walltime, preemption, scancel) are
                   replaced (not from poll(): the Dask backend may wait there for a result whose
                   worker is gone, which only a replacement can compute again)
    progress ----> ``worker jobs: 1 running, 2 pending (Resources)`` from squeue (Slurm)
    finalize() --> the cluster closed (its jobs cancelled); the guard process cancels whatever is
                   left, and does so too if the driver dies, even by SIGKILL

Workers retire before their walltime: dask-jobqueue's ``--lifetime``/``--lifetime-stagger``,
derived from the walltime; their groups run again elsewhere, and their jobs are replaced while
work remains. A worker lost mid-group (preempted, cancelled) costs nothing either: Dask runs its
group again on another worker; a pset that kills worker after worker still ends ``crashed``.

PBS, SGE and LSF (``backend='pbs'`` etc.) take the same path without the Slurm-only parts
(``--test-only``, squeue's job states, cancelling by job name).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import signal
import sys
import threading
import time
from types import ModuleType
from typing import Any, ClassVar

from .. import _progress
from .._config import Settings
from .._records import MapContext, Outcome, Task
from ..exceptions import ArgumentError, BackendError, BackendNotInstalled
from . import _remote
from ._jobqueue_options import JobOptions, check_options
from ._slurm_queue import Guard, QueueWatcher, RefusalCatcher, check_job_request, check_submit_command
from .base import Backend
from .dask import DaskBackend

log = logging.getLogger("paramsurvey")

# The jobs' health is looked at (and lost jobs replaced) this often: cheap (no round trip), and
# a second is nothing beside a job's start
HEALTH_INTERVAL = 1.0
# init() waits this long at most for the first jobs to be submitted (not started): long enough for
# a busy controller to answer sbatch, so a refusal is init()'s error; not a wait for the queue
SUBMIT_WAIT = 30.0
# With no pending_timeout, a survey that has had no worker for this long says so once, and waits
WAIT_NOTICE = 60.0
# At a map's end squeue is asked once more (the last progress line says how the jobs stand then),
# for at most this long: a controller that does not answer must not hold up the results
END_REFRESH_TIMEOUT = 5.0


def import_dask_jobqueue(name: str) -> ModuleType:
    """dask_jobqueue, keeping the program's Ctrl-C handler: importing it replaces SIGINT's handler
    with one that calls sys.exit() (exit status 0, no Interrupted, no partial results)."""
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    previous = signal.getsignal(signal.SIGINT)
    try:
        return importlib.import_module("dask_jobqueue")
    except ImportError as exc:
        raise BackendNotInstalled(f"the {name} backend needs dask-jobqueue, which is not installed: "
                                  "pip install 'paramsurvey[slurm]'") from exc
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


class JobqueueBackend(Backend):
    """Dask workers in batch jobs of one system (the subclasses below)."""

    cluster_class: ClassVar[str]  # dask_jobqueue's class
    is_slurm: ClassVar[bool] = False
    capabilities = DaskBackend.capabilities
    refusal_hints = DaskBackend.refusal_hints
    target_group_seconds = DaskBackend.target_group_seconds
    min_group_seconds = DaskBackend.min_group_seconds

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.options: JobOptions = check_options(self.name, self._cluster_cls(), settings.backend_options)
        self.dask: DaskBackend | None = None
        self.cluster: Any = None
        self.guard: Guard | None = None
        self.watcher: QueueWatcher | None = None
        self.catcher = RefusalCatcher()
        self.keeper: _Keeper | None = None
        self.target = 0
        self.workers = 0
        self.checked_at = 0.0
        self.no_worker_since: float | None = None
        self.noticed = False
        self.mapping = False  # a map runs: the keeper replaces lost jobs

    @classmethod
    def _cluster_cls(cls) -> type:
        found: type = getattr(import_dask_jobqueue(cls.name), cls.cluster_class)
        return found

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.shutdown()
            raise

    def _start(self) -> None:
        self.catcher.install()
        kwargs = dict(self.options.cluster_kwargs)
        # the scheduler runs in this process: its log lines (a worker died, a key could not be
        # gathered) are the Dask backend's to report, in paramsurvey's words, at the verbosity asked
        kwargs.setdefault("silence_logs", logging.CRITICAL if self.settings.verbose < 2 else logging.WARNING)
        try:
            self.cluster = self._cluster_cls()(**kwargs)
        except Exception as exc:
            raise BackendError(f"could not create dask-jobqueue's {self.cluster_class}: {exc}") from exc
        job = self.cluster.job_cls  # the commands that submit and cancel a job
        check_submit_command(job.submit_command, self.name)
        if self.is_slurm and self.options.check_request:
            check_job_request(job.submit_command, self.cluster.job_script(), self.name)
        by_name = ["scancel", "--name", self.options.job_name] if self.is_slurm else []
        self.guard = Guard(job.cancel_command, by_name)
        if self.is_slurm:
            self.watcher = QueueWatcher(self.options.job_name, self.guard.tell)
        inner = dataclasses.replace(self.settings, backend="dask", backend_options={"cluster": self.cluster})
        self.dask = DaskBackend(inner)
        self.dask.start()
        # at least one job at once, so that a refusal is init()'s error; a map asks for maximum_jobs
        self._scale(max(self.options.minimum_jobs, 1))
        self._await_submission()
        if self.watcher is not None:
            self.watcher.start()
        self.keeper = _Keeper(self)
        self.keeper.start()
        _progress.set_worker_state(self.worker_state)

    def _await_submission(self) -> None:
        """Until every job asked for has its id (or SUBMIT_WAIT): a refusal is init()'s error."""
        deadline = time.monotonic() + SUBMIT_WAIT
        while time.monotonic() < deadline:
            self._raise_refusal()
            ids = self._job_ids()
            if len(ids) >= self.target:
                return
            time.sleep(0.05)
        log.warning("%s: the worker jobs were not all submitted within %g s; going on", self.name, SUBMIT_WAIT)

    def _job_ids(self) -> list[str]:
        cluster = self.cluster
        try:
            jobs = list(cluster.workers.values()) if cluster is not None else []
        except RuntimeError:  # changed by the cluster's event loop as we read it: next time
            return []
        ids = [str(j.job_id) for j in jobs if getattr(j, "job_id", None)]
        if self.guard is not None:
            self.guard.tell(ids)
        return ids

    def _scale(self, jobs: int) -> None:
        """Ask for ``jobs`` jobs: lost ones are submitted again. Run in the cluster's event loop, as
        every change of its worker specs is: this is called from the keeper thread too."""
        self.target = jobs
        cluster = self.cluster
        if cluster is not None:
            cluster.loop.add_callback(functools.partial(cluster.scale, jobs=jobs))

    def update_settings(self, settings: Settings) -> None:
        check_options(self.name, self._cluster_cls(), settings.backend_options)
        changed = _remote.changed_keys(self.settings.backend_options, settings.backend_options)
        if changed and self.cluster is not None:
            log.warning("%s: init(%s=...) options %s cannot take effect: the worker jobs are already chosen "
                        "(call paramsurvey.finalize() first)", self.name, self.name, changed)
        super().update_settings(settings)
        if self.dask is not None:
            self.dask.update_settings(dataclasses.replace(settings, backend="dask",
                                                          backend_options=self.dask.settings.backend_options))

    def shutdown(self) -> None:
        """The cluster closed (its jobs cancelled), then the guard cancels whatever is left."""
        _progress.set_worker_state(None)
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            keeper.stop()
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()
        inner, self.dask = self.dask, None
        if inner is not None:
            inner.shutdown()
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            try:
                cluster.close()
            except Exception as exc:  # e.g. AssertionError from a cluster whose jobs were refused
                log.info("%s: closing the cluster: %r", self.name, exc, extra={"ps_verbose": 2})
        guard, self.guard = self.guard, None
        if guard is not None:
            guard.close()
        self.catcher.remove()

    def _inner(self) -> DaskBackend:
        if self.dask is None:
            raise BackendError(f"the {self.name} backend is not running; call paramsurvey.init() again")
        return self.dask

    # -- one map ------------------------------------------------------------------------------
    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        given = _remote.map_given(self.settings.backend_options, settings.backend_options)
        if given:
            raise ArgumentError(f"{self.name}={{...}} options {sorted(map(str, given))} choose the worker jobs: "
                                "give them to init(), not to map()")
        inner = self._inner()
        self._scale(self.options.maximum_jobs)
        self.mapping = True
        self.no_worker_since = None
        self.noticed = False
        self.checked_at = 0.0
        inner.begin_map(ctx, dataclasses.replace(settings, backend="dask",
                                                 backend_options=inner.settings.backend_options))

    def end_map(self) -> None:
        self.mapping = False
        if self.watcher is not None:
            self.watcher.poll_once(END_REFRESH_TIMEOUT)
        if self.dask is not None:
            self.dask.end_map()
            if self.options.minimum_jobs < self.options.maximum_jobs:  # adaptive: idle jobs go
                self._scale(self.options.minimum_jobs)
        self.drain_wakeups()

    def poll(self, timeout: float | None) -> list[Outcome]:
        self._check_health()
        return list(self._inner().poll(timeout))

    def _check_health(self) -> None:
        now = time.monotonic()
        if now - self.checked_at < HEALTH_INTERVAL:
            return
        self.checked_at = now
        self._raise_refusal()
        if self.workers:
            self.no_worker_since = None
            return
        if self.no_worker_since is None:
            self.no_worker_since = now
        waited = now - self.no_worker_since
        timeout = self.options.pending_timeout
        if timeout is not None and waited > timeout:
            raise BackendError(f"no {self.name} worker job has run for pending_timeout={timeout:g} s "
                               f"({self.worker_state(fresh=True) or 'no job state known'}); the jobs are "
                               "cancelled at paramsurvey.finalize() or when this program ends")
        if timeout is None and waited > WAIT_NOTICE and not self.noticed:
            self.noticed = True
            log.warning("%s: no worker job has run for %g s (%s); waiting for the queue (give %s={'pending_timeout':"
                        " seconds} to stop waiting)", self.name, WAIT_NOTICE,
                        self.worker_state(fresh=True) or "no job state known", self.name)

    def _raise_refusal(self) -> None:
        refusal = self.catcher.refusal
        if refusal is not None:
            raise BackendError(f"{self.name} refused a worker job: {refusal}")

    def worker_state(self, fresh: bool = False) -> str:
        """How our jobs stand, for the progress line (never blocks unless ``fresh``)."""
        if self.watcher is not None:
            if fresh:
                self.watcher.poll_once()
            return self.watcher.text
        if self.cluster is None:
            return ""
        return f"worker jobs: {len(self.cluster.workers)} submitted, {self.workers} workers connected"

    # -- delegated to the Dask backend ----------------------------------------------------------
    def wakeup(self) -> None:  # from the SIGINT handler: one write to a pipe, nothing else
        inner = self.dask
        if inner is not None:
            inner.wakeup()
        super().wakeup()

    def free_slots(self) -> int:
        return self._inner().free_slots()

    def submit(self, task: Task) -> None:
        self._inner().submit(task)

    def busy(self) -> bool:
        return self.dask is not None and self.dask.busy()

    def cancel(self) -> None:
        if self.dask is not None:
            self.dask.cancel()

    def worker_count(self) -> int:
        return self._inner().worker_count()

    def core_count(self) -> int:
        return self._inner().core_count()

    def resources(self) -> list[dict[str, Any]]:
        return self._inner().resources()


class SlurmBackend(JobqueueBackend):
    name = "slurm"
    cluster_class = "SLURMCluster"
    is_slurm = True


class PBSBackend(JobqueueBackend):
    name = "pbs"
    cluster_class = "PBSCluster"


class SGEBackend(JobqueueBackend):
    name = "sge"
    cluster_class = "SGECluster"


class LSFBackend(JobqueueBackend):
    name = "lsf"
    cluster_class = "LSFCluster"


class _Keeper:
    """A daemon thread: every HEALTH_INTERVAL, counts the workers (the cluster's own view, no round
    trip), tells the guard the job ids, asks squeue again when workers came or went (else the
    progress line would say 'pending' of jobs whose workers already work), and while a map runs
    asks again for its jobs, which replaces the lost ones."""

    def __init__(self, backend: JobqueueBackend) -> None:
        self.backend = backend
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="paramsurvey-jobs", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(HEALTH_INTERVAL):
            try:
                self.look()
            except Exception as exc:  # the cluster closing under us: stop() is due
                log.info("%s: looking at the jobs: %r", self.backend.name, exc, extra={"ps_verbose": 2})

    def look(self) -> None:
        backend = self.backend
        cluster = backend.cluster
        if cluster is None:
            return
        workers = len(cluster.scheduler_info.get("workers", {}))
        changed, backend.workers = workers != backend.workers, workers
        if changed and backend.watcher is not None:
            backend.watcher.poll_once()
        backend._job_ids()
        if backend.mapping:
            backend._scale(backend.options.maximum_jobs)
