"""The journal against hostile cases: lone surrogates in any string, a read-only filesystem, damaged
metadata, a damaged part that status and read() must agree on, result keys that are not strings,
and a directory that is not a journal."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from workers_journalfix import LONE, counted, markers, odd_keys, odd_strings

import paramsurvey
from paramsurvey import journal
from paramsurvey._psets import PsetSource
from paramsurvey._worker import GroupResult
from paramsurvey.cli import main
from paramsurvey.journal import _build as _journal_build
from paramsurvey.journal._build import PartBuilder
from paramsurvey.journal._read import JournalRows
from paramsurvey.journal._store import META, PartName, list_parts, write_part
from paramsurvey.journal._writer import write_options

pytestmark = pytest.mark.timeout(120)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(paramsurvey.__file__)))  # subprocesses run this paramsurvey


@pytest.fixture
def marks(tmp_path):
    d = tmp_path / "marks"
    d.mkdir()
    return str(d)


class Records(logging.Handler):
    """The journal's log records (paramsurvey's logger does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def journal_log():
    handler = Records()
    logger = logging.getLogger("paramsurvey.journal")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paramsurvey.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": SRC})


# -- 1. a lone surrogate in any string ------------------------------------------------------------
def test_lone_surrogates_are_journaled_faithfully_and_resume_runs_nothing(tmp_path, marks, journal_log):
    n = 600
    psets = [{"x": i, "s": f"s{LONE}" if i == 5 else f"s{i}"} for i in range(n)]
    path = str(tmp_path / "j")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    first = paramsurvey.map(odd_strings, psets, journal=path, user_kwargs={"dir": marks})
    assert len(first.results) == n - 2 and len(first.missing) == 2

    frame = journal.read(path).set_index("x")
    assert len(frame) == n, "a lone surrogate stopped the journal"
    assert frame.loc[3, "y"] == f"v{LONE}" and frame.loc[4, "y"] == "v4"
    assert frame.loc[5, "s"] == f"s{LONE}" and frame.loc[6, "s"] == "s6"
    assert frame.loc[7, "_exception"] == repr(ValueError(f"bad byte {LONE}"))
    assert f"ValueError: bad byte {LONE}" in frame.loc[7, "_traceback"]
    assert frame.loc[9, "_exception"] == f"SurrogateRepr({LONE})"
    assert not [m for m in journal_log if "cannot" in m or "works again" in m], journal_log
    assert journal.read_meta(path)["runs"][-1]["state"] == "finished"

    again = paramsurvey.map(odd_strings, psets, journal=path, user_kwargs={"dir": marks}, rerun_failed=False)
    assert set(markers(marks).values()) == {1}, "a journaled pset ran again"
    pd.testing.assert_frame_equal(again.results, first.results)
    pd.testing.assert_frame_equal(again.missing.to_df(), first.missing.to_df())


def test_a_result_key_with_a_lone_surrogate_gets_a_utf8_column_and_comes_back_exact(tmp_path):
    """Built and read through the journal's own parts (map() itself cannot yet return such a key:
    building the results frame's column index fails, outside the journal)."""
    path = str(tmp_path / "j")
    os.makedirs(path)
    keys = [f"k{LONE}", ("t", LONE)]
    group = GroupResult(ran=[0, 1], wall=[0.1, 0.2], iowait=[0.0, 0.0], ok=[0, 1],
                        columns={keys[0]: [1, 2], keys[1]: [f"a{LONE}", "b"]}, absent={}, failures=[], raw={})
    built = PartBuilder(PsetSource([{"x": 0}, {"x": 1}])).build([("g", group, time.time(), 0)])
    assert built is not None
    table, _ = built
    write_part(path, PartName(1, 1, 1), table, write_options(table.schema))

    rows = JournalRows.load(path)
    assert rows.gather(np.arange(2), "results", unpickle=True, by_key=True) == {keys[0]: [1, 2],
                                                                              keys[1]: [f"a{LONE}", "b"]}
    frame = journal.read(path)
    assert frame["_result_k\\udc80"].tolist() == [1, 2]
    assert frame["_result_('t', '\\udc80')"].tolist() == [f"a{LONE}", "b"]


# any code point, lone surrogates often (st.text leaves them out): joined from single characters
ANY_TEXT = st.lists(st.one_of(st.sampled_from(["\udc80", "\ud800", "\udfff", "\ud83d", "\ude00"]),
                              st.characters()), max_size=6).map("".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), ANY_TEXT), min_size=1, max_size=8))
