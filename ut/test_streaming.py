"""Streaming runners, bounded input (``max_in_flight``), interrupted runs and names.

The streaming tests order events with `threading.Event` gates that the test opens
after ``next()`` returned: an iterator that collected everything before yielding
would never see the second job end (its gate opens only after the first handle
came out), so the test would fail instead of passing slowly.
"""
from __future__ import absolute_import, division, print_function

import gc
import sys
import threading
import weakref

import pytest

from batch_processor import (
    BatchProcessorsGraph,
    ConverterError,
    ProcessorState,
    RunTimeoutError,
    SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous,
    SourceError,
    iter_batch_processor,
    iter_batch_processors_graph,
    run_batch_processor,
    run_batch_processors_graph,
    run_batch_processors_graph_async,
)
from batch_processor import compat, execution
from batch_processor.compat import From, Return, asyncio, coroutine
from batch_processor.interface import processor_labels

from helpers import TIMEOUT, Separate, SeparateSync, outcome, run_script

PY2 = sys.version_info[0] == 2


class GatedThreads(SeparateBatchProcessorSynchronous):
    """Each job waits (in a thread) for the gate of its descriptor, then returns it."""

    def __init__(self, **kwargs):
        super(GatedThreads, self).__init__(**kwargs)
        self.gates = {}
        self.lock = threading.Lock()

    def gate(self, descriptor):
        with self.lock:
            return self.gates.setdefault(descriptor, threading.Event())

    def _run_one_job_synchronous(self, job_descriptor):
        if not self.gate(job_descriptor).wait(TIMEOUT):
            raise RuntimeError("the test never opened the gate of %r" % (job_descriptor,))
        return job_descriptor

    def open_all(self):
        for key in list(self.gates):
            self.gates[key].set()


@pytest.fixture
def gated():
    made = []

    def make(**kwargs):
        processor = GatedThreads(**kwargs)
        made.append(processor)
        return processor
    yield make
    for processor in made:
        processor.open_all()
        for descriptor in range(100):
            processor.gate(descriptor).set()


class Result(object):
    def __init__(self, value):
        self.value = value


def boxed(value):
    return Result(value)


def not_claimed(*processors):
    return all(id(p) not in execution._claimed for p in processors)


# -- streaming ------------------------------------------------------------------------

def test_each_handle_is_yielded_before_the_next_job_ends(gated):
    processor = gated()
    processor.gate(1).set()
    stream = iter_batch_processor(processor, [1, 2])
    first = next(stream)
    assert outcome(first) == ("ok", 1)
    processor.gate(2).set()  # job 2 can end only now that handle 1 is out
    second = next(stream)
    assert outcome(second) == ("ok", 2)
    with pytest.raises(StopIteration):
        next(stream)
    assert not_claimed(processor)


def test_graph_stream_yields_pairs_in_collection_order(gated):
    head, tail = gated(), Separate()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(head, tail, lambda *hs: [h.future.result() * 10 for h in hs])
    head.gate(1).set()
    stream = iter_batch_processors_graph(graph, {head: [1, 2]})
    seen = [next(stream)]
    seen.append(next(stream))
    head.gate(2).set()
    seen.extend(stream)
    assert [(p is head, outcome(h)) for p, h in seen] == [
        (True, ("ok", 1)), (False, ("ok", 11)), (True, ("ok", 2)), (False, ("ok", 21))]


def test_keep_results_filters_the_stream():
    head, tail = Separate(), Separate()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(head, tail, lambda *hs: [h.future.result() for h in hs])
    pairs = list(iter_batch_processors_graph(graph, {head: [1, 2, 3]}, keep_results=[tail]))
    assert [p for p, _ in pairs] == [tail] * 3
    assert sorted(h.future.result() for _, h in pairs) == [3, 4, 5]


def test_a_yielded_handle_is_not_kept_by_the_run():
    processor = Separate(fn=boxed)
    stream = iter_batch_processor(processor, [1, 2, 3], max_in_flight=1)
    handle = next(stream)
    ref = weakref.ref(handle.future.result())
    del handle
    gc.collect()
    assert ref() is None
    assert [h.future.result().value for h in stream] == [2, 3]


def test_closing_early_kills_everything_and_releases(gated):
    processor, other = gated(), Separate()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(processor, other, lambda *hs: [1])
    processor.gate(1).set()
    stream = iter_batch_processors_graph(graph, {processor: [1, 2, 3]})
    assert next(stream)[0] is processor
    stream.close()
    assert processor.state is ProcessorState.KILLED
    assert other.state is ProcessorState.KILLED
    assert not_claimed(processor, other)
    with pytest.raises(StopIteration):
        next(stream)


