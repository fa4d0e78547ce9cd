"""Processors and tools shared by the tests of ``batch_processor``.

The processors here are small and observable: they record what they ran, and the
ones meant to be interrupted block on a `threading.Event` (`Blocker`), on a future
of the loop (`Gated`) or behind the gates of a `Gates` (`GatedSeparate`,
`GatedSeparateSync`, `GatedSequential`, `GatedSequentialSync`) until the test
releases them, so that tests order events without sleeping. Every processor that
pickling may reach (process pools) is defined at module level.

* `run`, `collect`, `collect_some`, `flatten`, `outcome`: drive a processor by hand
  and read its handles.
* `RecordingExecutor`, `OwnExecutor` and `callbacks_ran`: jobs in threads whose
  executor futures the test can wait on.
* `ErrorRecords`: a logging handler that keeps ERROR records.

The fixtures (``loop``, ``loop_factory``, ``gates``, the ``kind`` parameters) live in
``conftest.py``. Python 2.7 imports this module: trollius-style coroutines only.
"""
from __future__ import absolute_import, division, print_function

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Executor

from batch_processor import (
    AbstractBatchProcessor,
    SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous,
    SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous,
    UnsafeThreadPoolExecutor,
)
from batch_processor.compat import CancelledError, From, Return, asyncio, coroutine

PY2 = sys.version_info[0] == 2
TIMEOUT = 30  # seconds; only a safety net against hangs, never a measurement
#: ``BP_CAMPAIGN=short`` (tox.ini sets it for every interpreter but 2.7 and 3.11, where
#: the campaigns run in full) shrinks the randomised campaigns; see `campaign`.
SHORT_CAMPAIGNS = os.environ.get("BP_CAMPAIGN") == "short"


def campaign(full, short):
    """The size of a randomised campaign (examples, seeds): ``full`` unless the
    environment asks for short campaigns, which check portability, not new cases."""
    return short if SHORT_CAMPAIGNS else full
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- plain functions for the processors below --------------------------------------

def inc(value):
    return value + 1


def dec(value):
    return value - 1


def identity(value):
    return value


# -- processors that apply a function to each descriptor ---------------------------

class Separate(SeparateBatchProcessor):
    """Async Separate processor: each job is a coroutine returning ``fn(descriptor)``.

    ``seen`` lists the descriptors in the order their jobs started.
    """

    def __init__(self, fn=inc, **kwargs):
        super(Separate, self).__init__(**kwargs)
        self.fn = fn
        self.seen = []

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.seen.append(job_descriptor)
        yield From(asyncio.sleep(0))  # a real suspension: the job is a coroutine
        raise Return(self.fn(job_descriptor))


