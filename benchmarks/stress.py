"""Stress run: a million descriptors through a 3-stage graph with a cycle and failures.

Usage (from the repository root, on Python 2.7 or 3.x)::

    python benchmarks/stress.py                    # 1,000,000 descriptors
    python benchmarks/stress.py --n 100000 --seed 7

The graph, an AutoML search in miniature::

    propose (Separate, async, max_parallel_jobs=5000)   fails 3% of its jobs
      -> train (SequentialSynchronous, batches of 1000, in its own thread)
      -> evaluate (Separate, async, max_parallel_jobs=1000, retry: 2 attempts)
           fails 2% of its jobs for good, and 5% on the first attempt only
      -> back to propose for 20% of the successes, at most twice per descriptor

Whether a job fails, and whether a descriptor goes round again, is a seeded hash of
the descriptor, so the outcome does not depend on the order the jobs run in: a plain
Python loop computes, for every descriptor, how many jobs each processor must run for
it and how it ends, and the run must match that exactly (nothing lost, nothing twice,
no job cancelled). Nothing keeps handles (``keep_results=[]``): the converters count
them. Prints the time and the peak memory; exits 1 if a count is wrong.
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import platform
import sys

try:
    from time import perf_counter as clock
except ImportError:  # Python 2.7
    from time import time as clock

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import batch_processor  # noqa: F401 - installed, or on PYTHONPATH
except ImportError:  # run from a checkout
    sys.path.insert(1, os.path.dirname(HERE))

from batch_processor import (  # noqa: E402
    BatchProcessorsGraph, RetryPolicy, SeparateBatchProcessor, SequentialBatchProcessorSynchronous,
    run_batch_processors_graph)
from batch_processor.compat import Return, coroutine  # noqa: E402

FAIL_PROPOSE = 30  # per thousand
FAIL_EVALUATE = 20  # per thousand, every attempt
FLAKY_EVALUATE = 50  # per thousand, the first attempt only
CYCLE = 200  # per thousand of the successes go round again
MAX_ROUND = 2

ENDED_IN_PROPOSE, ENDED_IN_EVALUATE, FINISHED = 1, 2, 3


class CheckError(AssertionError):
    """The run lost, duplicated or misreported a job."""


def chance(seed, key, round_, salt):
    """A seeded hash of a job, uniform in ``0..999``, the same on every interpreter."""
    h = (key * 0x9E3779B1 + round_ * 0x85EBCA77 + salt * 0xC2B2AE3D + seed) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    h ^= h >> 16
    return h % 1000


class PlannedFailure(Exception):
    """The failure a job was chosen for."""


class Propose(SeparateBatchProcessor):
    """``(key, round)`` -> the same, or a `PlannedFailure`."""

    def __init__(self, seed, **options):
        super(Propose, self).__init__(**options)
        self.seed = seed

    @coroutine
    def _run_one_job(self, job_descriptor):
        key, round_ = job_descriptor
        if chance(self.seed, key, round_, 1) < FAIL_PROPOSE:
            raise PlannedFailure("propose %r" % (job_descriptor,))
        raise Return(job_descriptor)
        yield  # pragma: no cover - a trollius-style coroutine


class Train(SequentialBatchProcessorSynchronous):
    """A batch of descriptors -> the same, in a thread."""

    def _run_batch_synchronous(self, job_descriptors):
        return list(job_descriptors)


class Evaluate(SeparateBatchProcessor):
    """Fails some jobs for good and some on their first attempt only (the retry fixes those)."""

    def __init__(self, seed, **options):
        super(Evaluate, self).__init__(**options)
        self.seed = seed
        self.attempts = {}  # descriptor -> attempts so far, while it is being retried
        self.calls = 0

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.calls += 1
        key, round_ = job_descriptor
        attempt = self.attempts.pop(job_descriptor, 0) + 1
        if chance(self.seed, key, round_, 3) < FAIL_EVALUATE:
            if attempt == 1:
                self.attempts[job_descriptor] = attempt
            raise PlannedFailure("evaluate %r, attempt %d" % (job_descriptor, attempt))
        if attempt == 1 and chance(self.seed, key, round_, 4) < FLAKY_EVALUATE:
            self.attempts[job_descriptor] = attempt
            raise PlannedFailure("evaluate %r, flaky first attempt" % (job_descriptor,))
        raise Return(job_descriptor)
        yield  # pragma: no cover


class Tally(object):
    """What the converters saw: jobs per descriptor and processor, and how each descriptor ended."""

    def __init__(self, n):
        self.propose = bytearray(n)
        self.train = bytearray(n)
        self.evaluate = bytearray(n)
        self.ended = bytearray(n)
        self.failed = {"propose": 0, "evaluate": 0}

    def end(self, key, how):
        if self.ended[key]:
            raise CheckError("descriptor %d ended twice (%d, then %d)" % (key, self.ended[key], how))
        self.ended[key] = how


def expected(n, seed):
    """The reference: the same bookkeeping as `Tally`, by a plain loop."""
    tally = Tally(n)
    calls = 0
    for key in range(n):
        round_ = 0
        while True:
            tally.propose[key] += 1
            if chance(seed, key, round_, 1) < FAIL_PROPOSE:
                tally.failed["propose"] += 1
                tally.ended[key] = ENDED_IN_PROPOSE
                break
            tally.train[key] += 1
            tally.evaluate[key] += 1
            if chance(seed, key, round_, 3) < FAIL_EVALUATE:
                calls += 2
                tally.failed["evaluate"] += 1
                tally.ended[key] = ENDED_IN_EVALUATE
                break
            calls += 2 if chance(seed, key, round_, 4) < FLAKY_EVALUATE else 1
            if round_ < MAX_ROUND and chance(seed, key, round_, 5) < CYCLE:
                round_ += 1
                continue
            tally.ended[key] = FINISHED
            break
    return tally, calls


def _outcome(handle, what):
    future = handle.future
    if future.cancelled():
        raise CheckError("%s: job %r was cancelled" % (what, handle.descriptor))
    exc = future.exception()
    if exc is not None and not isinstance(exc, PlannedFailure):
        raise CheckError("%s: job %r failed with an unplanned %r" % (what, handle.descriptor, exc))
    if exc is None and future.result() != handle.descriptor:
        raise CheckError("%s: job %r returned %r" % (what, handle.descriptor, future.result()))
    return exc


def build(n, seed):
    """The graph, its processors and the `Tally` its converters fill."""
    tally = Tally(n)
    propose = Propose(seed, max_parallel_jobs=5000)
    train = Train(max_batch_size=1000)
    evaluate = Evaluate(seed, max_parallel_jobs=1000, retry=RetryPolicy(attempts=2))

    def proposed(*handles):
        out = []
        for handle in handles:
            key = handle.descriptor[0]
            tally.propose[key] += 1
            if _outcome(handle, "propose") is None:
                out.append(handle.descriptor)
            else:
                tally.failed["propose"] += 1
                tally.end(key, ENDED_IN_PROPOSE)
        return out

    def trained(*handles):
        for handle in handles:
            if _outcome(handle, "train") is not None:
                raise CheckError("train: job %r failed" % (handle.descriptor,))
            tally.train[handle.descriptor[0]] += 1
        return [handle.descriptor for handle in handles]

    def evaluated(*handles):
        again = []
        for handle in handles:
            key, round_ = handle.descriptor
            tally.evaluate[key] += 1
            if _outcome(handle, "evaluate") is not None:
                tally.failed["evaluate"] += 1
                tally.end(key, ENDED_IN_EVALUATE)
            elif round_ < MAX_ROUND and chance(seed, key, round_, 5) < CYCLE:
                again.append((key, round_ + 1))
            else:
                tally.end(key, FINISHED)
        return again

    graph = BatchProcessorsGraph()
    graph.add_connected_processors(propose, train, proposed)
    graph.add_connected_processors(train, evaluate, trained)
    graph.add_connected_processors(evaluate, propose, evaluated)
    return graph, (propose, train, evaluate), tally


def peak_rss_mb():
    """Peak resident memory of this process in MB (``VmHWM`` on Linux, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (IOError, OSError, ValueError):
        pass
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def compare(observed, reference, observed_calls, reference_calls):
    problems = []
    for name in ("propose", "train", "evaluate", "ended"):
        mine, theirs = getattr(observed, name), getattr(reference, name)
        if mine != theirs:
            bad = [key for key in range(len(theirs)) if mine[key] != theirs[key]]
            problems.append("%s: %d descriptors differ from the reference, e.g. descriptor %d: "
                            "%d instead of %d" % (name, len(bad), bad[0], mine[bad[0]], theirs[bad[0]]))
    if observed.failed != reference.failed:
        problems.append("failures %r instead of %r" % (observed.failed, reference.failed))
    if observed_calls != reference_calls:
        problems.append("evaluate ran %d attempts instead of %d" % (observed_calls, reference_calls))
    if problems:
        raise CheckError("; ".join(problems))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000000, help="descriptors fed (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the failures and cycles")
    args = parser.parse_args(argv)
    n, seed = args.n, args.seed

    print("stress: %d descriptors, seed %d, %s %s" % (
        n, seed, platform.python_implementation(), platform.python_version()))
    sys.stdout.flush()
    start = clock()
    reference, reference_calls = expected(n, seed)
    print("reference computed in %.1f s" % (clock() - start))
    sys.stdout.flush()

    graph, (propose, train, evaluate), tally = build(n, seed)
    descriptors = [(key, 0) for key in range(n)]
    start = clock()
    results = run_batch_processors_graph(graph, {propose: descriptors}, keep_results=[])
    elapsed = clock() - start
    del descriptors

    if any(results[p] for p in (propose, train, evaluate)):
        raise CheckError("keep_results=[] kept handles")
    for processor in (propose, train, evaluate):
        if processor.in_flight:
            raise CheckError("%r still has %d jobs in flight" % (processor, processor.in_flight))
    compare(tally, reference, evaluate.calls, reference_calls)

    jobs = sum(tally.propose) + sum(tally.train) + sum(tally.evaluate)
    ended = [tally.ended.count(bytearray([how])) for how in (ENDED_IN_PROPOSE, ENDED_IN_EVALUATE, FINISHED)]
    print("jobs: propose %d (%d failed), train %d, evaluate %d (%d failed, %d attempts)" % (
        sum(tally.propose), tally.failed["propose"], sum(tally.train), sum(tally.evaluate),
        tally.failed["evaluate"], evaluate.calls))
    print("descriptors: %d ended in propose, %d in evaluate, %d finished; %d went round again" % (
        ended[0], ended[1], ended[2], sum(tally.propose) - n))
    print("time: %.1f s (%.2f us per job, %d jobs); peak memory: %.0f MB" % (
        elapsed, elapsed * 1e6 / jobs, jobs, peak_rss_mb()))
    print("every count matches the reference exactly")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as exc:
        print("STRESS FAILED: %s" % (exc,))
        sys.exit(1)
