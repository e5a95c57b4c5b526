"""The Ray backend: groups of psets as Ray tasks, on a private local Ray or on an existing cluster.

    init(ray={...}) ---> ray.init(**dict): address given, or RAY_ADDRESS, or 0.4.x's head file:
                         join that cluster; else start a private local Ray (stopped by finalize())
    begin_map ---------> ray.put(setup)                      one object per map: the function,
                                                             user_kwargs, sys.path...
    submit(group) -----> _entry.options(**opts).remote(token, [setup_ref], packed group, ...)
                           opts = map's ray={...} + the psets' own ``ray`` dict (a group is cut
                           where that dict changes)
    poll --------------> ray.wait(refs, timeout <= 0.1 s) -> bytes -> GroupResult
                         a task whose worker or node died: a group is split and run again; a
                         pset alone is 'crashed' once Ray's own retries (max_retries) are spent
    stuck pset --------> a worker's watchdog process reports it (TCP, maps with a timeout only):
                         ray.cancel(ref, force=True), the pset is 'timeout', the rest runs again
    cancel (Ctrl-C) ---> ray.cancel(ref, force=True) for every task in flight

Capabilities: TIMEOUT (Ray runs a task in its worker's main thread, so SIGALRM stops one pset; a
pset stuck where no signal reaches is stopped through the worker's watchdog process, see
``_task._Alarm`` and ``_watchdog``), CRASH_ISOLATION (by splitting crashed groups), MAX_TASKS_PER_CHILD (groups
of at most that many psets, and Ray's ``max_calls=1``: a worker process runs one group, then exits).
"""

from __future__ import annotations

import inspect
import logging
import os
import select
import shutil
import tempfile
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import ray

from .._config import Settings
from .._records import MapContext, Outcome, PsetLost, Status, Task
from ..exceptions import ArgumentError, ArgumentTypeError, BackendError
from ..utils import resolve_ncores
from . import _remote, _task, _watchdog
from ._cluster import ClusterBackend, Flight
from .base import CRASH_ISOLATION, MAX_TASKS_PER_CHILD, TIMEOUT

log = logging.getLogger("paramsurvey")

# ray.wait() in slices this long, so that Ctrl-C (a byte on the wake fd) is seen promptly.
POLL_SLICE = 0.1
# A pset's own ``ray`` dict may use this alias (0.4.x): num_cores is Ray's num_cpus.
ALIASES = {"num_cores": "num_cpus"}
WARMUP_TIMEOUT = 60.0
# 0.4.x joined the cluster named in this file when no address was given ($RAY_HEAD_FILE overrides).
DEFAULT_HEAD_FILE = "~/.ray-head-details"
# How ray.init() says it does not take a keyword argument (a RuntimeError).
UNKNOWN_KEYWORDS = "Unknown keyword argument(s): "
# Task options that would break how paramsurvey talks to its tasks (one return value; max_calls
# follows max_tasks_per_child).
RESERVED_TASK_OPTIONS = frozenset({"num_returns", "max_calls"})


def _entry(token: str, holder: list[Any], packed: bytes, attempt: int, cores: float) -> Any:
    """The Ray task: the setup object is passed inside a list so that Ray does not fetch it for
    every task; the worker fetches it once per map."""
    return _task.run_task(token, lambda: ray.get(holder[0]), packed, attempt, int(cores))


def _warm() -> int:
    time.sleep(0.2)  # long enough that each idle worker takes one, and loads paramsurvey
    return os.getpid()


