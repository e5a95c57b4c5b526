"""The survey's driver as a Slurm batch job, against the test suite's real Slurm (tests/_slurm.py):
the sbatch scripts of examples/hpc/ (documented in docs/hpc.md), run as they are.

- scancel of a running survey: Slurm sends SIGTERM to every process of the job (the driver, its
  fork server, its workers), SIGKILL KillWait seconds later; the driver stops, writes its journal
  and exits; the same script submitted again resumes, and nothing finished runs twice.
- a survey longer than its time limit (``--time=1``: the shortest Slurm has) finishes over several
  allocations, each job queueing its successor (survey-chain.sbatch).
- Ray inside the allocation (ray-survey.sbatch): the head started as a job step, the driver joins
  it, and nothing is left of Ray or of the job at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import _slurm
import psutil
import pytest

from paramsurvey import journal as ps_journal

pytestmark = pytest.mark.slurm  # run by `make test-slurm`, which installs Slurm first

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SRC = os.path.join(ROOT, "src")
EXAMPLES = os.path.join(ROOT, "examples", "hpc")
BIN = os.path.dirname(sys.executable)
# a deadlock guard for one survey job of the sizes below on an idle node (they run ~5-20 s)
JOB_TIMEOUT = 120.0
# the chain: Slurm's shortest time limit is one minute, enforced by a check every 30 s, so each
# allocation runs 60-90 s; the survey needs ~120 s of work, two or three allocations
CHAIN_PSETS, CHAIN_SECONDS = 240, 1.0
CHAIN_TIMEOUT = 420.0
# SIGTERM to the job's end, when the processes honour it: scancel then waits KillWait (30 s here)
# before SIGKILL; this guard is only against a hang
STOP_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def slurm():
    with _slurm.shared() as cluster:
        yield cluster


@pytest.fixture
def workdir(tmp_path):
    """A survey's directory: the example scripts copied in, as a user does."""
    for name in ("survey.py", "survey.sbatch", "survey-chain.sbatch", "ray-survey.sbatch"):
        shutil.copy(os.path.join(EXAMPLES, name), tmp_path / name)
    return tmp_path


def submit(cluster, workdir, script, *options, **env):
    """sbatch ``script`` from ``workdir`` (where its output and journal go); the job id."""
    full_env = dict(cluster.env, PYTHON=sys.executable, RAY=os.path.join(BIN, "ray"), PYTHONPATH=SRC)
    full_env.update(env)
    full_env = {k: v for k, v in full_env.items() if not k.startswith("PARAMSURVEY_")}
    out = subprocess.run(["sbatch", "--parsable", *options, script], cwd=workdir, env=full_env,
                         capture_output=True, text=True, timeout=_slurm.COMMAND_TIMEOUT)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def job_state(cluster, job):
    """JobState and ExitCode of a job that has ended (scontrol remembers it for MinJobAge, 300 s)."""
    out = cluster.run(["scontrol", "show", "job", job]).stdout
    return re.search(r"JobState=(\S+)", out).group(1), re.search(r"ExitCode=(\S+)", out).group(1)


def alive(procs):
    left = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append((p.pid, p.cmdline()))
        except psutil.NoSuchProcess:
            pass
    return left


def outputs(workdir):
    """(x, job) of every output file the survey's psets wrote."""
    found = []
    for name in os.listdir(workdir / "out") if (workdir / "out").exists() else []:
        x, job, _ = name.split(".")
        found.append((int(x), job))
    return found


def wait_for_outputs(workdir, n, job, cluster, timeout=JOB_TIMEOUT):
    deadline = time.monotonic() + timeout
    while len(outputs(workdir)) < n:
        if time.monotonic() > deadline or job not in cluster.jobs():
            log = glob.glob(str(workdir / "*.out"))
            pytest.fail(f"the survey did not write {n} outputs: {[open(f).read()[-3000:] for f in log]}")
        time.sleep(0.2)


def read_log(workdir, pattern, job):
    with open(workdir / pattern.replace("%j", job)) as f:
        return f.read()