def test_dropping_the_iterator_kills_the_run(gated):
    processor = gated()
    stream = iter_batch_processor(processor, [1, 2])
    del stream
    gc.collect()
    assert processor.state is ProcessorState.KILLED
    assert not_claimed(processor)


def test_dropping_a_for_loop_early_kills_the_run(gated):
    processor = gated()
    processor.gate(1).set()
    for _handle in iter_batch_processor(processor, [1, 2]):
        break
    gc.collect()
    assert processor.state is ProcessorState.KILLED


def test_a_converter_error_comes_from_next_with_the_handles_not_yet_yielded():
    head, tail = Separate(), Separate()
    graph = BatchProcessorsGraph()

    def broken(*handles):
        raise ValueError("boom")
    graph.add_connected_processors(head, tail, broken)
    stream = iter_batch_processors_graph(graph, {head: [1]})
    with pytest.raises(ConverterError) as info:
        next(stream)
    assert list(info.value.results) == [head, tail]
    assert [outcome(h) for h in info.value.results[head]] == [("ok", 2)]
    assert info.value.results[tail] == []
    with pytest.raises(StopIteration):
        next(stream)


def test_a_timeout_comes_from_next_with_a_list_for_one_processor(gated):
    processor = gated()
    stream = iter_batch_processor(processor, [1], timeout=0.01)
    with pytest.raises(RunTimeoutError) as info:
        next(stream)
    assert [outcome(h)[0] for h in info.value.results] == ["cancelled"]
    assert not_claimed(processor)


def test_the_stream_leaves_the_callers_loop_alone(restore_current_loop):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        stream = iter_batch_processor(Separate(), [1, 2])
        assert asyncio.get_event_loop() is loop
        assert len(list(stream)) == 2
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_errors_before_the_run_are_raised_at_once():
    processor = Separate()
    with pytest.raises(Exception):
        iter_batch_processors_graph(BatchProcessorsGraph(), {processor: [1]})
    with pytest.raises(ValueError):
        iter_batch_processor(processor, [1], max_in_flight=0)
    assert not_claimed(processor)


def test_the_stream_refuses_a_running_loop():
    @coroutine
    def inside():
        try:
            iter_batch_processor(Separate(), [1])
        except RuntimeError as exc:
            raise Return(str(exc))
        raise Return(None)
    loop = asyncio.new_event_loop()
    token = compat.enter_loop(loop)
    try:
        assert "_async" in loop.run_until_complete(inside())
    finally:
        compat.leave_loop(token)
        loop.close()


# -- max_in_flight --------------------------------------------------------------------

class Counting(object):
    """A generator's worth of descriptors that counts how many were read."""

    def __init__(self, count, fail_at=None):
        self.read = 0
        self.count = count
        self.fail_at = fail_at

    def __iter__(self):
        for i in range(self.count):
            if i == self.fail_at:
                raise KeyError("source broke at %d" % i)
            self.read += 1
            yield i


class Watching(SeparateBatchProcessorSynchronous):
    """Records, at each job's start, how far ahead the source was read."""

    def __init__(self, source, **kwargs):
        super(Watching, self).__init__(**kwargs)
        self.source = source
        self.finished = 0
        self.ahead = []
        self.lock = threading.Lock()

    def _run_one_job_synchronous(self, job_descriptor):
        with self.lock:
            self.ahead.append(self.source.read - self.finished)
        with self.lock:
            self.finished += 1
        return job_descriptor


@pytest.mark.parametrize("limit", [1, 3])
def test_max_in_flight_reads_the_source_lazily(limit):
    source = Counting(50)
    processor = Watching(source)
    handles = run_batch_processor(processor, source, max_in_flight=limit)
    assert sorted(h.future.result() for h in handles) == list(range(50))
    assert max(processor.ahead) <= limit
    assert processor.ahead[0] <= limit


def test_max_in_flight_with_the_stream_bounds_reading():
    source = Counting(30)
    stream = iter_batch_processor(Separate(fn=lambda x: x), iter(source), max_in_flight=2)
    yielded = 0
    for _handle in stream:
        yielded += 1
        # at most 2 in flight, and at most the 2 collected with this one not yielded yet
        assert source.read <= yielded + 2 + 2
    assert yielded == 30


def test_sources_are_read_round_robin():
    order = []
    left, right = Separate(fn=lambda x: order.append(x) or x), Separate(fn=lambda x: order.append(x) or x)
    graph = BatchProcessorsGraph()
    graph.add_processor(left)
    graph.add_processor(right)
    run_batch_processors_graph(graph, {left: iter(["a1", "a2", "a3"]), right: iter(["b1", "b2"])},
                               max_in_flight=1)
    assert order == ["a1", "b1", "a2", "b2", "a3"]


