"""Tests of ``batch_processor.sequential``: one worker running batches, one after another.

A batch waits behind the *gate* of its first descriptor, which the test opens (a loop
future for ``_run_batch`` coroutines, a `threading.Event` for batches in threads), so
every ordering is forced by the test, never by time.
"""
from __future__ import absolute_import, division, print_function

import gc
import itertools
import logging
import sys
import threading
from concurrent.futures import Executor

import pytest

from batch_processor import (
    ProcessorState, SequentialBatchProcessor, SequentialBatchProcessorSynchronous,
    UnsafeThreadPoolExecutor, run_batch_processor)
from batch_processor.compat import CancelledError, From, Return, asyncio, coroutine

PY2 = sys.version_info[0] == 2
TIMEOUT = 30  # seconds; a safety net against hangs, never a measurement


# -- the loop --------------------------------------------------------------------------

def _pending_tasks(loop):
    if sys.version_info >= (3, 7):
        tasks = asyncio.all_tasks(loop)
    else:
        tasks = asyncio.Task.all_tasks(loop)
    return [task for task in tasks if not task.done()]


def _settle(loop):
    """Let the tasks that were just cancelled end (a few turns of the loop)."""
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def loop():
    """A fresh debug event loop, current for the test; fails the test if it leaves tasks."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    asyncio.set_event_loop(loop)
    leftovers = []
    try:
        yield loop
        if not loop.is_closed():  # a test may close it, as a killed run does
            _settle(loop)
            leftovers = _pending_tasks(loop)
    finally:
        if not loop.is_closed():
            tasks = _pending_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()
        asyncio.set_event_loop(None)
    assert not leftovers, "the test left pending tasks: %r" % (leftovers,)


def new_future(loop):
    if PY2:
        return asyncio.Future(loop=loop)
    return loop.create_future()


def run(loop, coro):
    """Run ``coro`` on ``loop`` to its end and return its value (`TIMEOUT` as a safety net)."""
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


@coroutine
def spin(turns=5):
    """Give the loop a few turns, for checks that something did NOT happen."""
    for _ in range(turns):
        yield From(asyncio.sleep(0))


@coroutine
def collect(processor):
    """Drive ``processor`` until nothing is in flight; return each non-empty get_ready()."""
    rounds = []
    while processor.in_flight:
        yield From(processor.wait_ready())
        ready = processor.get_ready()
        if ready:
            rounds.append(ready)
    raise Return(rounds)


def flatten(rounds):
    return [handle for ready in rounds for handle in ready]


def outcome(handle):
    future = handle.future
    assert future.done()
    if future.cancelled():
        return "cancelled"
    if future.exception() is not None:
        return future.exception()
    return future.result()


# -- gated jobs ------------------------------------------------------------------------

_GATES = {}  # key -> Gates; processors keep the key only, so that they pickle
_KEYS = itertools.count()


class Gates(object):
    """Jobs that wait until the test opens their gate, and a record of what they did.

    A gate has a key (a Separate job's descriptor, a Sequential batch's first
    descriptor). Coroutine jobs wait on a future of the loop, thread jobs on a
    `threading.Event`. `wait_started` returns a loop future, resolved from any
    thread when enough jobs have started.
    """

    def __init__(self, loop):
        self.loop = loop
        self.key = "gates-%d" % next(_KEYS)
        self.lock = threading.Lock()
        self.started = []
        self.finished = []
        self.cancelled = []
        self.batches = []
        self.threads = []
        self.running = 0
        self.max_running = 0
        self._all_open = False
        self._opened = set()
        self._events = {}
        self._futures = {}
        self._start_waiters = []
        _GATES[self.key] = self

    # -- the test's side (loop thread) --

    def open(self, *keys):
        with self.lock:
            self._opened.update(keys)
            events = [self._event(key) for key in keys]
        for event in events:
            event.set()
        for key in keys:
            future = self._futures.get(key)
            if future is not None and not future.done():
                future.set_result(None)

    def open_all(self):
        with self.lock:
            self._all_open = True
            events = list(self._events.values())
        for event in events:
            event.set()
        for future in self._futures.values():
            if not future.done():
                future.set_result(None)

    def wait_started(self, count):
        future = new_future(self.loop)
        self._start_waiters.append((count, future))
        self._wake()
        return future

    def _wake(self):
        with self.lock:
            started = len(self.started)
        waiting = []
        for count, future in self._start_waiters:
            if future.done():
                continue
            if started >= count:
                future.set_result(None)
            else:
                waiting.append((count, future))
        self._start_waiters = waiting

    # -- the jobs' side --

    def _event(self, key):  # with self.lock held
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = threading.Event()
            if self._all_open or key in self._opened:
                event.set()
        return event

    def _future(self, key):  # loop thread
        future = self._futures.get(key)
        if future is None or future.cancelled():
            future = self._futures[key] = new_future(self.loop)
            if self._all_open or key in self._opened:
                future.set_result(None)
        return future

    def _enter(self, keys, batch):
        with self.lock:
            if batch:
                self.batches.append(list(keys))
            self.started.extend(keys)
            self.threads.append(threading.current_thread())
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    def _leave(self, keys, ok):
        with self.lock:
            self.running -= 1
            if ok:
                self.finished.extend(keys)

    @coroutine
    def coroutine_job(self, keys, gate, result, batch=False):
        self._enter(keys, batch)
        ok = False
        try:
            yield From(self._future(gate))
            ok = True
        except CancelledError:
            with self.lock:
                self.cancelled.extend(keys)
            raise
        finally:
            self._leave(keys, ok)
        raise Return(result)

    def thread_job(self, keys, gate, result, batch=False):
        self._enter(keys, batch)
        with self.lock:
            event = self._event(gate)
        ok = False
        try:
            if not event.wait(TIMEOUT):
                raise RuntimeError("the test never opened the gate %r" % (gate,))
            ok = True
        finally:
            self._leave(keys, ok)
        return result


def done(descriptor):
    return ("done", descriptor)


@coroutine
def collect_some(processor):
    """Wait for one get_ready() that is not empty."""
    rounds = []
    while not rounds:
        yield From(processor.wait_ready())
        ready = processor.get_ready()
        if ready:
            rounds.append(ready)
    raise Return(rounds)


class RecordingExecutor(Executor):
    """Runs jobs in an `UnsafeThreadPoolExecutor` and keeps their futures."""

    def __init__(self, max_workers):
        self.inner = UnsafeThreadPoolExecutor(max_workers)
        self.futures = []

    def submit(self, fn, *args, **kwargs):
        future = self.inner.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future

    def shutdown(self, wait=True):
        self.inner.shutdown(wait)


@coroutine
def _callbacks_ran(loop, executor_futures):
    """Wait until every future of ``executor_futures`` is done and its callbacks ran.

    Callbacks run in the order they were added, and each one the processor added
    hands its work to the loop with ``call_soon_threadsafe``: a callback added now,
    which does the same, is served after it.
    """
    for executor_future in executor_futures:
        marker = new_future(loop)

        def mark(_, marker=marker):
            loop.call_soon_threadsafe(lambda: marker.done() or marker.set_result(None))
        executor_future.add_done_callback(mark)
        yield From(marker)


class GatedSequential(SequentialBatchProcessor):
    """A batch waits for the gate of its first descriptor, then returns ``done(d)`` for each."""

    def __init__(self, gates, **options):
        super(GatedSequential, self).__init__(**options)
        self.gates_key = gates.key

    def _run_batch(self, job_descriptors):
        return _GATES[self.gates_key].coroutine_job(
            job_descriptors, job_descriptors[0], [done(d) for d in job_descriptors], batch=True)


class GatedSequentialSync(SequentialBatchProcessorSynchronous):
    """The same, in the processor's executor."""

    def __init__(self, gates, **options):
        super(GatedSequentialSync, self).__init__(**options)
        self.gates_key = gates.key

    def _run_batch_synchronous(self, job_descriptors):
        return _GATES[self.gates_key].thread_job(
            job_descriptors, job_descriptors[0], [done(d) for d in job_descriptors], batch=True)


