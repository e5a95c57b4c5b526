"""A real single-node Slurm on loopback for the tests: munged, slurmctld and slurmd in a short
temp dir (/tmp/psslurmXXXXXXXX), on free ports, with a partition of 2 CPUs::

    @pytest.fixture(scope="session")
    def slurm():
        with _slurm.shared() as cluster:
            yield cluster

    def test_it(slurm):
        job = slurm.sbatch("--wrap", "hostname")
        slurm.wait_until_gone(job)

Every Slurm command of a test runs with ``cluster.env`` (``SLURM_CONF`` names this cluster's
configuration). ``tools/install-slurm`` installs Slurm; without it the fixture skips loudly (fails
under CI, where a missing install step must not pass unseen).

Nothing outlives the cluster, even when pytest is killed outright: the three daemons run under a
*guardian* process (this file run as a script) that

- dies with the test process (Linux's parent-death signal), and stops everything as it goes;
- is a child subreaper: slurmstepd daemonizes (its parent becomes PID 1 otherwise), so without it
  the jobs' processes would leave the guardian's process tree and escape the kill;
- finds the cluster's processes a second way too: every job submitted with ``cluster.env``
  inherits the variable ``PSSLURM_DIR`` (sbatch exports the submitter's environment by default),
  the daemons name the dir in their command lines, and slurmstepd holds slurmd's log open;
- removes the temp dir last.

The daemons get a parent-death signal too, so a guardian killed outright takes them along, and the
next cluster started sweeps whatever a dead guardian left (its dir, its processes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psutil

# every process of a cluster's jobs carries this variable, set to the cluster's temp dir
TOKEN = "PSSLURM_DIR"
TEMP_PREFIX = "psslurm"  # short on purpose: munge's socket path lives under it (108-byte limit)
PARTITION = "debug"
CPUS = 2  # the machine's cores: two jobs of one CPU each run at once
# Slurm's daemons take ~1-5 s to start and register the node; 60 s is a deadlock guard for a busy
# machine, not an expectation.
START_TIMEOUT = 60.0
# one client command (sbatch, squeue, ...): a missing daemon makes them retry for up to 60 s
COMMAND_TIMEOUT = 30.0
# SIGTERM to the daemons, then SIGKILL to everything left after this long
STOP_GRACE = 10.0
# a dir of a cluster whose guardian is dead is swept by the next cluster; a dir that has no
# guardian pid file yet may be one being set up by a concurrent test run: only this old is stale
STALE_WITHOUT_PID_SECONDS = 600.0
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
MUNGE_KEY_BYTES = 1024
INSTALL_HINT = "Slurm is not installed: run tools/install-slurm (as root; apt-get installs slurm-wlm and munge)"

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class SlurmNotInstalled(RuntimeError):
    pass


def find_program(name: str) -> str | None:
    """The daemons live in sbin, which a non-root PATH often lacks."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(name, path=path)


