"""Durable runs at their edges (SPEC.md "Durable runs", issue 19): a converter error,
two writers, changed inputs, failed writes, values that do not unpickle, foreign and
damaged files, large state, options checked before anything runs.
"""
from __future__ import absolute_import, division, print_function

import fcntl
import hashlib
import logging
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

import checkpoint_programs
import helpers
from batch_processor import (
    BatchProcessorsGraph, CheckpointError, ConverterError, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processor, run_batch_processors_graph)
from batch_processor import checkpoint as checkpoint_module
from batch_processor import _sqlite_store


Square = helpers.CountingSquare


class Sum(SequentialBatchProcessorSynchronous):
    def __init__(self, **kwargs):
        super(Sum, self).__init__(**kwargs)
        self.total = 0

    def _run_batch_synchronous(self, job_descriptors):
        self.total += sum(job_descriptors)
        return list(job_descriptors)


def results(handles):
    return sorted(h.future.result() for h in handles)


def file_digest(path):
    with open(path, "rb") as stream:
        return hashlib.sha1(stream.read()).hexdigest()


# -- 1. a converter error ---------------------------------------------------------------

def squares_to_sum(broken):
    def convert(*handles):
        if broken[0]:
            raise ValueError("the converter is broken")
        return [h.future.result() for h in handles]
    return convert


