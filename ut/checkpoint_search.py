"""A small seeded search, run by ``test_checkpoint`` in a child process that it kills.

A proposer (Sequential, seeded), a trainer (Separate, thread jobs) and a leaderboard
(Sequential) in a cycle. Every trainer job appends a line to ``JOBS_LOG``; with
``KILL_AT_JOB=n`` the process SIGKILLs itself as its n-th job starts, and with
``KILL_IN_RECORD=n`` in the middle of writing its n-th record. At the end it prints
the result as JSON.

The edges of issue 19, also on command:

* ``CONVERTER_FAIL_AT=n``: the trainer-to-leaderboard converter raises at its n-th call
  (the run ends with a ``ConverterError``);
* ``HOLD_AT_JOB=n``: the n-th job prints ``holding`` and waits for a line on stdin, so
  that the test starts a second writer meanwhile;
* ``FIRST=g``: the proposer's initial generation (changed inputs when not 0);
* ``FAIL_RECORDS=i,j``: the i-th and j-th attempts to write a record fail (the store
  fails on command);
* ``EXECUTOR=processes``: the trainer's jobs run in worker processes, each of which
  appends its pid to ``WORKERS_LOG``; ``KILL_AT_JOB`` then kills the program from the
  worker, leaving the workers orphaned.

A run refused with a ``CheckpointError``, or ending on one, exits with status 3 and
prints the message on stderr.
"""
import json
import os
import random
import signal
import sys

from batch_processor import (
    BatchProcessorsGraph, CheckpointError, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processors_graph)

GENERATIONS = int(os.environ.get("GENERATIONS", "6"))
SIZE = 8
_started = [0]


def _die():
    program = int(os.environ.get("PROGRAM_PID", os.getpid()))  # from a worker: its program
    os.kill(program, getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL")))


class Proposer(SequentialBatchProcessorSynchronous):
    def __init__(self):
        super(Proposer, self).__init__(name="proposer")
        self.random = random.Random(7)

    def _run_batch_synchronous(self, generations):
        return [[(g, self.random.randint(0, 10 ** 6)) for _ in range(SIZE)] for g in generations]


class Trainer(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, trial):
        with open(os.environ["JOBS_LOG"], "a") as log:
            log.write("%d %d\n" % trial)
        if os.environ.get("EXECUTOR") == "processes":
            with open(os.environ["WORKERS_LOG"], "a") as log:
                log.write("%d\n" % os.getpid())
            with open(os.environ["JOBS_LOG"]) as log:  # counted over the workers
                started = sum(1 for _ in log) - int(os.environ["JOBS_BEFORE"])
        else:
            _started[0] += 1
            started = _started[0]
        if started == int(os.environ.get("KILL_AT_JOB", "0")):
            _die()
        if started == int(os.environ.get("HOLD_AT_JOB", "0")):
            sys.stdout.write("holding\n")
            sys.stdout.flush()
            sys.stdin.readline()  # until the test kills this program
        return trial[1] % 997


class Leaderboard(SequentialBatchProcessorSynchronous):
    def __init__(self):
        super(Leaderboard, self).__init__(name="leaderboard")
        self.scores = {}

    def _run_batch_synchronous(self, results):
        asks = []
        for (generation, config), score in results:
            self.scores.setdefault(generation, []).append((score, config))
            if len(self.scores[generation]) == SIZE and generation + 1 < GENERATIONS:
                asks.append(generation + 1)
            else:
                asks.append(None)
        return asks


class _FailingStore(object):
    """The SQLite store, whose writes fail at the attempts listed in FAIL_RECORDS."""

    def __init__(self, path, attempts):
        from batch_processor import _sqlite_store
        self.inner = _sqlite_store.SqliteStore(path)
        self.attempts = attempts
        self.count = 0

    def load(self):
        return self.inner.load()

    def start(self, meta):
        return self.inner.start(meta)

    def append(self, record):
        import sqlite3
        self.count += 1
        if self.count in self.attempts:
            raise sqlite3.OperationalError("disk full (on command)")
        return self.inner.append(record)

    def close(self):
        self.inner.close()


def main():
    path = sys.argv[1]
    kill_in_record = int(os.environ.get("KILL_IN_RECORD", "0"))
    if kill_in_record:
        from batch_processor import _sqlite_store
        original = _sqlite_store._Transaction.__exit__
        count = [0]

        def exit_and_maybe_die(self, *exc_info):
            count[0] += 1
            if count[0] == kill_in_record:
                _die()  # inside the transaction: the record is half written
            return original(self, *exc_info)
        _sqlite_store._Transaction.__exit__ = exit_and_maybe_die
    fail_records = set(int(i) for i in os.environ.get("FAIL_RECORDS", "").split(",") if i)
    if fail_records:
        from batch_processor import checkpoint
        checkpoint.open_store = lambda path: _FailingStore(path, fail_records)
    os.environ["PROGRAM_PID"] = str(os.getpid())
    if os.path.exists(os.environ["JOBS_LOG"]):
        with open(os.environ["JOBS_LOG"]) as log:
            os.environ["JOBS_BEFORE"] = str(sum(1 for _ in log))
    else:
        os.environ["JOBS_BEFORE"] = "0"
    fail_at = int(os.environ.get("CONVERTER_FAIL_AT", "0"))
    calls = [0]

    def scores(*hs):
        calls[0] += 1
        if calls[0] == fail_at:
            raise RuntimeError("the converter fails on command")
        return [(h.descriptor, h.future.result()) for h in hs]

    executor = os.environ.get("EXECUTOR") or None
    proposer, trainer, board = (Proposer(), Trainer(max_parallel_jobs=3, executor=executor),
                                Leaderboard())
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(proposer, trainer, lambda *hs: [
        trial for h in hs for trial in h.future.result()])
    graph.add_connected_processors(trainer, board, scores)
    graph.add_connected_processors(board, proposer, lambda *hs: [
        h.future.result() for h in hs if h.future.result() is not None])
    try:
        results = run_batch_processors_graph(
            graph, {proposer: [int(os.environ.get("FIRST", "0"))]}, checkpoint=path,
            checkpoint_interval=float(os.environ.get("INTERVAL", "0.01")))
    except CheckpointError as exc:
        sys.stderr.write("CheckpointError: %s\n" % exc)
        sys.exit(3)
    print(json.dumps({
        "scores": sorted((g, sorted(s)) for g, s in board.scores.items()),
        "trials": sorted(h.descriptor for h in results[trainer]),
        "outcomes": sorted((h.descriptor, h.future.result()) for h in results[trainer]),
        "handles": dict((p.name, len(hs)) for p, hs in results.items()),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
