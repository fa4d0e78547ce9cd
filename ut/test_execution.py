"""Tests of ``batch_processor.execution``: graphs, runners and run options.

The seed note sends its readers here for "the interesting examples", so each test
is also a small example of a pipeline: fan-out, fan-in, cycles, failing converters,
processors stopped or killed in the middle of a run, process pools, the ``_async``
runners inside a running loop, and the run options ``timeout``, ``keep_results`` and
``progress``. Nothing here waits by sleeping: jobs that must be interrupted block on
an event that the test (or another job) releases.
"""
from __future__ import absolute_import, division, print_function

import collections
import gc
import logging
import os
import threading
import weakref

import pytest

from batch_processor import (
    BatchProcessorError,
    BatchProcessorResultHandle,
    BatchProcessorsGraph,
    CancelledError,
    ConverterError,
    GraphError,
    ProcessorState,
    ProcessorStateError,
    RetryPolicy,
    RunTimeoutError,
    SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous,
    SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous,
    run_batch_processor,
    run_batch_processor_async,
    run_batch_processor_single,
    run_batch_processors_graph,
    run_batch_processors_graph_async,
)
from batch_processor import compat
from batch_processor.compat import PY2, From, Return, asyncio, coroutine
from batch_processor.interface import describe

from helpers import (
    Delegating,
    KINDS,
    TIMEOUT,
    Blocker,
    Call,
    FailOn,
    Gated,
    ProcessPoolBatchSquare,
    ProcessPoolSquare,
    Separate,
    SeparateSync,
    Sequential,
    SequentialSync,
    Trigger,
    dec,
    descriptors_of,
    identity,
    outcome,
    results_of,
    run_script,
)


def results_as_values(*handles):
    """A converter: the results of the successful handles become descriptors."""
    return [h.future.result() for h in handles if outcome(h)[0] == "ok"]


def positive_results(*handles):
    """A converter for count-downs: feed a result back while it is above zero."""
    return [h.future.result() for h in handles if h.future.result() > 0]


def outcomes(handles):
    return sorted(outcome(h)[0] for h in handles)


# -- BatchProcessorsGraph ------------------------------------------------------------

def test_add_processor_is_idempotent():
    graph = BatchProcessorsGraph()
    first, second = Separate(), Separate()
    for _ in range(3):
        graph.add_processor(first)
    assert graph.processors == [first]
    graph.add_processor(second)
    graph.add_processor(first)
    assert graph.processors == [first, second]
    assert graph.edges == []


@pytest.mark.parametrize("not_a_processor", [object(), None, Separate, "Separate", [Separate()]],
                         ids=["object", "None", "class", "str", "list"])
def test_add_processor_rejects_a_non_processor(not_a_processor):
    graph = BatchProcessorsGraph()
    with pytest.raises(TypeError):
        graph.add_processor(not_a_processor)
    with pytest.raises(TypeError):
        graph.add_connected_processors(not_a_processor, Separate(), identity)
    with pytest.raises(TypeError):
        graph.add_connected_processors(Separate(), not_a_processor, identity)
    assert graph.edges == []
    assert not_a_processor not in graph.processors


@pytest.mark.parametrize("converter", [None, 42, "identity", [identity]],
                         ids=["None", "int", "str", "list"])
def test_add_connected_processors_rejects_a_non_callable_converter(converter):
    graph = BatchProcessorsGraph()
    source, destination = Separate(), Separate()
    with pytest.raises(TypeError) as info:
        graph.add_connected_processors(source, destination, converter)
    assert "callable" in str(info.value)
    assert graph.edges == []


def test_the_same_edge_added_twice_is_one_edge():
    graph = BatchProcessorsGraph()
    a, b = Separate(), Separate()
    graph.add_connected_processors(a, b, identity)
    graph.add_connected_processors(a, b, identity)
    assert graph.edges == [(a, b, identity)]
    assert graph.processors == [a, b]
    # Another converter, or the other direction, is another edge.
    graph.add_connected_processors(a, b, results_as_values)
    graph.add_connected_processors(b, a, identity)
    graph.add_connected_processors(a, b, results_as_values)
    assert graph.edges == [(a, b, identity), (a, b, results_as_values), (b, a, identity)]


def test_processors_and_edges_are_readable_in_insertion_order():
    graph = BatchProcessorsGraph()
    c, a, b, d = Separate(), SeparateSync(), Sequential(), SequentialSync()
    graph.add_processor(c)
    graph.add_connected_processors(a, b, identity)
    graph.add_connected_processors(d, c, results_as_values)
    graph.add_connected_processors(b, b, positive_results)
    assert graph.processors == [c, a, b, d]
    assert graph.edges == [(a, b, identity), (d, c, results_as_values), (b, b, positive_results)]
    assert all(isinstance(edge, tuple) for edge in graph.edges)


