"""backend='slurm': Dask workers in Slurm jobs, against the real single-node Slurm of tests/_slurm.py.

What is tested for real: a survey runs in worker jobs; bad options and refused job requests are
errors before (or instead of) any wait; pending jobs are shown and bounded by pending_timeout; a
worker job cancelled mid-survey, or retiring at its lifetime, loses nothing and is replaced; and
no job of ours is left in the queue after finalize(), an exception, Ctrl-C or the driver's SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import _slurm
import pytest
from workers_jobqueue import kills_its_worker, marked_sleep, markers

import paramsurvey
from paramsurvey.backends import _jobqueue_options, _slurm_queue
from paramsurvey.backends.jobqueue import import_dask_jobqueue

pytestmark = pytest.mark.slurm  # run by `make test-slurm`, which installs Slurm first

# deadlock guards, not expectations: a job starts within ~3 s here, its worker connects ~3 s later.
# A job of ours must leave the PENDING and RUNNING states within CANCEL_TIMEOUT; a cancelled job
# stays in the queue (COMPLETING) until its processes end, which Slurm forces only after KillWait
# (30 s by default): the queue may take QUEUE_EMPTY_TIMEOUT, longer than that, to empty.
CANCEL_TIMEOUT = 30.0
QUEUE_EMPTY_TIMEOUT = 75.0
DRIVER_TIMEOUT = 120.0
# a refusal must be raised "at once": well within this, never a wait for workers
REFUSAL_DEADLINE = 60.0
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def slurm():
    with _slurm.shared() as cluster:
        yield cluster


@pytest.fixture
def cluster(slurm, monkeypatch):
    """This test's process talks to the test Slurm (sbatch, squeue and dask-jobqueue read the
    environment); the queue is empty before and after."""
    for key in ("SLURM_CONF", "PATH", _slurm.TOKEN):
        monkeypatch.setenv(key, slurm.env[key])
    wait_for_empty_queue(slurm)
    yield slurm
    paramsurvey.finalize()
    try:
        wait_for_empty_queue(slurm)
    finally:
        slurm.cancel_all()


def jobqueue():
    """dask_jobqueue, imported as the backend does: a plain import would leave this test process's
    Ctrl-C calling sys.exit() (its runner module's doing), for every test after this one."""
    return import_dask_jobqueue("slurm")


def options(cluster, **more):
    """Worker jobs that fit the test node (2 CPUs), on loopback."""
    return {"jobs": 2, "cores": 1, "memory": "500MB", "walltime": "00:10:00", "interface": "lo",
            "log_directory": os.path.join(cluster.dir, "logs"), **more}


def wait_for_empty_queue(cluster, keep=()):
    """Until no job (but those in ``keep``) is in the queue; completing ones count, but only a
    cancelled job may still be there after CANCEL_TIMEOUT."""
    start = time.monotonic()
    while jobs := {j: s for j, s in cluster.jobs().items() if j not in keep}:
        waited = time.monotonic() - start
        live = {j: s for j, s in jobs.items() if s[0] in ("PENDING", "RUNNING")}
        assert not live or waited < CANCEL_TIMEOUT, f"jobs not cancelled after {CANCEL_TIMEOUT} s: {live}"
        assert waited < QUEUE_EMPTY_TIMEOUT, f"jobs still in the queue after {QUEUE_EMPTY_TIMEOUT} s: {jobs}"
        time.sleep(0.2)


def psets(n, t):
    return [{"i": i, "t": t} for i in range(n)]


def assert_each_result_once(results, n):
    assert sorted(results.results["i"]) == list(range(n))
    assert len(results.missing) == 0, results.missing
    assert set(results.results["backend"]) == {"slurm"}


# -- a survey --------------------------------------------------------------------------------------
def test_a_survey_runs_in_worker_jobs_and_finalize_empties_the_queue(cluster, tmp_path):
    """With job_extra (an #SBATCH line) and env (a line of shell each job runs first)."""
    given = options(cluster, job_extra=["#SBATCH --comment=from-the-test"], env="export PS_TEST_ENV=present")
    paramsurvey.init(backend="slurm", slurm=given, verbose=0)
    assert len(cluster.jobs()) == 2  # submitted by init()
    comments = cluster.run(["squeue", "-h", "-o", "%k %j"]).stdout.split("\n")
    assert all(c.startswith("from-the-test paramsurvey-") for c in comments if c), comments
    results = paramsurvey.map(marked_sleep, psets(100, 0.01), user_kwargs={"dir": str(tmp_path)})
    assert_each_result_once(results, 100)
    assert set(results.results["job"]) <= set(cluster.jobs()) and all(results.results["job"])
    assert set(results.results["env"]) == {"present"}
    assert paramsurvey.current_core_count() == 2
    with pytest.raises(ValueError, match=r"options \['jobs'\] choose the worker jobs: give them to init"):
        paramsurvey.map(marked_sleep, psets(2, 0), user_kwargs={"dir": str(tmp_path)}, slurm={"jobs": 3})
    paramsurvey.finalize()
    wait_for_empty_queue(cluster)


def test_a_users_own_jobqueue_cluster_through_dask_keeps_working(cluster, tmp_path):
    SLURMCluster = jobqueue().SLURMCluster

    own = SLURMCluster(queue=cluster.partition, cores=1, processes=1, memory="500MB", walltime="00:10:00",
                       interface="lo", python=sys.executable, log_directory=os.path.join(cluster.dir, "logs"),
                       scheduler_options={"dashboard_address": ":0"})
    try:
        own.scale(1)
        paramsurvey.init(backend="dask", dask={"cluster": own}, verbose=0)
        results = paramsurvey.map(marked_sleep, psets(20, 0), user_kwargs={"dir": str(tmp_path)})
        assert sorted(results.results["i"]) == list(range(20)) and len(results.missing) == 0
        paramsurvey.finalize()
    finally:
        own.close()
    wait_for_empty_queue(cluster)


def test_adaptive_jobs_go_between_maps_and_come_back_for_the_next(cluster, tmp_path):
    """minimum_jobs/maximum_jobs: maximum_jobs while a map runs, minimum_jobs (here none) between."""
    paramsurvey.init(backend="slurm", slurm=options(cluster, jobs=None, minimum_jobs=0, maximum_jobs=2), verbose=0)
    assert len(cluster.jobs()) == 1  # init() submits one, so that a refusal is its error
    results = paramsurvey.map(marked_sleep, psets(40, 0.05), user_kwargs={"dir": str(tmp_path)})
    assert_each_result_once(results, 40)
    wait_for_empty_queue(cluster)  # the session goes on, its jobs do not
    results = paramsurvey.map(marked_sleep, psets(10, 0), user_kwargs={"dir": str(tmp_path)})
    assert_each_result_once(results, 10)


# -- bad options, refused jobs: errors, never a wait --------------------------------------------------
@pytest.mark.parametrize("given, error, match", [
    ({"jobz": 2}, TypeError, r"unknown slurm option\(s\) \['jobz'\]"),
    ({"queue": "debug"}, TypeError, r"'queue' -> 'partition'"),
    ({"jobs": 2, "maximum_jobs": 3}, ValueError, "not both"),
    ({"jobs": 0}, ValueError, r"'jobs': 0\} must be at least 1"),
    ({"walltime": "ten minutes"}, ValueError, r"'walltime': 'ten minutes'"),
    ({"memory": "lots"}, ValueError, r"'memory': 'lots'"),
    ({"pending_timeout": -1}, ValueError, "pending_timeout"),
    ({"env": 3}, TypeError, r"'env'"),
])
def test_bad_options_are_errors_naming_them_before_any_job(cluster, given, error, match):
    with pytest.raises(error, match=match):
        paramsurvey.init(backend="slurm", slurm={**options(cluster), **given}, verbose=0)
    assert cluster.jobs() == {}


@pytest.mark.parametrize("given, sbatch_says", [
    ({"partition": "nosuchpartition"}, "invalid partition specified: nosuchpartition"),
    ({"memory": "100GB"}, "Requested node configuration is not available"),
    ({"cores": 3}, "Requested node configuration is not available"),
])
def test_a_refused_job_request_is_inits_error_in_sbatchs_words(cluster, given, sbatch_says):
    """Checked with sbatch --test-only before any job is queued."""
    start = time.monotonic()
    with pytest.raises(paramsurvey.BackendError, match="refuses the worker jobs' request") as info:
        paramsurvey.init(backend="slurm", slurm=options(cluster, **given), verbose=0)
    assert sbatch_says in str(info.value)
    assert time.monotonic() - start < REFUSAL_DEADLINE
    assert cluster.jobs() == {}


def test_no_sbatch_here_is_an_error_saying_so(cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands (nor any other)
    with pytest.raises(paramsurvey.BackendError, match="the slurm backend cannot find 'sbatch' on PATH: run the "
                                                       "survey where slurm jobs can be submitted"):
        paramsurvey.init(backend="slurm", slurm=options(cluster), verbose=0)


REFUSED = textwrap.dedent("""
    import json, sys, time
    import paramsurvey
    start = time.monotonic()
    try:
        paramsurvey.init(backend="slurm", slurm=json.loads(sys.argv[1]), verbose=0)
    except paramsurvey.BackendError as exc:
        print(json.dumps({"error": str(exc), "seconds": time.monotonic() - start}))
""")


def test_a_refusal_at_submission_is_raised_not_waited_on(cluster, tmp_path):
    """Without the --test-only check, sbatch's refusal (which dask-jobqueue only logs, as a
    traceback on stderr) still reaches the user, as a BackendError quoting sbatch, and only so
    (verbose=0: nothing on stderr). A program of its own: pytest's log capture hides stderr."""
    given = options(cluster, partition="nosuchpartition", check_request=False)
    env = dict(cluster.env, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", REFUSED, json.dumps(given)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=DRIVER_TIMEOUT)
    said = json.loads(out.stdout)
    assert said["error"].startswith("slurm refused a worker job: sbatch: error: invalid partition specified")
    assert "Invalid partition name specified" in said["error"]
    assert said["seconds"] < REFUSAL_DEADLINE
    assert out.stderr == ""


def test_pending_jobs_are_shown_and_pending_timeout_ends_the_wait(cluster, tmp_path, capfd):
    """The node is full (another user's job holds both CPUs): our job stays pending, the progress
    line says why, and map() gives up after pending_timeout with an error saying so."""
    blocker = cluster.sbatch("--cpus-per-task=2", "--wrap", "sleep 300")
    cluster.wait_for_state(blocker, ["RUNNING"])
    try:
        paramsurvey.init(backend="slurm", slurm=options(cluster, jobs=1, pending_timeout=8), verbose=1)
        start = time.monotonic()
        with pytest.raises(paramsurvey.BackendError, match="pending_timeout=8 s") as info:
            paramsurvey.map(marked_sleep, psets(4, 0), user_kwargs={"dir": str(tmp_path)}, progress_dt=1)
        assert time.monotonic() - start < REFUSAL_DEADLINE
        assert "worker jobs: 0 running, 1 pending (Resources)" in str(info.value)
        assert "progress: total: 4, active: 2, finished: 0, failures: 0, exceptions: 0; worker jobs: 0 running, " \
               "1 pending (Resources)" in capfd.readouterr().err
        paramsurvey.finalize()
        wait_for_empty_queue(cluster, keep=(blocker,))
    finally:
        cluster.run(["scancel", blocker])


def test_without_pending_timeout_a_long_wait_is_said_once_and_the_survey_goes_on(cluster, tmp_path, capfd,
                                                                                  monkeypatch):
    """No pending_timeout: after WAIT_NOTICE (60 s; 2 s here) without a worker, one warning says how
    the jobs stand and how to stop waiting; when the node frees up, the survey runs."""
    from paramsurvey.backends import jobqueue as jobqueue_backend

    monkeypatch.setattr(jobqueue_backend, "WAIT_NOTICE", 2.0)
    blocker = cluster.sbatch("--cpus-per-task=2", "--wrap", "sleep 300")
    cluster.wait_for_state(blocker, ["RUNNING"])
    freed = threading.Timer(8.0, cluster.run, (["scancel", blocker],))
    try:
        paramsurvey.init(backend="slurm", slurm=options(cluster, jobs=1), verbose=1)
        freed.start()
        results = paramsurvey.map(marked_sleep, psets(4, 0), user_kwargs={"dir": str(tmp_path)})
    finally:
        freed.cancel()
        cluster.run(["scancel", blocker])
    assert_each_result_once(results, 4)
    err = capfd.readouterr().err
    notice = (r"slurm: no worker job has run for 2 s \(worker jobs: 0 running, 1 pending( \(Resources\))?\); "
              r"waiting for the queue \(give slurm=\{'pending_timeout': seconds\} to stop waiting\)")
    assert len(re.findall(notice, err)) == 1, err
    # the last line says how the jobs stood at the map's end
    assert "progress: total: 4, active: 0, finished: 4, failures: 0, exceptions: 0; worker jobs: 1 running, " \
           "0 pending\n" in err, err


# -- preemption, walltime: nothing lost ---------------------------------------------------------------
def test_a_worker_job_cancelled_mid_survey_loses_nothing_and_is_replaced(cluster, tmp_path):
    """scancel (what preemption looks like): its groups run again on the other worker, every
    result exactly once, nothing failed; the job is replaced while work remains."""
    n = 300
    paramsurvey.init(backend="slurm", slurm=options(cluster), verbose=0)
    first = set(cluster.jobs())
    seen: set[str] = set()
    done = threading.Event()

    def preempt():
        while markers(tmp_path) < 40 and not done.is_set():
            time.sleep(0.05)
        running = sorted(j for j, (state, _) in cluster.jobs().items() if state == "RUNNING")
        cluster.run(["scancel", running[0]])
        while not done.is_set():
            seen.update(cluster.jobs())
            time.sleep(0.2)

    thread = threading.Thread(target=preempt)
    thread.start()
    try:
        results = paramsurvey.map(marked_sleep, psets(n, 0.1), user_kwargs={"dir": str(tmp_path)})
    finally:
        done.set()
        thread.join()
    assert_each_result_once(results, n)
    assert markers(tmp_path) >= n  # a group cut short ran again: some psets more than once
    assert seen - first, "the cancelled job was not replaced"


def test_every_worker_job_cancelled_at_once_loses_nothing(cluster, tmp_path):
    """All the jobs preempted together, with results still held by their workers: the map waits for
    the replacements (a thread of their own asks for them) and records every result exactly once."""
    n = 200
    paramsurvey.init(backend="slurm", slurm=options(cluster), verbose=0)
    first = set(cluster.jobs())

    def preempt_all():
        while markers(tmp_path) < 30:
            time.sleep(0.05)
        cluster.run(["scancel", *first])

    thread = threading.Thread(target=preempt_all)
    thread.start()
    try:
        results = paramsurvey.map(marked_sleep, psets(n, 0.05), user_kwargs={"dir": str(tmp_path)})
    finally:
        thread.join()
    assert_each_result_once(results, n)
    assert set(results.results["job"]) - first, "no replacement job ran a pset"


def test_workers_retire_at_their_lifetime_and_are_replaced_losing_nothing(cluster, tmp_path):
    """lifetime (derived from walltime by default; short here): workers leave gracefully, their
    groups run elsewhere, new jobs take their place until the survey is done."""
    n = 200
    paramsurvey.init(backend="slurm", slurm=options(cluster, lifetime=6), verbose=0)
    results = paramsurvey.map(marked_sleep, psets(n, 0.1), user_kwargs={"dir": str(tmp_path)})
    assert_each_result_once(results, n)
    assert len(set(results.results["job"])) >= 3  # the first two retired within ~6 s of ~10 s of work


def test_a_pset_that_kills_its_worker_again_and_again_ends_crashed(cluster):
    """As on the dask backend: the worker's nanny restarts it inside the job, Dask gives up on the
    task, paramsurvey runs the pset alone and records it crashed; the rest is done."""
    paramsurvey.init(backend="slurm", slurm=options(cluster), verbose=0)
    results = paramsurvey.map(kills_its_worker, [{"i": i, "crash": 7} for i in range(30)])
    assert sorted(results.results["i"]) == [i for i in range(30) if i != 7]
    assert list(results.missing["i"]) == [7]
    assert list(results.missing["_status"]) == ["crashed"]
    assert "KilledWorker" in results.missing["_exception"].iloc[0]


CRASHING = textwrap.dedent("""
    import json, sys
    config = json.loads(sys.argv[1])
    sys.path.insert(0, config["tests"])
    import paramsurvey
    from workers_jobqueue import kills_its_worker
    paramsurvey.init(backend="slurm", slurm=config["slurm"], verbose=0)
    results = paramsurvey.map(kills_its_worker, [{"i": i, "crash": 7} for i in range(30)])
    print(json.dumps(list(results.missing["_status"])))
""")


def test_verbose_0_prints_nothing_when_workers_die(cluster, tmp_path):
    """The scheduler runs in the driver: its own error lines (a task whose workers died) must not
    reach stderr at verbose=0; the crash is in results.missing."""
    config = {"tests": TESTS, "slurm": options(cluster)}
    env = dict(cluster.env, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", CRASHING, json.dumps(config)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=DRIVER_TIMEOUT)
    assert json.loads(out.stdout) == ["crashed"], out.stderr
    assert out.stderr == ""


def test_the_walltime_gives_the_workers_lifetime_and_stagger():
    SLURMCluster = jobqueue().SLURMCluster
    opts = _jobqueue_options.check_options("slurm", SLURMCluster, {"walltime": "02:00:00"})
    args = opts.cluster_kwargs["worker_extra_args"]
    assert args == ["--lifetime", "6600s", "--lifetime-stagger", "200s"]  # 10% of 2 h before it, +-1/3 of that
    assert _jobqueue_options.parse_walltime("slurm", "1-00:30") == 86400 + 1800
    assert _jobqueue_options.parse_walltime("slurm", "10") == 600
    given = _jobqueue_options.check_options("slurm", SLURMCluster, {"walltime": "10", "worker_extra_args":
                                                                    ["--lifetime", "5m"]})
    assert given.cluster_kwargs["worker_extra_args"] == ["--lifetime", "5m"]


@pytest.mark.parametrize("system, cluster_class, queue_line, account_line", [
    ("pbs", "PBSCluster", "#PBS -q bigq", "#PBS -A proj7"),
    ("sge", "SGECluster", "#$ -q bigq", "#$ -P proj7"),
    ("lsf", "LSFCluster", "#BSUB -q bigq", '#BSUB -P "proj7"'),
])
def test_pbs_sge_and_lsf_take_the_same_options(system, cluster_class, queue_line, account_line):
    """Not run against those systems: their job scripts, as dask-jobqueue writes them."""
    cls = getattr(jobqueue(), cluster_class)
    opts = _jobqueue_options.check_options(system, cls, {"partition": "bigq", "account": "proj7", "cores": 2,
                                                         "walltime": "01:00:00", "job_extra": ["-V"],
                                                         "env": ["module load python"], "interface": "lo"})
    made = cls(**opts.cluster_kwargs)
    try:
        script = made.job_script()
    finally:
        made.close()
    for line in (queue_line, account_line, "module load python", "--lifetime 3240s --lifetime-stagger 120s",
                 "--nthreads 1", opts.job_name):
        assert line in script, (line, script)


def test_the_job_state_line():
    rows = [("7", "RUNNING", "None"), ("8", "PENDING", "Resources"), ("9", "PENDING", "Resources"),
            ("10", "PENDING", "None"), ("11", "COMPLETING", "None")]
    assert _slurm_queue.describe(rows) == "worker jobs: 1 running, 3 pending (Resources), 1 completing"


# -- nothing left in the queue -------------------------------------------------------------------------
DRIVER = textwrap.dedent("""
    import json, os, sys
    config = json.loads(sys.argv[1])
    sys.path.insert(0, config["tests"])
    import paramsurvey
    from workers_jobqueue import marked_sleep

    class Boom(BaseException):
        pass

    def out_func(*args):
        if config["how"] == "exception":
            raise Boom("the driver fails mid-survey")

    paramsurvey.init(backend="slurm", slurm=config["slurm"], verbose=0)
    paramsurvey.map(marked_sleep, [{"i": i, "t": 0.5} for i in range(400)], user_kwargs={"dir": config["dir"]},
                    out_func=out_func)
""")


@pytest.mark.parametrize("how", ["sigint", "exception", "sigkill"])
def test_no_job_is_left_after_ctrl_c_an_exception_or_the_drivers_death(cluster, tmp_path, how):
    """Three jobs asked on a 2-CPU node: two run, one stays pending. However the driver ends, none
    of them stays in the queue (after a SIGKILL: the guard process cancels them)."""
    out = tmp_path / "out"
    out.mkdir()
    config = {"tests": TESTS, "dir": str(out), "how": how, "slurm": options(cluster, jobs=3)}
    env = dict(cluster.env, PYTHONPATH=os.pathsep.join(sys.path))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(config)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        while markers(out) < 4 and driver.poll() is None:
            assert time.monotonic() < deadline, "no pset ran"
            time.sleep(0.1)
        states = sorted(state for state, _ in cluster.jobs().values())
        assert "PENDING" in states or how == "exception", states  # the third job: no CPU left for it
        if how == "sigint":
            driver.send_signal(signal.SIGINT)
        elif how == "sigkill":
            driver.kill()
        _, err = driver.communicate(timeout=DRIVER_TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode != 0, err
    if how == "sigint":
        assert "paramsurvey.exceptions.Interrupted" in err or "Interrupted" in err, err
    elif how == "exception":
        assert "the driver fails mid-survey" in err, err
    wait_for_empty_queue(cluster)
