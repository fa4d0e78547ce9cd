"""What a Sequential processor with ``max_batch_wait`` costs per descriptor fed one at a time.

Workload 10 of the benchmarks feeds a batching processor one descriptor per loop
turn: whatever the runtime does per descriptor while the batch waits to fill slows
the feed, and the batch closes on its deadline with fewer descriptors (on 2.7, whose
loop is pure Python, it did: 23 instead of 64). These tests count the work, not the
time, so they hold on any machine.
"""
from __future__ import absolute_import, division, print_function

import pytest

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessor, SequentialBatchProcessor,
    run_batch_processors_graph)
from batch_processor import sequential
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import TIMEOUT


class Feeder(SeparateBatchProcessor):
    """Hands its descriptors on one loop turn apart (``max_parallel_jobs=1``)."""

    @coroutine
    def _run_one_job(self, descriptor):
        yield From(asyncio.sleep(0))
        raise Return(descriptor)


class Recording(SequentialBatchProcessor):
    def __init__(self, **kwargs):
        super(Recording, self).__init__(**kwargs)
        self.batches = []

    @coroutine
    def _run_batch(self, descriptors):
        self.batches.append(list(descriptors))
        raise Return([d * 10 for d in descriptors])
        yield  # pragma: no cover


def _results(*handles):
    return [h.future.result() for h in handles]


def _run(processor, n):
    feeder = Feeder(max_parallel_jobs=1)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(feeder, processor, _results)
    results = run_batch_processors_graph(graph, {feeder: list(range(n))}, timeout=TIMEOUT)
    assert sorted(h.future.result() for h in results[processor]) == [d * 10 for d in range(n)]


@pytest.fixture
def batch_starts(monkeypatch):
    """Counts the calls of the Sequential runtime's ``next_batch`` (each is a loop callback)."""
    runtime = sequential.SequentialRuntime
    calls = []
    original = runtime.next_batch

    def counted(self):
        calls.append(self)
        return original(self)
    monkeypatch.setattr(runtime, "next_batch", counted)
    return calls


def test_a_waiting_batch_costs_no_loop_callback_per_descriptor_fed(batch_starts):
    # A deadline no run reaches: every batch is closed by its size, never by the timer.
    processor = Recording(max_batch_size=10, max_batch_wait=3600)
    _run(processor, 100)
    assert processor.batches == [list(range(i, i + 10)) for i in range(0, 100, 10)]
    # One look when the first descriptor of a batch arrives (it sets the timer) and one
    # when the batch fills; never one per descriptor in between.
    assert len(batch_starts) <= 2 * len(processor.batches) + 2


def test_a_batch_fed_one_at_a_time_starts_as_soon_as_it_is_full():
    processor = Recording(max_batch_size=3, max_batch_wait=3600)
    _run(processor, 9)  # within TIMEOUT only if no batch waits for its deadline
    assert processor.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_lowering_max_batch_size_while_a_batch_waits_starts_it_at_the_new_size():
    processor = Recording(max_batch_size=100, max_batch_wait=3600)

    class Lowering(Feeder):
        @coroutine
        def _run_one_job(self, descriptor):
            yield From(asyncio.sleep(0))
            if descriptor == 2:  # two descriptors wait for a batch of 100 by now
                processor.max_batch_size = 3
            raise Return(descriptor)
    feeder = Lowering(max_parallel_jobs=1)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(feeder, processor, _results)
    run_batch_processors_graph(graph, {feeder: list(range(6))}, timeout=TIMEOUT)
    assert processor.batches == [[0, 1, 2], [3, 4, 5]]
