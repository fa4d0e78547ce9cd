"""Workload 14: the first handle of a new process-pool processor, in a script that
imports scikit-learn and numpy, against a bare pool's first result.

* (a) a bare ``ProcessPoolExecutor`` with the library's start method and worker count:
  seconds from creating it to the first result of ``fit(0)``;
* (b) a new ``SeparateBatchProcessorSynchronous.from_function(fit, executor="processes")``
  with as many workers: seconds from the start of ``iter_batch_processor`` to its first
  handle, the same job.

The job fits a small scikit-learn model. Each measurement starts fresh worker
processes (a new pool, a new processor); the fork server (Python 3) is started once,
by the program's first processor (timed apart), as in a user's program. Without
scikit-learn the job fits a least-squares line with numpy, or sums a list.

Run alone: ``python benchmarks/first_handle.py [repeats] [--profile] [--json]``;
``run.py`` runs it as a program of its own (workload 14), so that its main script is
the one that imports scikit-learn, as a user's is.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import sys

try:
    from time import perf_counter as clock
except ImportError:  # Python 2.7
    from time import time as clock

try:  # what the script of a user imports before it runs anything
    import numpy
except ImportError:  # pragma: no cover - the demo extra is not installed
    numpy = None
try:
    from sklearn.linear_model import LogisticRegression
except ImportError:  # pragma: no cover
    LogisticRegression = None

from concurrent.futures import ProcessPoolExecutor

from batch_processor import SeparateBatchProcessorSynchronous, iter_batch_processor
from batch_processor._processes import _context, default_workers


def what():
    """What the job uses, for the row's note."""
    if LogisticRegression is not None:
        return "scikit-learn"
    return "numpy" if numpy is not None else "plain Python"


def fit(seed):
    """A small model fitted in a worker: the job of both alternatives."""
    if numpy is None:
        return sum(range(1000 + seed))
    generator = numpy.random.RandomState(seed)
    features = generator.normal(size=(200, 5))
    labels = (features[:, 0] + generator.normal(scale=0.5, size=200) > 0).astype(int)
    if LogisticRegression is None:
        return float(numpy.linalg.lstsq(features, labels, rcond=None)[0][0])
    return float(LogisticRegression(solver="liblinear").fit(features, labels).score(features, labels))


def bare_pool(workers):
    """(a): seconds from a new pool to its first result."""
    context = _context()
    start = clock()
    pool = ProcessPoolExecutor(workers, **({} if context is None else {"mp_context": context}))
    try:
        result = pool.submit(fit, 0).result()
        elapsed = clock() - start
    finally:
        pool.shutdown(wait=True)
    check(result)
    return elapsed


def new_processor(workers):
    """(b): seconds from a run's start to the first handle of a new processor."""
    processor = SeparateBatchProcessorSynchronous.from_function(
        fit, executor="processes", max_parallel_jobs=workers)
    start = clock()
    stream = iter_batch_processor(processor, [0])
    try:
        handle = next(stream)
        elapsed = clock() - start
    finally:
        stream.close()
        processor.stop()
    check(handle.future.result())
    return elapsed


def check(result):
    if result != fit(0):
        raise AssertionError("the first job did not come back with the right result")


def start_fork_server(workers):
    """The program's first pool: on Python 3 it starts the fork server, which the
    library has import the packages the main script uses (see
    ``_processes._preload_main_imports``); every later pool of the program, the bare
    ones included, forks its workers from it. Returns its seconds."""
    return new_processor(workers)


def measure(repeats, workers=None):
    """``{"pool": best seconds, "library": best seconds, "first": the program's first
    processor}``: the alternatives run in turn, the order flipped every round."""
    workers = workers or default_workers()
    best = {"first": start_fork_server(workers)}
    alternatives = [("pool", bare_pool), ("library", new_processor)]
    for index in range(repeats):
        for name, run in (alternatives if index % 2 == 0 else alternatives[::-1]):
            seconds = run(workers)
            best[name] = min(best.get(name, seconds), seconds)
    return best


def main(argv):
    repeats = int(argv[0]) if argv and argv[0].isdigit() else 5
    if "--profile" in argv:
        import cProfile
        import pstats
        start_fork_server(default_workers())
        profiler = cProfile.Profile()
        profiler.enable()
        new_processor(default_workers())
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return
    best = measure(repeats)
    if "--json" in argv:
        best.update(what=what(), workers=default_workers())
        print(json.dumps(best, sort_keys=True))
        return
    print("first result, %s job, %d workers: bare pool %.3f s, new processor %.3f s, "
          "ratio %.2f (target <= 1.2); the program's first processor: %.3f s"
          % (what(), default_workers(), best["pool"], best["library"],
             best["library"] / best["pool"], best["first"]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv[1:])
