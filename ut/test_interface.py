"""Tests of ``batch_processor.interface``: handles, states, errors, and the processor contract.

The contract of `AbstractBatchProcessor` (feed_new, get_ready, wait_ready, in_flight,
state, stop, kill, pickling) is checked by driving each of the four concrete kinds
of processor by hand on an event loop. Their jobs wait behind *gates* that the test
opens, so every ordering is forced by the test, never by time.
"""
from __future__ import absolute_import, division, print_function

import logging
import os
import pickle
import threading

import attr
import pytest

from batch_processor import (
    AbstractBatchProcessor, BatchProcessorError, BatchProcessorResultHandle, ConverterError,
    GraphError, JobTimeoutError, ProcessorState, ProcessorStateError, RunTimeoutError,
    SeparateBatchProcessor, SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor import compat
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import (
    PY2, PROCESS_POOLS, TIMEOUT, GatedSeparate, GatedSeparateSync, GatedSequential,
    GatedSequentialSync, RecordingExecutor, a_later_job, RecordingSeparateSync,
    RecordingSequentialSync, callbacks_ran, collect, collect_some, done, flatten,
    new_future, outcome, run)

KINDS = [GatedSeparate, GatedSeparateSync, GatedSequential, GatedSequentialSync]
THREAD_KINDS = [GatedSeparateSync, GatedSequentialSync]
COROUTINE_KINDS = [GatedSeparate, GatedSequential]
BY_KIND = pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)
BY_THREAD_KIND = pytest.mark.parametrize("thread_kind", THREAD_KINDS, ids=lambda cls: cls.__name__)
BY_COROUTINE_KIND = pytest.mark.parametrize(
    "coroutine_kind", COROUTINE_KINDS, ids=lambda cls: cls.__name__)


# == BatchProcessorResultHandle ========================================================

def test_handle_is_an_attrs_class_with_descriptor_and_future():
    assert attr.has(BatchProcessorResultHandle)
    assert [field.name for field in attr.fields(BatchProcessorResultHandle)] == [
        "descriptor", "future"]


def test_handle_fields(loop):
    future = new_future(loop)
    future.set_result(3)
    handle = BatchProcessorResultHandle(descriptor="d", future=future)
    assert handle.descriptor == "d"
    assert handle.future is future
    assert BatchProcessorResultHandle("d", future).future is future


def test_handles_compare_and_hash_by_identity(loop):
    future = new_future(loop)
    future.set_result(None)
    first = BatchProcessorResultHandle(1, future)
    second = BatchProcessorResultHandle(1, future)
    assert first == first
    assert first != second
    assert not (first == second)
    assert len(set([first, second])) == 2
    assert {first: "a", second: "b"}[first] == "a"


def test_handle_future_reports_result_exception_and_cancellation(loop):
    ok, failed, cancelled = new_future(loop), new_future(loop), new_future(loop)
    ok.set_result(5)
    failed.set_exception(KeyError("k"))
    cancelled.cancel()
    assert BatchProcessorResultHandle("a", ok).future.result() == 5
    assert BatchProcessorResultHandle("a", ok).future.exception() is None
    with pytest.raises(KeyError):
        BatchProcessorResultHandle("b", failed).future.result()
    assert isinstance(failed.exception(), KeyError)
    with pytest.raises(compat.CancelledError):
        BatchProcessorResultHandle("c", cancelled).future.result()
    with pytest.raises(compat.CancelledError):
        cancelled.exception()


# == ProcessorState ====================================================================

def test_processor_state_members():
    assert set(state.name for state in ProcessorState) == set(
        ["IDLE", "RUNNING", "STOPPING", "STOPPED", "KILLED"])
    assert len(set(ProcessorState)) == 5


# == AbstractBatchProcessor ============================================================

def test_abstract_batch_processor_cannot_be_instantiated():
    with pytest.raises(TypeError):
        AbstractBatchProcessor()


@pytest.mark.parametrize("base, method", [
    (SeparateBatchProcessor, "_run_one_job"),
    (SeparateBatchProcessorSynchronous, "_run_one_job_synchronous"),
    (SequentialBatchProcessor, "_run_batch"),
    (SequentialBatchProcessorSynchronous, "_run_batch_synchronous"),
], ids=["Separate", "SeparateSynchronous", "Sequential", "SequentialSynchronous"])
def test_subclass_without_its_job_method_names_class_and_method(base, method):
    incomplete = type(str("IncompleteProcessor"), (base,), {})
    with pytest.raises(TypeError) as info:
        incomplete()
    message = str(info.value)
    assert "IncompleteProcessor" in message
    assert method in message


