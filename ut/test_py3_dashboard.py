"""The dashboard (Python 3): its page, its server, and the page in a real headless browser.

The browser tests use the system's Chromium and chromedriver (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs) through selenium, never a downloaded
driver; they skip, saying why, where either or selenium is missing. With
``UPDATE_SCREENSHOT=1`` the browser test also saves its screenshot as
``docs/_static/dashboard.png`` (the picture of docs/watching.rst).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

import helpers
from batch_processor import Resource
from batch_processor.dashboard import render_page
from batch_processor.watch import (
    CheckpointStatus, FailureRecord, ProcessorCounts, Sample, read_checkpoint)
from watched_run import Hostile, LiveRun

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = os.path.join(helpers.REPO_ROOT, "docs", "_static", "dashboard.png")
HOSTILE = "<script>alert(1)</script>"


def a_status(**changes):
    fields = dict(
        path="/runs/<b>run</b>.sqlite", state="running", pid=1234, started=1000.0, updated=1060.0,
        processors=[ProcessorCounts(HOSTILE, 5, 2, 2, 1, 0), ProcessorCounts("scorer", 2, 0, 2, 0, 0)],
        failures=[FailureRecord(HOSTILE, HOSTILE, "ValueError: <img src=x onerror=alert(2)>")],
        results=[("scorer", HOSTILE, "'<i>9</i>'")],
        history=[Sample(HOSTILE, 1010.0, 1), Sample(HOSTILE, 1050.0, 3), Sample("scorer", 1055.0, 2)])
    fields.update(changes)
    return CheckpointStatus(**fields)


def test_the_page_escapes_every_value_of_the_run():
    page = render_page(a_status(), now=1070.0)
    assert "<script>" not in page and "<img" not in page and "<b>run" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # name, legend, failure, result
    assert "ValueError: &lt;img src=x onerror=alert(2)&gt;" in page


def test_the_page_carries_the_status_table_and_failures_without_script():
    page = render_page(a_status(), now=1070.0)
    assert "<script" not in page.lower()
    assert 'http-equiv="refresh"' in page
    row = re.search(r'<td class="name">scorer</td>(.*?)</tr>', page).group(1)
    assert re.findall(r">(\d+)<", row) == ["2", "0", "2", "0", "0"]
    assert "running" in page and "pid 1234" in page and "10 s ago" in page
    assert page.count("<polyline") == 2 and 'id="failures"' in page


def start_dashboard(path, port=0, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([helpers.REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    child = subprocess.Popen([sys.executable, "-m", "batch_processor", "dashboard", path,
                              "--port", str(port)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, cwd=cwd)
    line = child.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        child.kill()
        out, err = child.communicate()
        pytest.fail("the dashboard did not start: %r %r %r" % (line, out, err))
    return child, match.group(0)


def stop(child):
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=helpers.TIMEOUT)
    return child.returncode, out, err


@pytest.fixture
def finished(tmpdir, monkeypatch):
    path = str(tmpdir.join("run.sqlite"))
    with LiveRun(path, [1, 2, Hostile(1)], free=[1, 2, Hostile(1)], monkeypatch=monkeypatch):
        pass
    return path


def test_the_server_listens_on_localhost_and_stops_on_ctrl_c(finished):
    child, url = start_dashboard(finished)
    try:
        from urllib.request import urlopen
        with urlopen(url + "status.json", timeout=helpers.TIMEOUT) as response:
            import json
            assert json.loads(response.read().decode())["state"] == "finished"
        with urlopen(url, timeout=helpers.TIMEOUT) as response:
            page = response.read().decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    finally:
        code, out, err = stop(child)
    assert code == 0 and "Traceback" not in err, err


def test_a_port_in_use_says_so_and_suggests_another(finished):
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = helpers.run_script("""
            import sys
            from batch_processor.__main__ import main
            sys.exit(main(["dashboard", %r, "--port", "%d"]))
        """ % (finished, port))
    finally:
        taken.close()
    assert code == 2
    assert "in use" in err and "--port" in err and "Traceback" not in err


def test_a_path_that_is_not_a_checkpoint_exits_2(tmpdir):
    code, out, err = helpers.run_script("""
        import sys
        from batch_processor.__main__ import main
        sys.exit(main(["dashboard", %r, "--port", "0"]))
    """ % str(tmpdir))
    assert code == 2 and "is a directory" in err and "Traceback" not in err


# -- in a real browser ------------------------------------------------------------------


@pytest.fixture
def browser(monkeypatch):
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(program):
            pytest.skip("%s is not installed (Debian: apt-get install chromium chromium-driver)"
                        % program)
    selenium = pytest.importorskip("selenium", reason="selenium is not installed")
    if int(selenium.__version__.split(".")[0]) < 4:
        pytest.skip("selenium %s is too old: the tests need selenium 4" % selenium.__version__)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1000,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def cells(driver, name):
    """The numbers of processor ``name``'s row of the status table."""
    from selenium.webdriver.common.by import By
    for row in driver.find_elements(By.CSS_SELECTOR, "#processors tbody tr"):
        texts = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        if texts and texts[0] == name:
            return [int(text) for text in texts[1:]]
    return None


