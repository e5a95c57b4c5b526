"""What the Ray and Dask backends do alike, once: the tasks in flight and the outcomes ready, the
in-flight window, cutting a group where its psets' own task options change, running a lost group
again in pieces, the cluster's cached worker count, the warning that no node can run a task, and
failing a piece that cannot run. Each subclass keeps only its engine's calls:

    submit(task) --> split_by(pset options) --> _pieces() --> _launch(piece, options)   [subclass]
    poll()       --> _finished(flight, payload) | _lost_pieces(...) / _crashed(...)      [subclass]

A task in flight is a ``Flight``: its group, its task options, and whether it runs alone (Dask's
suspects). The worker's side of every task is ``_task.run_task``; packing, splitting and decoding
are ``_remote``'s.
"""

from __future__ import annotations

import abc
import logging
import time
import uuid
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, NamedTuple

from .._config import Settings
from .._records import GroupDone, Outcome, PsetLost, Status, Task, failed_group
from . import _remote
from .base import Backend, crash_message

log = logging.getLogger("paramsurvey")

# Tasks in flight per core: one running, one queued, so no worker waits for the driver.
IN_FLIGHT_PER_CORE = 2
# A cluster's core count is asked of its scheduler at most this often (a round trip each time).
CORES_TTL = 1.0


class Flight(NamedTuple):
    """A task handed to the cluster and not yet collected."""

    task: Task
    options: dict[str, Any]  # the task options it was launched with (its pieces get the same)
    solo: bool = False  # launched with no other task of ours in flight (Dask's suspects)


class ClusterBackend(Backend):
    """A backend whose workers are a cluster's (Ray, Dask): groups go out as tasks of its engine."""

    # the pset key holding a pset's own task options ('ray', 'dask')
    option_key: ClassVar[str]
    # said once per kind of request that no node of the cluster can meet now (%r: what it asks)
    infeasible_warning: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pending: dict[Any, Flight] = {}  # the engine's handle of a task (ref, future) -> flight
        self.ready: list[Outcome] = []  # outcomes found outside poll(), handed over by the next one
        self.token = ""  # the map's: tells its tasks' contexts from another map's in the workers
        self.map_options: dict[str, Any] = {}
        self.cores = 0
        self.cores_at = -CORES_TTL
        self.checked: set[Hashable] = set()

    # -- the engine's hooks ---------------------------------------------------------------------
    @abc.abstractmethod
    def _launch(self, task: Task, options: dict[str, Any], solo: bool = False) -> None:
        """Hand one piece to the cluster with these task options, noting it in ``pending``."""

    def _pset_options(self, options: Any) -> dict[str, Any]:
        """A pset's own task options, checked and normalized; TypeError or ValueError fails its
        psets alone."""
        return dict(options)

    def _pieces(self, task: Task) -> list[Task]:
        """A group with one set of task options, as the tasks to launch."""
        return [task]

    def _capacities(self) -> list[Mapping[str, Any]]:
        """What each node (Ray) or worker (Dask) of the cluster has, by resource name."""
        return []

    # -- shared ---------------------------------------------------------------------------------
    def _new_map(self) -> str:
        """A map begins: its token, and a fresh look at the cluster's size."""
        self.token = uuid.uuid4().hex
        self.cores_at = -CORES_TTL
        return self.token

    def worker_count(self) -> int:
        """``core_count()`` at most once per CORES_TTL: the engine sizes every group with it."""
        now = time.monotonic()
        if now - self.cores_at > CORES_TTL:
            self.cores, self.cores_at = self.core_count(), now
        return max(1, self.cores)

    def free_slots(self) -> int:
        return max(0, IN_FLIGHT_PER_CORE * self.worker_count() - len(self.pending))

    def busy(self) -> bool:
        return bool(self.pending or self.ready)

    def submit(self, task: Task) -> None:
        for pset_options, piece in _remote.split_by(task, self.option_key):
            options = self.map_options
            if pset_options is not None:
                try:
                    options = {**options, **self._pset_options(pset_options)}
                except (TypeError, ValueError) as exc:
                    self._fail(piece, repr(exc))
                    continue
            for chunk in self._pieces(piece):
                self._launch(chunk, options)

    def _fail(self, task: Task, message: str) -> None:
        """Every pset of a piece that cannot run is an 'exception' failure naming why."""
        self.ready.append(GroupDone(task, failed_group(task.positions, task.psets, message)))

    def _packed(self, task: Task) -> tuple[Task, bytes] | None:
        """The piece to send and its bytes; psets no pickler can send fail alone (handed over by
        the next poll), None when not one is left to send."""
        task, packed, unsendable = _remote.pack(task)
        if unsendable is not None:
            self.ready.append(unsendable)
        return None if packed is None else (task, packed)

    def _finished(self, flight: Flight, payload: Any, outcomes: list[Outcome]) -> None:
        """A task that returned: its group's outcome, and its psets stopped at their timeout as
        PsetLost; a group whose psets its worker could not load runs again pset by pset."""
        task = flight.task
        try:
            result = _remote.decode(payload, task)
        except _remote.RunAlone:
            for piece in _remote.chunks(task, 1):
                self._launch(piece, flight.options)
            return
        result, timed_out = _remote.extract_timeouts(result, task)
        outcomes.append(GroupDone(task, result))
        outcomes.extend(timed_out)

    def _lost_pieces(self, task: Task, reason: str) -> list[Task]:
        """A lost group (its worker or node died) in the pieces to run again."""
        log.info("%s: a group of %d psets was lost (%s); running it again in pieces", self.name,
                 len(task.positions), reason, extra={"ps_verbose": 2})
        return _remote.split_after_crash(task)

    def _crashed(self, task: Task, engine_says: str) -> PsetLost:
        """A pset alone in a task the cluster lost for good: it took its worker down."""
        return PsetLost(task.positions[0], task.psets[0], task.attempt, Status.CRASHED,
                        crash_message(engine_says=engine_says))

    def _warn_if_infeasible(self, key: Hashable, wanted: Mapping[str, Any]) -> None:
        """Say so once per kind of request when no node has what a task asks for: the cluster keeps
        such a task waiting for one that has it (an autoscaler may add one), so the survey would
        seem to hang."""
        if key in self.checked:
            return
        self.checked.add(key)
        if not wanted:
            return
        if not any(all(have.get(r, 0) >= amount for r, amount in wanted.items()) for have in self._capacities()):
            log.warning(self.infeasible_warning, dict(wanted))

    def _forget_tasks(self) -> None:
        """Nothing of ours is in flight any more (cancelled, or the map or backend is over)."""
        self.pending.clear()
        self.ready.clear()
