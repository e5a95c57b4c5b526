"""Worker functions and helpers for the journal tests (no tests here).

At module level, so that worker processes import them by name, and so that the survey scripts the
tests run in subprocesses can import them too (tests/ is on their PYTHONPATH).
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from typing import Any

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
TESTS = os.path.dirname(os.path.abspath(__file__))


def touch(path: str) -> str:
    with open(path, "w"):
        pass
    return path


class Tripwire:
    """A result value whose unpickling leaves a file: proves what reads a journal unpickles."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch, (self.path,))


def marked(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Leaves a marker file per call (x, then a unique suffix), sleeps user_kwargs['sleep'], returns
    values of every kind the journal stores: int, float, str, bool with gaps, None, pickled list."""
    directory = user_kwargs["dir"]
    with open(os.path.join(directory, f"{pset['x']}-{time.monotonic_ns()}-{os.getpid()}"), "w"):
        pass
    time.sleep(user_kwargs.get("sleep", 0))  # not in the pset: a resumed survey need not sleep
    if os.path.exists(os.path.join(directory, "FAIL")) and pset["x"] % 3 == 1:
        raise ValueError(f"asked to fail: x={pset['x']}")
    x = pset["x"]
    out: dict[str, Any] = {"y": x * 10, "half": x / 2, "name": f"n{x}", "seed": system_kwargs["seed"],
                           "attempt": system_kwargs["attempt"], "items": [x, str(x)]}
    if x % 2:
        out["odd"] = True  # absent from even psets: a nullable boolean column
    return out


def seeded(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {"seed": system_kwargs["seed"]}


def journaled_so_far(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """For x == 1: wait, then count the psets already on disk in the journal (serial backend: the
    survey is paused here, only the journal's writer thread works)."""
    if pset["x"] != 1:
        return {"seen": -1}
    time.sleep(user_kwargs["wait"])
    import pyarrow.parquet as pq

    from paramsurvey.journal._store import list_parts

    path = user_kwargs["journal"]
    return {"seen": sum(pq.read_metadata(os.path.join(path, p.name)).num_rows for p in list_parts(path))}


def crash_first(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Dies on the first attempt of x == 1; returns its seed and attempt."""
    if pset["x"] == 1 and system_kwargs["attempt"] == 0:
        os._exit(7)
    return {"seed": system_kwargs["seed"], "attempt": system_kwargs["attempt"]}


def unpicklable_on_one(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    """Returns a lambda for x == 1: fine in memory (serial backend), impossible to journal."""
    marked(pset, system_kwargs, user_kwargs)
    return {"f": (lambda: None) if pset["x"] == 1 else None, "x2": pset["x"] * 2}


def tripwire(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    return {"obj": Tripwire(user_kwargs["wire"]), "x2": pset["x"] * 2}


def failing(pset: dict[str, Any], system_kwargs: dict[str, Any], user_kwargs: Any) -> dict[str, Any]:
    if pset["x"] % 3 == 0:
        raise KeyError(f"x{pset['x']}")
    if pset["x"] % 3 == 1:
        raise ValueError(f"bad x: {pset['x']}")
    if pset["x"] == 5:
        os._exit(3)
    return {"y": pset["x"]}


def markers(directory: str) -> dict[int, int]:
    """How many times each x ran, from the marker files."""
    counts: dict[int, int] = {}
    for name in os.listdir(directory):
        if name[0].isdigit():
            x = int(name.split("-")[0])
            counts[x] = counts.get(x, 0) + 1
    return counts


SURVEY = textwrap.dedent("""
    import os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    import paramsurvey
    from journal_workers import marked
    n, sleep, journal, marks = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    psets = [{{'x': i}} for i in range(n)]
    paramsurvey.init(backend='multiprocessing', ncores=2, verbose=0)
    try:
        r = paramsurvey.map(marked, psets, journal=journal, user_kwargs={{'dir': marks, 'sleep': sleep}},
                            group_size={group})
    except paramsurvey.Interrupted as e:
        done = sorted(e.results.results['x'].tolist())
        print('INTERRUPTED', len(done), ' '.join(map(str, done)), flush=True)
        sys.exit(0)
    print('DONE', len(r.results), flush=True)
""")


def survey_process(tmp: str, n: int, sleep: float, journal: str, marks: str, group: int = 1) -> Any:
    """Start the survey script in its own Python; returns the Popen."""
    import subprocess

    script = os.path.join(tmp, "survey.py")
    with open(script, "w") as f:
        f.write(SURVEY.format(group=group))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, TESTS, env.get("PYTHONPATH", "")])
    for key in list(env):
        if key.startswith("PARAMSURVEY_"):
            del env[key]
    return subprocess.Popen([sys.executable, script, str(n), str(sleep), journal, marks], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(journal: str, at_least: int, proc: Any, timeout: float = 30.0) -> int:
    """Wait until the journal (written by another process) holds at least this many psets."""
    from paramsurvey.journal import JournalError, read

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the survey ended early: {proc.communicate()}")
        try:
            n = len(read(journal))
        except JournalError:
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"the journal never held {at_least} psets")


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    import psutil

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    left = list(pids)
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of the killed survey left behind: {left}")
