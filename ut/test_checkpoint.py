"""Durable runs: a run killed at any point resumes from its checkpoint, each job run once.

The crash campaign runs ``checkpoint_search.py`` (a seeded proposer, a trainer and a
leaderboard in a cycle) in child processes that kill themselves with SIGKILL at a
seeded job or in the middle of a record, or interrupt themselves with SIGINT, and
relaunches them until one finishes: the result must be the uninterrupted run's. The
edges campaign mixes in converter errors, a second writer started while a run holds
the checkpoint, other initial descriptors, records that fail to be written, and (with
``executor="processes"``) workers orphaned by the kill, which must end by themselves.
"""
from __future__ import absolute_import, division, print_function

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import helpers
from batch_processor import (
    BatchProcessorsGraph, CheckpointError, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processor, run_batch_processors_graph)

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_search.py")
TRIALS = 6 * 8


def launch(tmpdir, **env):
    child = start(tmpdir, **env)
    out, err = child.communicate()
    return child.returncode, out.decode(), err.decode()


def start(tmpdir, **env):
    child_env = dict(os.environ)
    child_env.update(JOBS_LOG=str(tmpdir.join("jobs.log")),
                     WORKERS_LOG=str(tmpdir.join("workers.log")),
                     PYTHONPATH=os.pathsep.join([helpers.REPO_ROOT, child_env.get("PYTHONPATH", "")]))
    child_env.update((k, str(v)) for k, v in env.items())
    return subprocess.Popen([sys.executable, SCRIPT, str(tmpdir.join("run.sqlite"))],
                            env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            **helpers.child_options())  # its SIGINT must not be ignored


def fingerprinted(tmpdir):
    """Whether the checkpoint has recorded the initial descriptors it took."""
    path = str(tmpdir.join("run.sqlite"))
    if not os.path.exists(path):
        return False
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0] > 0
    except sqlite3.Error:
        return False
    finally:
        db.close()


def jobs_run(tmpdir):
    path = tmpdir.join("jobs.log")
    return path.read().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def reference(tmpdir_factory):
    tmpdir = tmpdir_factory.mktemp("reference")
    code, out, err = launch(tmpdir)
    assert code == 0, err
    assert len(jobs_run(tmpdir)) == TRIALS
    return json.loads(out)


@pytest.mark.parametrize("seed", range(helpers.campaign(6, 2)))
def test_a_run_killed_again_and_again_resumes_to_the_same_result(tmpdir, reference, seed):
    rng = random.Random(seed)
    kills = 0
    launches = 0
    for _ in range(60):
        launches += 1
        how = rng.choice(["job", "job", "record", "interrupt"])
        env = {}
        if how == "record":
            env["KILL_IN_RECORD"] = rng.randint(1, 6)
        else:
            env["KILL_AT_JOB"] = rng.randint(1, 12)
            if how == "interrupt":
                env["KILL_SIGNAL"] = "SIGINT"
        code, out, err = launch(tmpdir, **env)
        if code == 0:
            break
        kills += 1
        assert "Traceback" not in err or "KeyboardInterrupt" in err, err
    else:
        pytest.fail("the run did not finish in 60 launches")
    assert json.loads(out) == reference
    ran = jobs_run(tmpdir)
    assert set(ran) == set("%d %d" % tuple(t) for t in reference["trials"])
    # A launch killed at a job runs at most 12 of the 48 jobs: had the kills thrown
    # the work away, the run could never have finished. How many ran twice (jobs in
    # flight, or ended after the last record, at a kill) depends on timing.
    print("seed %d: %d launches, %d kills, %d jobs run twice"
          % (seed, launches, kills, len(ran) - TRIALS))


def second_writer(tmpdir, rng):
    """A run holds the checkpoint (its job waits); a second run on it must be refused,
    naming the holder's pid; then the holder is killed. Returns the holder's output
    when it finished before holding (nothing to hold any more), else None."""
    holder = start(tmpdir, HOLD_AT_JOB=rng.randint(1, 6))
    line = holder.stdout.readline()
    if line != b"holding\n":  # it finished first: its output is the result
        out, err = holder.communicate()
        assert holder.returncode == 0, err
        return (line + out).decode()
    code, _, err = launch(tmpdir)
    holder.kill()
    holder.communicate()
    assert code == 3 and "process %d on host" % holder.pid in err, err
    return None


