"""The async-iterator streaming runners (Python 3: ``async for``)."""
import asyncio
import gc

import pytest

from batch_processor import (
    BatchProcessorsGraph, ConverterError, ProcessorState, SourceError,
    iter_batch_processor_async, iter_batch_processors_graph_async)
from batch_processor import execution

from helpers import Separate, outcome


def run(coro):
    """``asyncio.run(coro)``, which Python 3.6 lacks."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class Gated(Separate):
    """Each job waits for the loop future of its descriptor."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gates = {}

    def gate(self, descriptor):
        if descriptor not in self.gates:
            self.gates[descriptor] = asyncio.get_event_loop().create_future()
        return self.gates[descriptor]

    async def _run_one_job(self, job_descriptor):
        await self.gate(job_descriptor)
        return job_descriptor


def test_each_handle_is_yielded_as_soon_as_collected():
    async def main():
        processor = Gated()
        processor.gate(1).set_result(None)
        processor.gate(2)
        seen = []
        async for handle in iter_batch_processor_async(processor, [1, 2]):
            seen.append(outcome(handle))
            if len(seen) == 1:
                processor.gate(2).set_result(None)  # job 2 ends only after handle 1 is out
        return seen
    assert run(main()) == [("ok", 1), ("ok", 2)]


def test_graph_form_yields_pairs_and_closing_kills():
    async def main():
        head = Gated()
        graph = BatchProcessorsGraph()
        graph.add_processor(head)
        head.gate(1).set_result(None)
        stream = iter_batch_processors_graph_async(graph, {head: [1, 2]})
        processor, handle = await stream.__anext__()
        await stream.aclose()
        return head, processor, handle
    head, processor, handle = run(main())
    assert processor is head and outcome(handle) == ("ok", 1)
    assert head.state is ProcessorState.KILLED
    assert id(head) not in execution._claimed


def test_dropping_kills():
    async def main():
        processor = Gated()
        stream = iter_batch_processor_async(processor, [1])
        del stream
        gc.collect()
        return processor
    assert run(main()).state is ProcessorState.KILLED


def test_errors_carry_the_handles_not_yet_yielded():
    async def main():
        head, tail = Separate(), Separate()
        graph = BatchProcessorsGraph()

        def broken(*handles):
            raise ValueError("boom")
        graph.add_connected_processors(head, tail, broken)
        with pytest.raises(ConverterError) as info:
            async for _ in iter_batch_processors_graph_async(graph, {head: [1]}):
                pass
        return head, info.value
    head, error = run(main())
    assert [outcome(h) for h in error.results[head]] == [("ok", 2)]


def test_max_in_flight_and_source_error():
    def source():
        yield 1
        raise KeyError("gone")

    async def main():
        processor = Separate()
        got = []
        with pytest.raises(SourceError) as info:
            async for handle in iter_batch_processor_async(processor, source(), max_in_flight=1):
                got.append(handle)
        return got, info.value
    got, error = run(main())
    assert len(got) + len(error.results) == 1
    assert isinstance(error.__cause__, KeyError)