def test_a_run_that_ended_on_a_converter_error_resumes_to_the_full_result(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    broken = [True]

    def graph_of(square, total):
        graph = BatchProcessorsGraph()
        graph.add_connected_processors(square, total, squares_to_sum(broken))
        return graph

    square, total = Square(), Sum()
    with pytest.raises(ConverterError):
        run_batch_processors_graph(graph_of(square, total), {square: [1, 2]}, checkpoint=path)
    broken[0] = False
    square, total = Square(), Sum()
    result = run_batch_processors_graph(graph_of(square, total), {square: [1, 2]},
                                        checkpoint=path)
    assert total.total == 5  # 1 + 4, as a run that never failed gives
    assert results(result[total]) == [1, 4] and results(result[square]) == [1, 4]
    square, total = Square(), Sum()  # now it is finished: the same result, nothing runs
    again = run_batch_processors_graph(graph_of(square, total), {square: [1, 2]}, checkpoint=path)
    assert results(again[total]) == [1, 4] and square.calls == 2  # the state recorded


# -- 2. one writer at a time ------------------------------------------------------------

class Hold(SeparateBatchProcessorSynchronous):
    """Its job waits for ``release`` (an Event shared by reference, never pickled)."""
    _bp_not_pickled = ("started", "release")

    def __init__(self, **kwargs):
        super(Hold, self).__init__(**kwargs)
        self.started = threading.Event()
        self.release = threading.Event()

    def _run_one_job_synchronous(self, job_descriptor):
        self.started.set()
        assert self.release.wait(helpers.TIMEOUT)
        return job_descriptor


def test_a_run_that_starts_while_a_watcher_looks_is_not_refused(tmpdir, monkeypatch):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Square(), [1], checkpoint=path + "-first")  # nothing holds path
    watcher = os.open(path + ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(watcher, fcntl.LOCK_SH | fcntl.LOCK_NB)  # as status does, for an instant
    pauses = []

    def pause(seconds):  # the watcher is done looking while the run waits a moment
        pauses.append(seconds)
        fcntl.flock(watcher, fcntl.LOCK_UN)

    monkeypatch.setattr(checkpoint_module, "_pause", pause)
    try:
        handles = run_batch_processor(Square(), [2], checkpoint=path)
    finally:
        os.close(watcher)
    assert [h.future.result() for h in handles] == [4] and pauses


def test_a_second_run_on_a_checkpoint_in_use_in_this_process_is_refused(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    first = Hold()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(
        run_batch_processor(first, [1], checkpoint=path)))
    thread.start()
    try:
        assert first.started.wait(helpers.TIMEOUT)
        second = Square()
        with pytest.raises(CheckpointError) as info:
            run_batch_processor(second, [1], checkpoint=path)
        message = str(info.value)
        assert str(os.getpid()) in message and socket.gethostname() in message
        assert "wait for it" in message and "another path" in message
        assert second.calls == 0
    finally:
        first.release.set()
        thread.join(helpers.TIMEOUT)
    assert [h.future.result() for h in outcome[0]] == [1]
    assert [h.future.result() for h in run_batch_processor(Hold(), [1], checkpoint=path)] == [1]


PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_programs.py")


def shared_lock_taken(path):
    """The reader's test of the lock contract: True when a run holds ``path``."""
    fd = os.open(path + ".lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except (IOError, OSError):
        return True
    finally:
        os.close(fd)
    return False


def test_a_run_held_by_another_process_is_refused_until_that_process_dies(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([helpers.REPO_ROOT,
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, PROGRAMS, "hold", path], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"started\n"
        with open(path + ".lock") as stream:
            assert stream.read() == "%d %s\n" % (child.pid, socket.gethostname())
        assert shared_lock_taken(path)
        second = checkpoint_programs.Wait(max_parallel_jobs=1)
        with pytest.raises(CheckpointError) as info:
            run_batch_processor(second, [1, 2], checkpoint=path)
        assert "process %d on host %s" % (child.pid, socket.gethostname()) in str(info.value)
        db = sqlite3.connect(path)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        finally:
            db.close()
        assert meta["pid"] == str(child.pid) and meta["host"] == socket.gethostname()
        assert float(meta["started"]) > 0
    finally:
        child.kill()  # SIGKILL: nothing cleans up; the OS drops the lock
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert not shared_lock_taken(path)
    resumed = checkpoint_programs.Wait(max_parallel_jobs=1)
    assert results(run_batch_processor(resumed, [1, 2], checkpoint=path)) == [1, 2]
    assert not shared_lock_taken(path)


# -- 3. changed inputs --------------------------------------------------------------------

@pytest.mark.parametrize("other", [[1, 2, 4], [3, 2, 1], [1, 2], [1, 2, 3, 4]])
def test_a_finished_checkpoint_given_other_initial_descriptors_is_refused(tmpdir, other):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Square(name="squares"), [1, 2, 3], checkpoint=path)
    before = file_digest(path)
    again = Square(name="squares")
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(again, other, checkpoint=path)
    assert "squares" in str(info.value) and "delete the file" in str(info.value)
    assert again.calls == 0 and file_digest(path) == before
    assert results(run_batch_processor(Square(name="squares"), [1, 2, 3], checkpoint=path)) \
        == [1, 4, 9]


def test_a_stopped_checkpoint_given_other_initial_descriptors_is_refused(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    broken = [True]

    def run(square, descriptors, **options):
        graph = BatchProcessorsGraph()
        graph.add_connected_processors(square, Sum(), squares_to_sum(broken))
        return run_batch_processors_graph(graph, {square: descriptors}, checkpoint=path,
                                          **options)

    with pytest.raises(ConverterError):
        run(Square(), [1, 2, 3])
    for other in ([1, 2, 5], [2, 1, 3]):
        square = Square()
        with pytest.raises(CheckpointError):
            run(square, other)
        with pytest.raises(CheckpointError):
            run(square, iter(other), max_in_flight=2)  # lazy sources too
        assert square.calls == 0
    broken[0] = False
    result = run(Square(), [1, 2, 3])
    assert sorted(len(handles) for handles in result.values()) == [3, 3]


# -- 4. failed writes ---------------------------------------------------------------------

class FailingStore(object):
    """The SQLite store, whose writes fail while ``failing`` is set (on command)."""

    made = []

    def __init__(self, path):
        self.inner = _sqlite_store.SqliteStore(path)
        self.failing = False
        self.failed = threading.Event()
        self.made.append(self)

    def load(self):
        return self.inner.load()

    def start(self, meta):
        return self.inner.start(meta)

    def append(self, record):
        if self.failing:
            self.failed.set()
            raise sqlite3.OperationalError("database is locked (on command)")
        return self.inner.append(record)

    def close(self):
        self.inner.close()


@pytest.fixture
def failing_store(monkeypatch):
    FailingStore.made = []
    monkeypatch.setattr(checkpoint_module, "open_store", FailingStore)
    return FailingStore.made


RAN = []


class FailWhileRunning(SeparateBatchProcessorSynchronous):
    """Job 1 makes the store fail until a record has failed, then (``heal``) lets it work."""
    _bp_not_pickled = ("heal",)

    def __init__(self, heal=True, **kwargs):
        super(FailWhileRunning, self).__init__(max_parallel_jobs=1, **kwargs)
        self.heal = heal

    def _run_one_job_synchronous(self, job_descriptor):
        RAN.append(job_descriptor)
        if job_descriptor == 1:
            store = FailingStore.made[-1]
            store.failing = True
            assert store.failed.wait(helpers.TIMEOUT)
            store.failing = not self.heal
        return job_descriptor


def test_a_record_that_cannot_be_written_is_written_with_the_next(tmpdir, failing_store, caplog):
    path = str(tmpdir.join("run.sqlite"))
    with caplog.at_level(logging.WARNING, logger="batch_processor"):
        first = run_batch_processor(FailWhileRunning(), [0, 1, 2], checkpoint=path,
                                    checkpoint_interval=0.01)
    assert results(first) == [0, 1, 2]
    warnings = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(warnings) == 1
    del RAN[:]
    again = FailWhileRunning()
    assert results(run_batch_processor(again, [0, 1, 2], checkpoint=path)) == [0, 1, 2]
    assert RAN == []  # finished: every handle was written


def test_a_last_record_that_cannot_be_written_raises_after_the_run(tmpdir, failing_store):
    path = str(tmpdir.join("run.sqlite"))
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(FailWhileRunning(heal=False), [0, 1, 2], checkpoint=path,
                            checkpoint_interval=0.01)
    assert path in str(info.value)
    handles = info.value.results
    assert results(handles) == [0, 1, 2]  # the whole result
    assert not shared_lock_taken(path)


class RemovesTheFile(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, path):
        os.remove(path)
        return 1


def test_a_checkpoint_removed_during_the_run_raises_after_it(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(RemovesTheFile(), [path], checkpoint=path)
    assert "removed" in str(info.value)
    assert [h.future.result() for h in info.value.results] == [1]


# -- 5. values that pickle but do not unpickle ------------------------------------------

def _refuse_to_load():
    raise ValueError("I cannot be loaded")


class LoadsBadly(object):
    def __reduce__(self):
        return (_refuse_to_load, ())


class TwoArguments(Exception):
    def __init__(self, a, b):
        super(TwoArguments, self).__init__(a)


class GivesOddValues(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor == 2:
            return LoadsBadly()
        if job_descriptor == 3:
            raise TwoArguments("a", "b")
        return job_descriptor


def test_an_outcome_that_does_not_unpickle_comes_back_as_a_failure(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    live = run_batch_processor(GivesOddValues(), [1, 2, 3], checkpoint=path)
    live_outcomes = dict((h.descriptor, helpers.outcome(h)) for h in live)  # in any order
    assert isinstance(live_outcomes[2][1], LoadsBadly)
    resumed = run_batch_processor(GivesOddValues(), [1, 2, 3], checkpoint=path)
    outcomes = dict((h.descriptor, helpers.outcome(h)) for h in resumed)
    assert outcomes[1] == ("ok", 1)
    assert outcomes[2][0] == "failed" and "cannot be read back" in str(outcomes[2][1])
    assert "I cannot be loaded" in str(outcomes[2][1])
    # An exception whose __init__ takes other arguments: caught when recorded, unless a
    # module of the suite (tblib, through distributed) made such exceptions unpickle.
    assert outcomes[3][0] == "failed"
    assert isinstance(outcomes[3][1], TwoArguments) or "could not be recorded" in str(outcomes[3][1])


# -- 6. foreign and damaged files, bad directories ----------------------------------------

def foreign_database(path, tables):
    db = sqlite3.connect(path)
    for table in tables:
        db.execute("CREATE TABLE %s (key TEXT, value TEXT)" % table)
        db.execute("INSERT INTO %s VALUES ('owner', 'another application')" % table)
    db.commit()
    db.close()


@pytest.mark.parametrize("tables", [["meta"], ["settings"], ["meta", "fed"]])
def test_another_applications_database_is_refused_and_left_unchanged(tmpdir, tables):
    path = str(tmpdir.join("theirs.db"))
    foreign_database(path, tables)
    before = file_digest(path)
    square = Square()
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(square, [1], checkpoint=path)
    assert path in str(info.value) and "not a checkpoint" in str(info.value)
    assert file_digest(path) == before and square.calls == 0
    assert sorted(os.listdir(str(tmpdir))) in (["theirs.db"], ["theirs.db", "theirs.db.lock"])


def test_a_damaged_checkpoint_is_refused_and_left_unchanged(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Square(), list(range(200)), checkpoint=path)
    with open(path, "r+b") as stream:
        data = bytearray(stream.read())
        for offset in range(4096 + 16, len(data), 997):  # past the file header
            data[offset] ^= 0xFF
        stream.seek(0)
        stream.write(bytes(data))
    before = file_digest(path)
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(Square(), list(range(200)), checkpoint=path)
    assert path in str(info.value)
    assert file_digest(path) == before


def test_a_path_in_a_missing_directory_names_it(tmpdir):
    missing = str(tmpdir.join("nowhere"))
    square = Square()
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(square, [1], checkpoint=os.path.join(missing, "run.sqlite"))
    assert missing in str(info.value) and "does not exist" in str(info.value)
    assert square.calls == 0
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(square, [1], checkpoint=str(tmpdir))
    assert "directory" in str(info.value)
    assert results(run_batch_processor(square, [2])) == [4]  # the processor is free again


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes in read-only directories")
def test_a_path_in_a_read_only_directory_names_it(tmpdir):
    locked = tmpdir.mkdir("locked")
    os.chmod(str(locked), 0o500)
    try:
        with pytest.raises(CheckpointError) as info:
            run_batch_processor(Square(), [1], checkpoint=str(locked.join("run.sqlite")))
        assert str(locked) in str(info.value)
    finally:
        os.chmod(str(locked), 0o700)


# -- 7. large state -------------------------------------------------------------------------

class Counting(FailingStore):
    """Counts the processors' states written."""

    def __init__(self, path):
        FailingStore.__init__(self, path)
        self.states = []

    def append(self, record):
        self.states.extend(record.states)
        return FailingStore.append(self, record)


class Base(SeparateBatchProcessorSynchronous):
    _bp_not_recorded = ("data",)


class Model(Base):
    _bp_not_recorded = ("model",)

    def __init__(self, size, **kwargs):
        super(Model, self).__init__(**kwargs)
        self.data = b"d" * size
        self.model = b"m" * size
        self.seen = 0

    def _run_one_job_synchronous(self, job_descriptor):
        self.seen += 1
        return len(self.data) + len(self.model)


def test_state_is_recorded_when_it_changed_and_without_bp_not_recorded(tmpdir, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "open_store", Counting)
    path = str(tmpdir.join("run.sqlite"))
    model = Model(10 ** 6, max_parallel_jobs=1)
    assert results(run_batch_processor(model, list(range(5)), checkpoint=path)) == [2 * 10 ** 6] * 5
    store = FailingStore.made[-1]
    states = [pickle.loads(blob) for _, blob in store.states]
    assert states and all("data" not in s and "model" not in s for s in states)
    assert [s["seen"] for s in states] == sorted(set(s["seen"] for s in states))  # each new
    assert os.path.getsize(path) < 10 ** 6
    again = Model(7)  # what this program's constructor gives
    handles = run_batch_processor(again, list(range(5)), checkpoint=path)
    assert again.seen == 5 and again.data == b"d" * 7 and again.model == b"m" * 7
    assert results(handles) == [2 * 10 ** 6] * 5


def test_attributes_not_recorded_still_go_to_worker_processes(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    model = Model(1000, executor="processes", max_parallel_jobs=1)
    try:
        assert results(run_batch_processor(model, [1], checkpoint=path)) == [2000]
    finally:
        model.stop()


# -- 10. options checked before anything runs ---------------------------------------------

@pytest.mark.parametrize("bad", ["1", b"1", None, [1], 0, float("nan")])
def test_a_bad_interval_fails_before_anything_runs(tmpdir, bad):
    square = Square()
    with pytest.raises((TypeError, ValueError)):
        run_batch_processor(square, [1], checkpoint=str(tmpdir.join("run.sqlite")),
                            checkpoint_interval=bad)
    assert square.calls == 0
    assert not os.path.exists(str(tmpdir.join("run.sqlite")))
    assert results(run_batch_processor(square, [3])) == [9]  # not left claimed


def test_a_checkpoint_killed_before_its_first_record_starts_anew(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    _sqlite_store.SqliteStore(path).close()  # its tables made, its meta not yet written
    assert results(run_batch_processor(Square(), [1, 2], checkpoint=path)) == [1, 4]


def test_a_converter_error_on_one_edge_records_nothing_the_other_edges_made(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    broken = [True]

    def run():
        square, left, right = Square(), Sum(name="left"), Sum(name="right")
        graph = BatchProcessorsGraph()
        graph.add_connected_processors(square, left, squares_to_sum([False]))
        graph.add_connected_processors(square, right, squares_to_sum(broken))
        return square, left, right, run_batch_processors_graph(
            graph, {square: [1, 2]}, checkpoint=path)

    with pytest.raises(ConverterError):
        run()
    broken[0] = False
    square, left, right, result = run()
    assert left.total == 5 and right.total == 5  # never 10: nothing fed twice
    assert results(result[left]) == [1, 4] and results(result[right]) == [1, 4]


def test_a_large_state_gets_one_warning_naming_its_largest_attribute(tmpdir, caplog):
    path = str(tmpdir.join("run.sqlite"))

    class Big(SeparateBatchProcessorSynchronous):
        def __init__(self):
            super(Big, self).__init__(max_parallel_jobs=1)
            self.dataset = b"x" * (11 * 2 ** 20)

        def _run_one_job_synchronous(self, job_descriptor):
            return job_descriptor

    with caplog.at_level(logging.WARNING, logger="batch_processor"):
        run_batch_processor(Big(), [1, 2, 3], checkpoint=path)
    warnings = [r.getMessage() for r in caplog.records if "_bp_not_recorded" in r.getMessage()]
    assert len(warnings) == 1 and "dataset" in warnings[0] and "Big" in warnings[0]


class Counted(SeparateBatchProcessorSynchronous):
    """Squares; every job appends its descriptor to the module's RAN."""

    def _run_one_job_synchronous(self, job_descriptor):
        RAN.append(job_descriptor)
        return job_descriptor * job_descriptor


def test_a_stream_closed_early_resumes_from_its_checkpoint(tmpdir):
    from batch_processor import iter_batch_processor
    path = str(tmpdir.join("run.sqlite"))
    del RAN[:]
    stream = iter_batch_processor(Counted(max_parallel_jobs=1), list(range(10)),
                                  checkpoint=path, max_in_flight=1)
    first = [next(stream) for _ in range(3)]
    stream.close()
    seen = len(RAN)
    assert [h.future.result() for h in first] == [0, 1, 4]
    resumed = run_batch_processor(Counted(max_parallel_jobs=1), list(range(10)), checkpoint=path,
                                  max_in_flight=1)
    assert results(resumed) == sorted(d * d for d in range(10))
    assert set(RAN) == set(range(10)) and not set(RAN[seen:]) & set([0, 1, 2])
    assert len(RAN) <= 10 + 2  # again: at most what was in flight or not yet recorded


def test_the_resume_warning_counts_in_words(tmpdir, caplog):
    path = str(tmpdir.join("run.sqlite"))
    fixed = []

    def convert(*handles):
        if not fixed:
            raise ValueError("not yet")
        return [h.future.result() for h in handles]

    def run():
        graph = BatchProcessorsGraph()
        square, after = Square(), Square(name="after")
        graph.add_connected_processors(square, after, convert)
        return run_batch_processors_graph(graph, {square: [3]}, checkpoint=path), after

    with pytest.raises(ConverterError):
        run()
    fixed.append(True)
    with caplog.at_level(logging.WARNING, logger="batch_processor"):
        results, after = run()
    assert [h.future.result() for h in results[after]] == [81]
    assert "0 handles recorded, 1 job to run again" in caplog.text


def test_a_record_that_takes_long_spaces_the_next_ones_out(tmpdir, monkeypatch):
    ticks = iter(range(0, 1000000, 2))  # each record seems to take 2 s
    monkeypatch.setattr(checkpoint_module, "_clock", lambda: next(ticks))
    delays, rescheduled = [], threading.Event()
    spacing = checkpoint_module.record_spacing

    def spaced(interval, spent):
        delays.append(spacing(interval, spent))
        rescheduled.set()
        return delays[-1]

    monkeypatch.setattr(checkpoint_module, "record_spacing", spaced)

    class WaitsForARecord(SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, job_descriptor):
            assert rescheduled.wait(helpers.TIMEOUT)
            return job_descriptor

    path = str(tmpdir.join("run.sqlite"))
    handles = run_batch_processor(WaitsForARecord(), [1], checkpoint=path,
                                  checkpoint_interval=0.01)
    assert [h.future.result() for h in handles] == [1]
    assert delays[0] == checkpoint_module.RECORD_SPACING * 2  # not the interval, 0.01 s
    assert spacing(0.1, 0.001) == 0.1  # a quick record: the interval
    assert spacing(0.1, 0.1) == 0.1  # as long as the interval: still the interval
    assert spacing(0.1, 0.2) == checkpoint_module.RECORD_SPACING * 0.2
