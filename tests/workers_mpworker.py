"""Worker functions for the multiprocessing-backend tests (processes a pset starts, values that do not
travel), at module level so worker processes can import them."""

from __future__ import annotations

import ctypes
import importlib
import os
import shlex
import subprocess
import sys
import time
from typing import Any

import psutil

from paramsurvey import utils

# How long a tagged command sleeps: far longer than any test, so only a kill ends it in time.
TAGGED_SLEEP = 300


def tagged_command(token: str) -> list[str]:
    """A long sleep whose argv carries ``token``, so a test can find it among all processes."""
    return [sys.executable, "-c", f"import time; time.sleep({TAGGED_SLEEP})", token]


def tagged_processes(token: str) -> list[psutil.Process]:
    """Live processes whose command line carries ``token`` (zombies are dead: they do not count)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if token in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_for_tagged(token: str, count: int, seconds: float) -> list[psutil.Process]:
    """The tagged processes once there are ``count`` of them, or what there is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = tagged_processes(token)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def wait_until_gone(token: str, seconds: float) -> list[psutil.Process]:
    """Tagged processes still alive after waiting up to ``seconds`` for all of them to end."""
    deadline = time.monotonic() + seconds
    while True:
        left = tagged_processes(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _double_fork_daemon(command: list[str]) -> None:
    """The classic daemon: fork, setsid, fork again, the middle process exits (the grandchild is
    orphaned and in a session of its own, outside its worker's process group)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.execv(command[0], command)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def start_then(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Starts a tagged command as pset['how'] says (only when pset['token'] is set), then behaves as
    pset['then'] says: 'return', 'hang', 'os_exit' (code 5) or 'segfault'."""
    token = pset.get("token")
    if token:
        command = tagged_command(token)
        how = pset["how"]
        if how == "popen":
            subprocess.Popen(command)
        elif how == "system":  # the shell's '&': the command inherits the worker's pipes
            os.system(shlex.join(command) + " &")
        elif how == "daemon":
            _double_fork_daemon(command)
        elif how == "run_worker":  # the package's own command-line worker: blocks until the command ends
            utils.subprocess_run_worker({"run_args": command}, system_kwargs, user_kwargs)
        else:
            raise ValueError(f"unknown how: {how!r}")
    then = pset.get("then", "return")
    if then == "hang":
        time.sleep(3600)
    elif then == "os_exit":
        os._exit(5)
    elif then == "segfault":
        ctypes.string_at(0)
    return {"y": pset["x"]}


WORKER_ONLY_SOURCE = '''
class Thing:
    """Importable in the worker process that wrote this module, not in the driver."""
    def __init__(self, x):
        self.x = x
'''


def worker_only_value(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """pset['odd'] returns an object of a class the driver cannot import: it pickles and loads in
    the worker, but not in the driver."""
    if not pset.get("odd"):
        return {"y": pset["x"]}
    directory = user_kwargs["dir"]
    os.makedirs(directory, exist_ok=True)
    name = user_kwargs["module"]
    path = os.path.join(directory, name + ".py")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(WORKER_ONLY_SOURCE)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module = importlib.import_module(name)
    return {"y": module.Thing(pset["x"])}


def _exit_on_load(code: int) -> None:
    os._exit(code)


class LoadsOnlyInTheDriver:
    """A pset value that pickles, and whose loading raises in a worker process (not in a test's
    driver, which never loads what it sends)."""

    def __reduce__(self) -> Any:
        return (_fail_on_load, ("this value cannot be loaded in a worker process",))


def _fail_on_load(message: str) -> None:
    raise RuntimeError(message)


class KillsItsLoader:
    """A pset value whose loading ends the process that loads it (exit code 7)."""

    def __reduce__(self) -> Any:
        return (_exit_on_load, (7,))


def read_value(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {"y": pset["x"], "value": type(pset.get("value")).__name__}