# -- data flow -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_fan_out_each_destination_gets_its_converters_output(kind, loop_factory):
    source = kind(fn=lambda x: x + 1)
    tens, hundreds, negatives = SeparateSync(identity), Sequential(identity), Separate(identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(
        source, tens, lambda *hs: [h.future.result() * 10 for h in hs])
    graph.add_connected_processors(
        source, hundreds, lambda *hs: [h.future.result() * 100 for h in hs])
    graph.add_connected_processors(
        source, negatives, lambda *hs: (-h.future.result() for h in hs))

    results = run_batch_processors_graph(graph, {source: [1, 2, 3]}, loop_factory=loop_factory)

    assert list(results) == [source, tens, hundreds, negatives]
    assert results_of(results[source]) == {1: 2, 2: 3, 3: 4}
    assert results_of(results[tens]) == {20: 20, 30: 30, 40: 40}
    assert results_of(results[hundreds]) == {200: 200, 300: 300, 400: 400}
    assert results_of(results[negatives]) == {-2: -2, -3: -3, -4: -4}


def test_fan_in_destination_gets_the_output_of_every_source(loop_factory):
    first, second = Separate(fn=lambda x: x * 10), SeparateSync(fn=lambda x: x * 100)
    sink = Sequential(fn=identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, sink, results_as_values)
    graph.add_connected_processors(second, sink, results_as_values)

    results = run_batch_processors_graph(graph, {first: [1, 2], second: [3, 4]}, loop_factory=loop_factory)

    assert descriptors_of(results[sink]) == [10, 20, 300, 400]
    assert sorted(sink.seen) == [10, 20, 300, 400]
    assert outcomes(results[sink]) == ["ok"] * 4


@pytest.mark.parametrize("kind", KINDS)
def test_self_loop_counts_every_descriptor_down_to_zero(kind, loop_factory):
    counter = kind(fn=dec)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(counter, counter, positive_results)

    results = run_batch_processors_graph(graph, {counter: [3, 1, 2]}, loop_factory=loop_factory)

    handles = results[counter]
    # 3 -> 2 -> 1 -> 0, 1 -> 0, 2 -> 1 -> 0: one handle per step.
    assert collections.Counter(h.descriptor for h in handles) == {3: 1, 2: 2, 1: 3}
    assert all(h.future.result() == h.descriptor - 1 for h in handles)
    assert counter.state is ProcessorState.IDLE
    assert counter.in_flight == 0


@pytest.mark.parametrize("kinds", [(Separate, SeparateSync), (Sequential, SequentialSync),
                                   (SeparateSync, Sequential)])
def test_two_node_cycle_counts_every_descriptor_down_to_zero(kinds, loop_factory):
    ping, pong = kinds[0](fn=dec), kinds[1](fn=dec)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(ping, pong, positive_results)
    graph.add_connected_processors(pong, ping, positive_results)

    results = run_batch_processors_graph(graph, {ping: [4, 5]}, loop_factory=loop_factory)

    # 4 -> 3 -> 2 -> 1 -> 0 and 5 -> 4 -> 3 -> 2 -> 1 -> 0, alternating ping and pong.
    assert descriptors_of(results[ping]) == [1, 2, 3, 4, 5]
    assert descriptors_of(results[pong]) == [1, 2, 3, 4]
    for handles in results.values():
        assert all(h.future.result() == h.descriptor - 1 for h in handles)


def test_converters_may_return_any_iterable_of_descriptors():
    source = Separate(fn=identity)
    as_tuple, as_generator, as_set, as_nothing = (Separate(identity) for _ in range(4))
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, as_tuple, lambda *hs: tuple(h.descriptor for h in hs))
    graph.add_connected_processors(source, as_generator, lambda *hs: (h.descriptor for h in hs))
    graph.add_connected_processors(source, as_set, lambda *hs: set(h.descriptor for h in hs))
    graph.add_connected_processors(source, as_nothing, lambda *hs: [])

    results = run_batch_processors_graph(graph, {source: [1, 2]})

    for destination in (as_tuple, as_generator, as_set):
        assert descriptors_of(results[destination]) == [1, 2]
    assert results[as_nothing] == []
    assert as_nothing.seen == []


def test_converter_gets_only_done_handles_and_never_zero():
    calls = []

    def check(*handles):
        calls.append(len(handles))
        assert all(h.future.done() for h in handles)
        return []

    source = SeparateSync(fn=identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, Separate(), check)
    run_batch_processors_graph(graph, {source: range(10)})
    assert sum(calls) == 10
    assert 0 not in calls


# -- failures ------------------------------------------------------------------------

def test_a_job_failure_stays_in_its_handle_and_the_run_goes_on(loop_factory):
    flaky = FailOn(bad=[2, 4])
    sink = SeparateSync(fn=lambda x: x * 10)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(flaky, sink, results_as_values)

    results = run_batch_processors_graph(graph, {flaky: [1, 2, 3, 4]}, loop_factory=loop_factory)

    by_descriptor = dict((h.descriptor, outcome(h)) for h in results[flaky])
    assert sorted(by_descriptor) == [1, 2, 3, 4]
    assert by_descriptor[1] == ("ok", 1) and by_descriptor[3] == ("ok", 3)
    for bad in (2, 4):
        status, exc = by_descriptor[bad]
        assert status == "failed"
        assert isinstance(exc, ValueError) and "bad descriptor %d" % bad in str(exc)
    assert results_of(results[sink]) == {1: 10, 3: 30}
    assert flaky.state is ProcessorState.IDLE and sink.state is ProcessorState.IDLE


