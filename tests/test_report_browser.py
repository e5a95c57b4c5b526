"""The report and the live dashboard in a real browser: headless Chromium driven by selenium.

Each page must load with no JavaScript error in the console, draw every plot, show the failing
pset's exception as text, and fetch nothing from the network (the report: only its own file; the
dashboard: only its own server). The live page's counts must advance while a survey runs. Each test
saves a screenshot under $PARAMSURVEY_TEST_ARTIFACTS (default tests/artifacts/, git-ignored).

Needs Debian's chromium and chromium-driver (``tools/install-browser``, as root). Where they are
absent these tests skip, loudly (a warning and the skip reason in pytest's summary); under CI=true
they fail instead (the test of that needs no browser). Selenium is given the driver's path, so
Selenium Manager never downloads anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import warnings
from typing import Any

import pytest
from journal_workers import TESTS, survey_process, wait_for_rows
from workers_report import HOSTILE, flaky

import paramsurvey
from paramsurvey.report import serve, write_report

pytestmark = pytest.mark.timeout(120)

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--window-size=1300,1000",
                # no network at test time: anything not loopback would go to a proxy that is not there
                "--proxy-server=http://127.0.0.1:9")
BROWSERS = ("chromium", "chromium-browser")
PAGE_LOAD_SECONDS = 60
MAX_SCREENSHOT_HEIGHT = 12_000  # pixels: a full page, bounded
# Schemes a page may use without the network: its own file, and plotly's inline images.
LOCAL_SCHEMES = ("file://", "data:", "blob:")


def artifacts() -> str:
    path = os.environ.get("PARAMSURVEY_TEST_ARTIFACTS") or os.path.join(TESTS, "artifacts")
    os.makedirs(path, exist_ok=True)
    return path


INSTALL_HINT = "install them with tools/install-browser (as root), or `make test-browser`"


def unavailable(message: str) -> None:
    """No browser: fail under CI (where a missing install step must not pass unseen), else skip
    loudly (a warning, and the reason in pytest's summary)."""
    message = f"{message} -- {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI must install them)", pytrace=False)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def find_browser() -> tuple[str, str]:
    """The paths of chromium and chromedriver; a loud skip (or a CI failure) when either is absent."""
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        unavailable(f"the browser tests need chromium and chromedriver (found: chromium={binary}, "
                    f"chromedriver={driver_path})")
    assert binary is not None and driver_path is not None
    return binary, driver_path


@pytest.fixture
def browser(monkeypatch):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("the browser tests need selenium (the 'test' extra)")
    binary, driver_path = find_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it: no downloads
    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the page reloading under us: try again
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


PLOTS_DRAWN = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (plot) {
  return {id: plot.id, svgs: plot.querySelectorAll('svg.main-svg').length,
          drawn: plot.querySelectorAll('svg.main-svg *').length};
});
"""


def plots_drawn(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(PLOTS_DRAWN)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver: Any) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def screenshot(driver: Any, name: str) -> str:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1300, min(int(height) + 50, MAX_SCREENSHOT_HEIGHT))
    path = os.path.join(artifacts(), name)
    assert driver.save_screenshot(path), path
    return path


def expected_plots(page: str) -> int:
    return page.count("Plotly.newPlot(")


@pytest.mark.browser
def test_the_report_file_in_a_browser_offline(browser, tmp_path):
    path = str(tmp_path / "flaky.journal")
    paramsurvey.init(backend="multiprocessing", ncores=2, verbose=0)
    paramsurvey.map(flaky, [{"x": i, "alpha": (i % 4) / 2, "kind": f"k{i % 3}"} for i in range(60)], journal=path)
    out = write_report(path, tmp_path / "survey.html")
    page = open(out, encoding="utf-8").read()
    shutil.copy(out, os.path.join(artifacts(), "report.html"))

    browser.get("file://" + out)
    plots = wait_until(lambda: (p := plots_drawn(browser)) and all(x["svgs"] for x in p) and p, 30,
                       "the plots to be drawn")
    assert len(plots) == expected_plots(page) == 6
    assert all(plot["drawn"] > 20 for plot in plots), plots  # each svg has axes, traces, ...
    assert console_errors(browser) == []
    assert browser.title.startswith("paramsurvey: ")  # the hostile exception text did not run
    shown = browser.find_element("css selector", ".failure-group pre.exception")
    assert shown.is_displayed() and repr(ValueError(f"no convergence at x=1: {HOSTILE}")) in shown.text
    counts = {ident: browser.find_element("id", ident).text for ident in ("count-total", "count-failed")}
    failed = sum(1 for i in range(60) if i % 5 == 1 or i % 7 == 3)
    assert counts == {"count-total": "60", "count-failed": str(failed)}
    screenshot(browser, "report.png")
    urls = requested_urls(browser)
    assert urls and all(url.startswith(LOCAL_SCHEMES) for url in urls), urls


@pytest.mark.browser
def test_the_live_dashboard_advances_while_the_survey_runs(browser, tmp_path):
    path = str(tmp_path / "live.journal")
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = survey_process(str(tmp_path), 150, 0.15, path, str(marks))  # ~11 s on 2 cores unless stopped
    dashboard = None
    try:
        wait_for_rows(path, 2, proc)
        dashboard = serve(path, port=0)
        assert dashboard.url.startswith("http://127.0.0.1:")
        browser.get(dashboard.url)

        def done() -> int:
            return int(browser.find_element("id", "count-done").text)

        first = wait_until(lambda: done() > 0 and done(), 30, "the dashboard's first count")
        state = browser.find_element("id", "state").text
        assert state == "running"
        later = wait_until(lambda: done() > first and done(), 60, f"the count to advance past {first}")
        assert later > first
        plots = wait_until(lambda: (p := plots_drawn(browser)) and all(x["svgs"] for x in p) and p, 30,
                           "the plots to be drawn")
        assert plots and all(plot["drawn"] > 20 for plot in plots), plots
        assert console_errors(browser) == []
        screenshot(browser, "dashboard.png")
        urls = requested_urls(browser)
        own = dashboard.url.rstrip("/")
        assert any(url.startswith(own) for url in urls)
        assert all(url.startswith((own, *LOCAL_SCHEMES)) for url in urls), urls
        assert any(re.search(r"/version$", url) for url in urls)  # the page asked whether the journal changed
    finally:
        if dashboard is not None:
            dashboard.stop()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_without_a_browser_the_tests_skip_loudly_and_fail_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium, no chromedriver here
    monkeypatch.delenv("CI", raising=False)
    with pytest.warns(UserWarning, match="tools/install-browser"), \
            pytest.raises(pytest.skip.Exception, match="need chromium and chromedriver .*tools/install-browser"):
        find_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="tools/install-browser .*CI must install them"):
        find_browser()
