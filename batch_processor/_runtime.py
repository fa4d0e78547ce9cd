"""The seam between a run and a processor: a processor's runtime, and the runner's port.

A processor object (``interface.BaseBatchProcessor``) holds its configuration and
the hooks a user overrides. What it has while it runs jobs is one `Runtime` object,
made on first use and never pickled or copied. The runner of
``batch_processor.execution`` talks to a processor only through a *port*:

``port = attach(processor, loop)``
    the processor bound to the run's ``loop``: a library processor's runtime, or a
    `PublicPort` around a hand-written `AbstractBatchProcessor`.
``port.feed(descriptors)``
    start jobs for a list the caller gives up (``ProcessorStateError`` when the
    processor takes no more).
``port.take_ready()``
    the handles of the jobs that ended since the last call, as a list, in the order
    they ended.
``port.in_flight``
    jobs fed and not yet taken.
``port.listen(callback)`` / ``port.release(callback)``
    ``callback()`` is called, from the loop, whenever ready handles appear (at once
    if some are there already); ``release`` stops that.

A `Runtime` subclass per kind of processor (``separate``, ``sequential``) starts and
cancels jobs; this class keeps the bookkeeping they share, and the one place where
a job ends: `Runtime.end`.
"""
from __future__ import absolute_import, division, print_function

import logging

from . import compat
from .compat import CancelledError, From, Return, asyncio, coroutine, exception_of
from .interface import (
    BatchProcessorResultHandle, JobTimeoutError, ProcessorState, ProcessorStateError, describe,
    safe_repr)

__all__ = ["PublicPort", "Runtime", "attach"]

logger = logging.getLogger("batch_processor")

Handle = BatchProcessorResultHandle
_CoroutineType = compat.CoroutineType


def attach(processor, loop):
    """The runner's port to ``processor`` for a run on ``loop``."""
    attach_method = getattr(processor, "_bp_attach", None)
    if attach_method is not None:
        return attach_method(loop)
    return PublicPort(processor, loop)


def _future_factory(loop):
    """A function of no argument that returns a new pending future of ``loop``."""
    create = getattr(loop, "create_future", None)
    if create is not None:
        return create
    return lambda: compat.new_future(loop)