def test_failed_jobs_of_run_batch_processor_are_returned_not_raised():
    handles = run_batch_processor(FailOn(bad=[0]), [0, 1])
    assert sorted((h.descriptor, outcome(h)[0]) for h in handles) == [(0, "failed"), (1, "ok")]
    failed = [h for h in handles if h.descriptor == 0][0]
    with pytest.raises(ValueError):
        failed.future.result()



def _fails_here(descriptor):
    raise ValueError("the job of %r failed" % (descriptor,))


class _FailingSeparate(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        _fails_here(job_descriptor)


class _FailingSeparateSync(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        _fails_here(job_descriptor)


class _FailingSequential(SequentialBatchProcessor):
    @coroutine
    def _run_batch(self, job_descriptors):
        yield From(asyncio.sleep(0))
        _fails_here(job_descriptors)


class _FailingSequentialSync(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        _fails_here(job_descriptors)


@pytest.mark.parametrize("make", [
    _FailingSeparate, _FailingSeparateSync, _FailingSequential, _FailingSequentialSync,
    lambda: _FailingSeparateSync(retry=RetryPolicy(attempts=2)),
], ids=["Separate", "SeparateSync", "Sequential", "SequentialSync", "SeparateSync-retried"])
def test_a_failed_handle_keeps_the_traceback_of_the_job(make, caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")  # the job logs look at outcomes
    handles = run_batch_processor(make(), [1, 2], progress=True)  # and so do the bars
    assert len(handles) == 2
    for handle in handles:
        assert "failed" in repr(handle)
        with pytest.raises(ValueError) as raised:
            handle.future.result()
        assert "_fails_here" in [entry.name for entry in raised.traceback]


def exploding_converter(*handles):
    raise KeyError("boom")


def test_a_failing_converter_kills_the_run_and_raises_converter_error(loop_factory):
    source, destination, bystander = Separate(), SeparateSync(), Blocker()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, destination, exploding_converter)
    graph.add_processor(bystander)

    with pytest.raises(ConverterError) as info:
        run_batch_processors_graph(
            graph, {source: [1, 2, 3], bystander: [7]}, timeout=TIMEOUT, loop_factory=loop_factory)

    error = info.value
    assert isinstance(error, BatchProcessorError)
    assert isinstance(error.original, KeyError)
    if not PY2:
        assert error.__cause__ is error.original
    assert error.converter is exploding_converter
    assert error.source is source and error.destination is destination
    message = str(error)
    assert "exploding_converter" in message
    assert describe(source) in message and describe(destination) in message
    # The partial results: a key for every processor, every fed descriptor once.
    assert list(error.results) == [source, destination, bystander]
    assert descriptors_of(error.results[source]) == [1, 2, 3]
    assert "ok" in outcomes(error.results[source])
    assert error.results[destination] == []
    assert [outcome(h) for h in error.results[bystander]] == [("cancelled", None)]
    assert error.results[bystander][0].descriptor == 7
    # The run killed every processor.
    for processor in (source, destination, bystander):
        assert processor.state is ProcessorState.KILLED
        assert processor.in_flight == 0
    assert destination.seen == []


def returns_none(*handles):
    return None


def returns_an_int(*handles):
    return 42


def raises_halfway(*handles):
    yield handles[0].descriptor
    raise KeyError("halfway")


@pytest.mark.parametrize("converter, original_type", [
    (returns_none, TypeError), (returns_an_int, TypeError), (raises_halfway, KeyError)])
def test_a_converter_returning_no_iterable_of_descriptors_raises_converter_error(
        converter, original_type):
    source, destination = Separate(identity), Separate(identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, destination, converter)

    with pytest.raises(ConverterError) as info:
        run_batch_processors_graph(graph, {source: [1]})

    error = info.value
    assert isinstance(error.original, original_type)
    assert error.converter is converter
    assert converter.__name__ in str(error)
    assert destination.seen == []  # nothing of a failed conversion is fed
    assert error.results[destination] == []
    assert [h.descriptor for h in error.results[source]] == [1]
    assert source.state is ProcessorState.KILLED and destination.state is ProcessorState.KILLED


# -- stopping and killing in the middle of a run -------------------------------------

def test_kill_from_a_converter_cancels_running_and_queued_jobs(loop_factory):
    blocker = Blocker(max_parallel_jobs=2)
    watcher = Call()
    seen_states = []

    def kill_blocker(*handles):
        assert [outcome(h) for h in handles] == [("ok", True)]  # two jobs started
        blocker.kill()
        seen_states.append(blocker.state)
        return []

    graph = BatchProcessorsGraph()
    graph.add_processor(blocker)
    graph.add_connected_processors(watcher, blocker, kill_blocker)

    results = run_batch_processors_graph(
        graph, {blocker: [1, 2, 3, 4, 5], watcher: [lambda: blocker.wait_started(2)]},
        timeout=TIMEOUT, loop_factory=loop_factory)

    assert seen_states == [ProcessorState.KILLED]
    handles = results[blocker]
    assert descriptors_of(handles) == [1, 2, 3, 4, 5]  # each once, queued ones included
    assert outcomes(handles) == ["cancelled"] * 5
    assert sorted(blocker.started) == [1, 2]  # the queued jobs never started
    assert blocker.state is ProcessorState.KILLED
    assert blocker.in_flight == 0
    assert blocker.get_ready() == set()
    assert outcomes(results[watcher]) == ["ok"]


def test_kill_from_a_job_ends_the_run(loop_factory):
    blocker = Blocker()
    trigger = Trigger()
    graph = BatchProcessorsGraph()
    graph.add_processor(blocker)
    graph.add_processor(trigger)

    def kill():
        blocker.kill()
        return blocker.state

    results = run_batch_processors_graph(
        graph, {blocker: [1, 2, 3], trigger: [(lambda: blocker.wait_started(3), kill)]},
        timeout=TIMEOUT, loop_factory=loop_factory)

    assert [outcome(h) for h in results[trigger]] == [("ok", ProcessorState.KILLED)]
    assert descriptors_of(results[blocker]) == [1, 2, 3]
    assert outcomes(results[blocker]) == ["cancelled"] * 3
    assert blocker.state is ProcessorState.KILLED
    blocker.release()  # the abandoned jobs end; their late results are dropped
    with pytest.raises(ProcessorStateError):
        blocker.feed_new([4])


@pytest.mark.parametrize("via", ["converter", "job"])
def test_stop_lets_fed_jobs_finish_and_refuses_later_descriptors(via, loop_factory):
    blocker = Blocker(max_parallel_jobs=1)  # 1 runs, 2 and 3 wait in its queue
    seen_states = []
    stop_waiters = []

    def stop_and_release():
        stop_waiters.append(blocker.stop())
        seen_states.append(blocker.state)
        blocker.release()
        return "stopped"

    def late_descriptors(*handles):
        if via == "converter":
            stop_and_release()
        assert [outcome(h)[1] for h in handles] in ([True], ["stopped"])
        return [10, 11]  # too late: the blocker accepts nothing any more

    graph = BatchProcessorsGraph()
    graph.add_processor(blocker)
    if via == "converter":
        trigger = Call()
        def descriptor():
            return blocker.wait_started(1)
    else:
        trigger = Trigger()
        descriptor = (lambda: blocker.wait_started(1), stop_and_release)
    graph.add_connected_processors(trigger, blocker, late_descriptors)

    results = run_batch_processors_graph(graph, {blocker: [1, 2, 3], trigger: [descriptor]},
                                         timeout=TIMEOUT, loop_factory=loop_factory)

    assert seen_states == [ProcessorState.STOPPING]
    assert blocker.state is ProcessorState.STOPPED
    assert all(waiter.done() for waiter in stop_waiters) and len(stop_waiters) == 1
    by_descriptor = dict((h.descriptor, outcome(h)) for h in results[blocker])
    assert descriptors_of(results[blocker]) == [1, 2, 3, 10, 11]  # each exactly once
    assert [by_descriptor[d] for d in (1, 2, 3)] == [("ok", 1), ("ok", 2), ("ok", 3)]
    assert [by_descriptor[d] for d in (10, 11)] == [("cancelled", None)] * 2
    assert blocker.started == [1, 2, 3]  # the queued jobs ran too, in feed order
    assert blocker.in_flight == 0


def test_cancelling_an_async_run_kills_its_processors(loop):
    gate, all_started = compat.new_future(loop), compat.new_future(loop)
    gated = Gated(gate, all_started, expected=2)

    @coroutine
    def main():
        run = loop.create_task(run_batch_processor_async(gated, [1, 2]))
        yield From(all_started)
        run.cancel()
        try:
            yield From(run)
        except CancelledError:
            raise Return("cancelled")
        raise Return("not cancelled")

    assert loop.run_until_complete(main()) == "cancelled"
    assert gated.state is ProcessorState.KILLED
    assert sorted(gated.started) == [1, 2]


# -- process pools -------------------------------------------------------------------

def test_separate_processor_in_a_process_pool(process_pool):
    processor = ProcessPoolSquare(process_pool)
    source = Separate(fn=identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, processor, results_as_values)

    results = run_batch_processors_graph(graph, {source: [1, 2, 3, -1]}, timeout=TIMEOUT)

    handles = results[processor]
    by_descriptor = dict((h.descriptor, outcome(h)) for h in handles)
    assert sorted(by_descriptor) == [-1, 1, 2, 3]
    for value in (1, 2, 3):
        status, (square, pid) = by_descriptor[value]
        assert (status, square) == ("ok", value * value)
        assert pid != os.getpid()  # it ran in a worker process
    status, exc = by_descriptor[-1]
    assert status == "failed" and isinstance(exc, ValueError)  # the worker's exception
    assert processor.state is ProcessorState.IDLE


def test_sequential_processor_in_a_process_pool(process_pool):
    processor = ProcessPoolBatchSquare(process_pool, max_batch_size=2)

    handles = run_batch_processor(processor, [1, 2, 3, 4, 5], timeout=TIMEOUT)

    assert sorted((h.descriptor, h.future.result()[0]) for h in handles) == [
        (1, 1), (2, 4), (3, 9), (4, 16), (5, 25)]
    assert all(h.future.result()[1] != os.getpid() for h in handles)
    # The processor was pickled without its runtime state, and still works afterwards.
    assert [h.future.result()[0] for h in run_batch_processor(processor, [6])] == [36]
    assert processor.state is ProcessorState.IDLE


# -- runners -------------------------------------------------------------------------

def test_initial_descriptors_for_a_processor_not_in_the_graph_raise_graph_error():
    member, outsider = Separate(), Separate()
    graph = BatchProcessorsGraph()
    graph.add_processor(member)

    with pytest.raises(GraphError) as info:
        run_batch_processors_graph(
            graph, collections.OrderedDict([(member, [1]), (outsider, [2])]))

    assert describe(outsider) in str(info.value)
    assert member.seen == [] and outsider.seen == []  # nothing ran
    assert member.state is ProcessorState.IDLE and member.in_flight == 0
    # The graph is still usable.
    results = run_batch_processors_graph(graph, {member: [1]})
    assert results_of(results[member]) == {1: 2}


def test_result_has_every_processor_in_graph_order():
    idle, source, sink, unfed = Separate(), SeparateSync(), Sequential(), SequentialSync()
    graph = BatchProcessorsGraph()
    graph.add_processor(idle)
    graph.add_connected_processors(source, sink, results_as_values)
    graph.add_processor(unfed)

    results = run_batch_processors_graph(graph, {source: [1]})

    assert isinstance(results, dict)
    assert list(results) == [idle, source, sink, unfed]
    assert results[idle] == [] and results[unfed] == []
    assert all(isinstance(handles, list) for handles in results.values())
    assert results_of(results[source]) == {1: 2}
    assert results_of(results[sink]) == {2: 3}


def test_a_run_without_descriptors_returns_empty_lists():
    processor = Separate()
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    assert run_batch_processors_graph(graph, {}) == {processor: []}
    assert processor.state is ProcessorState.IDLE


# A hang guard, not a measurement: these runs have nothing to do.
EMPTY_RUN_GUARD = 5


@pytest.mark.parametrize("kind", [Separate, SequentialSync])
def test_an_empty_list_of_descriptors_ends_the_run(kind):
    processor = kind()
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    assert run_batch_processors_graph(graph, {processor: []}, timeout=EMPTY_RUN_GUARD) == {
        processor: []}
    assert run_batch_processor(processor, [], timeout=EMPTY_RUN_GUARD) == []
    assert run_batch_processor(processor, iter([]), timeout=EMPTY_RUN_GUARD) == []


@pytest.mark.parametrize("kind", KINDS)
def test_run_batch_processor_returns_one_handle_per_descriptor(kind, loop_factory):
    processor = kind(fn=lambda x: x * 2)
    descriptors = [3, 1, 3, 2, 3]

    handles = run_batch_processor(processor, iter(descriptors), loop_factory=loop_factory)

    assert isinstance(handles, list)
    assert len(handles) == 5 and len(set(handles)) == 5
    assert all(isinstance(h, BatchProcessorResultHandle) for h in handles)
    assert descriptors_of(handles) == sorted(descriptors)
    assert all(h.future.done() and h.future.result() == h.descriptor * 2 for h in handles)
    assert sorted(processor.seen) == sorted(descriptors)


def test_run_batch_processor_single():
    handle = run_batch_processor_single(Separate(), 25)
    assert isinstance(handle, BatchProcessorResultHandle)
    assert (handle.descriptor, handle.future.result()) == (25, 26)
    failed = run_batch_processor_single(FailOn(bad=[1]), 1)
    assert outcome(failed)[0] == "failed" and failed.descriptor == 1


def test_run_batch_processor_single_without_keeping_the_handle_returns_none():
    processor = Separate()
    assert run_batch_processor_single(processor, 25, keep_results=[]) is None
    assert processor.seen == [25] and processor.state is ProcessorState.IDLE


def test_handles_compare_and_hash_by_identity():
    equal, also_equal = [1, 2], [1, 2]  # unhashable, equal, distinct descriptors
    handles = run_batch_processor(Separate(fn=len), [equal, also_equal, equal])
    assert len(handles) == 3
    assert len(set(handles)) == 3
    first, second = handles[0], handles[1]
    assert first == first and first != second
    assert first.descriptor == second.descriptor
    future = handles[0].future
    assert BatchProcessorResultHandle(1, future) != BatchProcessorResultHandle(1, future)
    assert all(h.future.result() == 2 for h in handles)


def test_equal_descriptors_fed_twice_come_back_twice():
    source, sink = Separate(), SeparateSync(fn=identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, lambda *hs: [5 for _ in hs])

    results = run_batch_processors_graph(graph, {source: [7, 7, 8]})

    assert descriptors_of(results[source]) == [7, 7, 8]
    assert descriptors_of(results[sink]) == [5, 5, 5]
    assert len(set(results[sink])) == 3
    assert sink.seen == [5, 5, 5]


@pytest.mark.parametrize("kind", KINDS)
def test_a_processor_is_reused_by_a_second_run_on_a_new_loop(kind):
    processor = kind(fn=lambda x: (x, asyncio.get_event_loop() if kind in (Separate, Sequential)
                                   else None))
    first = run_batch_processor(processor, [1, 2])
    second = run_batch_processor(processor, [3])
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(processor, Separate(identity), results_as_values)
    third = run_batch_processors_graph(graph, {processor: [4]})[processor]

    assert [sorted(h.future.result()[0] for h in run) for run in (first, second, third)] == [
        [1, 2], [3], [4]]
    assert processor.state is ProcessorState.IDLE
    if kind in (Separate, Sequential):
        loops = [h.future.result()[1] for h in first + second + third]
        assert len(set(loops)) == 3  # a loop of its own per run...
        assert all(event_loop.is_closed() for event_loop in loops)  # ...closed at its end


def test_async_runners_inside_a_running_loop(loop):
    source, sink = Separate(), SeparateSync(fn=lambda x: x * 10)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, results_as_values)
    alone, first, second = Sequential(), Separate(), SeparateSync()

    @coroutine
    def main():
        results = yield From(run_batch_processors_graph_async(graph, {source: [1, 2]}))
        handles = yield From(run_batch_processor_async(alone, [5, 6]))
        both = yield From(asyncio.gather(run_batch_processor_async(first, [1]),
                                         run_batch_processor_async(second, [2])))
        raise Return((results, handles, both))

    results, handles, both = loop.run_until_complete(main())

    assert list(results) == [source, sink]
    assert results_of(results[source]) == {1: 2, 2: 3}
    assert results_of(results[sink]) == {2: 20, 3: 30}
    assert results_of(handles) == {5: 6, 6: 7}
    assert [results_of(h) for h in both] == [{1: 2}, {2: 3}]
    assert not loop.is_closed()  # the caller's loop is the caller's


def test_sync_runners_refuse_to_run_inside_a_running_loop(loop):
    processor = Separate()
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    attempts = [
        ("run_batch_processor_async", lambda: run_batch_processor(processor, [1])),
        ("run_batch_processor_async", lambda: run_batch_processor_single(processor, 1)),
        ("run_batch_processors_graph_async",
         lambda: run_batch_processors_graph(graph, {processor: [1]})),
    ]

    @coroutine
    def main():
        messages = []
        for expected, attempt in attempts:
            try:
                attempt()
            except RuntimeError as exc:
                messages.append((expected, str(exc)))
            yield From(asyncio.sleep(0))
        raise Return(messages)

    messages = loop.run_until_complete(main())

    assert len(messages) == 3
    for expected, message in messages:
        assert "_async" in message and expected in message
    assert processor.seen == [] and processor.state is ProcessorState.IDLE


@pytest.mark.usefixtures("restore_current_loop")
def test_sync_runner_leaves_the_callers_current_loop_as_found():
    mine = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(mine)
        handles = run_batch_processor(Separate(fn=lambda x: asyncio.get_event_loop()), [1])
        assert asyncio.get_event_loop() is mine
        assert not mine.is_closed() and not mine.is_running()
        used = handles[0].future.result()
        assert used is not mine and used.is_closed()  # the run had a loop of its own

        asyncio.set_event_loop(None)
        run_batch_processor(SeparateSync(), [1])
        with pytest.raises(RuntimeError):
            asyncio.get_event_loop()  # still none: the run set none behind our back
    finally:
        asyncio.set_event_loop(None)
        mine.close()


def test_a_processor_runs_in_one_graph_at_a_time(loop):
    gate, all_started = compat.new_future(loop), compat.new_future(loop)
    shared = Gated(gate, all_started, expected=2)
    first_other, second_other = Separate(), Separate()
    first, second = BatchProcessorsGraph(), BatchProcessorsGraph()
    first.add_connected_processors(shared, first_other, results_as_values)
    second.add_connected_processors(shared, second_other, results_as_values)

    @coroutine
    def main():
        run = loop.create_task(run_batch_processors_graph_async(first, {shared: [1, 2]}))
        yield From(all_started)
        refused = None
        try:
            yield From(run_batch_processors_graph_async(second, {second_other: [9]}))
        except ProcessorStateError as exc:
            refused = exc
        assert second_other.seen == []  # nothing of the refused run started
        gate.set_result(None)
        results = yield From(run)
        again = yield From(run_batch_processors_graph_async(second, {shared: [3]}))
        raise Return((refused, results, again))

    refused, results, again = loop.run_until_complete(main())

    assert refused is not None and describe(shared) in str(refused)
    assert results_of(results[shared]) == {1: 1, 2: 2}
    assert results_of(results[first_other]) == {1: 2, 2: 3}
    assert results_of(again[shared]) == {3: 3}  # free again once the first run ended
    assert results_of(again[second_other]) == {3: 4}


# -- run options: timeout, keep_results, progress ------------------------------------

def test_graph_timeout_kills_everything_and_keeps_partial_results(loop_factory):
    source, blocker = Separate(fn=identity), Blocker()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, blocker, results_as_values)

    with pytest.raises(RunTimeoutError) as info:
        run_batch_processors_graph(
            graph, {source: [1, 2], blocker: [10]}, timeout=0.2, loop_factory=loop_factory)

    error = info.value
    assert isinstance(error, BatchProcessorError)
    assert "0.2" in str(error) and "Blocker" in str(error)
    results = error.results
    assert list(results) == [source, blocker]
    assert descriptors_of(results[source]) == [1, 2]
    converted = sorted(h.descriptor for h in results[source] if outcome(h)[0] == "ok")
    assert descriptors_of(results[blocker]) == sorted([10] + converted)
    assert outcomes(results[blocker]) == ["cancelled"] * len(results[blocker])
    assert source.state is ProcessorState.KILLED and blocker.state is ProcessorState.KILLED


def test_run_batch_processor_timeout_results_are_a_list():
    blocker = Blocker()
    with pytest.raises(RunTimeoutError) as info:
        run_batch_processor(blocker, [1, 2, 3], timeout=0.2)
    error = info.value
    assert isinstance(error.results, list)
    assert descriptors_of(error.results) == [1, 2, 3]
    assert outcomes(error.results) == ["cancelled"] * 3
    assert "0.2" in str(error) and "Blocker" in str(error)


def test_async_runner_timeout(loop):
    blocker = Blocker()
    with pytest.raises(RunTimeoutError) as info:
        loop.run_until_complete(run_batch_processor_async(blocker, [1], timeout=0.2))
    assert [outcome(h) for h in info.value.results] == [("cancelled", None)]
    assert blocker.state is ProcessorState.KILLED


def test_a_run_that_ends_in_time_is_not_affected_by_its_timeout():
    handles = run_batch_processor(SeparateSync(), [1, 2], timeout=TIMEOUT)
    assert results_of(handles) == {1: 2, 2: 3}


def test_keep_results_keeps_only_the_named_processors_handles(loop_factory):
    source, sink = Separate(), SeparateSync(fn=lambda x: x * 10)
    graph = BatchProcessorsGraph()
    refs = []

    def remember(*handles):
        refs.extend(weakref.ref(h) for h in handles)
        return results_as_values(*handles)

    graph.add_connected_processors(source, sink, remember)

    results = run_batch_processors_graph(
        graph, {source: [1, 2]}, keep_results=[sink], loop_factory=loop_factory)

    assert list(results) == [source, sink]
    assert results[source] == []
    assert results_of(results[sink]) == {2: 20, 3: 30}
    gc.collect()
    assert len(refs) == 2 and all(ref() is None for ref in refs)  # nothing holds them

    results = run_batch_processors_graph(
        graph, {source: [1]}, keep_results=[source], loop_factory=loop_factory)
    assert results_of(results[source]) == {1: 2} and results[sink] == []
    results = run_batch_processors_graph(graph, {source: [1]}, keep_results=[], loop_factory=loop_factory)
    assert results == {source: [], sink: []}
    assert sink.seen == [2, 3, 2, 2]  # every run did run everything


def test_progress_off_writes_nothing(capfd):
    source, sink = Separate(), SeparateSync()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, results_as_values)
    run_batch_processors_graph(graph, {source: [1, 2]})
    run_batch_processors_graph(graph, {source: [1, 2]}, progress=False)
    run_batch_processor(Sequential(), [1], progress=False)
    run_batch_processor_single(SequentialSync(), 1)
    assert capfd.readouterr() == ("", "")


