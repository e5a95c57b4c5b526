"""What the batch queue says about paramsurvey's worker jobs, and what it refused.

- :func:`check_job_request`: ``sbatch --test-only`` of the job script, before any job is queued: a bad
  partition, account or memory request is refused here in the scheduler's own words.
- :class:`RefusalCatcher`: dask-jobqueue submits jobs in its event loop; a submission that fails
  there is only logged (by the ``tornado.application`` logger) and the cluster waits for workers
  that never come. The catcher keeps the submit command's error so the backend can raise it.
- :class:`QueueWatcher`: a thread that asks ``squeue`` (at most every ``POLL_INTERVAL`` seconds)
  how our jobs stand, for the progress line (``worker jobs: 0 running, 2 pending (Resources)``),
  and hands the job ids it sees to the guard that cancels them if the driver dies; asked again
  at once when workers come or go, and at a map's end, so the line is not stale.
- :data:`GUARD`: that guard, a process of its own (see :func:`start_guard`).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import traceback
from collections.abc import Callable

from ..exceptions import BackendError

log = logging.getLogger("paramsurvey")

# squeue at most this often: a progress line every second must not become a load on the
# scheduler's controller, which every user of the cluster shares
POLL_INTERVAL = 3.0
# one sbatch/squeue/scancel call: a controller that does not answer within this is reported,
# never waited on forever (Slurm's clients retry for up to a minute on their own)
COMMAND_TIMEOUT = 60.0
# what dask-jobqueue's failed submit command says (its RuntimeError's first line)
SUBMIT_FAILED = "Command exited with non-zero exit code"


def check_submit_command(submit_command: str, system: str) -> None:
    """A BackendError unless the batch system's submit command is here: dask-jobqueue would only
    log its absence, at every submission."""
    if shutil.which(submit_command) is None:
        raise BackendError(f"the {system} backend cannot find {submit_command!r} on PATH: run the survey where "
                           f"{system} jobs can be submitted (a login node), or put {submit_command} on PATH")


def check_job_request(submit_command: str, job_script: str, system: str) -> None:
    """Ask Slurm whether it would take this job (``sbatch --test-only``), queueing nothing; a
    refusal is a BackendError quoting sbatch."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="paramsurvey-job-") as script:
        script.write(job_script)
        script.flush()
        try:
            out = subprocess.run([submit_command, "--test-only", script.name], capture_output=True, text=True,
                                 timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BackendError(f"{submit_command} --test-only did not answer within {COMMAND_TIMEOUT:g} s: is the "
                               f"{system} controller reachable?") from None
    if out.returncode != 0:
        said = (out.stderr.strip() or out.stdout.strip() or f"exit code {out.returncode}")
        raise BackendError(f"{system} refuses the worker jobs' request: {said}\nthe job script was:\n"
                           f"{textwrap.indent(job_script.strip(), '    ')}")


def refusal_of(exc: BaseException | None) -> str | None:
    """What went wrong submitting a job: the submit command's own words from dask-jobqueue's
    RuntimeError, or any other error raised through dask-jobqueue's code (the command could not be
    run...); None for an error that is not a job's."""
    if exc is None:
        return None
    text = str(exc)
    if SUBMIT_FAILED in text:
        _, found, stderr = text.partition("stderr:")
        return (stderr.strip() if found else "") or text.strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if any(f"{os.sep}dask_jobqueue{os.sep}" in frame.filename for frame in frames):
        return f"{type(exc).__name__}: {text}"
    return None


class RefusalCatcher(logging.Filter):
    """On the ``tornado.application`` logger while the backend lives: keeps the first refusal, and
    keeps its traceback off stderr (the backend raises it as a BackendError, which says it all;
    verbose=0 must print nothing)."""

    LOGGER = "tornado.application"

    def __init__(self) -> None:
        super().__init__()
        self.refusal: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        said = refusal_of(exc)
        if said is None:
            return True
        if self.refusal is None:
            self.refusal = said
        return False

    def install(self) -> None:
        logging.getLogger(self.LOGGER).addFilter(self)

    def remove(self) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)