KINDS = [GatedSequential, GatedSequentialSync]


@pytest.fixture
def gates(loop):
    gates = Gates(loop)
    try:
        yield gates
    finally:
        gates.open_all()  # no job thread stays blocked after the test
        del _GATES[gates.key]


@pytest.fixture(params=KINDS, ids=lambda cls: cls.__name__)
def kind(request):
    return request.param


def descriptors_of(handles):
    return sorted(h.descriptor for h in handles)


# == batches ===========================================================================

def test_batches_run_in_feed_order_and_later_feeds_wait_for_the_next_batch(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(3))
        assert gates.batches == [[1, 2, 3]]
        processor.feed_new([4, 5])  # fed while the batch runs
        processor.feed_new([6])
        yield From(spin())
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
    assert all(outcome(h) == done(h.descriptor) for h in flatten(first + rest))
    assert gates.max_running == 1


def test_max_batch_size_caps_every_batch(loop, gates, kind):
    processor = kind(gates, max_batch_size=2)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3, 4, 5])
        for count, first in ((2, 1), (4, 3), (5, 5)):
            yield From(gates.wait_started(count))
            yield From(spin())
            assert gates.started == list(range(1, count + 1))
            gates.open(first)
            ready = yield From(collect_some(processor))
            assert [descriptors_of(r) for r in ready] == [list(range(first, count + 1))]
        assert processor.in_flight == 0

    run(loop, scenario())
    assert gates.batches == [[1, 2], [3, 4], [5]]
    assert gates.max_running == 1