def test_any_string_comes_back_exactly(values):
    """Psets, results and exception texts of arbitrary strings (lone surrogates, surrogate pairs
    written as two code points, NUL, ...) through a real part file and back."""
    n = len(values)
    psets = [{"x": i, "s": v} for i, v in enumerate(values)]
    failed = [i for i, v in enumerate(values) if v is not None and i % 2]
    ok = [i for i in range(n) if i not in failed]
    group = GroupResult(ran=list(range(n)), wall=[0.1] * n, iowait=[0.0] * n, ok=ok,
                        columns={"r": [values[i] for i in ok]}, absent={}, raw={},
                        failures=[(i, "exception", f"E({values[i]!r})", f"tb {values[i]}") for i in failed])
    with tempfile.TemporaryDirectory() as path:
        built = PartBuilder(PsetSource(psets)).build([("g", group, time.time(), 0)])
        assert built is not None
        write_part(path, PartName(1, 1, 1), built[0], write_options(built[0].schema))
        frame = journal.read(path).set_index("x").sort_index()
    assert frame["s"].tolist() == values
    assert [frame.loc[i, "r"] for i in ok] == [values[i] for i in ok]
    assert [frame.loc[i, "_traceback"] for i in failed] == [f"tb {values[i]}" for i in failed]
    assert [frame.loc[i, "_exception"] for i in failed] == [f"E({values[i]!r})" for i in failed]


def test_a_part_that_cannot_be_built_costs_only_its_own_psets(tmp_path, marks, journal_log, monkeypatch):
    """Whatever makes building fail (here: a fault injected into one pset's row), the other psets are
    journaled, and the log says what was lost -- never that writing works again."""
    real = _journal_build.PartBuilder._failure_columns

    def fail_on_x13(rows, n, columns):
        if 13 in np.concatenate(rows.positions):
            raise RuntimeError("injected: cannot build the row of pset 13")
        return real(rows, n, columns)

    monkeypatch.setattr(_journal_build.PartBuilder, "_failure_columns", staticmethod(fail_on_x13))
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    r = paramsurvey.map(counted, [{"x": i} for i in range(40)], journal=path, user_kwargs={"dir": marks},
                        group_size=8)  # pset 13 shares its group with 7 others
    assert len(r.results) == 40
    assert sorted(journal.read(path)["x"]) == [x for x in range(40) if x != 13]
    assert any("1 finished pset" in m and "not journaled" in m for m in journal_log), journal_log
    assert not [m for m in journal_log if "works again" in m]
    run = journal.read_meta(path)["runs"][-1]
    assert run["state"] == "stopped" and run["not_written"] == 1

    monkeypatch.undo()
    paramsurvey.map(counted, [{"x": i} for i in range(40)], journal=path, user_kwargs={"dir": marks})
    assert {x: c for x, c in markers(marks).items() if c > 1} == {13: 2}  # only the lost pset ran again


# -- 2. a read-only filesystem ----------------------------------------------------------------------
@pytest.fixture
def freezable(tmp_path):
    """A directory that can be made read-only. As root (which ignores permissions, so a chmod would
    prove nothing) a tmpfs mount, remounted read-only; otherwise chmod 0555."""
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = False
    if os.geteuid() == 0:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0:
            pytest.skip(f"root, but cannot mount a tmpfs to make a read-only filesystem: {out.stderr.strip()}")
        mounted = True

    def freeze(*dirs: str) -> None:
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, timeout=30)
        else:
            for d in (str(where), *dirs):
                os.chmod(d, 0o555)

    yield str(where), freeze
    if mounted:
        subprocess.run(["umount", str(where)], timeout=30, check=False)
    else:
        for root, dirs, _ in os.walk(str(where)):
            os.chmod(root, 0o755)
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)