def test_a_run_with_kills_writes_nothing_without_logging_configured():
    returncode, stdout, stderr = run_script("""
        from batch_processor import (
            BatchProcessorsGraph, RunTimeoutError, SeparateBatchProcessorSynchronous,
            run_batch_processors_graph)
        import threading

        release = threading.Event()

        class Block(SeparateBatchProcessorSynchronous):
            def _run_one_job_synchronous(self, descriptor):
                release.wait(30)
                return descriptor

        block = Block()
        graph = BatchProcessorsGraph()
        graph.add_processor(block)
        try:
            run_batch_processors_graph(graph, {block: [1, 2]}, timeout=0.2)
        except RunTimeoutError as error:
            outcome = [h.future.cancelled() for h in error.results[block]]
        release.set()
        assert outcome == [True, True], outcome
    """)
    assert (returncode, stdout, stderr) == (0, "", "")


# == the contract, case by case ==========================================================

def test_cancelling_an_async_graph_run_kills_every_processor(loop):
    gate = compat.new_future(loop)
    started_a, started_b = compat.new_future(loop), compat.new_future(loop)
    a, b, idle = Gated(gate, started_a, 1), Gated(gate, started_b, 1), Separate()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(a, idle, lambda *hs: [h.descriptor for h in hs])
    graph.add_processor(b)

    @coroutine
    def main():
        task = loop.create_task(run_batch_processors_graph_async(graph, {a: [1], b: [2]}))
        yield From(started_a)
        yield From(started_b)
        task.cancel()
        try:
            yield From(task)
        except CancelledError:
            raise Return("cancelled")
        raise Return("not cancelled")

    assert loop.run_until_complete(main()) == "cancelled"
    for processor in (a, b, idle):
        assert processor.state is ProcessorState.KILLED
        assert processor.in_flight == 0
    assert idle.seen == []