def describe(states: list[tuple[str, str, str]]) -> str:
    """``worker jobs: 1 running, 2 pending (Resources)`` from squeue's (id, state, reason) rows."""
    running = sum(1 for _, state, _ in states if state == "RUNNING")
    pending = [reason for _, state, reason in states if state == "PENDING"]
    text = f"worker jobs: {running} running, {len(pending)} pending"
    reasons = collections.Counter(r for r in pending if r and r != "None")
    if reasons:
        text += " (" + ", ".join(reasons) + ")"
    others = collections.Counter(state for _, state, _ in states if state not in ("RUNNING", "PENDING"))
    for state, n in sorted(others.items()):
        text += f", {n} {state.lower()}"
    return text


class QueueWatcher:
    """A daemon thread: ``squeue`` for jobs of ``job_name`` every POLL_INTERVAL; ``text`` is the
    latest answer (for the progress line), ``on_jobs`` gets the ids seen."""

    def __init__(self, job_name: str, on_jobs: Callable[[list[str]], None]) -> None:
        self.job_name = job_name
        self.on_jobs = on_jobs
        self.text = ""
        self.states: list[tuple[str, str, str]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="paramsurvey-squeue", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=COMMAND_TIMEOUT)

    def poll_once(self, timeout: float = COMMAND_TIMEOUT) -> None:
        """Ask squeue now (from any thread: the text is replaced whole)."""
        try:
            out = subprocess.run(["squeue", "-h", "--name", self.job_name, "-o", "%i %T %r"], capture_output=True,
                                 text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("slurm: squeue failed: %r", exc, extra={"ps_verbose": 2})
            return
        if out.returncode != 0:
            log.info("slurm: squeue failed: %s", out.stderr.strip(), extra={"ps_verbose": 2})
            return
        rows = [line.split(None, 2) for line in out.stdout.splitlines() if line.strip()]
        self.states = [(r[0], r[1], r[2] if len(r) > 2 else "") for r in rows if len(r) >= 2]
        self.text = describe(self.states)
        self.on_jobs([job for job, _, _ in self.states])

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.poll_once()
            self.stopped.wait(POLL_INTERVAL)


# The guard: a process of its own session (a terminal's Ctrl-C does not reach it) that reads job
# ids, one per line, from a pipe whose write end only the driver holds. At its end of file (the
# driver finished, or died, even by SIGKILL) it cancels every job it was told of, and every job of
# the survey's unique name where the system can cancel by name (Slurm): also a job submitted just
# before the driver died, and pending jobs, whose workers would otherwise start later and wait for
# a scheduler that is gone. Standard library only, started with -S: it must start fast and anywhere.
GUARD = textwrap.dedent("""
    import os, subprocess, sys
    fd, cancel, by_name = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    jobs, rest = set(), b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\\n")
        rest = lines.pop()
        jobs.update(line.decode() for line in lines if line.strip())
    for argv in ([cancel, *sorted(jobs)] if jobs else None, by_name or None):
        if argv:
            try:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
            except Exception:
                pass
""")


class Guard:
    """The driver's side of :data:`GUARD`: ``tell(ids)`` hands it job ids; ``close()`` lets it cancel
    and waits (bounded) for it to end."""

    def __init__(self, cancel_command: str, by_name: list[str]) -> None:
        read_end, self.write_end = os.pipe()
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-S", "-c", GUARD, str(read_end), cancel_command, *by_name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, pass_fds=(read_end,))
        except BaseException:
            os.close(self.write_end)
            raise
        finally:
            os.close(read_end)
        self.told: set[str] = set()
        self.lock = threading.Lock()

    def tell(self, jobs: list[str]) -> None:
        with self.lock:
            new = [j for j in jobs if j and j not in self.told]
            if not new or self.write_end < 0:
                return
            self.told.update(new)
            try:
                os.write(self.write_end, "".join(f"{j}\n" for j in new).encode())
            except OSError:
                pass

    def close(self, timeout: float = COMMAND_TIMEOUT) -> None:
        with self.lock:
            if self.write_end >= 0:
                os.close(self.write_end)
                self.write_end = -1
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
