"""The library side of the benchmarks: processors, graphs and exact checks.

The processors are what a user writes: trollius-style coroutines through
``batch_processor.compat`` (they run on 2.7 and 3.x), or plain functions for the
``Synchronous`` classes. The baselines of ``baselines`` call the very same job
methods, so a ratio measures the runner and nothing else.

Every ``check_*`` function raises `CheckError` unless each descriptor came back
exactly once, with the right result.
"""
from __future__ import absolute_import, division, print_function

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessor, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessor, run_batch_processor, run_batch_processors_graph)
from batch_processor.compat import Return, coroutine

__all__ = [
    "CheckError",
    "Countdown",
    "Increment",
    "IncrementBatch",
    "IncrementInExecutor",
    "check_handles",
    "check_values",
    "increment",
    "run_chain",
    "run_cycle",
    "run_sequential",
    "run_tree",
]


class CheckError(AssertionError):
    """A benchmark lost, duplicated or corrupted a job: the numbers mean nothing."""


# -- processors ----------------------------------------------------------------------

class Increment(SeparateBatchProcessor):
    """A trivial job: ``descriptor + 1``, as a trollius-style coroutine."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        raise Return(job_descriptor + 1)
        yield  # pragma: no cover - a generator, as trollius-style coroutines are


class IncrementInExecutor(SeparateBatchProcessorSynchronous):
    """A trivial job in a shared executor given at construction."""

    _bp_not_pickled = ("executor",)  # the pool stays with the process (and out of checkpoints)

    def __init__(self, executor, **options):
        super(IncrementInExecutor, self).__init__(**options)
        self.executor = executor

    @property
    def _executor(self):
        return self.executor

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor + 1


def increment(value):
    """The plain function behind `IncrementInExecutor` (for the baselines)."""
    return value + 1


class Countdown(SeparateBatchProcessor):
    """``(key, count)`` -> ``(key, count - 1)``: a node of the 2-node cycle."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        key, count = job_descriptor
        raise Return((key, count - 1))
        yield  # pragma: no cover


class IncrementBatch(SequentialBatchProcessor):
    """A batch of trivial jobs: ``[d + 1 for d in batch]``."""

    @coroutine
    def _run_batch(self, job_descriptors):
        raise Return([d + 1 for d in job_descriptors])
        yield  # pragma: no cover


# -- converters ----------------------------------------------------------------------

def results_of(*handles):
    """Pass every result on (a failed handle raises, so the check catches it)."""
    return [handle.future.result() for handle in handles]


def still_counting(*handles):
    """Back round the cycle while the count is above 0."""
    return [value for value in (handle.future.result() for handle in handles) if value[1] > 0]


class _Router(object):
    """Routes a parent's results to its children by ``((value - offset) // divisor) % fanout``.

    All the converters of one parent are called with the same handles, one after
    the other; the split is computed once per group, so routing costs O(1) per job.
    """

    def __init__(self, fanout, divisor, offset):
        self.fanout = fanout
        self.divisor = divisor
        self.offset = offset
        self.group = None
        self.parts = None

    def converter(self, index):
        def route(*handles):
            if handles[0] is not self.group:
                parts = [[] for _ in range(self.fanout)]
                divisor, fanout, offset = self.divisor, self.fanout, self.offset
                for handle in handles:
                    value = handle.future.result()
                    parts[((value - offset) // divisor) % fanout].append(value)
                self.group, self.parts = handles[0], parts
            return self.parts[index]
        route.__name__ = "route_%d" % index
        return route


# -- runs ----------------------------------------------------------------------------

def chain_graph(processors):
    """The graph of a chain ``p0 -> p1 -> ...`` passing results on."""
    graph = BatchProcessorsGraph()
    if len(processors) == 1:
        graph.add_processor(processors[0])
    for source, destination in zip(processors, processors[1:]):
        graph.add_connected_processors(source, destination, results_of)
    return graph


def run_chain(processors, descriptors, keep_last_only=False, loop_factory=None):
    """Run a chain ``p0 -> p1 -> ...`` over ``descriptors``; return the result dict."""
    graph = BatchProcessorsGraph()
    if len(processors) == 1:
        graph.add_processor(processors[0])
    for source, destination in zip(processors, processors[1:]):
        graph.add_connected_processors(source, destination, results_of)
    keep = [processors[-1]] if keep_last_only else None
    return run_batch_processors_graph(graph, {processors[0]: descriptors}, keep_results=keep,
                                      loop_factory=loop_factory)


def build_tree(fanout, depth, processor_class=Increment):
    """A fan-out tree of ``fanout ** depth`` leaves; returns ``(graph, root, leaves)``.

    A descriptor ``d`` fed to the root reaches exactly one leaf, chosen by its digits
    in base ``fanout`` (each level adds 1 to it, which the routing takes off), so
    ``fanout ** depth`` consecutive descriptors give one job to every leaf.
    """
    graph = BatchProcessorsGraph()
    root = processor_class()
    graph.add_processor(root)
    level = [root]
    for depth_index in range(depth):
        divisor = fanout ** depth_index
        next_level = []
        for parent in level:
            router = _Router(fanout, divisor, depth_index + 1)
            for index in range(fanout):
                child = processor_class()
                graph.add_connected_processors(parent, child, router.converter(index))
                next_level.append(child)
        level = next_level
    return graph, root, level


def run_tree(graph, root, leaves, descriptors):
    """Run the tree; keep the leaves' handles only."""
    return run_batch_processors_graph(graph, {root: descriptors}, keep_results=leaves)


def run_cycle(descriptors):
    """The 2-node cycle A -> B -> A; returns ``(results, a, b)``."""
    a, b = Countdown(), Countdown()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(a, b, results_of)
    graph.add_connected_processors(b, a, still_counting)
    return run_batch_processors_graph(graph, {a: descriptors}), a, b


def run_sequential(descriptors, batch_size):
    """One Sequential processor with ``max_batch_size=batch_size``; returns its handles."""
    return run_batch_processor(IncrementBatch(max_batch_size=batch_size), descriptors)


# -- checks --------------------------------------------------------------------------

def check_values(values, first, count, what):
    """``values`` must be exactly ``first, first + 1, ..., first + count - 1``, each once."""
    seen = bytearray(count)
    total = 0
    for value in values:
        index = value - first
        if not 0 <= index < count:
            raise CheckError("%s: unexpected result %r (expected %d..%d)"
                             % (what, value, first, first + count - 1))
        if seen[index]:
            raise CheckError("%s: result %r came back twice" % (what, value))
        seen[index] = 1
        total += 1
    if total != count:
        raise CheckError("%s: %d results instead of %d: jobs were lost" % (what, total, count))


def check_handles(handles, first, count, what):
    """Every handle succeeded, and their results are exactly ``first .. first + count - 1``."""
    def results():
        for handle in handles:
            future = handle.future
            if not future.done() or future.cancelled() or future.exception() is not None:
                raise CheckError("%s: a job did not succeed: %r" % (what, handle))
            yield future.result()
    check_values(results(), first, count, what)