def test_read_only_journal_is_a_clear_error_and_still_readable(tmp_path, marks, freezable):
    where, freeze = freezable
    path = os.path.join(where, "survey.journal")
    psets = [{"x": i} for i in range(10)]
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(counted, psets, journal=path, user_kwargs={"dir": marks})
    freeze(path)

    with pytest.raises(paramsurvey.JournalError) as error:
        paramsurvey.map(counted, psets, journal=path, user_kwargs={"dir": marks})
    message = str(error.value)
    assert path in message and ("read-only" in message.lower() or "permission" in message.lower()), message
    with pytest.raises(paramsurvey.JournalError) as error:
        paramsurvey.map(counted, psets, journal=os.path.join(where, "new.journal"), user_kwargs={"dir": marks})
    assert os.path.join(where, "new.journal") in str(error.value)
    assert sum(markers(marks).values()) == 10  # nothing ran

    assert sorted(journal.read(path)["x"]) == list(range(10))
    assert journal.status(path)["state"] == "finished"
    out = cli("export", path, str(tmp_path / "out.parquet"))
    assert out.returncode == 0, out.stderr
    assert cli("status", path).returncode == 0 and cli("failures", path).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem that fills up: a 4 MiB tmpfs (needs root)."""
    where = tmp_path / "small"
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {out.stderr.strip()}")
    yield str(where)
    subprocess.run(["umount", str(where)], timeout=30, check=False)


def fill(directory: str) -> str:
    """Write a file until the disk is full; returns its name."""
    filler = os.path.join(directory, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_full_disk_is_an_error_before_any_pset_runs_then_writes_resume(small_disk, marks, journal_log):
    path = os.path.join(small_disk, "j")
    os.mkdir(path)
    filler = fill(small_disk)
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(paramsurvey.JournalError, match="the disk is full") as error:
        paramsurvey.map(counted, [{"x": i} for i in range(40)], journal=path, user_kwargs={"dir": marks})
    assert path in str(error.value) and not markers(marks)
    os.unlink(filler)

    def disk(ret, system_kwargs, user_kwargs):  # full from the 3rd pset on, free again from the 25th
        if system_kwargs["pset_index"] == 2:
            fill(small_disk)
        elif system_kwargs["pset_index"] == 24:
            os.unlink(filler)

    r = paramsurvey.map(counted, [{"x": i} for i in range(40)], journal=path, out_func=disk,
                        user_kwargs={"dir": marks, "sleep": 0.05})
    assert len(r.results) == 40
    assert any("cannot write" in m for m in journal_log) and any("works again" in m for m in journal_log)
    assert sorted(journal.read(path)["x"]) == list(range(40))
    assert journal.read_meta(path)["runs"][-1]["state"] == "finished"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="running a survey as another user needs root and setpriv")
def test_a_lock_file_made_by_another_user_does_not_stop_the_survey(marks):
    """A journal shared by colleagues: its .lock (0644) belongs to whoever ran first. flock needs
    only a read descriptor, so the next user's survey resumes it."""
    shared = tempfile.mkdtemp(prefix="paramsurvey-shared-")  # under /tmp: every user may reach it
    try:
        os.chmod(shared, 0o777)
        path = os.path.join(shared, "j")
        paramsurvey.init(backend="serial", verbose=0)
        paramsurvey.map(counted, [{"x": i} for i in range(4)], journal=path, user_kwargs={"dir": marks})
        os.chmod(path, 0o777)  # the directory is shared; the files in it stay the first user's, 0644
        other_marks = os.path.join(shared, "marks")
        os.mkdir(other_marks)
        os.chmod(other_marks, 0o777)
        code = ("import paramsurvey\n"
                "from workers_journalfix import counted\n"
                "paramsurvey.init(backend='serial', verbose=0)\n"
                f"r = paramsurvey.map(counted, [{{'x': i}} for i in range(8)], journal={path!r}, "
                f"user_kwargs={{'dir': {other_marks!r}}}, extend_journal=True)\n"
                "print(len(r.results))\n")
        tests = os.path.dirname(os.path.abspath(__file__))
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        out = subprocess.run([*as_nobody, sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=shared, env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, tests])})
        assert out.returncode == 0 and out.stdout.strip() == "8", out.stderr[-2000:]
        assert sorted(markers(other_marks)) == [4, 5, 6, 7]  # the journaled psets did not run again
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- 3. damaged metadata ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["cut short", "not an object"])
def test_damaged_metadata_says_how_to_recover_and_repair_rebuilds_it(tmp_path, marks, damage, capsys):
    path = str(tmp_path / "j")
    meta_file = os.path.join(path, META)
    psets = [{"x": i} for i in range(10)]
    paramsurvey.init(backend="serial", verbose=0)
    first = paramsurvey.map(counted, psets, journal=path, user_kwargs={"dir": marks}, name="mine")
    text = open(meta_file).read()
    with open(meta_file, "w") as f:
        f.write(text[:len(text) // 2] if damage == "cut short" else "[1, 2]")

    with pytest.raises(paramsurvey.JournalError) as error:
        paramsurvey.map(counted, psets, journal=path, user_kwargs={"dir": marks}, name="mine")
    message = str(error.value)
    assert meta_file in message and "paramsurvey repair" in message, message
    assert ("not valid JSON" if damage == "cut short" else "not a JSON object") in message, message
    assert sum(markers(marks).values()) == 10  # nothing ran

    assert sorted(journal.read(path)["x"]) == list(range(10))  # the outcomes are in the parts
    assert main(["status", path]) == 0
    assert "paramsurvey repair" in capsys.readouterr().out

    assert main(["repair", path]) == 0
    assert any(n.startswith(META + ".damaged") for n in os.listdir(path))  # set aside, not deleted
    meta = journal.read_meta(path)
    assert meta["pset_keys"] == ["x"] and meta["runs"][0]["state"] == "stopped"
    again = paramsurvey.map(counted, psets, journal=path, user_kwargs={"dir": marks}, name="mine")
    assert set(markers(marks).values()) == {1}  # nothing ran again
    pd.testing.assert_frame_equal(again.results, first.results)
    info = journal.status(path)
    assert info["name"] == "mine" and info["total"] == 10 and not info["rebuilt"]  # the run recorded them again
    assert main(["repair", path]) == 0 and "nothing to repair" in capsys.readouterr().out


# -- 4. a damaged part: status and read() agree ---------------------------------------------------
def _damage_column(file: str, column: str) -> None:
    """Overwrite the page header of one column: the part's footer (and the other columns) still
    read, that column does not."""
    meta = pq.read_metadata(file)
    chunk = next(meta.row_group(0).column(i) for i in range(meta.num_columns)
                 if meta.row_group(0).column(i).path_in_schema == column)
    offset = chunk.dictionary_page_offset or chunk.data_page_offset
    with open(file, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 24)


@pytest.mark.parametrize("set_aside_by", ["the resume", "repair"])
def test_status_and_read_agree_on_a_damaged_part(tmp_path, marks, capsys, set_aside_by):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(counted, [{"x": i} for i in range(10)], journal=path, user_kwargs={"dir": marks})
    paramsurvey.map(counted, [{"x": i} for i in range(20)], journal=path, user_kwargs={"dir": marks},
                    extend_journal=True)
    parts = list_parts(path)
    assert len(parts) == 2
    _damage_column(os.path.join(path, parts[-1].name), "y")

    read = journal.read(path)
    info = journal.status(path)
    assert len(read) == 10
    assert info["counts"]["ok"] == len(read) and info["remaining"] == 10, info
    assert info["damaged_parts"] == [parts[-1].name]
    assert main(["status", path]) == 0
    out = capsys.readouterr().out
    assert parts[-1].name in out and "damaged" in out

    if set_aside_by == "repair":
        done = journal.repair(path)
        assert len(done) == 1 and parts[-1].name in done[0], done
        assert journal.status(path)["damaged_parts"] == [] and journal.status(path)["counts"]["ok"] == 10
    before = markers(marks)
    resumed = paramsurvey.map(counted, [{"x": i} for i in range(20)], journal=path, user_kwargs={"dir": marks})
    assert len(resumed.results) == 20
    after = markers(marks)
    assert {x for x in range(20) if after[x] != before[x]} == set(range(10, 20))
    assert any(n.startswith("_damaged-") for n in os.listdir(path))
    assert journal.status(path)["damaged_parts"] == [] and len(journal.read(path)) == 20


# -- 5. result keys and values that are not strings -------------------------------------------------
def test_tuple_keys_and_values_resume_identically(tmp_path, marks):
    psets = [{"x": i, "tp": (i, "a")} for i in range(8)]
    clean_marks = tmp_path / "clean"
    clean_marks.mkdir()
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    clean = paramsurvey.map(odd_keys, psets, user_kwargs={"dir": str(clean_marks)})
    assert ("a", 1) in clean.results.columns and frozenset({"f"}) in clean.results.columns

    path = str(tmp_path / "j")
    paramsurvey.map(odd_keys, psets[:4], journal=path, user_kwargs={"dir": marks})
    resumed = paramsurvey.map(odd_keys, psets, journal=path, user_kwargs={"dir": marks}, extend_journal=True)
    pd.testing.assert_frame_equal(resumed.results, clean.results)
    complete = paramsurvey.map(odd_keys, psets, journal=path, user_kwargs={"dir": marks})
    pd.testing.assert_frame_equal(complete.results, clean.results)
    assert set(markers(marks).values()) == {1}
    frame = journal.read(path, unpickle=True).set_index("x")
    assert frame.loc[2, "t"] == (2, "b") and frame.loc[3, "tp"] == (3, "a")


# -- 6. a directory that is not a journal --------------------------------------------------------------
def test_a_directory_of_dot_files_is_not_made_a_journal(tmp_path, marks):
    home = tmp_path / "home"
    (home / ".git").mkdir(parents=True)
    (home / ".bashrc").write_text("precious")
    paramsurvey.init(backend="serial", verbose=0)
    with pytest.raises(paramsurvey.JournalError, match="not a paramsurvey journal") as error:
        paramsurvey.map(counted, [{"x": 1}], journal=str(home), user_kwargs={"dir": marks})
    assert str(home) in str(error.value) and ".bashrc" in str(error.value)
    assert sorted(os.listdir(home)) == [".bashrc", ".git"] and not markers(marks)

    killed = tmp_path / "killed"  # what a map killed before its first write leaves: still a journal
    killed.mkdir()
    (killed / ".lock").write_text("")
    (killed / ".tmp-123-abc-_paramsurvey.json").write_text("{")
    r = paramsurvey.map(counted, [{"x": 1}], journal=str(killed), user_kwargs={"dir": marks})
    assert len(r.results) == 1 and len(journal.read(killed)) == 1