def programs() -> dict[str, str]:
    found = {name: find_program(name) for name in PROGRAMS}
    missing = [name for name, where in found.items() if where is None]
    if missing:
        raise SlurmNotInstalled(f"{INSTALL_HINT}; missing: {', '.join(missing)}")
    return {name: where for name, where in found.items() if where is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slurm_conf(d: str, name: str, ctld_port: int, slurmd_port: int) -> str:
    return textwrap.dedent(f"""\
        ClusterName={name}
        SlurmctldHost=localhost
        SlurmUser=root
        SlurmdUser=root
        AuthType=auth/munge
        AuthInfo=socket={d}/munge.sock
        CredType=cred/munge
        SlurmctldPort={ctld_port}
        SlurmdPort={slurmd_port}
        StateSaveLocation={d}/state
        SlurmdSpoolDir={d}/spool
        SlurmctldPidFile={d}/slurmctld.pid
        SlurmdPidFile={d}/slurmd.pid
        SlurmctldLogFile={d}/slurmctld.log
        SlurmdLogFile={d}/slurmd.log
        # no cgroups needed: processes are tracked by their parentage, tasks are not confined
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        # Debian's default (pmix) is not installed and only logs errors at every start
        MpiDefault=none
        SelectType=select/cons_tres
        SelectTypeParameters=CR_Core
        ReturnToService=2
        # the node below is declared, not probed: a machine with fewer cores or less memory must
        # not drain it
        SlurmdParameters=config_overrides
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        NodeName=localhost CPUs={CPUS} RealMemory=8000 State=UNKNOWN
        PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
        """)


class SlurmCluster:
    """A running Slurm. ``env``: the environment every Slurm command (and dask-jobqueue) needs;
    ``run(args)``: a Slurm command under it; ``stop()``: nothing of it left."""

    def __init__(self) -> None:
        self.programs = programs()
        sweep_stale()
        self.dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/tmp")
        self.partition = PARTITION
        self.cpus = CPUS
        self.conf = os.path.join(self.dir, "slurm.conf")
        sbin = os.pathsep.join(os.path.dirname(p) for p in self.programs.values())
        self.env = dict(os.environ, SLURM_CONF=self.conf, **{TOKEN: self.dir})
        self.env["PATH"] = self.env.get("PATH", "") + os.pathsep + sbin
        for variable in list(self.env):  # a submitting shell's job context must not leak in
            if variable.startswith(("SLURM_", "SBATCH_", "SQUEUE_")) and variable != "SLURM_CONF":
                del self.env[variable]
        self.guardian: subprocess.Popen[bytes] | None = None
        try:
            self._write_files()
            self._start_guardian()
            self.wait_until_idle()
        except BaseException:
            self.stop()
            raise

    # -- start -------------------------------------------------------------------------------------
    def _write_files(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "jobs"):
            os.mkdir(os.path.join(d, sub))
        key = os.path.join(d, "munge.key")
        with open(key, "wb") as f:
            f.write(secrets.token_bytes(MUNGE_KEY_BYTES))
        os.chmod(key, 0o400)  # munged refuses a key others can read
        name = "ps" + secrets.token_hex(4)  # unique: concurrent clusters must not share anything
        with open(self.conf, "w") as f:
            f.write(slurm_conf(d, name, free_port(), free_port()))
        p = self.programs
        daemons = [
            # -F: stay in the foreground (under the guardian); -f: run although we are root
            ["munge", [p["munged"], "-F", "-f", f"--key-file={key}", f"--socket={d}/munge.sock",
                       f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                       f"--seed-file={d}/munge.seed"]],
            ["slurmctld", [p["slurmctld"], "-D", "-f", self.conf]],
            ["slurmd", [p["slurmd"], "-D", "-N", "localhost", "-f", self.conf]],
        ]
        with open(os.path.join(d, "daemons.json"), "w") as f:
            json.dump(daemons, f)

    def _start_guardian(self) -> None:
        log = open(os.path.join(self.dir, "guardian.log"), "wb")
        try:
            self.guardian = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "guard", str(os.getpid()), self.dir],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # a Ctrl-C sent to the test's process group misses it
        finally:
            log.close()

    def wait_until_idle(self, timeout: float = START_TIMEOUT) -> None:
        """Until the node takes jobs; a guardian that exits (a daemon failed) fails at once."""
        deadline = time.monotonic() + timeout
        state = ""
        while state != "idle":
            if self.guardian is not None and self.guardian.poll() is not None:
                raise RuntimeError(f"Slurm failed to start:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Slurm node is {state!r}, not idle, after {timeout} s:\n{self.logs()}")
            out = self.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], check=False, timeout=5)
            state = out.stdout.strip().rstrip("*")  # '*': not responding
            time.sleep(0.2)

    def logs(self) -> str:
        parts = []
        for name in ("guardian.log", "munged.log", "slurmctld.log", "slurmd.log"):
            with contextlib.suppress(OSError), open(os.path.join(self.dir, name), errors="replace") as f:
                parts.append(f"--- {name}\n" + "".join(f.readlines()[-30:]))
        return "\n".join(parts)

    # -- use ---------------------------------------------------------------------------------------
    def run(self, args: Sequence[str], check: bool = True, timeout: float = COMMAND_TIMEOUT,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """A command under the cluster's environment, its output captured as text."""
        kwargs.setdefault("cwd", self.dir)
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and out.returncode:
            raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
        return out

    def sbatch(self, *args: str) -> str:
        """Submit; the job's id. Its output goes to the cluster dir unless ``args`` say otherwise."""
        defaults = [] if any(a.startswith(("-o", "--output")) for a in args) else [
            f"--output={self.dir}/jobs/%j.out"]
        return self.run(["sbatch", "--parsable", *defaults, *args]).stdout.strip().split(";")[0]

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Every job in the queue: id -> (state, reason)."""
        out = self.run(["squeue", "-h", "-o", "%i %T %r"]).stdout
        return {job: (state, reason) for job, state, reason in (line.split(None, 2) for line in out.splitlines())}

    def wait_for_state(self, job: str, states: Sequence[str], timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.jobs().get(job, ("GONE", ""))[0]
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} is {state}, not {list(states)}, after {timeout} s")
            time.sleep(0.2)

    def wait_until_gone(self, job: str, timeout: float = START_TIMEOUT) -> None:
        """Until the job has left the queue (finished, failed or cancelled, and cleaned up)."""
        self.wait_for_state(job, ["GONE"], timeout)

    def processes_of_job(self, job: str) -> list[psutil.Process]:
        """The job's own processes (its script and what it started), found by the variable Slurm
        sets in every one of them."""
        found = []
        for p in self.job_processes():
            try:
                if p.environ().get("SLURM_JOB_ID") == job:
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
        return found

    def job_processes(self) -> list[psutil.Process]:
        """Every process of this cluster's jobs (and its slurmstepds): the guardian's descendants
        but the daemons, and any other process of the cluster (processes_of_cluster)."""
        daemons = set(self.daemon_pids())
        found = {p.pid: p for p in processes_of_cluster(self.dir)}
        if self.guardian is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for p in psutil.Process(self.guardian.pid).children(recursive=True):
                    found.setdefault(p.pid, p)
        me = {os.getpid(), self.guardian.pid if self.guardian else -1}
        return [p for pid, p in found.items()
                if pid not in daemons and pid not in me and _alive(p) and not _is_daemon_helper(p)]

    def daemon_pids(self) -> list[int]:
        pids = []
        for name in ("munged.pid", "slurmctld.pid", "slurmd.pid"):
            with contextlib.suppress(OSError, ValueError), open(os.path.join(self.dir, name)) as f:
                pids.append(int(f.read().split()[0]))
        return pids

    def cancel_all(self) -> None:
        """scancel every job of this cluster (they all run as this user)."""
        jobs = list(self.jobs())
        if jobs:
            self.run(["scancel", *jobs], check=False)

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, then the guardian stops the daemons and kills whatever is left of the
        process tree; then nothing of the cluster is left, or this says what is."""
        if self.guardian is not None and self.guardian.poll() is None:
            with contextlib.suppress(Exception):
                self.cancel_all()
            self.guardian.send_signal(signal.SIGTERM)
            try:
                self.guardian.wait(timeout=4 * STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.guardian.kill()
                self.guardian.wait()
        left = [p for p in processes_of_cluster(self.dir) if p.pid != os.getpid()]
        kill_all(left)
        shutil.rmtree(self.dir, ignore_errors=True)
        described = []
        for p in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                described.append((p.pid, p.cmdline()))
        assert not described, f"the Slurm guardian left processes behind (killed now): {described}"


# -- leftovers ---------------------------------------------------------------------------------------
def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_daemon_helper(p: psutil.Process) -> bool:
    """slurmctld's long-lived helper (it runs its scripts): a daemon's, not a job's."""
    with contextlib.suppress(psutil.Error):
        return "slurmscriptd" in " ".join(p.cmdline())
    return False


def processes_of_cluster(d: str) -> list[psutil.Process]:
    """Every live process of the cluster of dir ``d``, wherever it was reparented: it carries the
    token (the jobs' processes, the daemons), names ``d`` in its command line (the daemons), or
    holds a file open under it (slurmstepd: it wipes its environment, and writes slurmd's log)."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if _alive(p) and (p.environ().get(TOKEN) == d or any(d in part for part in p.cmdline())
                              or _holds_file_under(p.pid, d)):
                found.append(p)
    return found


def _holds_file_under(pid: int, d: str) -> bool:
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(fds, fd)).startswith(d + "/"):
                return True
    return False


def kill_all(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=5)


def sweep_stale() -> None:
    """Clusters whose guardian died without cleaning up (it was SIGKILLed): kill their processes,
    remove their dirs. A cluster of a concurrent test run has a live guardian and is left alone."""
    for entry in os.scandir("/tmp"):
        if not (entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            with open(os.path.join(entry.path, "guardian.pid")) as f:
                pid = int(f.read())
            stale = not _is_guardian_of(pid, entry.path)
        except (OSError, ValueError):
            stale = time.time() - entry.stat().st_mtime > STALE_WITHOUT_PID_SECONDS
        if stale:
            kill_all(processes_of_cluster(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)


def _is_guardian_of(pid: int, d: str) -> bool:
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "guard" in cmdline and d in cmdline


# -- sharing between test modules, and the skip ------------------------------------------------------
_shared: SlurmCluster | None = None
_users = 0


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A fresh cluster of its own, stopped on exit. Without Slurm: a skip naming tools/install-slurm,
    or under CI (CI=true) a failure."""
    cluster = _start_or_skip()
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def shared() -> Iterator[SlurmCluster]:
    """The session's cluster, started on first use, stopped when its last user ends."""
    global _shared, _users
    if _shared is None:
        _shared = _start_or_skip()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if not _users:
            cluster, _shared = _shared, None
            cluster.stop()


def _start_or_skip() -> SlurmCluster:
    import pytest

    try:
        return SlurmCluster()
    except SlurmNotInstalled as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (CI must install it)", pytrace=False)
        print(f"\n*** SKIPPING the Slurm tests: {exc} ***", file=sys.stderr)
        pytest.skip(f"*** {exc} ***")
        raise  # unreachable: pytest.skip raises


# -- the guardian (this file run as a script) ---------------------------------------------------------
class _Stop(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def guard(test_pid: int, d: str) -> int:
    """Start the daemons, reap every process that ends under us (orphaned job processes become
    ours, as subreaper), and on SIGTERM (sent by stop(), or by the kernel when the test process
    dies) stop everything and remove ``d``. A daemon that exits on its own stops the cluster too."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    _die_with_parent()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != test_pid:  # the test process died before the death signal was armed
        _shutdown(d, {})
        return 1
    with open(os.path.join(d, "guardian.pid"), "w") as f:
        f.write(str(os.getpid()))
    daemons: dict[int, str] = {}
    try:
        with open(os.path.join(d, "daemons.json")) as f:
            for name, argv in json.load(f):
                daemons[_start_daemon(d, name, argv)] = name
                if name == "munge":
                    _wait_for_path(os.path.join(d, "munge.sock"))
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid in daemons:
                print(f"guardian: {daemons[pid]} exited ({_describe(status)}); stopping", flush=True)
                _shutdown(d, daemons)
                return 1
    except _Stop:
        _shutdown(d, daemons)
        return 0


def _start_daemon(d: str, name: str, argv: list[str]) -> int:
    out = open(os.path.join(d, f"{name}.out"), "wb")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent).pid
    finally:
        out.close()


def _wait_for_path(path: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _shutdown(d: str, daemons: dict[int, str]) -> None:
    """Jobs first (scancel, their end awaited, then their processes killed), then slurmd, then
    slurmctld, munge last (the others authenticate through it as they stop); then every process
    left under us; then the dir. The order matters for speed: a slurmd whose controller is gone
    retries its last messages to it for ~10 s before it exits."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
    with contextlib.suppress(Exception):
        _cancel_and_await_jobs()
    me = psutil.Process()
    # scancel had its say (SIGTERM, then SIGKILL): whatever of the jobs is left now is killed,
    # slurmstepd included, which ignores SIGTERM
    _kill("jobs", _job_processes(me, d, daemons))
    for daemon in ("slurmd", "slurmctld", "munge"):
        _terminate(daemon, [p for p in me.children() if daemons.get(p.pid) == daemon])
    _terminate("the rest", me.children(recursive=True) + processes_of_cluster(d))
    shutil.rmtree(d, ignore_errors=True)


def _cancel_and_await_jobs() -> None:
    """scancel every job; wait (bounded) until the queue is empty."""
    deadline = time.monotonic() + STOP_GRACE
    cancelled: set[str] = set()
    while time.monotonic() < deadline:
        jobs = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                                  timeout=STOP_GRACE, check=True).stdout.split())
        if not jobs:
            return
        if jobs - cancelled:
            subprocess.run(["scancel", *(jobs - cancelled)], capture_output=True, timeout=STOP_GRACE)
            cancelled |= jobs
        time.sleep(0.1)


def _job_processes(me: psutil.Process, d: str, daemons: dict[int, str]) -> list[psutil.Process]:
    """Our descendants and the cluster's other processes, but the daemons and their children (slurmd's
    and slurmctld's helpers); slurmstepd is not among those: it daemonizes, and is adopted by us."""
    found = []
    for p in me.children(recursive=True) + processes_of_cluster(d):
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.pid not in daemons and p.ppid() not in daemons:
                found.append(p)
    return found


def _kill(what: str, procs: list[psutil.Process]) -> None:
    procs = [p for p in procs if p.pid != os.getpid()]
    print(f"guardian: {time.strftime('%H:%M:%S')} killing {what}: {[p.pid for p in procs]}", flush=True)
    kill_all(procs)


def _terminate(what: str, procs: list[psutil.Process]) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE; reaped (they are our children, or adopted)."""
    procs = [p for p in procs if p.pid != os.getpid()]
    print(f"guardian: {time.strftime('%H:%M:%S')} stopping {what}: {[p.pid for p in procs]}", flush=True)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE)
    for p in alive:
        print(f"guardian: {p.pid} outlived SIGTERM by {STOP_GRACE} s: SIGKILL", flush=True)
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:  # zombies of processes we did not list
            pass


if __name__ == "__main__" and sys.argv[1:2] == ["guard"]:
    sys.exit(guard(int(sys.argv[2]), sys.argv[3]))
