"""Watching a run from outside: `read_checkpoint`, ``status`` and ``export`` (2.7 and 3.x).

Runs in progress are `watched_run.LiveRun`\\ s: the test waits for the run's records
(an event after each), never sleeps. Until the durable runs' lock (``PATH + ".lock"``,
held with ``flock``) is merged, a live run has no sidecar: the tests that need
"running" hold the sidecar's lock themselves in a child process.
"""
from __future__ import absolute_import, division, print_function

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest

import helpers
from batch_processor import (
    CheckpointError, SeparateBatchProcessorSynchronous, run_batch_processor)
from batch_processor.checkpoint import read_checkpoint
from watched_run import Hostile, LiveRun

STATUS_KEYS = set(["state", "pid", "started", "updated", "processors", "failures"])
PROCESSOR_KEYS = set(["name", "fed", "in_flight", "succeeded", "failed", "cancelled"])
FAILURE_KEYS = set(["processor", "descriptor", "error"])
COLUMNS = ["processor", "descriptor", "outcome", "result", "error", "duration"]


class Square(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor == 3:
            raise ValueError("three is <b>bad</b>")
        return job_descriptor * job_descriptor


def cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([helpers.REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    child = subprocess.Popen([sys.executable, "-m", "batch_processor"] + list(args), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = child.communicate()
    return child.returncode, out.decode("utf-8"), err.decode("utf-8")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def finished(tmpdir):
    """The checkpoint of a finished run of ``Square`` over 0..9 (3 fails)."""
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Square(name="square"), list(range(10)), checkpoint=path)
    return path


def test_a_finished_run_reads_as_finished_with_its_counts_and_failures(finished):
    status = read_checkpoint(finished)
    assert status.state == "finished"
    assert [(p.name, p.fed, p.in_flight, p.succeeded, p.failed, p.cancelled)
            for p in status.processors] == [("square", 10, 0, 9, 1, 0)]
    assert [(f.processor, f.descriptor, f.error) for f in status.failures] == [
        ("square", "3", "ValueError: three is <b>bad</b>")]
    assert status.started <= status.updated
    as_dict = status.as_dict()
    assert set(as_dict) == STATUS_KEYS
    assert dict(status) == as_dict and status["state"] == "finished"  # also as a mapping
    assert status.processors == [{"name": "square", "fed": 10, "in_flight": 0,
                                  "succeeded": 9, "failed": 1, "cancelled": 0}]
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert set(as_dict["processors"][0]) == PROCESSOR_KEYS
    assert set(as_dict["failures"][0]) == FAILURE_KEYS


def test_handles_yields_every_recorded_handle_with_its_outcome(finished):
    pairs = list(read_checkpoint(finished).handles())
    assert [name for name, _ in pairs] == ["square"] * 10
    by_descriptor = dict((h.descriptor, h) for _, h in pairs)
    assert sorted(by_descriptor) == list(range(10))
    assert by_descriptor[4].future.result() == 16
    assert isinstance(by_descriptor[3].future.exception(), ValueError)


def test_reading_never_changes_the_file(finished):
    before = digest(finished)
    read_checkpoint(finished)
    list(read_checkpoint(finished).handles())
    assert cli("status", finished)[0] == 0
    assert cli("export", finished)[0] == 0
    assert digest(finished) == before


def test_status_prints_a_table_and_the_last_failures(finished):
    code, out, err = cli("status", finished)
    assert code == 0, err
    assert "finished" in out
    assert "in flight" in out and "cancelled" in out
    row = [line.split() for line in out.splitlines() if line.startswith("square")][0]
    assert row == ["square", "10", "0", "9", "1", "0"]
    assert "ValueError: three is <b>bad</b>" in out


def test_status_json_has_exactly_the_keys_of_the_spec(finished):
    code, out, err = cli("status", finished, "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert set(printed) == STATUS_KEYS
    assert printed["state"] == "finished"
    assert printed["processors"] == [{"name": "square", "fed": 10, "in_flight": 0,
                                      "succeeded": 9, "failed": 1, "cancelled": 0}]
    assert printed["failures"] == [{"processor": "square", "descriptor": "3",
                                    "error": "ValueError: three is <b>bad</b>"}]
    assert isinstance(printed["started"], float) and printed["updated"] >= printed["started"]


def test_export_csv_has_one_row_per_handle(finished, tmpdir):
    output = str(tmpdir.join("out.csv"))
    code, out, err = cli("export", finished, "--output", output)
    assert code == 0, err
    with io.open(output, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert len(rows) == 10
    by_descriptor = dict((row["descriptor"], row) for row in rows)
    assert by_descriptor["4"]["outcome"] == "ok" and by_descriptor["4"]["result"] == "16"
    assert by_descriptor["4"]["error"] == ""
    assert by_descriptor["3"]["outcome"] == "failed" and by_descriptor["3"]["result"] == ""
    assert by_descriptor["3"]["error"] == "ValueError: three is <b>bad</b>"
    assert all(float(row["duration"]) >= 0 for row in rows)


def test_export_jsonl_has_the_same_keys(finished):
    code, out, err = cli("export", finished, "--format", "jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 10 and all(sorted(row) == sorted(COLUMNS) for row in rows)
    assert sorted(row["outcome"] for row in rows) == ["failed"] + ["ok"] * 9


def test_export_can_be_read_with_pandas(finished, tmpdir):
    pandas = pytest.importorskip("pandas")
    output = str(tmpdir.join("out.csv"))
    assert cli("export", finished, "--output", output)[0] == 0
    frame = pandas.read_csv(output)
    assert list(frame.columns) == COLUMNS
    assert (frame["outcome"] == "ok").sum() == 9


def foreign_database(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()


@pytest.mark.parametrize("kind", ["missing", "directory", "foreign", "text"])
def test_a_path_that_is_not_a_checkpoint_exits_2_naming_it(tmpdir, kind):
    path = str(tmpdir.join("not-a-checkpoint"))
    if kind == "directory":
        os.mkdir(path)
    elif kind == "foreign":
        foreign_database(path)
    elif kind == "text":
        with open(path, "w") as f:
            f.write("just text " * 200)
    before = digest(path) if kind in ("foreign", "text") else None
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert path in str(info.value)
    for command in (["status"], ["status", "--json"], ["export"]):
        code, out, err = cli(*(command + [path]))
        assert code == 2 and out == ""
        assert path in err and "Traceback" not in err
    if before is not None:
        assert digest(path) == before


def test_a_run_in_progress_shows_what_it_fed_and_collected(tmpdir, monkeypatch):
    path = str(tmpdir.join("live.sqlite"))
    with LiveRun(path, range(8), free=[0, 1, 2], monkeypatch=monkeypatch) as run:
        status = run.wait_for(lambda s: s.processors[1].succeeded == 3)
        trainer, scorer = status.processors
        assert (trainer.name, trainer.fed, trainer.succeeded) == ("trainer", 8, 3)
        assert trainer.in_flight == 5
        assert (scorer.name, scorer.fed, scorer.in_flight) == ("scorer", 3, 0)
        assert (status.state, status.pid) == ("running", os.getpid())
        assert status.updated >= status.started
        run.release(2)
        later = run.wait_for(lambda s: s.processors[1].succeeded == 5)
        assert later.processors[0].in_flight == 3 and later.updated > status.updated
        code, out, err = cli("status", path, "--json")
        assert code == 0, err
        assert json.loads(out)["processors"][1]["succeeded"] == 5
    assert run.error is None
    final = read_checkpoint(path)
    assert final.state == "finished"
    assert [(p.fed, p.succeeded, p.in_flight) for p in final.processors] == [(8, 8, 0), (8, 8, 0)]


def test_hostile_reprs_are_recorded_as_text_in_failures(tmpdir, monkeypatch):
    path = str(tmpdir.join("live.sqlite"))
    with LiveRun(path, [Hostile(1), 5], free=[Hostile(1), 5], monkeypatch=monkeypatch) as run:
        status = run.wait_for(lambda s: s.processors[1].failed == 1)
    assert run.error is None
    assert [(f.processor, f.descriptor) for f in status.failures] == [
        ("scorer", "<script>alert(1)</script>")]
    assert "cannot score <b><script>alert(1)</script></b>" in status.failures[0].error


@pytest.mark.skipif(sys.platform == "win32", reason="the run's lock is an flock (POSIX)")
def test_a_live_run_reads_as_running_with_its_pid(tmpdir, monkeypatch):
    path = str(tmpdir.join("live.sqlite"))
    with LiveRun(path, range(3), free=[0], monkeypatch=monkeypatch) as run:
        status = run.wait_for(lambda s: s.processors[0].succeeded == 1)
        assert (status.state, status.pid) == ("running", os.getpid())
        code, out, _ = cli("status", path)
        assert "running (pid %d)" % os.getpid() in out
    assert run.error is None
    assert read_checkpoint(path).state == "finished"


def test_a_resumed_run_counts_each_job_once(tmpdir):
    path = str(tmpdir.join("run.sqlite"))

    class Interrupt(Exception):
        pass

    calls = []

    def stop_at_fourth(*handles):
        calls.append(handles)
        if len(calls) == 4:
            raise Interrupt()
        return []

    from batch_processor import BatchProcessorsGraph, ConverterError, run_batch_processors_graph

    def run():  # as a program started again would: new processors, the same graph
        graph = BatchProcessorsGraph()
        square, after = Square(name="square", max_parallel_jobs=1), Square(name="after")
        graph.add_connected_processors(square, after, stop_at_fourth)
        run_batch_processors_graph(graph, {square: [0, 1, 2, 4, 5, 6]}, checkpoint=path)

    with pytest.raises(ConverterError):
        run()
    stopped = read_checkpoint(path)
    assert stopped.state == "stopped" and stopped.processors[0].fed == 6
    calls.append("fixed")  # the converter no longer raises
    run()
    final = read_checkpoint(path)
    assert final.state == "finished"
    assert (final.processors[0].fed, final.processors[0].succeeded) == (6, 6)


def test_import_batch_processor_does_not_load_the_watchers():
    code, out, err = helpers.run_script("""
        import sys
        import batch_processor
        print(sorted(m for m in ("batch_processor.watch", "batch_processor.cli",
                                 "batch_processor.dashboard") if m in sys.modules))
    """)
    assert code == 0, err
    assert out.strip() == "[]"


@pytest.mark.skipif(sys.version_info[0] >= 3, reason="Python 2.7's message")
def test_the_dashboard_says_it_needs_python_3_on_python_2(finished):
    code, out, err = cli("dashboard", finished)
    assert code == 2 and "needs Python 3" in err and "python3 -m batch_processor" in err
    assert "Traceback" not in err


def test_a_write_in_progress_neither_blocks_the_reader_nor_is_blocked_by_it(finished):
    writer = sqlite3.connect(finished, isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a record being written at this instant
        writer.execute("UPDATE watch_counts SET fed = fed + 100")
        assert read_checkpoint(finished).processors[0].fed == 10  # the last committed record
        writer.execute("COMMIT")
        assert read_checkpoint(finished).processors[0].fed == 110
        writer.execute("BEGIN IMMEDIATE")  # the reader left no lock behind (timeout=0)
        writer.execute("ROLLBACK")
    finally:
        writer.close()


def test_a_checkpoint_being_created_is_waited_for_then_refused(tmpdir, monkeypatch):
    import batch_processor.watch
    monkeypatch.setattr(batch_processor.watch, "PATIENCE", 0.2)
    path = str(tmpdir.join("new.sqlite"))
    db = sqlite3.connect(path)  # a run that created the tables, not yet its meta
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE fed (record INTEGER PRIMARY KEY, items BLOB NOT NULL);"
                     "CREATE TABLE handles (record INTEGER, node INTEGER, items BLOB);"
                     "CREATE TABLE processors (node INTEGER PRIMARY KEY, state BLOB);")
    db.close()
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert path in str(info.value) and "creating" in str(info.value)


def test_an_older_checkpoint_without_the_watchers_tables_reads_with_zero_counts(finished):
    db = sqlite3.connect(finished)
    db.executescript("DROP TABLE watch_meta; DROP TABLE watch_counts; DROP TABLE watch_records;")
    db.close()
    status = read_checkpoint(finished)
    assert status.state == "finished" and status.failures == []
    assert [(p.name, p.fed) for p in status.processors] == [("square", 0)]
    assert len(list(status.handles())) == 10


MAIN_SCRIPT = """
import sys
from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor

class Config(object):
    def __init__(self, lr):
        self.lr = lr

class Diverged(Exception):
    pass

class Train(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, config):
        if config.lr > 1:
            raise Diverged("lr %s is too high" % config.lr)
        return Config(config.lr / 2)

run_batch_processor(Train(name="train"), [Config(0.5), Config(2)], checkpoint=sys.argv[1])
"""


def test_export_shows_objects_of_classes_it_cannot_import(tmpdir):
    script, path = tmpdir.join("search.py"), str(tmpdir.join("run.sqlite"))
    script.write(MAIN_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([helpers.REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    subprocess.check_call([sys.executable, str(script), path], env=env)
    code, out, err = cli("export", path, "--format", "jsonl")  # __main__ is not search.py here
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["descriptor"], r["outcome"], r["result"], r["error"]) for r in rows] == [
        ("__main__.Config(lr=0.5)", "ok", "__main__.Config(lr=0.25)", ""),
        ("__main__.Config(lr=2)", "failed", "", "Diverged: lr 2 is too high")]
    with pytest.raises(CheckpointError) as info:  # handles() gives real objects or says why
        list(read_checkpoint(path).handles())
    assert "PYTHONPATH" in str(info.value)


def demo_available():
    """Whether scikit-learn is installed (found, not imported: the demo runs in a child)."""
    if sys.version_info[0] >= 3:
        import importlib.util
        return importlib.util.find_spec("sklearn") is not None
    import imp
    try:
        imp.find_module("sklearn")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not demo_available(), reason="the demo needs scikit-learn (extra [demo])")
def test_status_and_export_follow_a_run_of_the_demo(tmpdir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([helpers.REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    demo = subprocess.Popen([sys.executable, "-m", "batch_processor.demo", "--budget", "12",
                             "--dot", "", "--checkpoint", "search.sqlite"], env=env,
                            cwd=str(tmpdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = str(tmpdir.join("search.sqlite"))
    try:
        assert b"python -m batch_processor status search.sqlite" in demo.stderr.readline()
        assert b"new best" in demo.stderr.readline()  # a trial was collected: soon recorded
        code, out, err = cli("status", path, "--json")
        assert code == 0, err
        live = json.loads(out)
        assert (live["state"], live["pid"]) == ("running", demo.pid)
        assert [p["name"] for p in live["processors"]] == ["Proposer", "Trainer", "Leaderboard"]
        assert live["processors"][0]["fed"] >= 1
    finally:
        out, err = demo.communicate()
    assert demo.returncode == 0, err
    final = read_checkpoint(path)
    assert final.state == "finished"
    trainer = final.processors[1]
    assert (trainer.fed, trainer.succeeded + trainer.failed) == (12, 12)
    code, out, err = cli("export", path, "--format", "jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert sum(1 for row in rows if row["processor"] == "Trainer") == 12


class Accented(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        raise ValueError(u"temp\xe9rature trop \xe9lev\xe9e")


def test_names_and_messages_beyond_ascii_print(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Accented(name=u"mod\xe8le"), [1], checkpoint=path)
    assert read_checkpoint(path).processors[0].name == u"mod\xe8le"
    code, out, err = cli("status", path)
    assert code == 0, err
    assert u"mod\xe8le" in out
    if sys.version_info[0] >= 3:  # 2.7's str() of such an exception raises
        assert u"temp\xe9rature trop \xe9lev\xe9e" in out
    code, out, err = cli("export", path)
    assert code == 0 and u"mod\xe8le,1,failed" in out, err