def test_async_graph_runner_timeout(loop):
    source, blocker = Separate(fn=identity), Blocker()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, blocker, lambda *hs: [h.descriptor for h in hs])
    try:
        with pytest.raises(RunTimeoutError) as info:
            loop.run_until_complete(
                run_batch_processors_graph_async(graph, {blocker: [10]}, timeout=0.2))
    finally:
        blocker.release()
    error = info.value
    assert list(error.results) == [source, blocker]
    assert error.results[source] == []
    assert [outcome(h) for h in error.results[blocker]] == [("cancelled", None)]
    assert "0.2" in str(error) and "Blocker" in str(error)
    assert source.state is ProcessorState.KILLED and blocker.state is ProcessorState.KILLED


def test_async_runners_show_progress_on_stderr(loop, capfd):
    processor, sink = Separate(), SequentialSync()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(processor, sink, lambda *hs: [h.future.result() for h in hs])

    @coroutine
    def main():
        yield From(run_batch_processors_graph_async(graph, {processor: [1, 2]}, progress=True))
        handles = yield From(run_batch_processor_async(Separate(), [1], progress=True))
        raise Return(handles)

    loop.run_until_complete(main())
    out, err = capfd.readouterr()
    assert out == ""
    assert "Separate" in err and "SequentialSync" in err
    assert "fed 2, ok 2, failed 0, cancelled 0" in err
    assert "fed 1, ok 1, failed 0, cancelled 0" in err


