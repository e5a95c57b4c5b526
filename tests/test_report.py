"""The HTML report and the live dashboard, without a browser: what the page holds, bad input, the
command line, the dashboard's server. tests/test_report_browser.py loads the pages in Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import psutil
import pytest
from journal_workers import SRC, TESTS, Tripwire, survey_process, tripwire, wait_for_rows
from workers_report import HOSTILE, crash_on_four, flaky

import paramsurvey
from paramsurvey import journal
from paramsurvey.journal._store import list_parts
from paramsurvey.report import Report, summarise, write_report

pytestmark = pytest.mark.timeout(120)
HUGE_BYTES = 20 * 2**20  # the goal for a million psets; a test journal is far smaller


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    return subprocess.run([sys.executable, "-m", "paramsurvey.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def psets_of(n: int) -> list[dict[str, object]]:
    return [{"x": i, "alpha": (i % 4) / 2, "kind": f"k{i % 3}"} for i in range(n)]


def expected_ok(n: int) -> int:
    return sum(1 for i in range(n) if i % 5 != 1 and i % 7 != 3)


@pytest.fixture
def flaky_journal(tmp_path):
    """A finished journal of 60 psets: successes, ValueErrors (with HTML in their text), KeyErrors."""
    path = str(tmp_path / "flaky.journal")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    paramsurvey.map(flaky, psets_of(60), journal=path)
    return path


def count(page: str, ident: str) -> int:
    m = re.search(rf'id="{ident}"[^>]*>(\d+)<', page)
    assert m, f"no {ident} in the page"
    return int(m.group(1))


def outside_scripts(page: str) -> str:
    """The page without its <script> bodies (plotly's own JavaScript names URLs in its code)."""
    return re.sub(r"<script[^>]*>.*?</script>", "<script></script>", page, flags=re.S)


def test_the_report_of_a_journal_is_one_self_contained_file(flaky_journal, tmp_path):
    out = write_report(flaky_journal, tmp_path / "survey.html")
    page = open(out, encoding="utf-8").read()
    ok = expected_ok(60)
    assert (count(page, "count-total"), count(page, "count-ok"), count(page, "count-failed")) == (60, ok, 60 - ok)
    assert count(page, "count-remaining") == 0 and 'class="state state-finished"' in page
    # plotly embedded once, every figure drawn by it, nothing loaded from anywhere
    markup = outside_scripts(page)
    assert page.count("<script") == 1 + page.count("Plotly.newPlot(")
    assert "<link" not in markup and not re.search(r"\bsrc\s*=", markup), "the page loads something"
    # failures by parameter, explorer, lines, heat maps, durations, throughput
    assert page.count("Plotly.newPlot(") == 6
    # failures grouped by type, with an example pset and the (escaped) exception and traceback
    assert "ValueError: 12 pset(s) (exception)" in page and "KeyError" in page
    assert "{x=1, alpha=0.5, kind=&#x27;k1&#x27;}" in page
    assert HOSTILE not in page and "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert 'class="traceback"' in page and "in flaky" in page
    # the user's column names, and the provenance of the run
    for name in ("alpha", "kind", "energy", "steps"):
        assert f"<code>{name}</code>" in page
    assert 'id="runs"' in page and "command_line" in page and "versions" in page


def test_the_report_of_map_results_and_its_jupyter_display(tmp_path):
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    results = paramsurvey.map(flaky, psets_of(30))
    report = Report(results)
    page = report._repr_html_()
    ok = expected_ok(30)
    assert (count(page, "count-total"), count(page, "count-ok"), count(page, "count-failed")) == (30, ok, 30 - ok)
    assert "ValueError" in page and "no convergence at x=1" in page and HOSTILE not in page
    assert "pset durations and finish times are in the journal only" in page
    assert "Plotly.newPlot(" in page
    assert write_report(results, tmp_path / "r.html") == str(tmp_path / "r.html")
    with pytest.raises(paramsurvey.ArgumentTypeError, match="journal path or a MapResults, not list"):
        summarise([1, 2])


def test_the_command_writes_the_report(flaky_journal, tmp_path):
    out = tmp_path / "cli.html"
    done = cli("report", flaky_journal, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and count(out.read_text(), "count-total") == 60


def test_a_path_that_is_not_a_journal_is_a_clear_error(tmp_path):
    out = tmp_path / "x.html"
    done = cli("report", str(tmp_path / "nowhere"), "-o", str(out))
    assert done.returncode == 1 and "nowhere is not a journal: no such directory" in done.stderr
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    done = cli("report", str(tmp_path / "plain"), "-o", str(out))
    assert done.returncode == 1 and "plain is not a paramsurvey journal" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    with pytest.raises(paramsurvey.JournalError, match="is not a journal"):
        write_report(tmp_path / "nowhere", out)


def test_an_empty_journal_gives_a_page_that_says_so(flaky_journal, tmp_path):
    for part in list_parts(flaky_journal):
        os.remove(os.path.join(flaky_journal, part.name))  # the metadata alone: as a survey just started
    out = tmp_path / "empty.html"
    done = cli("report", flaky_journal, "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "No pset has finished yet" in page and count(page, "count-done") == 0
    assert "Plotly.newPlot(" not in page and 'id="runs"' in page


def test_a_damaged_part_is_named_and_the_rest_is_shown(tmp_path):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="serial", verbose=0)
    paramsurvey.map(flaky, psets_of(30), journal=path)
    paramsurvey.map(flaky, psets_of(50), journal=path, extend_journal=True)  # run 2: its own part
    damaged = [p.name for p in list_parts(path) if p.run == 2]
    assert len(damaged) == 1
    file = os.path.join(path, damaged[0])
    with open(file, "r+b") as f:
        f.truncate(os.path.getsize(file) // 2)
    page = Report(path).html()
    assert f"part {damaged[0]} cannot be read" in page
    assert count(page, "count-total") == 50 and count(page, "count-done") == 30  # run 1's psets, still shown
    assert "Plotly.newPlot(" in page


def test_damaged_metadata_is_a_warning_and_the_outcomes_are_shown(flaky_journal):
    with open(os.path.join(flaky_journal, "_paramsurvey.json"), "w") as f:
        f.write('{"format": "paramsurvey-journal", "runs": [')  # cut short, as by a full disk
    page = Report(flaky_journal).html()
    assert 'class="warning"' in page and "_paramsurvey.json" in page
    assert count(page, "count-done") == 60 and count(page, "count-ok") == expected_ok(60)
    assert "Plotly.newPlot(" in page


def test_nothing_in_the_journal_is_unpickled(tmp_path):
    path = str(tmp_path / "j")
    wire = str(tmp_path / "wire")
    paramsurvey.init(backend="serial", verbose=0)
    psets = [{"x": i, "trap": Tripwire(wire)} for i in range(6)]  # serial: the psets are never pickled
    paramsurvey.map(tripwire, psets, journal=path, user_kwargs={"wire": wire})
    assert not os.path.exists(wire)
    page = Report(path).html()
    assert not os.path.exists(wire), "making the report unpickled a value of the journal"
    assert "<code>trap</code>" in page and "<code>obj</code>" in page and "stored pickled" in page
    journal.read(path, unpickle=True)  # the tripwire works: unpickling leaves the file
    assert os.path.exists(wire)


def test_a_crash_is_its_own_failure_group(tmp_path):
    path = str(tmp_path / "j")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    paramsurvey.map(crash_on_four, [{"x": i} for i in range(8)], journal=path)
    page = Report(path).html()
    assert "crashed: 1 pset(s) (crashed)" in page and "pset 4: <code>{x=4}</code>" in page


def test_the_report_of_a_journal_being_written(tmp_path):
    path = str(tmp_path / "live.journal")
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = survey_process(str(tmp_path), 80, 0.2, path, str(marks))  # ~8 s unless stopped
    try:
        wait_for_rows(path, 4, proc)
        page = Report(path).html()
        assert 'class="state state-running"' in page and "remaining" in page
        assert count(page, "count-total") == 80 and 0 < count(page, "count-done") < 80
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_a_big_journal_gives_a_small_page_that_says_it_samples(tmp_path):
    path = str(tmp_path / "big.journal")
    n = 20_000
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    paramsurvey.map(flaky, [{"x": i, "alpha": i / n, "kind": f"k{i % 70}"} for i in range(n)], journal=path)
    out = write_report(path, tmp_path / "big.html")
    page = open(out, encoding="utf-8").read()
    assert os.path.getsize(out) < HUGE_BYTES
    assert "a random sample of 2000 of the 20000 psets" in page
    assert "plotted by bins" in page and "(other)" in page  # 70 kinds: the 49 commonest, then the rest


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_the_dashboard_command_serves_the_page_on_loopback_and_stops_at_ctrl_c(flaky_journal):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS])}
    proc = subprocess.Popen([sys.executable, "-m", "paramsurvey.cli", "dashboard", flaky_journal, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:(\d+)/)", first)
        assert m, (first, proc.stderr.read() if proc.poll() is not None else "")
        url, port = m.group(1), m.group(2)
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", int(port))]  # this machine only
        assert f"ssh -L {port}:127.0.0.1:{port} " in proc.stdout.readline()
        status, page = get(url)
        assert status == 200 and count(page, "count-total") == 60
        assert '<script type="text/javascript" src="plotly.min.js"></script>' in page
        version = get(url + "version")
        assert version[0] == 200 and re.fullmatch(r"[0-9a-f]{24}", version[1])
        assert get(url + "plotly.min.js")[0] == 200 and get(url + "nothing")[0] == 404
        request = urllib.request.Request(url, data=b"x", method="POST")  # read-only
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 501
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "stopped" in stdout and "Traceback" not in stderr


def test_the_dashboard_of_a_path_that_is_not_a_journal_is_an_error(tmp_path):
    done = cli("dashboard", str(tmp_path / "nowhere"), "--port", "0")
    assert done.returncode == 1 and "is not a journal" in done.stderr


def test_without_plotly_the_error_names_the_extra(flaky_journal, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly.offline", None)  # as if plotly were not installed
    with pytest.raises(paramsurvey.BackendNotInstalled, match=r"plotly.*'report' extra") as raised:
        write_report(flaky_journal, tmp_path / "no.html")
    assert isinstance(raised.value, ImportError) and not (tmp_path / "no.html").exists()