def wait_for_workers_to_end(tmpdir):
    """Every worker pid logged so far ends by itself (the program is gone); returns
    the seconds the last one took."""
    path = tmpdir.join("workers.log")
    pids = set(int(line) for line in path.read().split()) if path.exists() else set()
    began = time.time()
    left = sorted(helpers.wait_until_ended(pids))
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "orphaned workers still alive: %s" % left
    return time.time() - began


def edges_campaign(tmpdir, reference, seed, actions, **always):
    rng = random.Random(seed)
    counts = dict.fromkeys(actions, 0)
    out = None
    launches = 0
    for _ in range(80):
        how = rng.choice(actions)
        env = dict(always)
        if how == "changed input" and not fingerprinted(tmpdir):
            how = "job"
        counts[how] += 1
        if how == "second writer":
            out = second_writer(tmpdir, rng)
            if out is not None:
                break
            continue
        if how == "changed input":
            before = len(jobs_run(tmpdir))
            code, _, err = launch(tmpdir, FIRST=1, **env)
            assert code == 3 and "differ" in err and "proposer" in err, err
            assert len(jobs_run(tmpdir)) == before  # refused before anything ran
            continue
        if how == "record":
            env["KILL_IN_RECORD"] = rng.randint(1, 6)
        elif how == "converter":
            env["CONVERTER_FAIL_AT"] = rng.randint(1, 12)
        elif how == "failing writes":
            env["FAIL_RECORDS"] = "%d,%d" % (rng.randint(1, 4), rng.randint(2, 8))
            if rng.random() < 0.5:
                env["KILL_AT_JOB"] = rng.randint(1, 12)
        else:
            env["KILL_AT_JOB"] = rng.randint(1, 12)
        if launches < 5 and "KILL_AT_JOB" not in env and how in ("record", "failing writes"):
            env["KILL_AT_JOB"] = rng.randint(4, 12)  # the first launches never finish
        launches += 1
        code, out, err = launch(tmpdir, **env)
        if always.get("EXECUTOR") == "processes" and code != 0:
            wait_for_workers_to_end(tmpdir)
        if code == 0:
            break
        if how == "converter":
            assert "ConverterError" in err, err
        elif code == 3:
            assert "CheckpointError" in err and how == "failing writes", err
        else:
            assert "Traceback" not in err, err
    else:
        pytest.fail("the run did not finish in 80 launches")
    assert json.loads(out) == reference
    assert set(jobs_run(tmpdir)) == set("%d %d" % tuple(t) for t in reference["trials"])
    print("seed %d: %s" % (seed, ", ".join("%d %s" % (n, a) for a, n in sorted(counts.items()))))
    return counts


EDGES = ["job", "record", "converter", "second writer", "changed input", "failing writes"]


@pytest.mark.parametrize("seed", range(helpers.campaign(8, 3)))
def test_a_run_through_every_edge_resumes_to_the_same_result(tmpdir, reference, seed):
    edges_campaign(tmpdir, reference, seed, EDGES)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("seed", range(3))
def test_a_run_whose_workers_are_orphaned_again_and_again_resumes(tmpdir, reference, seed):
    edges_campaign(tmpdir, reference, 100 + seed, ["job", "converter"], EXECUTOR="processes")


def test_a_finished_checkpoint_returns_its_result_and_runs_nothing(tmpdir, reference):
    code, out, _ = launch(tmpdir)
    assert code == 0 and len(jobs_run(tmpdir)) == TRIALS
    code, again, err = launch(tmpdir)
    assert code == 0 and json.loads(again)["outcomes"] == reference["outcomes"]
    assert len(jobs_run(tmpdir)) == TRIALS  # nothing ran again


Square = helpers.CountingSquare


