"""The journal: resume after kill -9 and Ctrl-C, in any order, damaged parts, mismatches, dtypes,
seeds, provenance, and never unpickling unless asked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
from journal_workers import (
    Tripwire,
    crash_first,
    descendants,
    journaled_so_far,
    marked,
    markers,
    seeded,
    survey_process,
    tripwire,
    unpicklable_on_one,
    wait_for_rows,
    wait_gone,
)

import paramsurvey
from paramsurvey import journal
from paramsurvey._hashing import seed_for
from paramsurvey.journal import _writer as _journal_writer
from paramsurvey.journal._store import list_parts

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def marks(tmp_path):
    d = tmp_path / "marks"
    d.mkdir()
    return str(d)


def psets_of(n):
    return [{"x": i} for i in range(n)]


def clean_run(n, marks_dir, **kwargs):
    """The same survey without a journal: what a resumed survey must return."""
    other = os.path.join(marks_dir, "clean")
    os.makedirs(other, exist_ok=True)
    return paramsurvey.map(marked, psets_of(n), user_kwargs={"dir": other}, verbose=0, **kwargs)


def check_complete(results, psets, marks_dir):
    """Every pset's result exactly once, in pset order, with the seed of its content."""
    frame = results.results
    assert list(frame.index) == list(range(len(psets)))
    assert frame["x"].tolist() == [p["x"] for p in psets]
    assert (frame["y"] == frame["x"] * 10).all()
    assert frame["seed"].tolist() == [seed_for(0, p) for p in psets]
    assert len(results.missing) == 0
    assert results.progress.finished == len(psets)
    assert set(markers(marks_dir)) == {p["x"] for p in psets}


def test_kill9_then_resume_runs_only_what_was_not_journaled(tmp_path, marks):
    n = 80
    path = str(tmp_path / "survey.journal")
    proc = survey_process(str(tmp_path), n, 0.1, path, marks)  # ~4 s: killed long before it ends
    try:
        wait_for_rows(path, 8, proc)
        family = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_gone(family)  # the killed driver's workers went with it
    before = set(journal.read(path)["x"].tolist())
    assert 8 <= len(before) < n, "killed part-way"
    ran_before = markers(marks)

    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    resumed = paramsurvey.map(marked, psets_of(n), journal=path, user_kwargs={"dir": marks}, verbose=0)

    check_complete(resumed, psets_of(n), marks)
    counts = markers(marks)
    assert all(counts[x] == 1 for x in before), "a pset journaled before the kill ran again"
    assert all(counts[x] == ran_before.get(x, 0) + 1 for x in range(n) if x not in before)
    pd.testing.assert_frame_equal(resumed.results, clean_run(n, marks).results)  # same rows, same dtypes
    after = journal.read(path)
    assert sorted(after["x"]) == list(range(n)) and (after["_status"] == "ok").all()


