"""Real Ray and Dask clusters on loopback for the tests: started from each engine's command line,
stopped by PID (never ``ray stop``, which stops every Ray process of the user).

A cluster is shared by every test module of the session that asks for it (starting one costs
seconds), and stopped when the last of those modules' session fixtures is torn down::

    @pytest.fixture(scope="session")
    def ray_cluster():
        with _clusters.shared("ray") as cluster:
            yield cluster
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import psutil

BIN = os.path.dirname(sys.executable)
HEAD_IP, NODE_IP, EXTRA_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
# Ray's token auth, on by default in 2.60, must be set the same in every process: else a node
# fails to join with InvalidAuthToken after ~20 s.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
START_TIMEOUT = 90.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# A command's supervisor: it runs the command and stops its whole process tree (SIGTERM, then
# SIGKILL after 10 s) when told to, or when the test process dies, even killed outright (a killed
# pytest runs no fixture teardown): Linux's parent-death signal. A Ray node whose head is gone does
# not stop on SIGTERM alone.
SUPERVISOR = textwrap.dedent("""
    import ctypes, os, signal, subprocess, sys
    import psutil

    if sys.platform.startswith('linux'):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit('the test process is gone')
    child = subprocess.Popen(sys.argv[2:])

    def stop(signum, frame):
        try:
            tree = [psutil.Process(child.pid)] + psutil.Process(child.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        child.terminate()
        _, alive = psutil.wait_procs(tree, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    sys.exit(child.wait())
""")


class Proc:
    """A command, under its supervisor, in its own session (a Ctrl-C sent to the test's process
    group misses it); it ends with the test process."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: str | None = None) -> None:
        self.args = args
        out = open(log, "wb") if log else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(os.getpid()), *args],
                                          env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.pid = self.popen.pid

    def family(self) -> list[psutil.Process]:
        try:
            me = psutil.Process(self.pid)
            return [me] + me.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the command and every process under it at once (a machine that dies)."""
        for p in self.family():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.popen.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL whatever of its process tree is left after ``grace`` seconds.
        The tree is read first: Ray's workers are not all in the command's process group."""
        family = self.family()
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        family += [p for p in self.family() if p not in family]
        _, alive = psutil.wait_procs(family, timeout=grace)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        self.popen.poll()


# -- Ray -------------------------------------------------------------------------------------------
class RayCluster:
    """A head (2 CPUs) on 127.0.0.2 and a second node (1 CPU, the custom resource ``special``) on
    127.0.0.3; ``add_node`` starts more."""

    def __init__(self) -> None:
        os.environ.update(RAY_ENV)  # this process (the driver) too
        self.env = dict(os.environ, **RAY_ENV)
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: socket paths
        self.port = free_port(HEAD_IP)
        self.address = f"{HEAD_IP}:{self.port}"
        self.head = Proc([os.path.join(BIN, "ray"), "start", "--head", "--block", f"--port={self.port}",
                          "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                          f"--temp-dir={self.temp_dir}", f"--node-ip-address={HEAD_IP}"],
                         env=self.env, log=os.path.join(self.temp_dir, "head.log"))
        self.nodes: list[Proc] = []
        try:
            self.second = self.add_node(NODE_IP, num_cpus=1, resources={"special": 1})
            self.wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return {"address": self.address, "_node_ip_address": HEAD_IP}

    def add_node(self, ip: str, num_cpus: int, resources: dict[str, float] | None = None) -> Proc:
        args = [os.path.join(BIN, "ray"), "start", f"--address={self.address}", "--block",
                f"--num-cpus={num_cpus}", f"--node-ip-address={ip}", "--disable-usage-stats"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        node = Proc(args, env=self.env, log=os.path.join(self.temp_dir, f"node-{ip}.log"))
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> list[dict[str, Any]]:
        """Connects this process as a driver for a moment (paramsurvey's init() connects again)."""
        import ray

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                ray.init(address=self.address, _node_ip_address=HEAD_IP, logging_level="ERROR",
                         log_to_driver=False)
                break
            except Exception:
                if time.monotonic() > deadline or not self.head.alive():
                    raise
                time.sleep(0.5)
        try:
            return [n for n in ray.nodes() if n.get("Alive")]
        finally:
            ray.shutdown()

    def wait_for_nodes(self, n: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.alive_nodes()) != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray cluster did not reach {n} nodes; logs in {self.temp_dir}")
            time.sleep(0.5)

    def procs(self) -> list[Proc]:
        return [self.head, *self.nodes]

    # -- what a test of both engines asks of either cluster: a member that joins, then dies --
    MEMBER_CORES = 2  # a member is a node of 2 CPUs

    def add_member(self) -> Proc:
        return self.add_node(EXTRA_IP, num_cpus=self.MEMBER_CORES)

    def wait_for_members(self) -> None:
        """Until every node started has joined (the head too)."""
        self.wait_for_nodes(1 + len(self.nodes))

    def remove_member(self, member: Proc) -> None:
        member.stop()
        self.nodes.remove(member)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.head.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# -- Dask ------------------------------------------------------------------------------------------
# A ``dask worker`` on a node where paramsurvey is not installed: its sys.path (which the
# nanny's worker process inherits) has no directory that holds paramsurvey.
WORKER_WITHOUT_PARAMSURVEY = textwrap.dedent("""
    import os, sys
    sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or '.', 'paramsurvey'))]
    from distributed.cli.dask_worker import main
    sys.argv[0] = 'dask-worker'
    main()
""")


class DaskCluster:
    """``dask scheduler`` on 127.0.0.1, one plain ``dask worker`` and one with the resource
    ``special``, each one thread; ``add_worker`` starts more. ``workers=False``: the scheduler alone."""

    def __init__(self, workers: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="dt", dir="/tmp")
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ, DASK_LOGGING__DISTRIBUTED="error")
        self.env = env
        self.scheduler = Proc([os.path.join(BIN, "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                               str(self.port), "--no-dashboard"], env=env,
                              log=os.path.join(self.dir, "scheduler.log"))
        self.workers: list[Proc] = []
        if not workers:
            return
        try:
            self.add_worker()
            self.special = self.add_worker("special=1")
            self.wait_for_workers(2)
        except BaseException:
            self.stop()
            raise

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return {"address": self.address}

    def add_worker(self, resources: str | None = None, without_paramsurvey: bool = False) -> Proc:
        n = len(self.workers)
        command = [sys.executable, "-c", WORKER_WITHOUT_PARAMSURVEY] if without_paramsurvey else [
            os.path.join(BIN, "dask"), "worker"]
        args = [*command, self.address, "--host", "127.0.0.1", "--nthreads", "1",
                "--nworkers", "1", "--no-dashboard", "--local-directory", os.path.join(self.dir, f"w{n}"),
                "--name", f"w{n}"]
        if resources:
            args += ["--resources", resources]
        worker = Proc(args, env=self.env, log=os.path.join(self.dir, f"worker{n}.log"))
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT)

    def procs(self) -> list[Proc]:
        return [self.scheduler, *self.workers]

    # -- what a test of both engines asks of either cluster: a member that joins, then dies --
    MEMBER_CORES = 1  # a member is a worker of 1 thread

    def add_member(self) -> Proc:
        return self.add_worker()

    def wait_for_members(self) -> None:
        """Until every worker started has joined."""
        self.wait_for_workers(len(self.workers))

    def remove_member(self, member: Proc) -> None:
        member.stop()
        self.workers.remove(member)

    def stop(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()
        self.scheduler.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- sharing between test modules ------------------------------------------------------------------
_clusters: dict[str, Any] = {}
_users: dict[str, int] = {}
_KINDS = {"ray": RayCluster, "dask": DaskCluster}


@contextlib.contextmanager
def shared(kind: str) -> Iterator[Any]:
    """The session's cluster of that kind, started on first use, stopped when its last user ends."""
    if kind not in _clusters:
        _clusters[kind] = _KINDS[kind]()
    _users[kind] = _users.get(kind, 0) + 1
    try:
        yield _clusters[kind]
    finally:
        _users[kind] -= 1
        if not _users[kind]:
            _clusters.pop(kind).stop()


def run_script(code: str, timeout: float = 60, env: dict[str, str] | None = None,
               **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter (with the tests directory importable)."""
    here = os.path.dirname(os.path.abspath(__file__))
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = here + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env, **kwargs)


def wait_for_no_new_children(before: set[int], timeout: float = 10.0) -> None:
    """Assert that every child process started since ``before`` was taken has ended (as conftest's
    per-test check does, for fixtures that keep a session across tests)."""
    from conftest import _children

    def new() -> list[psutil.Process]:
        # multiprocessing's resource tracker (started by a LocalCluster in this process) serves the
        # interpreter until it exits, as multiprocessing designs it
        shared_pids = {p.pid for cluster in _clusters.values() for proc in cluster.procs() for p in proc.family()}
        return [p for p in _children()
                if p.pid not in before and p.pid not in shared_pids and not _is_resource_tracker(p)]

    deadline = time.monotonic() + timeout
    while True:
        left = new()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    described = []
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            described.append((p.pid, p.cmdline()))
    assert not described, f"processes left behind: {described}"


def _is_resource_tracker(p: psutil.Process) -> bool:
    try:
        return any("multiprocessing.resource_tracker" in part for part in p.cmdline())
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def isolated(tmp_path: Any, monkeypatch: Any, finalize: bool = True) -> Iterator[None]:
    """conftest's per-test isolation, where the session's shared clusters may start processes
    during a test (Ray's worker pool grows, a Dask nanny restarts a killed worker): those are the
    clusters', stopped with them. ``finalize=False``: the backend outlives the test."""
    from conftest import _children

    import paramsurvey

    for key in list(os.environ):
        if key.startswith("PARAMSURVEY_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    before = {p.pid for p in _children()}
    yield
    if finalize:
        paramsurvey.finalize()
        wait_for_no_new_children(before)


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys, time
    import paramsurvey

    def slow(pset, system_kwargs, user_kwargs):  # no __main__ guard, as in the README
        time.sleep(0.1 if pset['x'] < 4 else 30)
        return {'y': pset['x']}

    def announce(user_ret, system_kwargs, user_kwargs):
        print('finished', user_ret['pset']['x'], flush=True)

    paramsurvey.init(backend=sys.argv[1], verbose=0)
    try:
        paramsurvey.map(slow, [{'x': i} for i in range(40)], out_func=announce, group_size=1)
    except paramsurvey.Interrupted as exc:
        r = exc.results
        print('interrupted', len(r), len(r.missing), sorted(set(r.missing['_status'])), flush=True)
        sys.exit(0)
    print('not interrupted', flush=True)
""")


def ctrl_c_in_a_script(tmp_path: Any, backend: str) -> None:
    """Run CTRL_C_SCRIPT with the embedded local start of ``backend``, SIGINT it once psets
    finish, and check: Interrupted within a few seconds, and no process of it left behind."""
    script = tmp_path / "driver.py"
    script.write_text(CTRL_C_SCRIPT)
    env = dict(os.environ, **RAY_ENV)
    proc = subprocess.Popen([sys.executable, str(script), backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        seen = [proc.stdout.readline() for _ in range(2)]
        assert all(line.startswith("finished") for line in seen), (seen, proc.stderr.read())
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline()
        while line.startswith("finished"):  # psets that finished as the signal arrived
            line = proc.stdout.readline()
        interrupted_after = time.monotonic() - sent
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line.startswith("interrupted"), (line, out, err)
    _, n_results, n_missing = line.split()[:3]
    assert int(n_results) >= 2 and int(n_results) + int(n_missing) == 40
    assert "'cancelled'" in line
    assert interrupted_after < 10  # a deadlock guard; the time itself is measured in benchmarks
    assert proc.returncode == 0, err
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


PIPED_SCRIPT = textwrap.dedent("""
    import functools, sys, time
    import paramsurvey

    FACTOR = 3

    def sleep_worker(pset, system_kwargs, user_kwargs):  # reads a module global
        time.sleep(pset['duration'])
        return {'slept': pset['duration'], 'scaled': FACTOR * pset['duration']}

    def scaled(pset, system_kwargs, user_kwargs, k):
        return {'k': k * pset['duration']}

    paramsurvey.init(backend='BACKEND', verbose=0)
    psets = [{'duration': 0.1}] * 5
    results = paramsurvey.map(sleep_worker, psets)
    for r in results.itertuples():
        print(r.duration, r.slept, r.scaled)
    print(paramsurvey.map(lambda p, s, u: {'y': 2 * p['duration']}, psets)['y'].tolist())
    print(paramsurvey.map(functools.partial(scaled, k=10), psets)['k'].tolist())
""")


def readme_example_piped(backend: str) -> None:
    """The README's first example piped to ``python -`` (no ``__main__`` guard, a worker reading
    module globals, a lambda, a functools.partial) works, and verbose=0 prints nothing of its own."""
    env = dict(os.environ, **RAY_ENV)
    out = subprocess.run([sys.executable, "-"], input=PIPED_SCRIPT.replace("BACKEND", backend), text=True,
                         capture_output=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0.1 0.1 0.30000000000000004"] * 5 + ["[0.2, 0.2, 0.2, 0.2, 0.2]",
                                                                              "[1.0, 1.0, 1.0, 1.0, 1.0]"]
    assert out.stderr == ""
