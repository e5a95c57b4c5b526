"""The ``paramsurvey`` command line over a journal: status (also while the survey runs), failures,
export, plot, --help everywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from journal_workers import SRC, failing, marked, survey_process, wait_for_rows

import paramsurvey
from paramsurvey import journal
from paramsurvey.cli import main
from paramsurvey.journal import _store as _journal_store

pytestmark = pytest.mark.timeout(90)
SCRIPT = os.path.join(os.path.dirname(sys.executable), "paramsurvey")  # the installed console script


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would: its own process."""
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "paramsurvey.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def finished(tmp_path):
    """A finished journal with successes, exceptions of two types, and a crash."""
    path = str(tmp_path / "j")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    paramsurvey.map(failing, [{"x": i} for i in range(10)], journal=path)
    return path


def test_status_while_the_survey_runs_then_stopped(tmp_path, monkeypatch):
    path = str(tmp_path / "survey.journal")
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = survey_process(str(tmp_path), 100, 0.2, path, str(marks))  # ~10 s unless stopped
    try:
        wait_for_rows(path, 4, proc)
        monkeypatch.setattr(_journal_store, "LOCK_WAIT", 0.2)
        paramsurvey.init(backend="serial", verbose=0)
        with pytest.raises(paramsurvey.JournalError, match="being written by another survey"):
            paramsurvey.map(marked, [{"x": i} for i in range(100)], journal=path, user_kwargs={"dir": str(marks)})
        info = journal.status(path)
        assert info["state"] == "running" and info["total"] == 100
        assert 0 < info["remaining"] < 100 and info["eta"] > 0 and info["rate"] > 0

        out = cli("status", path)  # the command, in its own process, while the survey writes
        assert out.returncode == 0, out.stderr
        assert "state:     running" in out.stdout and "to go" in out.stdout and "remaining" in out.stdout
        assert json.loads(cli("status", path, "--json").stdout)["total"] == 100

        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        assert "INTERRUPTED" in stdout, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = cli("status", path)
    assert "state:     stopped" in out.stdout and "resume" in out.stdout


def test_status_of_a_finished_survey(finished, capsys):
    assert main(["status", finished]) == 0
    out = capsys.readouterr().out
    assert "state:     finished" in out and "10 total: 2 ok, 8 failed (7 exception, 1 crashed), 0 to go" in out


def test_status_of_a_killed_survey_says_how_to_resume(finished, capsys):
    meta = journal.read_meta(finished)
    meta["runs"][-1].update(state="running", end_time=None)  # as a kill -9 leaves it
    _journal_store.write_meta(finished, meta)
    assert main(["status", finished]) == 0
    out = capsys.readouterr().out
    assert "stopped" in out and "resume" in out
    assert "2 ok, 8 failed (7 exception, 1 crashed), 0 to go" in out


def test_failures_grouped_by_exception_type_with_one_traceback_each(finished, capsys):
    assert main(["failures", finished]) == 0
    out = capsys.readouterr().out
    assert "8 failed psets of 10, in 3 group(s)" in out
    assert "== KeyError: 4 pset(s) (exception) ==" in out
    assert "== ValueError: 3 pset(s) (exception) ==" in out
    assert "== crashed: 1 pset(s) (crashed) ==" in out and "pset 5: {x=5}" in out
    assert out.count("Traceback (most recent call last)") == 2  # a crash has no traceback
    assert "raise KeyError" in out and "raise ValueError" in out


def test_export_parquet_and_csv(tmp_path):
    path = str(tmp_path / "j")
    marks = tmp_path / "marks"
    marks.mkdir()
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(marked, [{"x": i} for i in range(6)], journal=path, user_kwargs={"dir": str(marks)})
    expected = journal.read(path)

    out = cli("export", path, str(tmp_path / "out.parquet"))
    assert out.returncode == 0 and "wrote 6 rows" in out.stdout, out.stderr
    back = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(back.drop(columns=["items"]), expected.drop(columns=["items"]),
                                  check_dtype=False)

    assert main(["export", path, str(tmp_path / "out.csv")]) == 0
    csv = pd.read_csv(tmp_path / "out.csv")
    assert csv["x"].tolist() == list(range(6)) and csv["y"].tolist() == [10 * i for i in range(6)]
    assert csv["items"].str.startswith("<pickled").all()  # not unpickled unless asked
    assert main(["export", path, str(tmp_path / "out2.csv"), "--unpickle", "--history"]) == 0
    assert pd.read_csv(tmp_path / "out2.csv")["items"].tolist() == [str([i, str(i)]) for i in range(6)]

    assert main(["export", path, str(tmp_path / "out.xlsx")]) == 1


def test_plot_writes_a_png_that_opens(finished, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    png = tmp_path / "survey.png"
    out = cli("plot", finished, str(png))
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(str(png))
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 400
    assert pixels.std() > 0.01  # something was drawn


def test_plot_without_matplotlib_says_what_to_install(finished, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from paramsurvey.cli import main\n"
            f"sys.exit(main(['plot', {finished!r}, {str(tmp_path / 'x.png')!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.returncode == 1 and "'paramsurvey[plot]'" in out.stderr  # the install hint names the extra


def test_help_everywhere_and_errors(tmp_path, capsys):
    assert os.path.exists(SCRIPT), "the console script is installed with the package"
    out = cli("--help")
    assert out.returncode == 0 and "usage: paramsurvey" in out.stdout
    for command in ("status", "failures", "export", "plot"):
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        assert exit.value.code == 0 and f"usage: paramsurvey {command}" in capsys.readouterr().out
    out = cli("status", str(tmp_path / "missing"))
    assert out.returncode == 1 and "no such directory" in out.stderr
    with pytest.raises(SystemExit) as exit:
        main(["frobnicate"])
    assert exit.value.code == 2