class SeparateSync(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor: ``fn(descriptor)`` in the default executor.

    ``threads`` lists the thread of every job.
    """

    def __init__(self, fn=inc, **kwargs):
        super(SeparateSync, self).__init__(**kwargs)
        self.fn = fn
        self.seen = []
        self.threads = []

    def _run_one_job_synchronous(self, job_descriptor):
        self.seen.append(job_descriptor)
        self.threads.append(threading.current_thread())
        return self.fn(job_descriptor)


class Sequential(SequentialBatchProcessor):
    """Async Sequential processor; ``batches`` records every batch it ran."""

    def __init__(self, fn=inc, **kwargs):
        super(Sequential, self).__init__(**kwargs)
        self.fn = fn
        self.batches = []

    @property
    def seen(self):
        return [d for batch in self.batches for d in batch]

    @coroutine
    def _run_batch(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        yield From(asyncio.sleep(0))
        raise Return([self.fn(d) for d in job_descriptors])


class SequentialSync(SequentialBatchProcessorSynchronous):
    """Synchronous Sequential processor; ``batches`` records every batch it ran."""

    def __init__(self, fn=inc, **kwargs):
        super(SequentialSync, self).__init__(**kwargs)
        self.fn = fn
        self.batches = []

    @property
    def seen(self):
        return [d for batch in self.batches for d in batch]

    def _run_batch_synchronous(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        return [self.fn(d) for d in job_descriptors]


#: The four kinds of processor, to parametrize tests that any kind must pass.
KINDS = [Separate, SeparateSync, Sequential, SequentialSync]


class FailOn(SeparateBatchProcessor):
    """Async Separate processor whose job raises ``ValueError`` for the descriptors in ``bad``."""

    def __init__(self, bad, fn=identity, **kwargs):
        super(FailOn, self).__init__(**kwargs)
        self.bad = set(bad)
        self.fn = fn

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        if job_descriptor in self.bad:
            raise ValueError("bad descriptor %r" % (job_descriptor,))
        raise Return(self.fn(job_descriptor))


# -- processors that wait for the test ---------------------------------------------

_BLOCKERS = []  # every Blocker made, released by conftest after each test


def release_all_blockers():
    """Release every `Blocker` made so far, so that no thread waits after a test."""
    while _BLOCKERS:
        _BLOCKERS.pop().release()


class Blocker(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor whose jobs block until `release` is called.

    A job records its descriptor in ``started``, waits for the release and returns
    its descriptor. `wait_started` lets a thread wait until jobs have started.
    """

    def __init__(self, **kwargs):
        super(Blocker, self).__init__(**kwargs)
        self.started = []
        self.finished = []
        self._condition = threading.Condition()
        self._released = threading.Event()
        _BLOCKERS.append(self)

    def _run_one_job_synchronous(self, job_descriptor):
        with self._condition:
            self.started.append(job_descriptor)
            self._condition.notify_all()
        released = self._released.wait(TIMEOUT)
        self.finished.append(job_descriptor)
        if not released:
            raise RuntimeError("the test never released %r" % (job_descriptor,))
        return job_descriptor

    def wait_started(self, count):
        """Block until ``count`` jobs have started; True, or False after `TIMEOUT`."""
        with self._condition:
            while len(self.started) < count:
                before = len(self.started)
                self._condition.wait(TIMEOUT)  # notified by every start
                if len(self.started) == before:
                    return False
        return True

    def release(self):
        self._released.set()


class BlockingEcho(SeparateBatchProcessorSynchronous):
    """Returns its descriptor; fails on negative ones; "block" sets ``started`` and
    waits for ``release``."""

    def __init__(self, **kwargs):
        super(BlockingEcho, self).__init__(**kwargs)
        self.started = threading.Event()
        self.release = threading.Event()

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor == "block":
            self.started.set()
            self.release.wait(TIMEOUT)
            return job_descriptor
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        return job_descriptor


class Call(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor whose descriptors are functions called in a thread."""

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor()


class Trigger(SeparateBatchProcessor):
    """Async Separate processor whose descriptor is a pair ``(wait, action)``.

    The job calls the blocking ``wait()`` in a worker thread, then ``action()`` on
    the event loop's thread (where processors may be stopped or killed), and returns
    what ``action()`` returned.
    """

    def __init__(self):
        super(Trigger, self).__init__()
        self.executor = UnsafeThreadPoolExecutor(1)

    @coroutine
    def _run_one_job(self, job_descriptor):
        wait, action = job_descriptor
        loop = asyncio.get_event_loop()
        yield From(loop.run_in_executor(self.executor, wait))
        raise Return(action())


class Gated(SeparateBatchProcessor):
    """Async Separate processor whose jobs wait for the loop future ``gate``.

    ``gate`` and ``all_started`` are futures of the test's loop, set by the test;
    ``all_started`` gets a result when ``expected`` jobs have started.
    """

    def __init__(self, gate, all_started, expected):
        super(Gated, self).__init__()
        self.gate = gate
        self.all_started = all_started
        self.expected = expected
        self.started = []

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.started.append(job_descriptor)
        if len(self.started) == self.expected and not self.all_started.done():
            self.all_started.set_result(None)
        yield From(self.gate)
        raise Return(job_descriptor)


# -- process pools -----------------------------------------------------------------

def make_process_pool(max_workers=2):
    """A ``ProcessPoolExecutor``; on 3.7+ its workers are spawned, not forked.

    Forking a process that runs threads (the tests' executors) can deadlock the child.
    """
    from concurrent.futures import ProcessPoolExecutor
    if sys.version_info >= (3, 7):
        import multiprocessing
        return ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))
    return ProcessPoolExecutor(max_workers)


class _ProcessPoolMixin(object):
    """``_executor`` is the process pool given to the constructor, never pickled."""

    def __getstate__(self):
        state = super(_ProcessPoolMixin, self).__getstate__()
        state.pop("pool", None)
        return state

    @property
    def _executor(self):
        return self.pool


class ProcessPoolSquare(_ProcessPoolMixin, SeparateBatchProcessorSynchronous):
    """Separate processor run in a process pool: returns ``(d * d, pid of the worker)``."""

    def __init__(self, pool, **kwargs):
        super(ProcessPoolSquare, self).__init__(**kwargs)
        self.pool = pool

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        return job_descriptor * job_descriptor, os.getpid()


class ProcessPoolBatchSquare(_ProcessPoolMixin, SequentialBatchProcessorSynchronous):
    """Sequential processor run in a process pool: ``[(d * d, pid)]`` for a batch."""

    def __init__(self, pool, **kwargs):
        super(ProcessPoolBatchSquare, self).__init__(**kwargs)
        self.pool = pool

    def _run_batch_synchronous(self, job_descriptors):
        pid = os.getpid()
        return [(d * d, pid) for d in job_descriptors]


# -- looking at results ------------------------------------------------------------

def outcome(handle):
    """``("ok", result)``, ``("failed", exception)`` or ``("cancelled", None)``."""
    future = handle.future
    assert future.done()
    if future.cancelled():
        return "cancelled", None
    exc = future.exception()
    if exc is not None:
        return "failed", exc
    return "ok", future.result()


def descriptors_of(handles):
    """The sorted descriptors of ``handles`` (to compare multisets)."""
    return sorted(handle.descriptor for handle in handles)


def results_of(handles):
    """``{descriptor: result}`` of successful handles (descriptors assumed distinct)."""
    return dict((h.descriptor, h.future.result()) for h in handles)


def default_sigint_in_child():
    """In a child process, before it runs Python: SIGINT as by default. The test command
    may run with SIGINT ignored (an ``&`` job of a non-interactive shell), and a child
    inherits that: it would then never see the Ctrl-C a test sends it."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_options():
    """``subprocess.Popen`` keywords for a child that must see SIGINT (POSIX)."""
    return {"preexec_fn": default_sigint_in_child} if os.name == "posix" else {}


def run_script(source=None, path=None):
    """Run Python ``source`` (or the file ``path``) in a fresh interpreter.

    Returns:
        ``(returncode, stdout, stderr)``, the outputs decoded. A hang is killed after
        `TIMEOUT` seconds.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    if path is None:
        command = [sys.executable, "-c", textwrap.dedent(source)]
    else:
        command = [sys.executable, path]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               **child_options())
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        stdout, stderr = process.communicate()
    finally:
        timer.cancel()
    return process.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


# -- driving processors by hand on a loop -------------------------------------------

def new_future(loop):
    """A pending future of ``loop`` (trollius has no ``loop.create_future()``)."""
    if PY2:
        return asyncio.Future(loop=loop)
    return loop.create_future()


def run(loop, coro):
    """Run ``coro`` on ``loop`` to its end and return its value (`TIMEOUT` as a safety net)."""
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


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


# -- gated jobs ------------------------------------------------------------------------

GATES = {}  # key -> Gates; processors keep the key only, so that they pickle
PROCESS_POOLS = []  # the ``process_pool`` of the running test, out of pickled processors' state
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
        self.ended = []  # every started key whose job has ended, however it ended
        self.batches = []
        self.threads = []
        self.running = 0
        self.max_running = 0
        self._all_open = False
        self._opened = set()
        self._events = {}
        self._futures = {}
        self._start_waiters = []
        self._end_waiters = []
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
        """A loop future, resolved when ``count`` keys have started."""
        future = new_future(self.loop)
        self._start_waiters.append((count, future))
        self._wake()
        return future

    def wait_ended(self, count):
        """A loop future, resolved when the jobs of ``count`` keys have ended (returned,
        failed or been cancelled: their thread or coroutine is done with the gate)."""
        future = new_future(self.loop)
        self._end_waiters.append((count, future))
        self._wake()
        return future

    def _wake(self):
        with self.lock:
            started, ended = len(self.started), len(self.ended)
        self._start_waiters = self._resolve(self._start_waiters, started)
        self._end_waiters = self._resolve(self._end_waiters, ended)

    @staticmethod
    def _resolve(waiters, reached):
        waiting = []
        for count, future in waiters:
            if future.done():
                continue
            if reached >= count:
                future.set_result(None)
            else:
                waiting.append((count, future))
        return waiting

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
            self.ended.extend(keys)
            if ok:
                self.finished.extend(keys)
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

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


@coroutine
def a_later_job(kind):
    """Run one job of a new plain processor of ``kind``'s family to its end.

    For checks that something did NOT happen: the job is fed after what the test did,
    and its whole life (a start, a coroutine step or a thread of an executor, the
    hand-back to the loop, readiness, ``wait_ready``) comes after everything the loop
    had been asked to do before, so what would have followed the test's action has
    happened once this returns. ``kind`` is a processor class (or instance): the later
    job runs in the same way, on a coroutine or in a thread, Separate or Sequential.
    """
    if not isinstance(kind, type):
        kind = type(kind)
    if issubclass(kind, SeparateBatchProcessorSynchronous):
        processor = SeparateSync()
    elif issubclass(kind, SequentialBatchProcessorSynchronous):
        processor = SequentialSync()
    elif issubclass(kind, SequentialBatchProcessor):
        processor = Sequential()
    else:
        processor = Separate()
    processor.feed_new([0])
    rounds = yield From(collect(processor))
    assert [outcome(handle) for ready in rounds for handle in ready] == [("ok", 1)]


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


class Delegating(AbstractBatchProcessor):
    """The public contract of a processor written by hand, forwarding to ``inner``."""

    def __init__(self, inner):
        self.inner = inner

    def feed_new(self, descriptors):
        self.inner.feed_new(descriptors)

    def get_ready(self):
        return self.inner.get_ready()

    def wait_ready(self):
        return self.inner.wait_ready()

    @property
    def in_flight(self):
        return self.inner.in_flight

    @property
    def state(self):
        return self.inner.state

    def stop(self):
        return self.inner.stop()

    def kill(self):
        self.inner.kill()


class CountingSquare(SeparateBatchProcessorSynchronous):
    """Squares its descriptors and counts its calls (``calls``)."""

    def __init__(self, **kwargs):
        super(CountingSquare, self).__init__(**kwargs)
        self.calls = 0

    def _run_one_job_synchronous(self, job_descriptor):
        self.calls += 1
        return job_descriptor * job_descriptor


def ended(pid):
    """Whether process ``pid`` has ended (gone, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (IOError, OSError):
        return False


def wait_until_ended(pids, timeout=TIMEOUT):
    """Wait until every process of ``pids`` (not children of ours) has ended, ``timeout``
    seconds at most; return those still alive.

    Where the OS gives a descriptor to wait on (``os.pidfd_open``, Linux and Python
    3.9+), this waits on it. Elsewhere nothing signals the end of a process that is not
    our child, and the process table is looked at every 50 ms.
    """
    import select
    import time
    deadline = time.time() + timeout
    left = set(pid for pid in pids if not ended(pid))
    pidfd_open = getattr(os, "pidfd_open", None)
    while left and time.time() < deadline:
        if pidfd_open is None:
            select.select([], [], [], 0.05)  # no event to wait on: look again shortly
        else:
            fds = []
            for pid in left:
                try:
                    fds.append(pidfd_open(pid))
                except OSError:  # gone meanwhile
                    pass
            try:
                select.select(fds, [], [], max(0, deadline - time.time()))  # one ends
            finally:
                for fd in fds:
                    os.close(fd)
        left = set(pid for pid in left if not ended(pid))
    return left