def _check_init_options(options: Mapping[str, Any]) -> None:
    """init's ray={...} goes to ray.init(): a key it does not take is a TypeError naming it, before
    anything starts. Ray's private options (``_temp_dir``, ``_node_ip_address``...) are checked by
    ray.init() itself, also before it starts anything."""
    parameters = inspect.signature(ray.init).parameters
    named = {name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    unknown = sorted(str(k) for k in options if not str(k).startswith("_") and k not in named)
    if unknown:
        raise ArgumentTypeError(f"init(ray={{...}}): ray.init() does not take {', '.join(map(repr, unknown))} "
                        "(task options such as num_gpus or max_retries go to map(ray={...}))")


def _where(address: str | None) -> tuple[str, str]:
    """The cluster to join, and why (empty: the program said so), as 0.4.x chose it: ``address``;
    else $RAY_ADDRESS; else the head file 0.4.x read ($RAY_HEAD_FILE, by default
    ~/.ray-head-details, holding ``host:port [password]``); else 'local': a private local Ray."""
    if address:
        return address, ""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], " (from $RAY_ADDRESS)"
    named = os.environ.get("RAY_HEAD_FILE")
    path = named or os.path.expanduser(DEFAULT_HEAD_FILE)
    try:
        with open(path) as f:
            words = f.read().split()
    except OSError as exc:
        if named:  # asked for by name: a missing file is a mistake, not a reason to start Ray here
            raise BackendError(f"cannot read the Ray head file RAY_HEAD_FILE={named!r}: {exc}") from exc
        return "local", ""
    if not words:
        raise BackendError(f"the Ray head file {path} is empty: it should hold the head's host:port")
    # the second word, 0.4.x's Redis password, has no use since Ray 1.11 (no Redis)
    return words[0], f" (from the head file {path}; remove it, or give ray={{'address': 'local'}}, " \
                     "for a private local Ray)"