def test_converter_output_is_fed_at_once_so_a_cycle_ends():
    processor = Separate(fn=lambda x: x)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(
        processor, processor,
        lambda *hs: [h.future.result() + 1 for h in hs for _ in range(2) if h.future.result() < 4])
    results = run_batch_processors_graph(graph, {processor: [0]}, max_in_flight=1)
    assert len(results[processor]) == 1 + 2 + 4 + 8 + 16


def test_max_in_flight_none_reads_everything_first():
    source = Counting(5)
    processor = Watching(source)
    run_batch_processor(processor, source)
    assert processor.ahead[0] == 5


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3"])
def test_max_in_flight_is_checked(bad):
    processor = Separate()
    with pytest.raises(ValueError) as info:
        run_batch_processor(processor, [1], max_in_flight=bad)
    assert "max_in_flight" in str(info.value)


def test_async_runner_takes_max_in_flight():
    source = Counting(7)
    processor = Watching(source)
    loop = asyncio.new_event_loop()
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)

    @coroutine
    def main():
        results = yield From(run_batch_processors_graph_async(graph, {processor: source},
                                                              max_in_flight=2))
        raise Return(results)
    token = compat.enter_loop(loop)
    try:
        results = loop.run_until_complete(main())
    finally:
        compat.leave_loop(token)
        loop.close()
    assert len(results[processor]) == 7
    assert max(processor.ahead) <= 2


def test_a_raising_source_is_a_source_error():
    processor = Separate(fn=lambda x: x, name="reader")
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    with pytest.raises(SourceError) as info:
        run_batch_processors_graph(graph, {processor: Counting(10, fail_at=3)}, max_in_flight=2)
    error = info.value
    assert isinstance(error.original, KeyError)
    if not PY2:
        assert error.__cause__ is error.original
    assert "reader" in str(error)
    assert error.processor is processor
    assert list(error.results) == [processor]
    assert processor.state is ProcessorState.KILLED
    assert not_claimed(processor)


def test_a_raising_source_of_one_processor_gives_a_list():
    processor = Separate(fn=lambda x: x)
    with pytest.raises(SourceError) as info:
        run_batch_processor(processor, Counting(10, fail_at=0), max_in_flight=5)
    assert info.value.results == []


def test_a_raising_source_in_a_stream():
    processor = Separate(fn=lambda x: x)
    stream = iter_batch_processor(processor, Counting(10, fail_at=4), max_in_flight=1)
    got = []
    with pytest.raises(SourceError) as info:
        for handle in stream:
            got.append(handle)
    assert len(got) + len(info.value.results) == 4


# -- KeyboardInterrupt.results ---------------------------------------------------------

INTERRUPT_SCRIPT = """from __future__ import print_function
import os, signal, threading
from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor, {runner}

class Slow(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, d):
        if d == 3:
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(30)
        return d

p = Slow()
try:
    {call}
except KeyboardInterrupt as exc:
    results = exc.results
    if isinstance(results, dict):
        results = results[p]
    print(type(exc.results).__name__, sorted(h.future.cancelled() for h in results).count(True) >= 1,
          len(results))
"""


@pytest.mark.parametrize("runner, call, kind", [
    ("run_batch_processor", "run_batch_processor(p, [3], max_in_flight=1)", "list"),
    ("run_batch_processors_graph, BatchProcessorsGraph",
     "g = BatchProcessorsGraph(); g.add_processor(p); run_batch_processors_graph(g, {p: [3]})",
     "OrderedDict"),
])
def test_keyboard_interrupt_carries_the_partial_result(runner, call, kind):
    code, out, err = run_script(INTERRUPT_SCRIPT.format(runner=runner, call=call))
    assert code == 0, err
    assert out.split() == [kind, "True", "1"]


# -- names ----------------------------------------------------------------------------

def test_labels_use_names_and_tell_apart_shared_names():
    a, b, c = Separate(name="train"), Separate(name="train"), SeparateSync()
    labels = processor_labels([a, b, c])
    assert labels[0].startswith("train@") and labels[1].startswith("train@")
    assert labels[0] != labels[1]
    assert labels[2] == "SeparateSync"


def test_the_timeout_message_names_the_busy_processors(gated):
    processor = gated(name="slow trainer")
    with pytest.raises(RunTimeoutError) as info:
        run_batch_processor(processor, [1], timeout=0.01)
    assert "still busy: slow trainer" in str(info.value)


def test_progress_lines_use_names(capfd, monkeypatch):
    import batch_processor.progress as progress
    monkeypatch.setattr(progress, "_bar_class", [None])
    run_batch_processor(Separate(name="tuner"), [1, 2], progress=True)
    err = capfd.readouterr()[1]
    assert "tuner: fed 2, ok 2, failed 0, cancelled 0" in err


assert SeparateBatchProcessor