def assert_each_finished_once(journal, n):
    """Every pset has exactly one success in the journal's history: none ran to the end twice
    (a pset stopped mid-run, or whose worker the SIGTERM killed, runs again: it had not finished)."""
    history = ps_journal.read(journal, history=True)
    ok = history[history["_status"] == "ok"]
    assert sorted(ok["x"]) == list(range(n)), history[["x", "_status", "_exception"]]
    assert (ok["square"] == ok["x"] ** 2).all()
    assert set(history["_status"]) <= {"ok", "crashed"}, history[["x", "_status", "_exception"]]


def test_scancel_stops_the_driver_and_the_same_script_resumes(slurm, workdir):
    env = {"SURVEY_PSETS": "60", "SURVEY_SECONDS": "0.5"}
    first = submit(slurm, workdir, "survey.sbatch", **env)
    wait_for_outputs(workdir, 8, first, slurm)
    procs = slurm.processes_of_job(first)
    assert len(procs) >= 4, alive(procs)  # the driver, its fork server, two workers
    slurm.run(["scancel", first])  # what a preemption does too: SIGTERM to all, SIGKILL after KillWait
    slurm.wait_until_gone(first, STOP_TIMEOUT)
    _, left = psutil.wait_procs(procs, timeout=5)
    assert alive(left) == []

    log = read_log(workdir, "survey-%j.out", first)
    journal = str(workdir / "survey.journal")
    # the driver stopped on the SIGTERM (a SIGKILL after KillWait leaves no such words)
    assert f"resubmit the same script to resume from the journal {journal}" in log, log[-3000:]
    assert log.rstrip().endswith("paramsurvey.exceptions.Interrupted: paramsurvey.map interrupted"), log[-3000:]
    assert job_state(slurm, first) == ("CANCELLED", "1:0")  # the exit status 1 of Interrupted
    ok_first = set(ps_journal.read(journal).query("_status == 'ok'")["x"])
    assert 8 <= len(ok_first) < 60
    assert {x for x, job in outputs(workdir) if job == first} >= ok_first

    second = submit(slurm, workdir, "survey.sbatch", **env)
    slurm.wait_until_gone(second, JOB_TIMEOUT)
    log = read_log(workdir, "survey-%j.out", second)
    assert "survey finished: 60 results, 0 failed" in log, log[-3000:]
    assert job_state(slurm, second) == ("COMPLETED", "0:0")
    assert not {x for x, job in outputs(workdir) if job == second} & ok_first, "a finished pset ran again"
    assert_each_finished_once(journal, 60)
    assert slurm.jobs() == {}


@pytest.mark.timeout(CHAIN_TIMEOUT + 60)
def test_a_survey_longer_than_its_time_limit_finishes_over_several_allocations(slurm, workdir):
    """The real time limit (not a scancel standing in for it): SBATCH_TIMELIMIT=1 is sbatch's
    ``--time=1``, and reaches the successors too through the environment the chain passes on."""
    first = submit(slurm, workdir, "survey-chain.sbatch", SBATCH_TIMELIMIT="1",
                   SURVEY_PSETS=str(CHAIN_PSETS), SURVEY_SECONDS=str(CHAIN_SECONDS))
    deadline = time.monotonic() + CHAIN_TIMEOUT
    while slurm.jobs():
        assert time.monotonic() < deadline, (slurm.jobs(), os.listdir(workdir))
        time.sleep(1)

    logs = {path.split("-")[-1][:-len(".out")]: open(path).read()
            for path in glob.glob(str(workdir / "survey-chain-*.out"))}
    jobs = sorted(logs, key=int)
    assert jobs[0] == first and len(jobs) >= 2, logs
    for job in jobs[:-1]:  # stopped by the time limit, each resumed by the job it queued
        assert "resubmit the same script to resume from the journal" in logs[job], logs[job][-3000:]
        assert re.search(rf"job {job}: stopped by SIGTERM .*; job \d+ resumes the survey", logs[job]), logs[job][-3000:]
        assert job_state(slurm, job)[0] == "TIMEOUT"
    last = logs[jobs[-1]]
    assert f"survey finished: {CHAIN_PSETS} results, 0 failed" in last, last[-3000:]
    assert f"job {jobs[-1]}: survey exit status 0; the chain ends here" in last, last[-3000:]
    assert job_state(slurm, jobs[-1]) == ("COMPLETED", "0:0")
    assert_each_finished_once(str(workdir / "survey.journal"), CHAIN_PSETS)
    assert {job for _, job in outputs(workdir)} == set(jobs)  # every allocation did some of the work