class Runtime(object):
    """Everything a processor has while it runs jobs, and the bookkeeping of its jobs.

    Invariants:

    * ``unfinished`` counts the jobs fed and not yet ended; ``in_flight`` is
      ``unfinished + len(ready)``: fed and not yet taken by ``take_ready()``.
    * A job ends exactly once, through `end` (its handle is appended to ``ready``
      and it leaves ``unfinished``). The kind's bookkeeping forgets a job when it
      hands it to `end`, so a second report of the same job finds nothing.
    * ``kill()`` makes ``final`` KILLED, takes every unfinished job from the kind
      (`cancel_all`, which forgets them and asks their work to stop) and ends each
      as cancelled at once; late completions of that work find nothing and are
      dropped.
    * ``listener`` (the runner's) is called when ``ready`` goes from empty to
      non-empty; ``waiters`` (of ``wait_ready()``) are woken then too, and when
      nothing is in flight any more.
    * ``final`` is ``None``, STOPPED or KILLED, and never changes once set;
      ``stopping`` is true from ``stop()`` on, and STOPPED follows when
      ``unfinished`` reaches 0.
    * Every future belongs to ``loop``. Binding to another loop needs
      ``unfinished == 0``, and resets the loop-bound state (waiters, and the kind's
      queues through `reset`); ready handles and owned executors are kept.
    """

    def __init__(self, processor):
        self.processor = processor
        self.loop = None
        self.new_future = None
        self.ready = []
        self.unfinished = 0
        self.final = None
        self.stopping = False
        self.waiters = []
        self.stop_waiters = []
        self.listener = None

    # -- binding --------------------------------------------------------------------

    def bind(self, loop):
        """Bind to ``loop``, the loop of the run (or caller) about to drive the processor."""
        if self.loop is loop:
            return
        if self.unfinished:
            raise ProcessorStateError(
                "%s still has %d jobs running on another event loop; let them finish "
                "(or kill() it) before running it on a new loop"
                % (describe(self.processor), self.unfinished))
        self.loop = loop
        self.new_future = _future_factory(loop)
        self.waiters = []
        self.stop_waiters = []
        self.reset()

    def ensure_loop(self):
        """The bound loop; bind to the thread's loop first if there is none (or it closed)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            loop = compat.current_loop()
            self.bind(loop)
        return loop

    # -- the runner's port ----------------------------------------------------------

    @property
    def in_flight(self):
        return self.unfinished + len(self.ready)

    @property
    def state(self):
        if self.final is not None:
            return self.final
        if self.stopping:
            return ProcessorState.STOPPING
        if self.unfinished or self.ready:
            return ProcessorState.RUNNING
        return ProcessorState.IDLE

    def check_feedable(self):
        if self.final is not None or self.stopping:
            raise ProcessorStateError(
                "%s is %s and accepts no new jobs; feed a processor that is neither "
                "stopped nor killed" % (describe(self.processor), self.state.value))

    def feed(self, descriptors):
        """Start jobs for ``descriptors``, a non-empty list the caller owns no longer."""
        self.check_feedable()
        self.unfinished += len(descriptors)
        self.start(descriptors)

    def take_ready(self):
        ready = self.ready
        if ready:
            self.ready = []
        return ready

    def listen(self, callback):
        self.listener = callback
        if self.ready:
            callback()

    def release(self, callback):
        if self.listener is callback:
            self.listener = None

    # -- the public contract's other half ------------------------------------------

    def wait_ready(self):
        if self.ready or not self.unfinished:
            return self.done_future()
        waiter = self.new_future()
        self.waiters.append(waiter)
        return waiter

    def stop(self):
        if self.final is not None:
            return self.done_future()
        self.stopping = True
        if not self.unfinished:
            self.final = ProcessorState.STOPPED
            self.stopped()
            return self.done_future()
        self.ensure_loop()
        waiter = self.new_future()
        self.stop_waiters.append(waiter)
        return waiter

    def kill(self):
        if self.final is not None:
            return
        self.final = ProcessorState.KILLED
        descriptors = self.cancel_all()
        if self.unfinished != len(descriptors):  # pragma: no cover - a bug if it fires
            logger.error("%s: kill() found %d unfinished jobs, expected %d",
                         describe(self.processor), len(descriptors), self.unfinished)
        self.unfinished = 0
        if descriptors:
            logger.warning("%s killed: %d unfinished jobs cancelled",
                           describe(self.processor), len(descriptors))
            cancelled = self.cancelled_future
            self.hand_back([Handle(d, cancelled()) for d in descriptors])
        self.stopped()
        self.wake_stop_waiters()

    # -- where a job ends -----------------------------------------------------------

    def end(self, handles):
        """The jobs of ``handles`` ended: the one place where a job leaves ``unfinished``.

        The kind has already forgotten them (so they cannot end twice).
        """
        self.unfinished -= len(handles)
        self.hand_back(handles)
        if self.stopping and not self.unfinished and self.final is None:
            self.final = ProcessorState.STOPPED
            self.stopped()
            self.wake_stop_waiters()

    def hand_back(self, handles):
        ready = self.ready
        was_empty = not ready
        ready.extend(handles)
        if was_empty and ready:
            listener = self.listener
            if listener is not None:
                listener()
            if self.waiters:
                self.wake_waiters()

    def wake_waiters(self):
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def wake_stop_waiters(self):
        waiters, self.stop_waiters = self.stop_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.waiters and not self.unfinished:
            self.wake_waiters()  # nothing in flight any more

    # -- futures --------------------------------------------------------------------

    def done_future(self):
        loop = self.loop
        if (loop is None or loop.is_closed()) and compat.running_loop() is None:
            return compat.done_outside_loop()  # nothing to bind to
        self.ensure_loop()
        future = self.new_future()
        future.set_result(None)
        return future

    def cancelled_future(self):
        future = self.new_future()
        future.cancel()
        return future

    def failed_future(self, exc, source=None):
        """A future failed with ``exc`` (and the traceback of the future ``source``)."""
        future = self.new_future()
        compat.fail(future, exc, source)
        compat.exception_of(future)  # the handle reports it; asyncio must not log it as lost
        return future

    def result_future(self, result):
        future = self.new_future()
        future.set_result(result)
        return future

    def run_coroutine(self, method, argument):
        """Start the coroutine ``method(argument)``; return its future.

        A method that raises, or returns no coroutine, gives a failed future: the
        job's handle reports it and the run goes on.
        """
        try:
            job = method(argument)
            if type(job) is _CoroutineType:
                return self.loop.create_task(job)
        except compat.CancelledError:
            raise
        except Exception as exc:
            return self.failed_future(exc)
        try:
            return compat.as_future(job, self.loop)
        except TypeError:
            return self.failed_future(TypeError(
                "%s.%s() returned %s; it must return a coroutine (write it as `async def`, "
                "or decorate it with batch_processor.compat.coroutine)"
                % (describe(self.processor), method.__name__, safe_repr(job))))

    # -- attempts: job_timeout and retry ----------------------------------------------

    def attempt(self, argument):  # pragma: no cover - each guarded kind implements it
        """Start one attempt of ``argument``; return its future (done if it could not start)."""
        raise NotImplementedError

    def cancel_attempt(self, future):
        future.cancel()

    def describe_attempt(self, argument):
        """How messages call what ``argument`` is: ``the job 3``, ``a batch of 8 ...``."""
        return safe_repr(argument)

    @coroutine
    def attempts(self, argument):
        """Run attempts of ``argument`` (a job's descriptor, a batch) until one succeeds
        or the retry policy gives up.

        Returns the last attempt's (done) future, so the handle carries its outcome
        exactly; its exception is never raised here, so a ``SystemExit`` from a
        worker thread cannot stop the loop.
        """
        processor = self.processor
        policy, timeout = processor.retry, processor.job_timeout
        loop = self.loop
        attempt = 0
        while True:
            attempt += 1
            future = self.attempt(argument)
            timer, expired = None, []
            if timeout is not None and not future.done():
                timer = loop.call_later(timeout, self.expire, future, expired)
            try:
                yield From(_settled(future, self.new_future()))
            except CancelledError:
                if not future.done():
                    self.cancel_attempt(future)
                elif not future.cancelled():
                    exception_of(future)  # ended as we were killed: nobody else will look
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if future.cancelled():
                if not expired:
                    raise Return(future)  # cancelled by someone else: not retried
                future = self.failed_future(JobTimeoutError(
                    "%s: attempt %d of %s ran longer than job_timeout=%s s"
                    % (describe(processor), attempt, self.describe_attempt(argument), timeout)))
            exc = exception_of(future)
            if (exc is None or policy is None or attempt >= policy.attempts
                    or not isinstance(exc, policy.retry_on)):
                raise Return(future)
            delay = policy.delay(attempt)
            logger.warning("%s: attempt %d of %d of %s failed (%s); retrying in %s s",
                           describe(processor), attempt, policy.attempts,
                           self.describe_attempt(argument), safe_repr(exc), delay)
            if delay > 0:
                yield From(asyncio.sleep(delay))

    def expire(self, future, expired):
        logger.warning("%s: an attempt ran longer than job_timeout=%s s and is cancelled",
                       describe(self.processor), self.processor.job_timeout)
        expired.append(True)
        self.cancel_attempt(future)

    # -- what each kind implements --------------------------------------------------

    def reset(self):
        """(Re)make the kind's loop-bound state: queues, jobs in flight."""

    def start(self, descriptors):  # pragma: no cover - every kind implements it
        """Start or queue one job per descriptor of the list ``descriptors``."""
        raise NotImplementedError

    def cancel_all(self):  # pragma: no cover - every kind implements it
        """Stop all unfinished work, forget it; return its descriptors in feed order."""
        raise NotImplementedError

    def stopped(self):
        """The processor became STOPPED or KILLED: release what it owns."""


def _settled(future, waiter):
    """``waiter``, resolved with ``None`` when ``future`` is done, whatever its outcome."""
    def settle(_):
        if not waiter.done():
            waiter.set_result(None)
    future.add_done_callback(settle)
    return waiter


class PublicPort(object):
    """The runner's port to a hand-written `AbstractBatchProcessor`: its public methods.

    It waits for readiness with ``wait_ready()``, armed whenever something is in
    flight and no wait is pending.
    """

    def __init__(self, processor, loop):
        self.processor = processor
        self.loop = loop
        self.listener = None
        self.watching = False

    @property
    def in_flight(self):
        return self.processor.in_flight

    def feed(self, descriptors):
        self.processor.feed_new(descriptors)
        self._watch()

    def take_ready(self):
        handles = list(self.processor.get_ready())
        self._watch()
        return handles

    def listen(self, callback):
        self.listener = callback
        self._watch()

    def release(self, callback):
        if self.listener is callback:
            self.listener = None

    def _watch(self):
        if self.watching or self.listener is None or not self.processor.in_flight:
            return
        self.watching = True
        waiter = compat.as_future(self.processor.wait_ready(), self.loop)
        waiter.add_done_callback(self._ready)

    def _ready(self, _):
        self.watching = False
        listener = self.listener
        if listener is not None:
            listener()
