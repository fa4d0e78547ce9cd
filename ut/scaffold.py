"""Scaffolding shared by the tests that drive processors by hand on an event loop.

* ``loop``: a fresh debug event loop (a fixture; `fresh_loop` makes its variants).
* `run`, `spin`, `collect`, `collect_some`, `flatten`, `outcome`: drive a processor
  and read its handles.
* `Gates` and the ``gates`` fixture: jobs wait until the test opens their gate, so
  every ordering is forced by the test, never by time; `GatedSeparate`,
  `GatedSeparateSync`, `GatedSequential` and `GatedSequentialSync` are processors
  whose jobs do so.
* `RecordingExecutor`, `OwnExecutor` and `callbacks_ran`: jobs in threads whose
  executor futures the test can wait on.
* `ErrorRecords`: a logging handler that keeps ERROR records.

Test modules import the fixtures they use by name (``from scaffold import gates,
loop  # noqa: F401``); `kind_fixture` makes a ``kind`` fixture over some processor
classes. Python 2.7 imports this module: trollius-style coroutines only.
"""
from __future__ import absolute_import, division, print_function

import itertools
import logging
import sys
import threading
from concurrent.futures import Executor

import pytest

from batch_processor import (
    SeparateBatchProcessor, SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, UnsafeThreadPoolExecutor)
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


def settle(loop):
    """Let the tasks that were just cancelled end (a few turns of the loop)."""
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))


def fresh_loop(settling=True):
    """A fresh debug event loop, current until the end; fails if it is left with tasks.

    A generator for a pytest fixture (``loop`` below). With ``settling`` the loop first
    gets a few turns, so that tasks which were just cancelled can end, and a loop the
    test closed itself (as a killed run does) is left as it is; without, any task still
    pending when the test ends fails it.
    """
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    asyncio.set_event_loop(loop)
    leftovers = []
    try:
        yield loop
        if not settling:
            leftovers = _pending_tasks(loop)
        elif not loop.is_closed():  # a test may close it, as a killed run does
            settle(loop)
            leftovers = _pending_tasks(loop)
    finally:
        if not settling or not loop.is_closed():
            tasks = _pending_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()
        asyncio.set_event_loop(None)
    assert not leftovers, "the test left pending tasks: %r" % (leftovers,)


@pytest.fixture
def loop():
    """A fresh debug event loop, current for the test; fails the test if it leaves tasks."""
    for event_loop in fresh_loop(settling=True):
        yield event_loop


def new_future(loop):
    """A pending future of ``loop`` (trollius has no ``loop.create_future()``)."""
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

GATES = {}  # key -> Gates; processors keep the key only, so that they pickle
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
        GATES[self.key] = self

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
def callbacks_ran(loop, executor_futures):
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


class OwnExecutor(object):
    """A mixin: the processor runs its jobs in ``self.executor``, which the test sets."""

    executor = None

    @property
    def _executor(self):
        return self.executor


class ErrorRecords(logging.Handler):
    """Keeps the ERROR (and worse) records of the loggers it is added to."""

    def __init__(self):
        logging.Handler.__init__(self, logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


# -- gated processors ------------------------------------------------------------------

class GatedSeparate(SeparateBatchProcessor):
    """Each job waits for the gate of its descriptor, then returns ``done(descriptor)``."""

    def __init__(self, gates, **options):
        super(GatedSeparate, self).__init__(**options)
        self.gates_key = gates.key

    def _run_one_job(self, job_descriptor):
        return GATES[self.gates_key].coroutine_job(
            [job_descriptor], job_descriptor, done(job_descriptor))


class GatedSeparateSync(SeparateBatchProcessorSynchronous):
    """The same, in a thread of the processor's executor."""

    def __init__(self, gates, **options):
        super(GatedSeparateSync, self).__init__(**options)
        self.gates_key = gates.key

    def _run_one_job_synchronous(self, job_descriptor):
        return GATES[self.gates_key].thread_job(
            [job_descriptor], job_descriptor, done(job_descriptor))


class GatedSequential(SequentialBatchProcessor):
    """A batch waits for the gate of its first descriptor, then returns ``done(d)`` for each."""

    def __init__(self, gates, **options):
        super(GatedSequential, self).__init__(**options)
        self.gates_key = gates.key

    def _run_batch(self, job_descriptors):
        return GATES[self.gates_key].coroutine_job(
            job_descriptors, job_descriptors[0], [done(d) for d in job_descriptors], batch=True)


class GatedSequentialSync(SequentialBatchProcessorSynchronous):
    """The same, in the processor's executor."""

    def __init__(self, gates, **options):
        super(GatedSequentialSync, self).__init__(**options)
        self.gates_key = gates.key

    def _run_batch_synchronous(self, job_descriptors):
        return GATES[self.gates_key].thread_job(
            job_descriptors, job_descriptors[0], [done(d) for d in job_descriptors], batch=True)


class RecordingSeparateSync(OwnExecutor, GatedSeparateSync):
    """`GatedSeparateSync` in the executor the test sets (a `RecordingExecutor`)."""


class RecordingSequentialSync(OwnExecutor, GatedSequentialSync):
    """`GatedSequentialSync` in the executor the test sets (a `RecordingExecutor`)."""


@pytest.fixture
def gates(loop):
    gates = Gates(loop)
    try:
        yield gates
    finally:
        gates.open_all()  # no job thread stays blocked after the test
        del GATES[gates.key]


def kind_id(cls):
    return cls.__name__


def kind_fixture(kinds, ids=kind_id):
    """A fixture that gives each class of ``kinds`` in turn (assign it to a fixture name)."""
    @pytest.fixture(params=kinds, ids=ids)
    def kind(request):
        return request.param
    return kind
