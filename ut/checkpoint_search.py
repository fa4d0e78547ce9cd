"""A small seeded search, run by ``test_checkpoint`` in a child process that it kills.

A proposer (Sequential, seeded), a trainer (Separate, thread jobs) and a leaderboard
(Sequential) in a cycle. Every trainer job appends a line to ``JOBS_LOG``; with
``KILL_AT_JOB=n`` the process SIGKILLs itself as its n-th job starts, and with
``KILL_IN_RECORD=n`` in the middle of writing its n-th record. At the end it prints
the result as JSON.
"""
import json
import os
import random
import signal
import sys

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processors_graph)

GENERATIONS = int(os.environ.get("GENERATIONS", "6"))
SIZE = 8
_started = [0]


def _die():
    os.kill(os.getpid(), getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL")))


class Proposer(SequentialBatchProcessorSynchronous):
    def __init__(self):
        super(Proposer, self).__init__(name="proposer")
        self.random = random.Random(7)

    def _run_batch_synchronous(self, generations):
        return [[(g, self.random.randint(0, 10 ** 6)) for _ in range(SIZE)] for g in generations]


class Trainer(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, trial):
        _started[0] += 1
        with open(os.environ["JOBS_LOG"], "a") as log:
            log.write("%d %d\n" % trial)
        if _started[0] == int(os.environ.get("KILL_AT_JOB", "0")):
            _die()
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
    proposer, trainer, board = Proposer(), Trainer(max_parallel_jobs=3), Leaderboard()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(proposer, trainer, lambda *hs: [
        trial for h in hs for trial in h.future.result()])
    graph.add_connected_processors(trainer, board, lambda *hs: [
        (h.descriptor, h.future.result()) for h in hs])
    graph.add_connected_processors(board, proposer, lambda *hs: [
        h.future.result() for h in hs if h.future.result() is not None])
    results = run_batch_processors_graph(graph, {proposer: [0]}, checkpoint=path,
                                         checkpoint_interval=float(os.environ.get("INTERVAL", "0.01")))
    print(json.dumps({
        "scores": sorted((g, sorted(s)) for g, s in board.scores.items()),
        "trials": sorted(h.descriptor for h in results[trainer]),
        "outcomes": sorted((h.descriptor, h.future.result()) for h in results[trainer]),
        "handles": dict((p.name, len(hs)) for p, hs in results.items()),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
