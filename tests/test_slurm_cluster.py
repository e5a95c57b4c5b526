"""The test suite's Slurm (tests/_slurm.py), tested for real: jobs run, two at once on the node's
2 CPUs, scancel ends a job's processes, and nothing of a cluster outlives it, even when the test
process or the guardian is killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import _slurm
import psutil
import pytest

pytestmark = pytest.mark.slurm  # run by `make test-slurm`, which installs Slurm first

# a deadlock guard for a job's whole life on an idle node (it starts within ~3 s)
JOB_TIMEOUT = 60.0
# how long what a SIGKILL orphans may take to follow it (parent-death signals, SIGTERM grace)
CLEANUP_TIMEOUT = 3 * _slurm.STOP_GRACE


@pytest.fixture(scope="session")
def slurm():
    with _slurm.shared() as cluster:
        yield cluster


def wait_for_file(path, timeout=JOB_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.1)


def wait_for_processes_of_job(cluster, job, n, timeout=JOB_TIMEOUT):
    deadline = time.monotonic() + timeout
    while len(found := cluster.processes_of_job(job)) < n:
        assert time.monotonic() < deadline, f"job {job} has {len(found)} processes, not {n}"
        time.sleep(0.1)
    return found


def assert_all_gone(procs, timeout=CLEANUP_TIMEOUT):
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


def cluster_leftovers(d):
    """What of the cluster of dir ``d`` remains: processes carrying its token, naming its dir
    (munged, slurmctld and slurmd name it in their command lines) or holding a file open under it
    (slurmstepd holds slurmd's log), and the dir itself."""
    procs = []
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            files = [os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd")]
            if (p.environ().get(_slurm.TOKEN) == d or any(d in part for part in p.cmdline())
                    or any(f.startswith(d + "/") for f in files)):
                procs.append((p.pid, p.cmdline()))
        except (psutil.Error, OSError):
            pass
    return procs, os.path.exists(d)


def slurm_tmp_entries():
    return {name for name in os.listdir("/tmp") if name.startswith(_slurm.TEMP_PREFIX)
            or "slurm" in name.lower() or "munge" in name.lower()}


# -- jobs ----------------------------------------------------------------------------------------------
def test_a_job_runs_and_writes_its_file(slurm, tmp_path):
    out = tmp_path / "written"
    job = slurm.sbatch("--wrap", f"echo hello from $SLURM_JOB_ID > {out}")
    slurm.wait_until_gone(job, JOB_TIMEOUT)
    assert out.read_text() == f"hello from {job}\n"


def test_two_jobs_of_one_cpu_run_at_once(slurm, tmp_path):
    """Each job waits until both have started (a barrier): they finish only if they ran at once."""
    barrier = textwrap.dedent(f"""\
        touch {tmp_path}/started.$SLURM_JOB_ID
        for i in $(seq 600); do
            [ $(ls {tmp_path} | grep -c '^started') -ge 2 ] && {{ touch {tmp_path}/passed.$SLURM_JOB_ID; exit 0; }}
            sleep 0.1
        done
        exit 1
        """)
    jobs = [slurm.sbatch("--cpus-per-task=1", "--wrap", barrier) for _ in range(2)]
    for job in jobs:
        slurm.wait_until_gone(job, JOB_TIMEOUT + 60)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("passed")) == \
        sorted(f"passed.{job}" for job in jobs)


def test_a_job_asking_for_more_cpus_than_the_node_has_stays_pending(slurm):
    """Slurm accepts it and never runs it: squeue's reason says why (dask-jobqueue's workers that
    never come look like this). scancel takes it away."""
    job = slurm.sbatch("--cpus-per-task=3", "--wrap", "true")
    deadline = time.monotonic() + JOB_TIMEOUT
    while slurm.jobs()[job] != ("PENDING", "PartitionConfig"):  # the reason is 'None' until scheduled
        assert time.monotonic() < deadline, slurm.jobs()
        time.sleep(0.2)
    slurm.run(["scancel", job])
    slurm.wait_until_gone(job, JOB_TIMEOUT)


def test_sbatch_refuses_a_partition_that_does_not_exist(slurm):
    out = slurm.run(["sbatch", "--partition=nosuchpartition", "--wrap", "true"], check=False)
    assert out.returncode == 1
    assert "Batch job submission failed: Invalid partition name specified" in out.stderr
    assert slurm.partition == "debug" and slurm.run(["sinfo", "-h", "-o", "%P"]).stdout.split() == ["debug*"]


def test_scancel_of_a_running_job_ends_its_processes(slurm):
    job = slurm.sbatch("--wrap", "sleep 300 & sleep 301; wait")
    assert slurm.wait_for_state(job, ["RUNNING"], JOB_TIMEOUT) == "RUNNING"
    procs = wait_for_processes_of_job(slurm, job, 3)  # the script and its two sleeps
    slurm.run(["scancel", job])
    slurm.wait_until_gone(job, JOB_TIMEOUT)
    assert_all_gone(procs)


# -- the harness leaves nothing ----------------------------------------------------------------------
def test_nothing_outlives_a_closed_cluster():
    tmp_before = slurm_tmp_entries()
    with _slurm.slurm_cluster() as cluster:
        d = cluster.dir
        job = cluster.sbatch("--wrap", "sleep 300 & sleep 301; wait")
        cluster.wait_for_state(job, ["RUNNING"], JOB_TIMEOUT)
        procs = wait_for_processes_of_job(cluster, job, 3)
        procs += [psutil.Process(pid) for pid in cluster.daemon_pids()]
        assert len(procs) == 6  # the job's 3, munged, slurmctld, slurmd
        procs.append(psutil.Process(cluster.guardian.pid))
    assert_all_gone(procs, timeout=5)  # stop() returned: all must be gone already
    assert cluster_leftovers(d) == ([], False)
    assert slurm_tmp_entries() <= tmp_before


DRIVER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import _slurm

    cluster = _slurm.SlurmCluster()
    job = cluster.sbatch("--wrap", "sleep 300 & sleep 301; wait")
    cluster.wait_for_state(job, ["RUNNING"])
    while len(procs := [p for p in cluster.job_processes() if p.environ().get("SLURM_JOB_ID") == job]) < 3:
        time.sleep(0.1)
    pids = [p.pid for p in procs] + cluster.daemon_pids() + [cluster.guardian.pid]
    print(json.dumps({"dir": cluster.dir, "pids": pids, "guardian": cluster.guardian.pid}), flush=True)
    time.sleep(600)
""")


def start_driver():
    """A test process of its own, with a cluster and a running job; killed by the caller."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, os.path.dirname(__file__)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = driver.stdout.readline()
    if not line:
        driver.kill()
        _, err = driver.communicate(timeout=30)
        pytest.fail(f"the driver failed: {err}")
    info = json.loads(line)
    return driver, info, [psutil.Process(pid) for pid in info["pids"]]


def test_nothing_outlives_a_killed_test_process():
    """pytest killed outright runs no teardown: the guardian's parent-death signal stops all."""
    driver, info, procs = start_driver()
    try:
        assert len(procs) == 7
        driver.kill()
        driver.communicate(timeout=30)
        assert_all_gone(procs)
        deadline = time.monotonic() + CLEANUP_TIMEOUT
        while os.path.exists(info["dir"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster_leftovers(info["dir"]) == ([], False)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_what_a_killed_guardian_leaves_is_swept_by_the_next_cluster():
    """A guardian killed outright cleans nothing: its daemons die with it (their parent-death
    signal), its jobs' processes are orphans; the next cluster started finds them by their token."""
    driver, info, procs = start_driver()
    try:
        os.kill(info["guardian"], signal.SIGKILL)
        daemons = [p for p in procs if p.pid != info["guardian"]][-3:]
        assert_all_gone(daemons)
        orphans = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert orphans, "the job's processes were expected to outlive a SIGKILLed guardian"
        with _slurm.slurm_cluster():
            assert_all_gone(procs, timeout=5)  # swept as the new cluster started
            assert cluster_leftovers(info["dir"]) == ([], False)
    finally:
        driver.kill()
        driver.communicate(timeout=30)


# -- without Slurm --------------------------------------------------------------------------------------
def test_without_slurm_the_tests_skip_naming_the_install_script(monkeypatch):
    monkeypatch.setattr(_slurm, "PROGRAMS", (*_slurm.PROGRAMS, "slurm-not-installed-here"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="tools/install-slurm.*slurm-not-installed-here"):
        _slurm._start_or_skip()


def test_without_slurm_ci_fails(monkeypatch):
    monkeypatch.setattr(_slurm, "PROGRAMS", (*_slurm.PROGRAMS, "slurm-not-installed-here"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="tools/install-slurm"):
        _slurm._start_or_skip()
