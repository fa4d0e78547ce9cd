"""Watching a run that uses shared resources: units in use and jobs waiting, per Resource,
in `read_checkpoint`, ``status`` (text and ``--json``) and the dashboard's page.

The watched run is a `watched_run.LiveRun` whose trainer's jobs each hold one unit of
a Resource and block on a semaphore the test releases: the test waits for the run's
records (an event after each), never sleeps.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys

import pytest

import helpers
from batch_processor import Resource, SeparateBatchProcessorSynchronous, run_batch_processor
from batch_processor.checkpoint import read_checkpoint
from batch_processor.watch import ResourceUse
from test_watch import STATUS_KEYS, cli
from watched_run import LiveRun

RESOURCE_KEYS = set(["name", "capacity", "devices", "in_use", "waiting", "devices_in_use",
                     "processors"])


def gpu_of(status):
    """The one ResourceUse of a status, or None if there is none (yet)."""
    return status.resources[0] if len(status.resources) == 1 else None


def held(in_use, waiting):
    def condition(status):
        gpu = gpu_of(status)
        return gpu is not None and (gpu.in_use, gpu.waiting) == (in_use, waiting)
    return condition


def test_units_in_use_and_jobs_waiting_while_jobs_hold_them_then_none(tmpdir, monkeypatch):
    path = str(tmpdir.join("live.sqlite"))
    gpus = Resource("gpu", devices=["0", "1"])
    # Five jobs, at most four admitted: two hold a device each, two wait for one.
    with LiveRun(path, range(5), free=[], monkeypatch=monkeypatch, uses={gpus: 1}) as run:
        status = run.wait_for(held(2, 2))
        assert gpu_of(status) == ResourceUse(
            name="gpu", capacity=2, devices=["0", "1"], in_use=2, waiting=2,
            devices_in_use=["0", "1"], processors=[{"name": "trainer", "units": 1}])
        assert status.processors[0].in_flight == 5
        code, out, err = cli("status", path, "--json")  # the jobs still hold their units
        assert code == 0, err
        printed = json.loads(out)
        assert set(printed) == STATUS_KEYS | set(["resources"])
        assert printed["resources"] == [dict(gpu_of(status))]
        assert set(printed["resources"][0]) == RESOURCE_KEYS
        code, out, err = cli("status", path)
        assert code == 0, err
        row = [line.split() for line in out.splitlines() if line.startswith("gpu ")]
        assert row == [["gpu", "2", "2", "2", "0,1", "of", "0,1", "trainer", "1"]]
        run.release(3)  # three jobs end: the other two hold the devices, none waits
        later = run.wait_for(held(2, 0))
        assert later.processors[0].succeeded == 3
        run.release(2)
    assert run.error is None
    final = read_checkpoint(path)
    assert final.state == "finished"
    assert gpu_of(final) == ResourceUse(
        name="gpu", capacity=2, devices=["0", "1"], in_use=0, waiting=0, devices_in_use=[],
        processors=[{"name": "trainer", "units": 1}])
    assert final["resources"] == final.as_dict()["resources"] == [dict(gpu_of(final))]


class Evaluate(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor


def test_a_resource_without_devices_and_two_processors_that_share_it(tmpdir):
    from batch_processor import BatchProcessorsGraph, run_batch_processors_graph
    path = str(tmpdir.join("run.sqlite"))
    licences = Resource("licence", capacity=3)
    first = Evaluate(name="first", uses={licences: 1})
    second = Evaluate(name="second", uses={licences: 2})
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, second, lambda *hs: [h.future.result() for h in hs])
    run_batch_processors_graph(graph, {first: range(4)}, checkpoint=path)
    status = read_checkpoint(path)
    assert status.resources == [ResourceUse(
        name="licence", capacity=3, devices=None, in_use=0, waiting=0, devices_in_use=None,
        processors=[{"name": "first", "units": 1}, {"name": "second", "units": 2}])]
    code, out, err = cli("status", path)
    assert code == 0, err
    row = [line.split() for line in out.splitlines() if line.startswith("licence ")]
    assert row == [["licence", "3", "0", "0", "-", "first", "1,", "second", "2"]]


def test_a_run_without_resources_records_no_resource_table(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Evaluate(name="plain"), range(3), checkpoint=path)
    db = sqlite3.connect(path)
    try:
        tables = set(row[0] for row in db.execute("SELECT name FROM sqlite_master"))
    finally:
        db.close()
    assert "watch_resources" not in tables  # so older versions of the library still resume it
    status = read_checkpoint(path)
    assert status.resources == []
    assert set(status.as_dict()) == STATUS_KEYS and "resources" not in status.keys()
    code, out, err = cli("status", path)
    assert code == 0 and "shared resources" not in out, err


def test_a_checkpoint_of_the_previous_version_reads_with_no_resources(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    gpus = Resource("gpu", devices=["0"])
    run_batch_processor(Evaluate(name="train", uses={gpus: 1}), range(3), checkpoint=path)
    assert len(read_checkpoint(path).resources) == 1
    db = sqlite3.connect(path)
    db.execute("DROP TABLE watch_resources")  # as the previous version wrote it
    db.close()
    status = read_checkpoint(path)
    assert status.state == "finished" and status.processors[0].succeeded == 3
    assert list(status.resources) == []
    code, out, err = cli("status", path, "--json")
    assert code == 0, err
    assert set(json.loads(out)) == STATUS_KEYS


def test_a_run_resumed_without_resources_no_longer_shows_them(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    gpus = Resource("gpu", capacity=1)

    class Stop(Exception):
        pass

    calls = []

    def stop_once(*handles):
        calls.append(handles)
        if len(calls) == 1:
            raise Stop()
        return [h.future.result() for h in handles]

    from batch_processor import BatchProcessorsGraph, ConverterError, run_batch_processors_graph

    def run(uses):
        graph = BatchProcessorsGraph()
        first, second = Evaluate(name="first", uses=uses), Evaluate(name="second")
        graph.add_connected_processors(first, second, stop_once)
        run_batch_processors_graph(graph, {first: [1, 2]}, checkpoint=path)

    with pytest.raises(ConverterError):
        run({gpus: 1})
    assert [r.name for r in read_checkpoint(path).resources] == ["gpu"]
    run(None)
    status = read_checkpoint(path)
    assert status.state == "finished" and list(status.resources) == []


# -- the dashboard (Python 3) ------------------------------------------------------------

HOSTILE = "<b>gpu</b>"


def start_dashboard(path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([helpers.REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    child = subprocess.Popen([sys.executable, "-m", "batch_processor", "dashboard", path,
                              "--port", "0"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", child.stdout.readline())
    if match is None:
        child.kill()
        out, err = child.communicate()
        pytest.fail("the dashboard did not start: %r %r" % (out, err))
    return child, match.group(0)


def fetch(url):
    from urllib.request import urlopen
    with urlopen(url, timeout=helpers.TIMEOUT) as response:
        return response.read().decode("utf-8")


@pytest.mark.skipif(sys.version_info[0] < 3, reason="the dashboard needs Python 3")
def test_the_dashboard_page_has_a_table_of_the_units_in_use(tmpdir, monkeypatch):
    path = str(tmpdir.join("live.sqlite"))
    gpus = Resource(HOSTILE, devices=["<i>0</i>", "1"])
    with LiveRun(path, range(3), free=[], monkeypatch=monkeypatch, uses={gpus: 1}) as run:
        run.wait_for(held(2, 1))
        child, url = start_dashboard(path)
        try:
            page = fetch(url)
            printed = json.loads(fetch(url + "status.json"))
        finally:
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=helpers.TIMEOUT)
        assert child.returncode == 0 and "Traceback" not in err, err
    assert run.error is None
    assert "<b>" not in page and "<i>" not in page
    table = re.search(r'<table id="resources">(.*?)</table>', page).group(1)
    assert re.findall(r"<th>(.*?)</th>", table)[:4] == ["resource", "capacity", "in use", "waiting"]
    row = re.search(r"<tbody><tr>(.*?)</tr>", table).group(1)
    assert re.findall(r"<td[^>]*>(.*?)</td>", row) == [
        "&lt;b&gt;gpu&lt;/b&gt;", "2", "2", "1", "&lt;i&gt;0&lt;/i&gt;,1 of &lt;i&gt;0&lt;/i&gt;,1",
        "trainer 1"]
    assert printed["resources"][0]["name"] == HOSTILE
    assert (printed["resources"][0]["in_use"], printed["resources"][0]["waiting"]) == (2, 1)
