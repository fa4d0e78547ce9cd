"""Runs on uvloop through the runners' ``loop_factory`` option."""
import pytest

uvloop = pytest.importorskip("uvloop")

from batch_processor import (  # noqa: E402
    BatchProcessorsGraph, SeparateBatchProcessor, SequentialBatchProcessorSynchronous,
    run_batch_processor, run_batch_processors_graph)


class RecordsLoop(SeparateBatchProcessor):
    async def _run_one_job(self, job_descriptor):
        import asyncio
        return job_descriptor + 1, type(asyncio.get_running_loop()).__module__


class Doubles(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return [d * 2 for d in job_descriptors]


def test_a_graph_runs_on_uvloop():
    graph = BatchProcessorsGraph()
    first, second = RecordsLoop(), Doubles()
    graph.add_connected_processors(first, second, lambda *hs: [h.future.result()[0] for h in hs])
    results = run_batch_processors_graph(graph, {first: range(5)}, loop_factory=uvloop.new_event_loop)
    assert set(h.future.result()[1] for h in results[first]) == {"uvloop"}
    assert sorted(h.future.result() for h in results[second]) == [2, 4, 6, 8, 10]


def test_run_batch_processor_takes_the_loop_factory_too():
    handles = run_batch_processor(RecordsLoop(), [1], loop_factory=uvloop.new_event_loop)
    assert handles[0].future.result() == (2, "uvloop")