def wait_until(driver, condition):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(driver):
        try:
            return condition(driver)
        except (StaleElementReferenceException, WebDriverException):  # the page reloaded
            return False  # under the query (Chromium may say "does not belong to the document")
    return WebDriverWait(driver, helpers.TIMEOUT, poll_frequency=0.2).until(check)


def test_the_dashboard_shows_a_run_in_progress_and_follows_it(tmpdir, monkeypatch, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    path = str(tmpdir.join("search.sqlite"))
    descriptors = [Hostile(1)] + list(range(1, 9))
    gpus = Resource("gpu", capacity=4)  # never short: jobs start as without it
    with LiveRun(path, descriptors, free=[Hostile(1), 1, 2, 3], monkeypatch=monkeypatch,
                 uses={gpus: 1}) as run:
        run.wait_for(lambda s: s.processors[1].succeeded == 3 and s.processors[1].failed == 1)
        child, url = start_dashboard("search.sqlite", cwd=str(tmpdir))
        try:
            browser.get(url)
            wait_until(browser, lambda d: "running (pid %d)" % os.getpid()
                       in d.find_element(By.ID, "state").text)
            # fed, in flight, ok, failed, cancelled (read again if the page reloads meanwhile)
            wait_until(browser, lambda d: cells(d, "trainer") == [9, 5, 4, 0, 0])
            wait_until(browser, lambda d: cells(d, "scorer") == [4, 0, 3, 1, 0])
            wait_until(browser, lambda d: [c.text for c in d.find_elements(  # 4 jobs hold one
                By.CSS_SELECTOR, "#resources tbody td")] == ["gpu", "4", "4", "0", "-", "trainer 1"])
            wait_until(browser, lambda d: HOSTILE in d.find_element(By.ID, "failures").text
                       and "cannot score" in d.find_element(By.ID, "failures").text)
            wait_until(browser, lambda d: d.execute_script("return document.scripts.length") == 0)
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert.accept()
            wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart polyline"))
            run.release(3)
            run.wait_for(lambda s: s.processors[1].succeeded == 6)
            wait_until(browser, lambda d: cells(d, "scorer") == [7, 0, 6, 1, 0])
            wait_until(browser, lambda d: cells(d, "trainer") == [9, 2, 7, 0, 0])
            screenshot = str(tmpdir.join("dashboard.png"))
            assert browser.save_screenshot(screenshot)
            with open(screenshot, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(screenshot, SCREENSHOT)
        finally:
            code, _, err = stop(child)
        assert code == 0 and "Traceback" not in err, err
    assert run.error is None
    assert read_checkpoint(path).state == "finished"