def test_handles_are_listed_in_the_order_they_were_collected(loop_factory):
    counter = Separate(fn=dec)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(counter, counter,
                                   lambda *hs: [h.future.result() for h in hs if h.future.result()])
    results = run_batch_processors_graph(graph, {counter: [4]}, loop_factory=loop_factory)
    # each step is fed only after the previous handle was collected
    assert [h.descriptor for h in results[counter]] == [4, 3, 2, 1]


def test_runners_drive_a_hand_written_processor_through_wait_ready():
    own = Delegating(Separate(fn=dec))
    other = Separate(fn=identity)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(own, other, lambda *hs: [h.future.result() for h in hs])
    graph.add_connected_processors(other, own, lambda *hs: [h.future.result() for h in hs
                                                           if h.future.result() > 0])
    results = run_batch_processors_graph(graph, {own: [3, 2]})
    assert sorted(h.descriptor for h in results[own]) == [1, 1, 2, 2, 3]
    assert sorted(h.descriptor for h in results[other]) == [0, 0, 1, 1, 2]
    assert all(h.future.result() == h.descriptor - 1 for h in results[own])
    assert [h.descriptor for h in run_batch_processor(own, [5])] == [5]
    assert own.state is ProcessorState.IDLE and own.in_flight == 0


def test_converter_gets_the_handles_of_one_get_ready_together(loop_factory):
    calls = []

    def record(*handles):
        calls.append(sorted(h.descriptor for h in handles))
        return []

    batches = SequentialSync(fn=identity)  # one batch: its handles are ready together
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(batches, Separate(), record)
    run_batch_processors_graph(graph, {batches: [1, 2, 3]}, loop_factory=loop_factory)
    assert batches.batches == [[1, 2, 3]]
    assert calls == [[1, 2, 3]]


def test_a_run_refuses_initial_descriptors_for_a_killed_processor():
    final, other = Separate(), Separate()
    final.kill()
    graph = BatchProcessorsGraph()
    graph.add_processor(other)
    graph.add_processor(final)
    with pytest.raises(ProcessorStateError):
        run_batch_processor(final, [1])
    with pytest.raises(ProcessorStateError):
        run_batch_processors_graph(graph, {other: [1], final: [2]})
    assert final.seen == [] and other.seen == []
    # the graph still runs, and the other processor is free for it
    assert [h.descriptor for h in run_batch_processors_graph(graph, {other: [3]})[other]] == [3]


def test_stop_and_wait_ready_outside_any_loop_in_a_thread_without_one():
    outcomes = []

    def body():  # a thread with no current event loop, as after a synchronous run
        processor = Separate()
        run_batch_processor(processor, [1])
        try:
            processor.wait_ready()
            processor.stop()
            processor.stop()
            processor.kill()
            outcomes.append(processor.state)
        except Exception as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert outcomes == [ProcessorState.STOPPED]
