"""The serial backend: every pset in the calling process, with the same semantics otherwise.

The reference implementation of the backend contract, and the one to use with pdb: a breakpoint in
the worker just works. It cannot survive a worker that kills its process, nor stop a pset past its
timeout (no capability flags for those), and Ctrl-C interrupts the running pset itself. The
initializer of init() runs once per init() session, in this process, before the first pset.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

from .._config import Settings
from .._records import GroupDone, GroupInterrupted, MapContext, Outcome, Task
from .._worker import InitializerFailed, run_group
from ..exceptions import BackendError
from .base import IN_PROCESS, Backend


class SerialBackend(Backend):
    name = "serial"
    capabilities = frozenset({IN_PROCESS})
    target_group_seconds = 0.05  # no messages to amortise: small groups keep progress fresh
    copies_psets = True  # the worker must not be able to change the caller's dicts
    catches_interrupt = False  # Ctrl-C interrupts the map, it is not the pset's failure

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.queue: collections.deque[Task] = collections.deque()
        self.ctx: MapContext | None = None

    def start(self) -> None:
        pass

    def begin_map(self, ctx: MapContext, settings: Settings) -> None:
        self.ctx = ctx

    def end_map(self) -> None:
        self.ctx = None
        self.queue.clear()

    def free_slots(self) -> int:
        return 0 if self.queue else 1

    def worker_count(self) -> int:
        return 1

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def busy(self) -> bool:
        return bool(self.queue)

    def poll(self, timeout: float | None) -> Sequence[Outcome]:
        if not self.queue:
            return []
        assert self.ctx is not None
        task = self.queue.popleft()
        home = os.getcwd()
        if self.ctx.chdir:
            os.chdir(self.ctx.chdir)
        try:
            result = run_group(self.ctx, task.positions, task.psets, task.attempt)
        except GroupInterrupted as exc:  # the engine keeps the psets the group finished
            exc.task = task
            raise
        except InitializerFailed as exc:
            raise BackendError(f"{exc.message}: no pset can run\n{exc.traceback}") from exc
        finally:
            os.chdir(home)
        return [GroupDone(task, result)]

    def cancel(self) -> None:
        self.queue.clear()

    def shutdown(self) -> None:
        self.queue.clear()

    def core_count(self) -> int:
        return 1

    def resources(self) -> list[dict[str, Any]]:
        import psutil

        return [{"num_cores": 1, "num_gpus": 0, "memory": psutil.virtual_memory().total}]
