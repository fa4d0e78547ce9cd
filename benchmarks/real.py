"""Workloads 8-10: process pools and micro-batching (``executor="processes"``, ``max_batch_wait``).

Module-level functions and classes, so that worker processes can import them.

* (8) ``N`` CPU-bound jobs of about 2 ms in ``SeparateBatchProcessorSynchronous(
  executor="processes", max_parallel_jobs=2)`` against ``ProcessPoolExecutor(2).map(fn,
  xs, chunksize=1)`` on the same function, pool start and shutdown included in both;
  target <= 1.1.
* (9) the same processor holding a 20 MB attribute, against the run without it
  (the processor goes to each worker once, not with every job); target <= 1.1.
* (10) a Sequential processor (``max_batch_size=64, max_batch_wait=0.005``, a fixed
  2 ms per batch, as a GPU call) fed one descriptor at a time by an upstream Separate
  processor: the mean batch (target >= 32) and the throughput against the same
  processor with ``max_batch_size=1`` (target >= 5x).
"""
from __future__ import absolute_import, division, print_function

import time
from concurrent.futures import ProcessPoolExecutor

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessor, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processor, run_batch_processors_graph)
from batch_processor.compat import From, Return, asyncio, coroutine

try:
    from time import perf_counter as clock
except ImportError:  # Python 2.7
    from time import time as clock

SPIN = [20000]  # loop iterations of about 2 ms, calibrated by `calibrate`


def spin(x):
    """A CPU-bound job of about 2 ms."""
    total = 0
    for i in range(SPIN[0]):
        total += i ^ x
    return x


def calibrate(target=0.002):
    n = 20000
    start = clock()
    SPIN[0] = n
    spin(1)
    elapsed = max(clock() - start, 1e-6)
    SPIN[0] = max(1000, int(n * target / elapsed))
    return SPIN[0]


class Spin(SeparateBatchProcessorSynchronous):
    def __init__(self, iterations, payload=None, **options):
        super(Spin, self).__init__(**options)
        self.iterations = iterations
        self.payload = payload

    def _run_one_job_synchronous(self, x):
        SPIN[0] = self.iterations
        return spin(x)


def _set_spin(iterations):
    SPIN[0] = iterations


def run_library(n, iterations, payload=None):
    processor = Spin(iterations, payload, executor="processes", max_parallel_jobs=2)
    start = clock()
    handles = run_batch_processor(processor, list(range(n)))
    processor.stop()
    elapsed = clock() - start
    check(sorted(h.future.result() for h in handles), n)
    return elapsed


def run_pool(n, iterations):
    start = clock()
    pool = ProcessPoolExecutor(2, **_pool_options(iterations))
    try:
        results = list(pool.map(spin, range(n), chunksize=1))
    finally:
        pool.shutdown(wait=True)
    elapsed = clock() - start
    check(sorted(results), n)
    return elapsed


def _pool_options(iterations):
    from batch_processor._processes import _context
    context = _context()
    if context is None:  # 2.7: the fork inherits SPIN
        SPIN[0] = iterations
        return {}
    return dict(mp_context=context, initializer=_set_spin, initargs=(iterations,))


def check(results, n):
    if results != list(range(n)):
        raise AssertionError("the jobs did not all come back exactly once")


# -- micro-batching ---------------------------------------------------------------------

class Upstream(SeparateBatchProcessor):
    """Hands its descriptors on one at a time (one loop turn each)."""

    @coroutine
    def _run_one_job(self, x):
        yield From(asyncio.sleep(0))
        raise Return(x)


class Model(SequentialBatchProcessorSynchronous):
    """A fixed cost per batch, as a GPU call; records the batch sizes."""

    def __init__(self, **options):
        super(Model, self).__init__(**options)
        self.sizes = []

    def _run_batch_synchronous(self, xs):
        self.sizes.append(len(xs))
        time.sleep(0.002)
        return list(xs)


def _results(*handles):
    return [h.future.result() for h in handles]


def run_batching(n, **options):
    upstream, model = Upstream(max_parallel_jobs=1), Model(**options)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(upstream, model, _results)
    start = clock()
    results = run_batch_processors_graph(graph, {upstream: list(range(n))})
    elapsed = clock() - start
    check(sorted(h.future.result() for h in results[model]), n)
    return elapsed, sum(model.sizes) / float(len(model.sizes))