def _normalize(options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise ArgumentTypeError(f"a pset's ray options must be a dict, not {type(options).__name__}")
    return {str(ALIASES.get(k, k)): v for k, v in options.items()}


class RayBackend(ClusterBackend):
    name = "ray"
    option_key = "ray"
    infeasible_warning = "ray: no node of the cluster has %r now; psets asking for it wait until one joins"
    capabilities = frozenset({TIMEOUT, CRASH_ISOLATION, MAX_TASKS_PER_CHILD})
    # A task costs ~0.55 ms and a round trip ~1.3 ms on a 2-core machine: a group of a second makes
    # that ~0.1%, and still moves progress and re-runs little after a crash.
    target_group_seconds = 1.0
    # A group shorter than ~10 round trips is all latency: the tail of a map stops splitting there.
    min_group_seconds = 0.01

    def __init__(self, settings: Settings) -> None:
        _check_init_options(settings.backend_options)
        super().__init__(settings)
        self.owns = False  # we started the local Ray: finalize() stops it
        self.connected = False  # we called ray.init(): finalize() disconnects
        self.temp_dir: str | None = None
        self.remote: Any = None
        self.remotes: dict[Hashable, Any] = {}
        self.holder: list[Any] = []
        self.max_chunk: int | None = None
        self.timeout: float | None = None
        self.stuck: _watchdog.StuckReports | None = None  # a map with a timeout: the watchdogs report here
        self.stopped: dict[Any, int] = {}  # task cancelled because this pset of it was stuck

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        options = dict(self.settings.backend_options)
        if ray.is_initialized():  # the program called ray.init() itself: its connection is used as is
            if options:
                log.warning("ray: Ray was already initialized by this program, so init(ray=...) options %s "
                            "are not used", sorted(options))
        else:
            self._init_ray(options)
            self.connected = True
        self._make_remote()
        if self.owns:
            self._warm_up()

    def _init_ray(self, options: dict[str, Any]) -> None:
        address, source = _where(options.pop("address", None))
        self.owns = address == "local"
        if self.owns:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report leaves the machine
            options.setdefault("num_cpus", resolve_ncores(self.settings.ncores))
            options.setdefault("include_dashboard", False)
            if "_temp_dir" not in options:  # short (socket paths) and ours to remove
                self.temp_dir = options["_temp_dir"] = tempfile.mkdtemp(prefix="psray", dir="/tmp")
        options.setdefault("logging_level", logging.WARNING if self.settings.verbose >= 2 else logging.ERROR)
        # Ray relays the workers' output (and its own notes on dead workers) to this process;
        # verbose=0 promises silence
        options.setdefault("log_to_driver", self.settings.verbose > 0)
        cluster = "a private local Ray" if self.owns else f"the Ray cluster at {address!r}{source}"
        try:
            ray.init(address=address, **options)
        except (TypeError, ValueError) as exc:  # ray.init() rejected an option
            self._remove_temp_dir()
            raise type(exc)(f"init(ray={{...}}): ray.init() rejected the options: {exc}") from exc
        except Exception as exc:
            self._remove_temp_dir()
            if str(exc).startswith(UNKNOWN_KEYWORDS):  # Ray's own check of its private options
                raise ArgumentTypeError(f"init(ray={{...}}): ray.init() does not take "
                                f"{str(exc)[len(UNKNOWN_KEYWORDS):]}") from exc
            raise BackendError(f"could not {'start' if self.owns else 'join'} {cluster}: {exc}") from exc
        # joining a cluster because of the environment or a file is worth saying at verbose=1; the
        # other choices are what the program asked for
        log.info("ray: %s %s", "started" if self.owns else "joined", cluster, extra={"ps_verbose": 1 if source else 2})

    def update_settings(self, settings: Settings) -> None:
        _check_init_options(settings.backend_options)
        late = _remote.changed_keys(self.settings.backend_options, settings.backend_options)
        if late and ray.is_initialized():
            log.warning("ray: init(ray=...) options %s cannot take effect: ray.init() has already run "
                        "(call paramsurvey.finalize() first)", late)
        changed = settings.max_tasks_per_child != self.settings.max_tasks_per_child
        super().update_settings(settings)
        if changed and self.remote is not None:
            self._make_remote()

    def _make_remote(self) -> None:
        max_calls = 1 if self.settings.max_tasks_per_child else 0
        self.remote = ray.remote(max_calls=max_calls)(_entry)
        self.remotes.clear()

    def _warm_up(self) -> None:
        """Have each local worker process load paramsurvey now rather than in the first map."""
        warm = ray.remote(max_calls=0)(_warm)
        refs = [warm.remote() for _ in range(max(1, self.core_count()))]
        try:
            ray.get(refs, timeout=WARMUP_TIMEOUT)
        except Exception as exc:  # only a head start: the map will tell if workers are broken
            log.info("ray: warming up workers failed: %r", exc, extra={"ps_verbose": 2})

    def shutdown(self) -> None:
        self._forget_tasks()
        self.holder = []
        self.remotes.clear()
        if self.stuck is not None:
            self.stuck.close()
            self.stuck = None
        if self.connected:
            self.connected = False
            try:
                ray.shutdown()
            finally:
                self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def core_count(self) -> int:
        return int(ray.cluster_resources().get("CPU", 0))

    def resources(self) -> list[dict[str, Any]]:
        nodes = []
        for node in ray.nodes():
            if not node.get("Alive", False):
                continue
            have = node.get("Resources", {})
            nodes.append({"num_cores": int(have.get("CPU", 0)), "num_gpus": int(have.get("GPU", 0)),
                          "memory": int(have.get("memory", 0))})
        return nodes

    # -- one map ----------------------------------------------------------------------------
    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        self.map_options = self._map_options(settings)
        self._check_task_options(self.map_options)
        self.timeout = settings.timeout
        if self.timeout is not None and self.stuck is None:
            self.stuck = _stuck_reports()
        setup = _remote.make_setup(ctx, self.timeout, self.stuck.address if self.stuck is not None else None)
        self._new_map()
        self.holder = [ray.put(setup)]
        self.max_chunk = self.settings.max_tasks_per_child

    def _map_options(self, settings: Settings) -> dict[str, Any]:
        """map(ray={...}) sets task options; init's ray={...} went to ray.init(), not to tasks."""
        return _normalize(_remote.map_given(self.settings.backend_options, settings.backend_options))

    def _check_task_options(self, options: dict[str, Any]) -> None:
        """map's ray={...}: a key that is not a Ray task option, or a value Ray rejects, is an
        error naming it before any pset runs (a pset's own dict fails that pset alone)."""
        reserved = sorted(RESERVED_TASK_OPTIONS & set(options))
        if reserved:
            raise ArgumentError(f"map(ray={{...}}): {', '.join(map(repr, reserved))} is paramsurvey's to set")
        init_keys = set(inspect.signature(ray.init).parameters)
        for key, value in options.items():  # one by one, so that the message names the key
            try:
                self.remote.options(**{key: value})
            except (TypeError, ValueError) as exc:
                hint = " (an option of ray.init(): give it to init(ray={...}))" if key in init_keys else ""
                raise ArgumentError(f"map(ray={{...}}): Ray rejected the task option {key!r}{hint}: {exc}") from None
        try:
            self.remote.options(**options)
        except (TypeError, ValueError) as exc:
            raise ArgumentError(f"map(ray={{...}}): Ray rejected the task options {options!r}: {exc}") from None

    def end_map(self) -> None:
        self.cancel()  # nothing is pending unless the map itself failed: then stop its leftovers
        self.holder = []
        self.drain_wakeups()
        if self.stuck is not None:
            self.stuck.close()
            self.stuck = None

    def _pset_options(self, options: Any) -> dict[str, Any]:
        return _normalize(options)

    def _pieces(self, task: Task) -> list[Task]:
        return _remote.chunks(task, self.max_chunk) if self.max_chunk else [task]

    def _launch(self, task: Task, options: dict[str, Any], solo: bool = False) -> None:
        if len(task.positions) > 1:
            options = {**options, "max_retries": 0}  # a lost group is split by us, not re-run whole
        key = _remote.options_key(options)
        remote = self.remotes.get(key)
        if remote is None:
            try:
                remote = self.remote.options(**options) if options else self.remote
            except (TypeError, ValueError) as exc:
                self._fail(task, repr(ValueError(f"invalid Ray task options {options!r}: {exc}")))
                return
            self.remotes[key] = remote
            self._warn_if_infeasible(key, _wanted(options))
        sendable = self._packed(task)
        if sendable is None:
            return
        task, packed = sendable
        cores = options.get("num_cpus", 1) or 1
        ref = remote.remote(self.token, self.holder, packed, task.attempt, cores)
        self.pending[ref] = Flight(task, options)

    def _capacities(self) -> list[Mapping[str, Any]]:
        return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", False)]

    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        outcomes, self.ready = self.ready, []
        deadline = time.monotonic() + (0.0 if outcomes else (timeout if timeout is not None else 1e9))
        while True:
            wait_for = max(0.0, min(POLL_SLICE, deadline - time.monotonic()))
            if self.pending:
                try:
                    done, _ = ray.wait(list(self.pending), num_returns=1, timeout=wait_for)
                    if done:
                        done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
                except Exception as exc:
                    raise BackendError(f"the Ray cluster failed: {exc}; call paramsurvey.finalize() "
                                       "and init() again") from exc
                for ref in done:
                    self._collect(ref, outcomes)
                woken = self._woken(0.0)
            else:
                woken = self._woken(wait_for)
            if outcomes or woken or time.monotonic() >= deadline:
                return outcomes

    def _woken(self, wait_for: float) -> bool:
        """Wait on the Ctrl-C wake fd and the watchdogs' reports; True if Ctrl-C woke us."""
        fds = [self.wake_fd] + ([self.stuck.fileno()] if self.stuck is not None else [])
        ready = select.select(fds, [], [], wait_for)[0]
        if self.stuck is not None and self.stuck.fileno() in ready:
            self._stop_stuck()
        return self.wake_fd in ready

    def _stop_stuck(self) -> None:
        """A watchdog says a pset runs past its timeout where no signal reaches: cancel its task
        (force: Ray ends the worker process, and does not retry a cancelled task)."""
        assert self.stuck is not None
        for token, position, attempt in self.stuck.read():
            if token != self.token:
                continue
            for ref, (task, _, _) in self.pending.items():
                if task.attempt == attempt and position in task.positions and ref not in self.stopped:
                    self.stopped[ref] = position
                    log.info("ray: pset %d is past its timeout and stuck where no signal reaches; stopping "
                             "its worker process", position, extra={"ps_verbose": 2})
                    ray.cancel(ref, force=True)
                    break

    def _collect(self, ref: Any, outcomes: list[Outcome]) -> None:
        flight = self.pending.pop(ref)
        task, options = flight.task, flight.options
        stuck_at = self.stopped.pop(ref, None)
        try:
            payload = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised outside any pset: every task would
            raise BackendError(f"a Ray task of the survey failed outside any pset (is paramsurvey installed "
                               f"alike on every node?): {exc}") from exc
        except ray.exceptions.RayError as exc:  # cancelled, or its worker or node died
            if stuck_at is not None:
                self._timed_out(task, options, stuck_at, outcomes)
            elif not isinstance(exc, ray.exceptions.TaskCancelledError):
                self._lost(task, options, exc, outcomes)
            return
        self._finished(flight, payload, outcomes)

    def _timed_out(self, task: Task, options: dict[str, Any], position: int, outcomes: list[Outcome]) -> None:
        """A pset stopped with its worker at its timeout: 'timeout' (the engine retries it under
        ``retries``); the rest of its group, lost with the worker, runs again."""
        i = task.positions.index(position)
        message = (f"pset ran past its timeout of {self.timeout:g} s where no signal reaches it (e.g. C code "
                   "holding the GIL) and was stopped with its worker process")
        outcomes.append(PsetLost(position, task.psets[i], task.attempt, Status.TIMEOUT, message))
        rest = [j for j in range(len(task.positions)) if j != i]
        if rest:
            self._launch(_remote.subset(task, rest), options)

    def _lost(self, task: Task, options: dict[str, Any], exc: Exception, outcomes: list[Outcome]) -> None:
        """The task's worker (or node) died."""
        if len(task.positions) > 1:
            for piece in self._lost_pieces(task, type(exc).__name__):
                self._launch(piece, options)
            return
        first_line = (str(exc).strip().splitlines() or [""])[0]
        outcomes.append(self._crashed(task, f"Ray says {type(exc).__name__}: {first_line}"))

    def cancel(self) -> None:
        """Ctrl-C: kill every task in flight (force: the worker process goes; Ray starts others)."""
        for ref in self.pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        self._forget_tasks()
        self.stopped.clear()


def _wanted(options: Mapping[str, Any]) -> dict[str, Any]:
    """What a task with these options asks of a node, by Ray's resource names."""
    wanted = dict(options.get("resources") or {})
    for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(option):
            wanted[resource] = options[option]
    return wanted


def _stuck_reports() -> _watchdog.StuckReports | None:
    """Where the watchdogs report stuck psets; None if this driver cannot listen where Ray's
    workers reach it (e.g. a Ray Client connection): a stuck pset's worker is then SIGKILLed by
    its watchdog, and the pset recorded 'crashed'."""
    try:
        return _watchdog.StuckReports(_driver_ip())
    except Exception as exc:
        log.info("ray: cannot listen for psets stuck past their timeout (%r); they will be 'crashed'", exc,
                 extra={"ps_verbose": 2})
        return None


def _driver_ip() -> str:
    """This driver's address in the Ray cluster (where Ray's own workers reach it)."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("NodeManagerAddress"):
            return str(node["NodeManagerAddress"])
    return str(ray.util.get_node_ip_address())