def test_synchronous_subclass_defining_the_coroutine_method_is_still_incomplete():
    def _run_one_job(self, job_descriptor):
        pass

    wrong = type(str("WrongMethodProcessor"), (SeparateBatchProcessorSynchronous,),
                 {"_run_one_job": _run_one_job})
    with pytest.raises(TypeError) as info:
        wrong()
    assert "_run_one_job_synchronous" in str(info.value)


@BY_KIND
def test_processors_are_abstract_batch_processors(loop, gates, kind):
    assert isinstance(kind(gates), AbstractBatchProcessor)


# == errors ============================================================================

@pytest.mark.parametrize("error", [
    ProcessorStateError, GraphError, ConverterError, RunTimeoutError, JobTimeoutError])
def test_errors_derive_from_batch_processor_error(error):
    assert issubclass(error, BatchProcessorError)
    assert issubclass(BatchProcessorError, Exception)
    assert error is not BatchProcessorError


def test_run_timeout_error_keeps_results():
    error = RunTimeoutError("too slow", results=[1, 2])
    assert error.results == [1, 2]
    assert "too slow" in str(error)


# == feed_new ==========================================================================

@BY_KIND
def test_feed_new_accepts_list_tuple_and_generator(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        processor.feed_new((3,))
        processor.feed_new(d for d in [4, 5])
        assert processor.in_flight == 5
        gates.open_all()
        rounds = yield From(collect(processor))
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(h.descriptor for h in handles) == [1, 2, 3, 4, 5]
    assert all(h.future.result() == done(h.descriptor) for h in handles)


@BY_KIND
def test_feed_new_returns_before_the_jobs_end(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        assert gates.finished == []
        assert processor.in_flight == 2
        yield From(gates.wait_started(1))  # the jobs run, blocked behind their gates
        assert gates.finished == []
        assert processor.get_ready() == set()
        gates.open_all()
        rounds = yield From(collect(processor))
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(h.descriptor for h in handles) == [1, 2]
    assert sorted(gates.finished) == [1, 2]


@BY_KIND
def test_feed_new_of_nothing_changes_nothing(loop, gates, kind):
    processor = kind(gates)
    processor.feed_new([])
    assert processor.in_flight == 0
    assert processor.state is ProcessorState.IDLE
    assert processor.get_ready() == set()


@BY_KIND
@pytest.mark.parametrize("not_iterable", [5, None, object()], ids=["int", "None", "object"])
def test_feed_new_of_a_non_iterable_raises_type_error_naming_the_processor(
        loop, gates, kind, not_iterable):
    processor = kind(gates)
    with pytest.raises(TypeError) as info:
        processor.feed_new(not_iterable)
    assert kind.__name__ in str(info.value)
    assert processor.in_flight == 0
    assert processor.state is ProcessorState.IDLE


@BY_KIND
def test_feed_new_after_stop_raises_processor_state_error(loop, gates, kind):
    processor = kind(gates)
    processor.stop()
    with pytest.raises(ProcessorStateError) as info:
        processor.feed_new([1])
    assert kind.__name__ in str(info.value)
    assert processor.in_flight == 0


@BY_KIND
def test_feed_new_while_stopping_raises_processor_state_error(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        stopped = processor.stop()
        with pytest.raises(ProcessorStateError) as info:
            processor.feed_new([2])
        assert kind.__name__ in str(info.value)
        gates.open_all()
        rounds = yield From(collect(processor))
        yield From(stopped)
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert [h.descriptor for h in handles] == [1]
    assert gates.started == [1]


@BY_KIND
def test_feed_new_after_kill_raises_processor_state_error(loop, gates, kind):
    processor = kind(gates)
    processor.kill()
    with pytest.raises(ProcessorStateError) as info:
        processor.feed_new([1])
    assert kind.__name__ in str(info.value)
    assert processor.in_flight == 0


def test_kill_cancels_the_executor_futures_of_jobs_not_started_yet(loop, gates):
    processor = RecordingSeparateSync(gates)          # no cap: both jobs are submitted
    processor.executor = RecordingExecutor(1)         # one worker: job 2 waits in its queue

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        yield From(gates.wait_started(1))
        processor.kill()
        killed = processor.get_ready()
        gates.open_all()                               # job 1's thread ends (abandoned)
        yield From(callbacks_ran(loop, processor.executor.futures))
        yield From(a_later_job(processor))             # a thread job handed back after them
        raise Return(killed)

    try:
        killed = run(loop, scenario())
    finally:
        processor.executor.shutdown(wait=False)
    assert sorted(h.descriptor for h in killed) == [1, 2]
    assert all(h.future.cancelled() for h in killed)
    first, second = processor.executor.futures
    assert second.cancelled()                          # the work behind job 2 was cancelled...
    assert gates.started == [1]                        # ...so it never ran
    assert processor.get_ready() == set()


# == get_ready =========================================================================

@BY_KIND
def test_get_ready_returns_each_handle_exactly_once(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 1, 2, 3])
        ready = processor.get_ready()
        assert isinstance(ready, set) and not ready  # never blocks
        yield From(gates.wait_started(1))
        assert processor.get_ready() == set()
        gates.open_all()
        rounds = yield From(collect(processor))
        raise Return(rounds)

    rounds = run(loop, scenario())
    assert all(isinstance(ready, set) for ready in rounds)
    handles = flatten(rounds)
    assert len(handles) == 4
    assert len(set(handles)) == 4  # never twice, even for equal descriptors
    assert sorted(h.descriptor for h in handles) == [1, 1, 2, 3]
    assert all(h.future.done() for h in handles)
    assert all(h.future.result() == done(h.descriptor) for h in handles)
    assert processor.get_ready() == set()
    assert processor.in_flight == 0


def test_get_ready_returns_failed_jobs_too(loop):
    class Failing(SeparateBatchProcessor):
        @coroutine
        def _run_one_job(self, job_descriptor):
            yield From(asyncio.sleep(0))
            if job_descriptor == "bad":
                raise KeyError(job_descriptor)
            raise Return(job_descriptor)

    processor = Failing()
    processor.feed_new(["good", "bad"])
    handles = dict((h.descriptor, h) for h in flatten(run(loop, collect(processor))))
    assert handles["good"].future.result() == "good"
    assert isinstance(handles["bad"].future.exception(), KeyError)
    with pytest.raises(KeyError):
        handles["bad"].future.result()


# == wait_ready ========================================================================

@BY_KIND
def test_wait_ready_completes_when_nothing_is_in_flight(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        yield From(processor.wait_ready())
        raise Return(processor.get_ready())

    assert run(loop, scenario()) == set()


@BY_KIND
def test_wait_ready_completes_when_a_job_ends(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        waiter = asyncio.ensure_future(processor.wait_ready())
        yield From(gates.wait_started(1))
        yield From(a_later_job(kind))  # a whole job of another processor came and went
        assert not waiter.done()  # the job is blocked: nothing is ready
        gates.open(1)
        yield From(waiter)
        ready = processor.get_ready()
        # a handle is ready but not collected: wait_ready completes again at once
        raise Return(ready)

    ready = run(loop, scenario())
    assert [h.descriptor for h in ready] == [1]


@BY_KIND
def test_wait_ready_completes_while_handles_wait_to_be_collected(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        gates.open_all()
        yield From(processor.wait_ready())
        yield From(processor.wait_ready())  # still ready: nothing was collected
        raise Return(processor.get_ready())

    assert [h.descriptor for h in run(loop, scenario())] == [1]


@BY_KIND
def test_wait_ready_completes_when_a_kill_empties_the_processor(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        waiter = asyncio.ensure_future(processor.wait_ready())
        yield From(a_later_job(kind))
        assert not waiter.done()
        processor.kill()
        yield From(waiter)
        raise Return(processor.get_ready())

    [handle] = run(loop, scenario())
    assert handle.future.cancelled()


# == in_flight and state ===============================================================

@BY_KIND
def test_in_flight_counts_fed_and_not_yet_returned(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        assert processor.in_flight == 0
        processor.feed_new([1, 2, 3])
        assert processor.in_flight == 3
        yield From(gates.wait_started(1))
        assert processor.in_flight == 3
        gates.open_all()
        yield From(processor.wait_ready())
        assert processor.in_flight == 3  # ended, but not returned by get_ready() yet
        returned = len(processor.get_ready())
        assert returned >= 1
        assert processor.in_flight == 3 - returned
        yield From(collect(processor))
        assert processor.in_flight == 0

    run(loop, scenario())


@BY_KIND
def test_state_goes_idle_running_idle(loop, gates, kind):
    processor = kind(gates)
    states = []

    @coroutine
    def scenario():
        states.append(processor.state)
        processor.feed_new([1, 2])
        states.append(processor.state)
        yield From(gates.wait_started(1))
        states.append(processor.state)
        gates.open_all()
        yield From(processor.wait_ready())
        states.append(processor.state)  # handles not collected yet: still in flight
        yield From(collect(processor))
        states.append(processor.state)

    assert processor.state is ProcessorState.IDLE
    run(loop, scenario())
    assert states == [ProcessorState.IDLE, ProcessorState.RUNNING, ProcessorState.RUNNING,
                      ProcessorState.RUNNING, ProcessorState.IDLE]


# == stop ==============================================================================

@BY_KIND
def test_stop_with_nothing_in_flight_is_stopped_at_once(loop, gates, kind):
    processor = kind(gates)
    stopped = processor.stop()
    assert processor.state is ProcessorState.STOPPED
    run(loop, _await(stopped))
    assert processor.state is ProcessorState.STOPPED


@coroutine
def _await(awaitable):
    result = yield From(awaitable)
    raise Return(result)


@BY_KIND
def test_stop_lets_fed_jobs_run_to_the_end(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        yield From(gates.wait_started(1))
        stopped = asyncio.ensure_future(_await(processor.stop()))
        assert processor.state is ProcessorState.STOPPING
        yield From(a_later_job(kind))
        assert not stopped.done()
        assert processor.state is ProcessorState.STOPPING
        gates.open_all()
        rounds = yield From(collect(processor))
        yield From(stopped)
        assert processor.state is ProcessorState.STOPPED
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", done(1)), ("ok", done(2))]


@BY_KIND
def test_stop_awaitable_is_done_when_a_kill_ends_the_jobs(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        yield From(gates.wait_started(1))
        stopped = asyncio.ensure_future(_await(processor.stop()))
        yield From(a_later_job(kind))
        assert not stopped.done()
        processor.kill()
        yield From(stopped)
        assert processor.state is ProcessorState.KILLED
        raise Return(processor.get_ready())

    handles = run(loop, scenario())
    assert sorted(h.descriptor for h in handles) == [1, 2]
    assert all(h.future.cancelled() for h in handles)


@BY_KIND
def test_stop_and_kill_of_a_stopped_processor_change_nothing(loop, gates, kind):
    processor = kind(gates)
    processor.stop()
    assert processor.state is ProcessorState.STOPPED
    run(loop, _await(processor.stop()))
    assert processor.state is ProcessorState.STOPPED
    processor.kill()
    assert processor.state is ProcessorState.STOPPED
    assert processor.get_ready() == set()
    assert processor.in_flight == 0


@BY_KIND
def test_stop_and_kill_of_a_killed_processor_change_nothing(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        processor.kill()
        first = processor.get_ready()
        processor.kill()
        yield From(processor.stop())
        assert processor.state is ProcessorState.KILLED
        raise Return((first, processor.get_ready()))

    first, second = run(loop, scenario())
    assert [h.descriptor for h in first] == [1]
    assert second == set()  # never twice
    assert processor.in_flight == 0


# == kill ==============================================================================

@BY_KIND
def test_kill_cancels_every_unfinished_job_at_once(loop, gates, kind):
    processor = kind(gates, **({"max_batch_size": 2} if "Sequential" in kind.__name__ else
                               {"max_parallel_jobs": 2}))

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3, 4, 5])
        yield From(gates.wait_started(1))
        gates.open(1)  # Separate: job 1 ends; Sequential: batch [1, 2] ends
        rounds = yield From(collect_some(processor))
        yield From(gates.wait_started(3))  # Separate: 2 and 3 run; Sequential: [3, 4]
        processor.kill()
        # no turn of the loop in between: the cancelled handles are ready now
        killed = processor.get_ready()
        assert processor.in_flight == 0
        assert processor.state is ProcessorState.KILLED
        raise Return((flatten(rounds), killed))

    finished, killed = run(loop, scenario())
    assert all(outcome(h) == ("ok", done(h.descriptor)) for h in finished)
    assert sorted(h.descriptor for h in finished + list(killed)) == [1, 2, 3, 4, 5]
    assert killed
    for handle in killed:
        assert handle.future.done() and handle.future.cancelled()
        with pytest.raises(compat.CancelledError):
            handle.future.result()
        with pytest.raises(compat.CancelledError):
            handle.future.exception()


@BY_COROUTINE_KIND
def test_kill_asks_running_tasks_to_cancel(loop, gates, coroutine_kind):
    processor = coroutine_kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        yield From(gates.wait_started(1))
        started = list(gates.started)
        processor.kill()
        yield From(gates.wait_ended(len(started)))  # the started jobs are over, somehow
        raise Return(started)

    started = run(loop, scenario())
    assert sorted(gates.cancelled) == sorted(started)
    assert gates.finished == []
    assert gates.running == 0


@pytest.mark.parametrize("cls", [RecordingSeparateSync, RecordingSequentialSync],
                         ids=["Separate", "Sequential"])
def test_kill_abandons_a_job_running_in_a_thread_and_discards_its_late_result(loop, gates, cls):
    processor = cls(gates)
    processor.executor = RecordingExecutor(2)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        assert gates.running == 1
        processor.kill()
        killed = processor.get_ready()
        assert gates.running == 1  # still blocked in its thread: abandoned
        gates.open_all()  # the thread goes on and returns its (late) result
        yield From(callbacks_ran(loop, processor.executor.futures))
        yield From(a_later_job(processor))  # a thread job handed back after the late one
        late = processor.get_ready()
        raise Return((killed, late))

    try:
        killed, late = run(loop, scenario())
    finally:
        processor.executor.shutdown(wait=False)
    assert [h.descriptor for h in killed] == [1]
    [handle] = killed
    assert handle.future.cancelled()
    assert late == set()  # discarded
    assert gates.finished == [1]  # the thread did end
    assert processor.executor.futures[0].result() is not None
    assert processor.in_flight == 0
    assert processor.state is ProcessorState.KILLED


def test_late_result_after_the_loop_closed_is_dropped_quietly(gates, caplog):
    own_loop = gates.loop
    processor = RecordingSeparateSync(gates)
    processor.executor = RecordingExecutor(1)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        processor.kill()
        raise Return(processor.get_ready())

    [handle] = run(own_loop, scenario())
    assert handle.future.cancelled()
    # the loop is then closed (as a killed run does) while the thread still runs,
    # once a later job came and went (the killed job's task is over by then)
    run(own_loop, a_later_job(processor))
    own_loop.close()
    callbacks_done = threading.Event()
    [executor_future] = processor.executor.futures
    with caplog.at_level(logging.DEBUG):
        gates.open_all()
        executor_future.add_done_callback(lambda _: callbacks_done.set())
        assert callbacks_done.wait(TIMEOUT)
    processor.executor.shutdown(wait=False)
    assert executor_future.result() == done(1)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


def test_kill_cancels_queued_jobs_that_never_started(loop, gates):
    processor = GatedSeparate(gates, max_parallel_jobs=1)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(1))
        processor.kill()
        killed = processor.get_ready()
        yield From(gates.wait_ended(1))  # job 1 is over: its slot is free...
        yield From(a_later_job(processor))  # ...and a queued job would have started by now
        raise Return(killed)

    killed = run(loop, scenario())
    assert sorted(h.descriptor for h in killed) == [1, 2, 3]
    assert all(h.future.cancelled() for h in killed)
    assert gates.started == [1]  # the queued ones never start


# == loops =============================================================================

@BY_KIND
def test_processor_is_created_outside_a_loop_and_runs_on_successive_loops(loop, gates, kind):
    processor = kind(gates)  # no loop is running
    gates.open_all()
    for descriptors in ([1, 2], [3]):
        own_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(own_loop)
        gates.loop = own_loop
        try:
            processor.feed_new(descriptors)
            handles = flatten(run(own_loop, collect(processor)))
            run(own_loop, a_later_job(kind))  # the jobs' tasks are over before the close
        finally:
            own_loop.close()
            asyncio.set_event_loop(loop)
            gates.loop = loop
        assert sorted(outcome(h) for h in handles) == [("ok", done(d)) for d in descriptors]
        assert processor.state is ProcessorState.IDLE


# == pickling ==========================================================================

def _pickle_roundtrip(processor):
    return pickle.loads(pickle.dumps(processor, pickle.HIGHEST_PROTOCOL))


@BY_KIND
def test_fresh_processor_pickles(gates, kind):
    copy = _pickle_roundtrip(kind(gates))
    assert type(copy) is kind
    assert copy.state is ProcessorState.IDLE
    assert copy.in_flight == 0


@pytest.mark.parametrize("options", [
    {"max_parallel_jobs": 3, "job_timeout": 12.5},
    {"max_batch_size": 4},
], ids=["separate", "sequential"])
def test_pickling_keeps_the_options(gates, options):
    cls = GatedSeparateSync if "max_parallel_jobs" in options else GatedSequentialSync
    copy = _pickle_roundtrip(cls(gates, **options))
    for name, value in options.items():
        assert getattr(copy, name) == value


@BY_KIND
def test_processor_pickles_with_jobs_in_flight_and_after_a_run(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        gates.open(1)
        yield From(collect(processor))  # a run happened on this loop
        processor.feed_new([2, 3])
        yield From(gates.wait_started(1))
        copy = _pickle_roundtrip(processor)  # jobs in flight
        assert copy.in_flight == 0
        assert copy.state is ProcessorState.IDLE
        assert processor.in_flight == 2
        gates.open_all()
        yield From(collect(processor))
        after = _pickle_roundtrip(processor)  # after the run
        assert after.state is ProcessorState.IDLE
        # the copies are processors that work, on the same loop
        copy.feed_new([4])
        after.feed_new([5])
        handles = flatten((yield From(collect(copy)))) + flatten((yield From(collect(after))))
        raise Return(handles)

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", done(4)), ("ok", done(5))]


@BY_THREAD_KIND
def test_pickled_processor_holds_no_loop_future_or_lock(loop, gates, thread_kind):
    processor = thread_kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1])
        yield From(gates.wait_started(1))
        raise Return(pickle.dumps(processor, 0))

    data = run(loop, scenario())
    gates.open_all()
    run(loop, collect(processor))
    for forbidden in (b"Future", b"EventLoop", b"lock", b"Thread", b"Executor"):
        assert forbidden not in data


# == process pools =====================================================================

class _PicklingCheck(object):
    """A process pool that refuses, at submit, a job it could not pickle.

    The ``futures`` backport of Python 2.7 loses such a job and waits for it forever;
    with this wrapper the job fails instead, and the test fails instead of hanging.
    """

    def __init__(self, pool):
        self.pool = pool

    def submit(self, fn, *args, **kwargs):
        pickle.dumps((fn, args, kwargs), pickle.HIGHEST_PROTOCOL)
        return self.pool.submit(fn, *args, **kwargs)


def _current_process_pool():
    pool = PROCESS_POOLS[-1]
    return _PicklingCheck(pool) if PY2 else pool


class SquareInProcesses(SeparateBatchProcessorSynchronous):
    @property
    def _executor(self):
        return _current_process_pool()

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor < 0:
            raise ValueError("negative %r" % (job_descriptor,))
        return job_descriptor * job_descriptor, os.getpid()


class BatchSquareInProcesses(SequentialBatchProcessorSynchronous):
    @property
    def _executor(self):
        return _current_process_pool()

    def _run_batch_synchronous(self, job_descriptors):
        return [(d * d, os.getpid()) for d in job_descriptors]


def test_separate_processor_runs_in_a_process_pool(process_pool):
    handles = run_batch_processor(SquareInProcesses(max_parallel_jobs=2), [1, 2, 3, -1])
    outcomes = dict((h.descriptor, h.future) for h in handles)
    assert sorted(outcomes) == [-1, 1, 2, 3]
    for descriptor in (1, 2, 3):
        square, pid = outcomes[descriptor].result()
        assert square == descriptor * descriptor
        assert pid != os.getpid()
    assert isinstance(outcomes[-1].exception(), ValueError)

def test_sequential_processor_runs_in_a_process_pool(process_pool):
    processor = BatchSquareInProcesses(max_batch_size=2)
    handles = run_batch_processor(processor, [1, 2, 3])
    results = dict((h.descriptor, h.future.result()) for h in handles)
    assert sorted((d, square) for d, (square, _) in results.items()) == [(1, 1), (2, 4), (3, 9)]
    assert all(pid != os.getpid() for _, pid in results.values())