def test_ctrl_c_then_resume_with_psets_in_another_order(tmp_path, marks):
    n = 80
    path = str(tmp_path / "survey.journal")
    proc = survey_process(str(tmp_path), n, 0.1, path, marks)
    try:
        wait_for_rows(path, 8, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    line = [x for x in out.splitlines() if x.startswith("INTERRUPTED")]
    assert line, f"map() did not raise paramsurvey.Interrupted:\n{out}\n{err}"
    finished = {int(x) for x in line[0].split()[2:]}
    journaled = set(journal.read(path)["x"].tolist())
    assert finished == journaled, "Ctrl-C lost a finished pset"  # the last write happens on the way out
    assert 8 <= len(journaled) < n
    assert journal.read_meta(path)["runs"][-1]["state"] == "stopped"

    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    backwards = psets_of(n)[::-1]
    resumed = paramsurvey.map(marked, backwards, journal=path, user_kwargs={"dir": marks}, verbose=0)

    check_complete(resumed, backwards, marks)
    counts = markers(marks)
    assert all(counts[x] == 1 for x in journaled)
    assert journal.read_meta(path)["runs"][-1]["state"] == "finished"


def test_a_finished_pset_is_on_disk_within_a_second(tmp_path):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    r = paramsurvey.map(journaled_so_far, psets_of(2), journal=path, user_kwargs={"journal": path, "wait": 1.5})
    assert r.results["seen"].tolist() == [-1, 1]  # pset 0 was written while pset 1 ran


def test_a_failed_write_is_retried_without_loss_or_duplicates(tmp_path, marks, monkeypatch):
    real = _journal_writer.write_part
    failures = []

    def flaky(path, part, table, options):
        if len(failures) < 2:  # the disk is full, twice; then it is not
            failures.append(part)
            raise OSError(28, "No space left on device")
        return real(path, part, table, options)

    monkeypatch.setattr(_journal_writer, "write_part", flaky)
    monkeypatch.setattr(_journal_writer, "FLUSH_SECONDS", 0.01)
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    r = paramsurvey.map(marked, psets_of(30), journal=path, user_kwargs={"dir": marks, "sleep": 0.01})
    assert len(failures) == 2 and len(r.results) == 30
    assert sorted(journal.read(path, history=True)["x"]) == list(range(30))
    assert journal.read_meta(path)["runs"][-1]["state"] == "finished"


def test_truncated_part_loses_only_that_part(tmp_path, marks):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(marked, psets_of(10), journal=path, user_kwargs={"dir": marks})
    paramsurvey.map(marked, psets_of(20), journal=path, user_kwargs={"dir": marks}, extend_journal=True)
    parts = list_parts(path)
    assert len(parts) == 2
    newest = os.path.join(path, parts[-1].name)
    size = os.path.getsize(newest)
    with open(newest, "r+b") as f:  # as if the machine died while the file was being written
        f.truncate(size - 37)

    assert sorted(journal.read(path)["x"]) == list(range(10))
    assert journal.status(path)["counts"]["ok"] >= 10

    before = markers(marks)
    resumed = paramsurvey.map(marked, psets_of(20), journal=path, user_kwargs={"dir": marks})
    check_complete(resumed, psets_of(20), marks)
    after = markers(marks)
    assert {x for x in range(20) if after[x] != before[x]} == set(range(10, 20))
    assert any(name.startswith("_damaged-") for name in os.listdir(path))  # set aside, not deleted
    assert len(pd.read_parquet(path)) == 20  # runs 1 and 3: every live part reads directly again


def test_journal_of_another_survey_is_an_error_unless_extended(tmp_path, marks):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(marked, psets_of(10), journal=path, user_kwargs={"dir": marks})

    with pytest.raises(paramsurvey.JournalError, match="10 of the 10 psets it has outcomes for are not in this"):
        paramsurvey.map(marked, [{"x": i + 100} for i in range(10)], journal=path, user_kwargs={"dir": marks})
    with pytest.raises(paramsurvey.JournalError, match="made for a survey of 10 psets, this one has 15"):
        paramsurvey.map(marked, psets_of(15), journal=path, user_kwargs={"dir": marks})
    assert sum(markers(marks).values()) == 10  # nothing ran

    extended = paramsurvey.map(marked, psets_of(15), journal=path, user_kwargs={"dir": marks}, extend_journal=True)
    check_complete(extended, psets_of(15), marks)
    assert sum(markers(marks).values()) == 15


def test_failures_rerun_unless_asked_to_keep_them(tmp_path, marks):
    path = str(tmp_path / "j")
    fail = os.path.join(marks, "FAIL")
    open(fail, "w").close()
    paramsurvey.init(backend="serial", verbose=0)
    psets = psets_of(12)
    first = paramsurvey.map(marked, psets, journal=path, user_kwargs={"dir": marks}, seed=7)
    failed = [1, 4, 7, 10]
    assert sorted(first.missing["x"]) == failed

    kept = paramsurvey.map(marked, psets, journal=path, user_kwargs={"dir": marks}, seed=7, rerun_failed=False)
    assert sum(markers(marks).values()) == 12  # nothing ran
    assert sorted(kept.missing["x"]) == failed
    assert set(kept.missing["_status"]) == {"exception"}
    assert kept.missing["_exception"].str.contains("asked to fail").all()
    assert kept.missing["_traceback"].str.contains("Traceback").all()
    pd.testing.assert_frame_equal(kept.results, first.results)
    assert kept.progress.finished + kept.progress.failures == 12

    os.unlink(fail)
    calls = []
    rerun = paramsurvey.map(marked, psets, journal=path, user_kwargs={"dir": marks}, seed=7,
                            out_func=lambda ret, sk, uk: calls.append(sk["pset_index"]))
    assert sorted(calls) == failed  # out_func hears of the re-run psets only
    assert {x: c for x, c in markers(marks).items() if c > 1} == dict.fromkeys(failed, 2)
    assert len(rerun.results) == 12 and len(rerun.missing) == 0
    assert rerun.results["seed"].tolist() == [seed_for(7, p) for p in psets]  # the same seed on resume
    history = journal.read(path, history=True)
    assert len(history) == 16 and sorted(history[history._status != "ok"]["x"]) == failed
    assert (journal.read(path)["_status"] == "ok").all()


def test_seed_and_attempt_of_a_retried_pset(tmp_path):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    psets = psets_of(6)
    r = paramsurvey.map(crash_first, psets, journal=path, retries=1, seed=3)
    assert r.results["seed"].tolist() == [seed_for(3, p) for p in psets]  # retry: the same seed
    assert r.results["attempt"].tolist() == [0, 1, 0, 0, 0, 0]
    frame = journal.read(path)
    assert frame.set_index("x")["_attempt"].to_dict() == {0: 0, 1: 1, 2: 0, 3: 0, 4: 0, 5: 0}
    again = paramsurvey.map(crash_first, psets, journal=path, retries=1, seed=3)
    pd.testing.assert_frame_equal(again.results, r.results)  # resumed: the same seeds, nothing re-run


def test_dtypes_and_values_survive_the_journal(tmp_path, marks):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    fail = os.path.join(marks, "FAIL")
    open(fail, "w").close()
    paramsurvey.map(marked, psets_of(12), journal=path, user_kwargs={"dir": marks})
    os.unlink(fail)
    resumed = paramsurvey.map(marked, psets_of(12), journal=path, user_kwargs={"dir": marks})  # 8 + 4
    clean = clean_run(12, marks)
    pd.testing.assert_frame_equal(resumed.results, clean.results)
    assert resumed.results["odd"].dtype == "boolean" and resumed.results["y"].dtype == "int64"
    assert resumed.results["items"].tolist() == [[i, str(i)] for i in range(12)]
    stats = resumed.stats.read_stats("default_wallclock")
    assert stats.count == 12  # 8 timings from the journal, 4 from this run: as if never stopped


def test_reading_never_unpickles_unless_asked(tmp_path):
    path = str(tmp_path / "j")
    wire = str(tmp_path / "wire")
    paramsurvey.init(backend="serial", verbose=0)
    r = paramsurvey.map(tripwire, psets_of(3), journal=path, user_kwargs={"wire": wire})
    assert isinstance(r.results["obj"][0], Tripwire)

    frame = journal.read(path)
    assert all(isinstance(v, bytes) for v in frame["obj"])
    assert len(pd.read_parquet(path)) == 3
    journal.status(path)
    assert not os.path.exists(wire)

    frame = journal.read(path, unpickle=True)
    assert os.path.exists(wire) and frame["obj"].tolist() == [wire] * 3


def test_a_result_that_cannot_be_stored_is_run_again(tmp_path, marks):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(unpicklable_on_one, psets_of(4), journal=path, user_kwargs={"dir": marks})
    assert sorted(journal.read(path)["x"]) == [0, 2, 3]
    paramsurvey.map(unpicklable_on_one, psets_of(4), journal=path, user_kwargs={"dir": marks})
    assert markers(marks) == {0: 1, 1: 2, 2: 1, 3: 1}


def test_identical_psets_and_dataframe_psets(tmp_path, marks):
    paramsurvey.init(backend="serial", verbose=0)
    path = str(tmp_path / "dups")
    psets = [{"x": 1}] * 3 + [{"x": 2}]
    first = paramsurvey.map(marked, psets, journal=path, user_kwargs={"dir": marks})
    again = paramsurvey.map(marked, psets[::-1], journal=path, user_kwargs={"dir": marks})
    assert markers(marks) == {1: 3, 2: 1}  # the second run ran nothing
    assert again.results["x"].tolist() == [2, 1, 1, 1] and len(first.results) == 4

    path = str(tmp_path / "frame")
    frame = pd.DataFrame({"x": range(10, 16), "f": [0.5 * i for i in range(6)], "s": list("abcabc")})
    paramsurvey.map(marked, frame, journal=path, user_kwargs={"dir": marks})
    records = frame.to_dict("records")[::-1]  # the same psets, rebuilt as a list of dicts
    resumed = paramsurvey.map(marked, records, journal=path, user_kwargs={"dir": marks})
    assert all(markers(marks)[x] == 1 for x in range(10, 16))
    assert resumed.results["s"].tolist() == list("cbacba")


def test_many_flushes_are_merged_and_read_once(tmp_path, marks, monkeypatch):
    monkeypatch.setattr(_journal_writer, "FANIN", 3)
    monkeypatch.setattr(_journal_writer, "FLUSH_SECONDS", 0.01)
    monkeypatch.setattr(_journal_writer, "BUILD_SECONDS", 0.005)
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    r = paramsurvey.map(marked, psets_of(60), journal=path, user_kwargs={"dir": marks, "sleep": 0.01})
    assert len(r.results) == 60
    parts = list_parts(path)
    assert any(p.hi > p.lo for p in parts), "no part was merged"
    assert len(os.listdir(path)) < 20
    frame = journal.read(path)
    assert sorted(frame["x"]) == list(range(60))
    assert len(pd.read_parquet(path)) == 60
    assert journal.read_meta(path)["runs"][-1]["written"]["ok"] == 60

    # killed between writing a merged part and removing the parts it replaces: read once, then tidied
    merged = next(p for p in parts if p.hi > p.lo)
    leftover = os.path.join(path, f"part-r{merged.run:04d}-{merged.lo:08d}-{merged.lo:08d}.parquet")
    shutil.copy(os.path.join(path, merged.name), leftover)
    assert sorted(journal.read(path)["x"]) == list(range(60))
    again = paramsurvey.map(marked, psets_of(60), journal=path, user_kwargs={"dir": marks})
    assert len(again.results) == 60 and sum(markers(marks).values()) == 60
    assert not os.path.exists(leftover)


def test_provenance_in_the_metadata(tmp_path, monkeypatch):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run([git, *args], check=True, env=env, capture_output=True)
    commit = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (repo / "uncommitted.py").write_text("x = 1\n")
    monkeypatch.setenv("PARAMSURVEY_VSTATS", "0")

    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(seeded, [{"x": 0}], journal="j")
    meta = journal.read_meta("j")
    run = meta["runs"][-1]
    for key in ("start_time", "end_time", "host", "user", "command_line", "python", "platform", "cwd"):
        assert run.get(key), key
    assert {"paramsurvey", "pandas", "numpy"} <= set(run["versions"])
    assert run["git_commit"] == commit and run["git_dirty"] is True
    assert run["env"]["PARAMSURVEY_VSTATS"] == "0"
    assert run["start_time"] <= run["end_time"] and run["state"] == "finished"
    assert meta["total"] == 1 and meta["pset_keys"] == ["x"]
    assert json.loads(open(os.path.join("j", "_paramsurvey.json")).read()) == meta  # plain JSON on disk


def test_journal_from_init_and_environment(tmp_path, monkeypatch):
    paramsurvey.init(backend="serial", verbose=0, journal="from-init")
    paramsurvey.map(seeded, psets_of(2))
    assert len(journal.read("from-init")) == 2
    monkeypatch.setenv("PARAMSURVEY_JOURNAL", str(tmp_path / "from-env"))
    paramsurvey.map(seeded, psets_of(3))
    assert len(journal.read(tmp_path / "from-env")) == 3


def test_bad_journal_paths_and_empty_surveys(tmp_path):
    paramsurvey.init(backend="serial", verbose=0)
    (tmp_path / "file").write_text("not a journal")
    with pytest.raises(paramsurvey.JournalError, match="is a file"):
        paramsurvey.map(seeded, psets_of(2), journal=str(tmp_path / "file"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.txt").write_text("precious")
    with pytest.raises(paramsurvey.JournalError, match="not a paramsurvey journal"):
        paramsurvey.map(seeded, psets_of(2), journal=str(tmp_path / "other"))
    with pytest.raises(paramsurvey.JournalError, match="no such directory"):
        journal.read(tmp_path / "missing")
    r = paramsurvey.map(seeded, [], journal=str(tmp_path / "empty"))
    assert len(r.results) == 0 and len(journal.read(tmp_path / "empty")) == 0
    r = paramsurvey.map(seeded, [], journal=str(tmp_path / "empty"))
    assert len(r.results) == 0


def test_parts_are_plain_parquet(tmp_path, marks):
    path = str(tmp_path / "j")
    open(os.path.join(marks, "FAIL"), "w").close()
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(marked, psets_of(5), journal=path, user_kwargs={"dir": marks})
    paramsurvey.map(marked, psets_of(5), journal=path, user_kwargs={"dir": marks})  # 1 and 4 fail again
    parts = list_parts(path)
    assert len(parts) == 2
    schemas = [pq.read_schema(os.path.join(path, p.name)) for p in parts]
    assert schemas[0].remove_metadata() == schemas[1].remove_metadata()  # a part of failures only too
    assert json.loads(schemas[0].metadata[b"paramsurvey"])["pickled"] == ["items"]
    direct = pd.read_parquet(path)
    assert sorted(direct["x"]) == [0, 1, 1, 2, 3, 4, 4]
    assert {"_hash", "_position", "_status", "_wallclock", "_iowait", "_finished", "_attempt", "y"} <= set(direct)
    glob = os.path.join(path, "*.parquet")
    import duckdb  # both are in the test extra: the claim "readable directly" is checked, never skipped
    import polars

    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == 7
    assert polars.read_parquet(glob).height == 7