@pytest.mark.timeout(JOB_TIMEOUT + 180)
def test_ray_started_in_the_allocation_runs_the_survey_and_leaves_nothing(slurm, workdir):
    pytest.importorskip("ray")
    job = submit(slurm, workdir, "ray-survey.sbatch", SURVEY_PSETS="20", SURVEY_SECONDS="0.2")
    slurm.wait_until_gone(job, JOB_TIMEOUT + 60)
    log = read_log(workdir, "ray-survey-%j.out", job)
    temp_dir = re.search(r"temp dir (/tmp/ray-\S+)", log)
    try:
        assert temp_dir, log[-3000:]
        assert "survey on the ray backend" in log and "survey finished: 20 results, 0 failed" in log, log[-3000:]
        assert job_state(slurm, job) == ("COMPLETED", "0:0"), log[-3000:]
        assert_each_finished_once(str(workdir / "survey.journal"), 20)
        assert slurm.jobs() == {}
        ray_left = [(p.pid, p.cmdline()) for p in slurm.processes_of_job(job)]
        for p in psutil.process_iter():  # Ray's processes name their temp dir
            with contextlib.suppress(psutil.Error):
                if any(temp_dir.group(1) in part for part in p.cmdline()):
                    ray_left.append((p.pid, p.cmdline()))
        assert ray_left == []
        assert not os.path.exists(temp_dir.group(1))  # removed by the script once the survey succeeded
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir.group(1), ignore_errors=True)


def test_a_job_started_while_another_writes_the_journal_fails_saying_so(slurm, workdir):
    """A second allocation of the survey while the first runs (one CPU each: both run at once):
    it fails before running any pset, naming the journal and its writer; the first finishes."""
    env = {"SURVEY_PSETS": "60", "SURVEY_SECONDS": "0.5"}  # ~15 s: the second starts well within it
    first = submit(slurm, workdir, "survey.sbatch", "--cpus-per-task=1", **env)
    wait_for_outputs(workdir, 2, first, slurm)
    second = submit(slurm, workdir, "survey.sbatch", "--cpus-per-task=1", **env)
    for job in (first, second):
        slurm.wait_until_gone(job, JOB_TIMEOUT)
    log = read_log(workdir, "survey-%j.out", first)
    assert "survey finished: 60 results, 0 failed" in log, log[-3000:]
    assert job_state(slurm, first) == ("COMPLETED", "0:0")
    log = read_log(workdir, "survey-%j.out", second)
    assert re.search(r"paramsurvey.exceptions.JournalError: journal \S+survey.journal is being written by "
                     r"another survey \(pid \d+ on .*\); wait for it to finish or use another journal", log), log
    assert job_state(slurm, second) == ("FAILED", "1:0")
    assert {job for _, job in outputs(workdir)} == {first}  # the refused job ran no pset
    assert_each_finished_once(str(workdir / "survey.journal"), 60)


def test_a_ray_head_that_cannot_start_fails_the_job_at_once(slurm, workdir):
    pytest.importorskip("ray")  # the script's wait for the head imports it
    fake_ray = workdir / "ray"
    fake_ray.write_text("#!/bin/sh\necho 'ray: cannot start (a stand-in for any failure)' >&2\nexit 1\n")
    fake_ray.chmod(0o755)
    job = submit(slurm, workdir, "ray-survey.sbatch", RAY=str(fake_ray))
    slurm.wait_until_gone(job, JOB_TIMEOUT)
    log = read_log(workdir, "ray-survey-%j.out", job)
    temp_dir = re.search(r"temp dir (/tmp/ray-\S+)", log)
    if temp_dir:  # kept for Ray's logs, as after any failure
        shutil.rmtree(temp_dir.group(1), ignore_errors=True)
    assert "ray: cannot start" in log and "the Ray head failed to start: its error is above" in log, log[-3000:]
    assert "survey on the" not in log  # the survey never started
    assert job_state(slurm, job) == ("FAILED", "1:0")
    assert slurm.jobs() == {}
    assert slurm.processes_of_job(job) == []