def test_max_batch_size_with_every_gate_open(loop, gates, kind):
    processor = kind(gates, max_batch_size=3)
    gates.open_all()
    processor.feed_new(range(8))
    handles = flatten(run(loop, collect(processor)))
    assert descriptors_of(handles) == list(range(8))
    assert gates.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert gates.max_running == 1


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


def test_results_go_to_their_descriptors_in_order(loop, gates, kind):
    processor = kind(gates)
    gates.open_all()
    processor.feed_new([3, 1, 2, 1])
    handles = flatten(run(loop, collect(processor)))
    assert len(handles) == 4 and len(set(handles)) == 4
    assert sorted(outcome(h) for h in handles) == [done(1), done(1), done(2), done(3)]
    assert all(outcome(h) == done(h.descriptor) for h in handles)


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
    assert sorted(outcome(h) for h in handles) == [done(1), done(2), done(3)]
    assert gates.batches == [[1], [2], [3]]
    assert processor.state is ProcessorState.STOPPED


def test_kill_cancels_the_running_batch_and_the_queued_descriptors(loop, gates, kind):
    processor = kind(gates, max_batch_size=2)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3, 4, 5])
        yield From(gates.wait_started(2))
        processor.kill()
        killed = processor.get_ready()
        yield From(spin())
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


@pytest.fixture(params=[Scripted, ScriptedSync], ids=["coroutine", "thread"])
def scripted(request):
    return request.param


def _outcomes(handles):
    return dict((h.descriptor, h.future) for h in handles)


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

class _ErrorRecords(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


# Python 3.6 in debug mode wraps coroutines in a CoroWrapper, which once went through
# an extra wrapper task: killed before its first step, the batch was never awaited.
@pytest.mark.allow_asyncio_errors  # the test checks the asyncio log itself
def test_kill_before_a_batch_took_its_first_step_leaves_no_unawaited_coroutine(loop, gates):
    errors = _ErrorRecords()
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
        yield From(spin())
        raise Return(processor.get_ready())

    try:
        [handle] = run(loop, scenario())
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(errors)
    assert handle.future.cancelled()
    assert [record.getMessage() for record in errors.records] == []
