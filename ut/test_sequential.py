"""Tests of ``batch_processor.sequential``: one worker running batches, one after another.

A batch waits behind the *gate* of its first descriptor, which the test opens (a loop
future for ``_run_batch`` coroutines, a `threading.Event` for batches in threads), so
every ordering is forced by the test, never by time.
"""
from __future__ import absolute_import, division, print_function

import gc
import logging
import threading
from concurrent.futures import Executor

import pytest

from batch_processor import (
    ProcessorState, SequentialBatchProcessor, SequentialBatchProcessorSynchronous,
    UnsafeThreadPoolExecutor, run_batch_processor)
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import (
    TIMEOUT, ErrorRecords, GatedSequential, GatedSequentialSync, a_later_job, collect, collect_some,
    descriptors_of, done, flatten, outcome, run)


KINDS = [GatedSequential, GatedSequentialSync]
BY_KIND = pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)


# == batches ===========================================================================

@BY_KIND
def test_batches_run_in_feed_order_and_later_feeds_wait_for_the_next_batch(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(3))
        assert gates.batches == [[1, 2, 3]]
        processor.feed_new([4, 5])  # fed while the batch runs
        processor.feed_new([6])
        yield From(a_later_job(kind))  # a second batch would have started by now
        assert gates.batches == [[1, 2, 3]]  # one worker: no second batch meanwhile
        assert processor.get_ready() == set()
        gates.open(1)
        first = yield From(collect_some(processor))
        yield From(gates.wait_started(6))
        assert gates.batches == [[1, 2, 3], [4, 5, 6]]
        gates.open(4)
        rest = yield From(collect(processor))
        raise Return((first, rest))

    first, rest = run(loop, scenario())
    # the batch's handles are ready together, when the batch ends
    assert [descriptors_of(ready) for ready in first] == [[1, 2, 3]]
    assert [descriptors_of(ready) for ready in rest] == [[4, 5, 6]]
    assert all(outcome(h) == ("ok", done(h.descriptor)) for h in flatten(first + rest))
    assert gates.max_running == 1


@BY_KIND
def test_max_batch_size_caps_every_batch(loop, gates, kind):
    processor = kind(gates, max_batch_size=2)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3, 4, 5])
        for count, first in ((2, 1), (4, 3), (5, 5)):
            yield From(gates.wait_started(count))
            yield From(a_later_job(kind))  # a bigger batch would have started by now
            assert gates.started == list(range(1, count + 1))
            gates.open(first)
            ready = yield From(collect_some(processor))
            assert [descriptors_of(r) for r in ready] == [list(range(first, count + 1))]
        assert processor.in_flight == 0

    run(loop, scenario())
    assert gates.batches == [[1, 2], [3, 4], [5]]
    assert gates.max_running == 1


@BY_KIND
def test_max_batch_size_with_every_gate_open(loop, gates, kind):
    processor = kind(gates, max_batch_size=3)
    gates.open_all()
    processor.feed_new(range(8))
    handles = flatten(run(loop, collect(processor)))
    assert descriptors_of(handles) == list(range(8))
    assert gates.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert gates.max_running == 1


@BY_KIND
def test_without_max_batch_size_a_batch_takes_everything_queued(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new(["a"])
        yield From(gates.wait_started(1))
        processor.feed_new(range(50))
        processor.feed_new(["b", "c"])
        gates.open("a")
        yield From(gates.wait_started(53))
        gates.open(0)
        yield From(collect(processor))

    run(loop, scenario())
    assert gates.batches == [["a"], list(range(50)) + ["b", "c"]]


@BY_KIND
def test_results_go_to_their_descriptors_in_order(loop, gates, kind):
    processor = kind(gates)
    gates.open_all()
    processor.feed_new([3, 1, 2, 1])
    handles = flatten(run(loop, collect(processor)))
    assert len(handles) == 4 and len(set(handles)) == 4
    assert sorted(outcome(h) for h in handles) == [("ok", done(d)) for d in (1, 1, 2, 3)]
    assert all(outcome(h) == ("ok", done(h.descriptor)) for h in handles)


@BY_KIND
def test_stop_lets_the_running_and_the_queued_batches_end(loop, gates, kind):
    processor = kind(gates, max_batch_size=1)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(1))
        stopped = processor.stop()
        assert processor.state is ProcessorState.STOPPING
        gates.open_all()
        rounds = yield From(collect(processor))
        yield From(stopped)
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", done(1)), ("ok", done(2)), ("ok", done(3))]
    assert gates.batches == [[1], [2], [3]]
    assert processor.state is ProcessorState.STOPPED