class Batches(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return list(job_descriptors)


def test_a_checkpoint_of_another_graph_is_refused_before_anything_runs(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    run_batch_processor(Square(), [1, 2], checkpoint=path)
    other = Square(name="renamed")
    with pytest.raises(CheckpointError) as info:
        run_batch_processor(other, [1, 2], checkpoint=path)
    assert "renamed" in str(info.value) and "delete the file" in str(info.value).lower()
    assert other.calls == 0
    graph = BatchProcessorsGraph()
    first, second = Square(), Batches()
    graph.add_connected_processors(first, second, lambda *handles: [])
    with pytest.raises(CheckpointError) as info:
        run_batch_processors_graph(graph, {first: [1]}, checkpoint=path)
    assert "2 processors" in str(info.value) or "processors" in str(info.value)
    assert first.calls == 0


def test_a_finished_single_processor_run_returns_its_handles(tmpdir, caplog):
    path = str(tmpdir.join("run.sqlite"))
    first = run_batch_processor(Square(), [1, 2, 3], checkpoint=path)
    again = Square()
    with caplog.at_level(logging.WARNING, logger="batch_processor"):
        handles = run_batch_processor(again, [1, 2, 3], checkpoint=path)
    assert again.calls == 3  # the recorded state: no job of this run called it
    assert sorted(h.future.result() for h in handles) == sorted(h.future.result() for h in first)
    assert any("finished run" in record.getMessage() for record in caplog.records)


class Unpicklable(object):
    def __reduce__(self):
        raise TypeError("not today")


class GivesUnpicklable(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return Unpicklable() if job_descriptor == 2 else job_descriptor


def test_an_outcome_that_cannot_be_pickled_is_recorded_as_a_failure(tmpdir, caplog):
    path = str(tmpdir.join("run.sqlite"))
    with caplog.at_level(logging.WARNING, logger="batch_processor"):
        live = run_batch_processor(GivesUnpicklable(), [1, 2], checkpoint=path)
    assert any(isinstance(h.future.result(), Unpicklable) for h in live)  # the live run had it
    assert any("cannot be pickled" in record.getMessage() for record in caplog.records)
    resumed = run_batch_processor(GivesUnpicklable(), [1, 2], checkpoint=path)
    outcomes = dict((h.descriptor, helpers.outcome(h)) for h in resumed)
    assert outcomes[1] == ("ok", 1)
    assert outcomes[2][0] == "failed" and "could not be recorded" in str(outcomes[2][1])


def test_recorded_exceptions_and_cancellations_come_back(tmpdir):
    path = str(tmpdir.join("run.sqlite"))

    class Fails(SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, job_descriptor):
            raise ValueError("bad %d" % job_descriptor)

    run_batch_processor(Fails(), [1], checkpoint=path)
    handles = run_batch_processor(Fails(), [1], checkpoint=path)
    kind, exc = helpers.outcome(handles[0])
    assert kind == "failed" and isinstance(exc, ValueError) and "bad 1" in str(exc)


def test_the_checkpoint_interval_is_validated(tmpdir):
    for bad in (0, -1, float("nan"), float("inf"), True, "1"):
        with pytest.raises((ValueError, TypeError)):
            run_batch_processor(Square(), [1], checkpoint=str(tmpdir.join("x.sqlite")),
                                checkpoint_interval=bad)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmpdir):
    path = tmpdir.join("junk")
    path.write("this is not a database" * 100)
    with pytest.raises(CheckpointError):
        run_batch_processor(Square(), [1], checkpoint=str(path))


def test_one_object_fed_many_times_is_recorded_once_per_job(tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    same = ("config", 1)
    first = run_batch_processor(Square(), [3, 3, 3], checkpoint=path)
    assert [h.future.result() for h in first] == [9, 9, 9]
    again = run_batch_processor(Square(), [3, 3, 3], checkpoint=path)
    assert [h.future.result() for h in again] == [9, 9, 9]
    recorded = run_batch_processor(Batches(), [same, same], checkpoint=str(tmpdir.join("b")))
    assert [h.descriptor for h in recorded] == [same, same]