@BY_KIND
def test_kill_cancels_the_running_batch_and_the_queued_descriptors(loop, gates, kind):
    processor = kind(gates, max_batch_size=2)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3, 4, 5])
        yield From(gates.wait_started(2))
        processor.kill()
        killed = processor.get_ready()
        gates.open(1)  # a thread batch ends now; a coroutine one was cancelled
        yield From(gates.wait_ended(2))  # the batch [1, 2] is over: the worker is free...
        yield From(a_later_job(kind))  # ...and a next batch would have started by now
        raise Return(killed)

    killed = run(loop, scenario())
    assert descriptors_of(killed) == [1, 2, 3, 4, 5]
    assert all(h.future.cancelled() for h in killed)
    assert gates.batches == [[1, 2]]  # no batch starts after the kill
    if kind is GatedSequential:
        assert gates.cancelled == [1, 2]  # the batch's coroutine was cancelled


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_max_batch_size_must_be_a_positive_integer(value):
    with pytest.raises((ValueError, TypeError)) as info:
        Scripted([], max_batch_size=value)
    assert "max_batch_size" in str(info.value)


# == failures of the batch function ====================================================

class Boom(Exception):
    pass


def tens(descriptors):
    return [d * 10 for d in descriptors]


class Scripted(SequentialBatchProcessor):
    """Batch k follows ``script[k]``: ``("raise", e)`` raises ``e`` in the coroutine,
    ``("raise now", e)`` raises it before making one, ``("return", f)`` returns
    ``f(descriptors)``, ``("not a coroutine", v)`` returns ``v`` instead of a coroutine.
    """

    def __init__(self, script, **options):
        super(Scripted, self).__init__(**options)
        self.script = list(script)
        self.batches = []

    def _run_batch(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        action, argument = self.script.pop(0)
        if action == "raise now":
            raise argument
        if action == "not a coroutine":
            return argument
        return self._batch(action, argument, job_descriptors)

    @coroutine
    def _batch(self, action, argument, job_descriptors):
        yield From(asyncio.sleep(0))
        if action == "raise":
            raise argument
        raise Return(argument(job_descriptors))


class ScriptedSync(SequentialBatchProcessorSynchronous):
    """The same in a thread (``"raise now"`` is ``"raise"`` there)."""

    def __init__(self, script, **options):
        super(ScriptedSync, self).__init__(**options)
        self.script = list(script)
        self.batches = []

    def _run_batch_synchronous(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        action, argument = self.script.pop(0)
        if action in ("raise", "raise now"):
            raise argument
        return argument(job_descriptors)


BY_SCRIPTED = pytest.mark.parametrize("scripted", [Scripted, ScriptedSync], ids=["coroutine", "thread"])


def _outcomes(handles):
    return dict((h.descriptor, h.future) for h in handles)


@BY_SCRIPTED
@pytest.mark.parametrize("action", ["raise", "raise now"])
def test_a_raising_batch_fails_every_job_of_the_batch_with_that_exception(scripted, action):
    error = Boom("the whole batch")
    processor = scripted([(action, error), ("return", tens)], max_batch_size=2)
    handles = run_batch_processor(processor, [1, 2, 3, 4])
    futures = _outcomes(handles)
    assert processor.batches == [[1, 2], [3, 4]]
    assert futures[1].exception() is error
    assert futures[2].exception() is error
    with pytest.raises(Boom):
        futures[1].result()
    # the processor goes on with the next batch
    assert futures[3].result() == 30 and futures[4].result() == 40


@BY_SCRIPTED
@pytest.mark.parametrize("returned", [5, 1, 0], ids=["too many", "too few", "none"])
def test_a_batch_returning_the_wrong_number_of_results_fails_with_value_error(scripted, returned):
    processor = scripted([("return", lambda ds: list(range(returned))), ("return", tens)],
                         max_batch_size=3)
    handles = run_batch_processor(processor, [1, 2, 3, 4])
    futures = _outcomes(handles)
    errors = [futures[d].exception() for d in (1, 2, 3)]
    for error in errors:
        assert isinstance(error, ValueError)
        message = str(error)
        assert scripted.__name__ in message
        assert str(returned) in message and "3" in message
    assert futures[4].result() == 40


@pytest.mark.parametrize("returned", [
    None, 42, "ab", (d for d in "ab"), set([1, 2]), {1: 1, 2: 2},
], ids=["None", "int", "str", "generator", "set", "dict"])
@BY_SCRIPTED
def test_a_batch_returning_no_list_fails_with_type_error(scripted, returned):
    processor = scripted([("return", lambda ds: returned), ("return", tens)], max_batch_size=2)
    handles = run_batch_processor(processor, [1, 2, 3])
    futures = _outcomes(handles)
    for descriptor in (1, 2):
        error = futures[descriptor].exception()
        assert isinstance(error, TypeError)
        assert scripted.__name__ in str(error)
    assert futures[3].result() == 30


def test_run_batch_returning_no_coroutine_fails_the_batch():
    processor = Scripted([("not a coroutine", [10, 20]), ("return", tens)], max_batch_size=2)
    handles = run_batch_processor(processor, [1, 2, 3])
    futures = _outcomes(handles)
    for descriptor in (1, 2):
        error = futures[descriptor].exception()
        assert isinstance(error, TypeError)
        assert "Scripted" in str(error) and "_run_batch" in str(error)
    assert futures[3].result() == 30


@BY_SCRIPTED
def test_run_batch_gets_a_list_of_descriptors(scripted):
    seen = []

    def record(descriptors):
        seen.append(type(descriptors))
        return tens(descriptors)

    run_batch_processor(scripted([("return", record)]), (d for d in [1, 2]))
    assert seen == [list]


# == executors =========================================================================

class CountingReads(SequentialBatchProcessorSynchronous):
    """Counts how often ``_executor`` is read; every read gives the same pool."""

    def __init__(self, **options):
        super(CountingReads, self).__init__(**options)
        self.reads = 0
        self.batches = []
        self.pool = UnsafeThreadPoolExecutor(1)

    @property
    def _executor(self):
        self.reads += 1
        return self.pool

    def _run_batch_synchronous(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        return tens(job_descriptors)


@pytest.mark.parametrize("max_batch_size, batches", [(1, 5), (2, 3), (None, 1)])
def test_executor_is_read_once_per_batch(max_batch_size, batches):
    processor = CountingReads(max_batch_size=max_batch_size)
    try:
        handles = run_batch_processor(processor, range(5))
    finally:
        processor.pool.shutdown(wait=True)
    assert sorted(h.future.result() for h in handles) == tens(range(5))
    assert len(processor.batches) == batches
    assert processor.reads == batches


class Threads(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return [threading.current_thread()] * len(job_descriptors)


def test_default_executor_is_a_single_thread_pool_owned_by_the_processor():
    processor = Threads(max_batch_size=1)
    executor = processor._executor
    assert isinstance(executor, Executor)
    assert processor._executor is executor
    handles = run_batch_processor(processor, range(4))
    handles += run_batch_processor(processor, range(2))
    threads = set(h.future.result() for h in handles)
    assert len(threads) == 1  # every batch, of every run, in the same thread
    assert threading.current_thread() not in threads
    assert processor._executor is executor
    # one worker: with it busy, another job waits
    release = threading.Event()
    busy = executor.submit(release.wait, TIMEOUT)
    waiting = executor.submit(threading.current_thread)
    try:
        assert not waiting.running() and not waiting.done()
    finally:
        release.set()
    assert busy.result(TIMEOUT)
    assert waiting.result(TIMEOUT) in threads


def test_two_processors_do_not_share_their_worker():
    release = threading.Event()
    first, second = Threads(), Threads()
    busy = first._executor.submit(release.wait, TIMEOUT)
    try:
        # the second processor runs while the first one's worker is busy
        [handle] = run_batch_processor(second, ["x"])
        assert handle.future.result() is not None
    finally:
        release.set()
    assert busy.result(TIMEOUT)


# == regressions =======================================================================

# Python 3.6 in debug mode wraps coroutines in a CoroWrapper, which once went through
# an extra wrapper task: killed before its first step, the batch was never awaited.
@pytest.mark.allow_asyncio_errors  # the test checks the asyncio log itself
def test_kill_before_a_batch_took_its_first_step_leaves_no_unawaited_coroutine(loop, gates):
    errors = ErrorRecords()
    logging.getLogger("asyncio").addHandler(errors)
    processor = GatedSequential(gates, max_batch_size=1)

    @coroutine
    def scenario():
        processor.feed_new([1, 2])
        yield From(gates.wait_started(1))
        gates.open(1)
        # batch [1] ends; batch [2] is launched in the same callback, and killed at once
        yield From(collect_some(processor))
        processor.kill()
        yield From(a_later_job(processor))  # the killed batch's task is over by then
        raise Return(processor.get_ready())

    try:
        [handle] = run(loop, scenario())
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(errors)
    assert handle.future.cancelled()
    assert [record.getMessage() for record in errors.records] == []
