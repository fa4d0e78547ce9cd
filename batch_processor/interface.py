"""``batch_processor.interface`` defines what every batch processor is.

A *batch processor* takes job descriptors with `AbstractBatchProcessor.feed_new`,
runs the jobs on an event loop and gives each finished job back, exactly once, as a
`BatchProcessorResultHandle` from `AbstractBatchProcessor.get_ready`. The runners of
``batch_processor.execution`` move handles between processors; the concrete processors
live in ``batch_processor.separate`` and ``batch_processor.sequential``.

`BaseBatchProcessor` holds the bookkeeping that every concrete processor shares (the
state machine, the ready handles, stop and kill, the loop it is bound to, pickling
without runtime state); a subclass only starts jobs and reports them finished.
"""
from __future__ import absolute_import, division, print_function

import abc
import enum
import logging

import attr
import six

from . import compat

__all__ = [
    "AbstractBatchProcessor",
    "BaseBatchProcessor",
    "BatchProcessorError",
    "BatchProcessorResultHandle",
    "ConverterError",
    "GraphError",
    "JobTimeoutError",
    "ProcessorState",
    "ProcessorStateError",
    "RunTimeoutError",
    "describe",
]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, Iterable, List, Set  # noqa: F401

logger = logging.getLogger("batch_processor")


def describe(processor):
    # type: (Any) -> str
    """A short name for ``processor`` in messages: its class and a short identity."""
    return "%s@%x" % (type(processor).__name__, id(processor) & 0xFFFFFF)


class BatchProcessorError(Exception):
    """Base class of the errors raised by ``batch_processor``."""


class ProcessorStateError(BatchProcessorError):
    """A processor was asked for something its state does not allow."""


class GraphError(BatchProcessorError):
    """A graph or a run's arguments do not fit together."""


class ConverterError(BatchProcessorError):
    """A converter raised or returned something that is not an iterable of descriptors.

    Attributes:
        converter: the converter that failed.
        source, destination: the processors of its edge.
        original: the exception it raised (also ``__cause__`` on Python 3).
        results: the partial result of the run, as the runner would have returned it.
    """

    def __init__(self, message, converter=None, source=None, destination=None,
                 original=None, results=None):
        super(ConverterError, self).__init__(message)
        self.converter = converter
        self.source = source
        self.destination = destination
        self.original = original
        self.results = results


class RunTimeoutError(BatchProcessorError):
    """A run took longer than its ``timeout``; ``results`` holds what it collected."""

    def __init__(self, message, results=None):
        super(RunTimeoutError, self).__init__(message)
        self.results = results


class JobTimeoutError(BatchProcessorError):
    """One attempt of a job took longer than its processor's ``job_timeout``."""


class ProcessorState(enum.Enum):
    """Where a processor is in its life. ``STOPPED`` and ``KILLED`` are final."""

    IDLE = "idle"          #: nothing in flight
    RUNNING = "running"    #: something in flight
    STOPPING = "stopping"  #: stop() called, fed jobs still running
    STOPPED = "stopped"    #: stop() called and every fed job ended
    KILLED = "killed"      #: kill() called


@attr.s(eq=False, slots=True, repr=False)
class BatchProcessorResultHandle(object):
    """A finished job: its ``descriptor`` as fed and its done ``future``.

    ``future.result()`` gives the job's result or raises its exception (or
    ``CancelledError`` for a cancelled job). Handles compare and hash by identity.
    """

    descriptor = attr.ib()
    future = attr.ib()

    def __repr__(self):
        fut = self.future
        if not fut.done():
            outcome = "pending"
        elif fut.cancelled():
            outcome = "cancelled"
        elif compat.exception_of(fut) is not None:
            outcome = "failed: %r" % (compat.exception_of(fut),)
        else:
            outcome = "result: %r" % (fut.result(),)
        return "BatchProcessorResultHandle(descriptor=%r, %s)" % (self.descriptor, outcome)


Handle = BatchProcessorResultHandle


@six.add_metaclass(abc.ABCMeta)
class AbstractBatchProcessor(object):
    """The unit of execution of a graph: it runs one kind of job.

    Every fed descriptor comes back in exactly one handle over the processor's
    life: success, failure or cancellation, never lost, never twice.
    """

    @abc.abstractmethod
    def feed_new(self, descriptors):
        # type: (Iterable[Any]) -> None
        """Ask to run one job per descriptor of the iterable ``descriptors``.

        Returns at once. Call it from the event loop's thread.

        Raises:
            ProcessorStateError: the processor was stopped or killed.
            TypeError: ``descriptors`` is not an iterable.
        """

    @abc.abstractmethod
    def get_ready(self):
        # type: () -> Set[BatchProcessorResultHandle]
        """Return the `set` of handles of the jobs finished since the last call.

        Never blocks; every handle's future is done.
        """

    @abc.abstractmethod
    def wait_ready(self):
        # type: () -> Any
        """Return an awaitable done when `get_ready` has something, or nothing is in flight."""

    @abc.abstractproperty
    def in_flight(self):
        # type: () -> int
        """The number of descriptors fed and not yet returned by `get_ready`."""

    @abc.abstractproperty
    def state(self):
        # type: () -> ProcessorState
        """The `ProcessorState` of the processor."""

    @abc.abstractmethod
    def stop(self):
        # type: () -> Any
        """Accept no new feeds; let the fed jobs end. Returns an awaitable done when they have."""

    @abc.abstractmethod
    def kill(self):
        # type: () -> None
        """End every unfinished job as cancelled, at once, and ask its work to stop."""


_RUNTIME_PREFIX = "_bp_"
_CoroutineType = compat.CoroutineType


class BaseBatchProcessor(AbstractBatchProcessor):
    """The bookkeeping shared by the processors of this package.

    A subclass implements three hooks:

    * ``_bp_start(descriptors)``: start (or queue) jobs for a list of descriptors;
      when a job ends, append its handle with `_bp_add_ready` (or inline the same
      steps on a hot path);
    * ``_bp_cancel_all()``: ask all unfinished work to stop and return the list of
      the unfinished descriptors, forgetting them;
    * ``_bp_reset()``: (re)create the subclass's runtime attributes, whose names
      start with ``_bp_``: they are dropped when the processor is pickled.
    """

    def __new__(cls, *args, **kwargs):
        missing = getattr(cls, "__abstractmethods__", None)
        if missing:
            raise TypeError(
                "%s cannot be created: it does not implement %s; define %s in the subclass"
                % (cls.__name__, ", ".join(sorted(missing)),
                   " and ".join("%s()" % name for name in sorted(missing))))
        self = super(BaseBatchProcessor, cls).__new__(cls)
        self._bp_init_runtime()
        return self

    # -- runtime state ------------------------------------------------------------

    def _bp_init_runtime(self):
        self._bp_loop = None
        self._bp_new_future = None
        self._bp_ready = []
        self._bp_unfinished = 0
        self._bp_final = None
        self._bp_stopping = False
        self._bp_waiters = []
        self._bp_stop_waiters = []
        self._bp_listener = None
        self._bp_reset()

    def _bp_reset(self):
        """Create the subclass's runtime attributes (``_bp_*``)."""

    def __getstate__(self):
        return dict((key, value) for key, value in six.iteritems(self.__dict__)
                    if not key.startswith(_RUNTIME_PREFIX))

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bp_init_runtime()

    def _bp_bind(self, loop):
        """Bind the processor to ``loop``, the loop of the run about to drive it."""
        if self._bp_loop is loop:
            return
        if self._bp_unfinished:
            raise ProcessorStateError(
                "%s still has %d jobs running on another event loop; let them finish "
                "(or kill() it) before running it on a new loop"
                % (describe(self), self._bp_unfinished))
        self._bp_loop = loop
        self._bp_new_future = _future_factory(loop)
        self._bp_waiters = []
        self._bp_stop_waiters = []
        self._bp_reset()

    def _bp_current_loop(self):
        loop = self._bp_loop
        if loop is None or loop.is_closed():
            loop = compat.current_loop()
            self._bp_bind(loop)
        return loop

    # -- the public contract --------------------------------------------------------

    @property
    def in_flight(self):
        return self._bp_unfinished + len(self._bp_ready)

    @property
    def state(self):
        if self._bp_final is not None:
            return self._bp_final
        if self._bp_stopping:
            return ProcessorState.STOPPING
        if self._bp_unfinished or self._bp_ready:
            return ProcessorState.RUNNING
        return ProcessorState.IDLE

    def feed_new(self, descriptors):
        self._bp_feed(as_descriptor_list(descriptors, self))

    def _bp_feed(self, descriptors):
        """Feed a list of descriptors that the caller owns no longer."""
        if self._bp_final is not None or self._bp_stopping:
            raise ProcessorStateError(
                "%s is %s and accepts no new jobs; feed a processor that is neither "
                "stopped nor killed" % (describe(self), self.state.value))
        if not descriptors:
            return
        if self._bp_loop is None or self._bp_loop.is_closed():
            self._bp_current_loop()
        self._bp_unfinished += len(descriptors)
        self._bp_start(descriptors)

    def get_ready(self):
        return set(self._bp_take_ready())

    def _bp_take_ready(self):
        """The ready handles in the order they finished, as a list."""
        ready = self._bp_ready
        if ready:
            self._bp_ready = []
        return ready

    def wait_ready(self):
        if self._bp_ready or not self._bp_unfinished:
            return self._bp_done_future()
        waiter = self._bp_new_future()
        self._bp_waiters.append(waiter)
        return waiter

    def stop(self):
        if self._bp_final is not None:
            return self._bp_done_future()
        self._bp_stopping = True
        if not self._bp_unfinished:
            self._bp_final = ProcessorState.STOPPED
            return self._bp_done_future()
        self._bp_current_loop()
        waiter = self._bp_new_future()
        self._bp_stop_waiters.append(waiter)
        return waiter

    def kill(self):
        if self._bp_final is not None:
            return
        self._bp_final = ProcessorState.KILLED
        descriptors = self._bp_cancel_all()
        if self._bp_unfinished != len(descriptors):  # pragma: no cover - a bug if it fires
            logger.error("%s: kill() found %d unfinished jobs, expected %d",
                         describe(self), len(descriptors), self._bp_unfinished)
        if descriptors:
            logger.warning("%s killed: %d unfinished jobs cancelled", describe(self), len(descriptors))
            self._bp_add_ready([Handle(d, self._bp_cancelled_future()) for d in descriptors])
        self._bp_unfinished = 0
        self._bp_wake_stop_waiters()

    # -- helpers for subclasses -----------------------------------------------------

    def _bp_add_ready(self, handles):
        """Hand back ``handles`` of jobs that ended (they were counted as unfinished)."""
        ready = self._bp_ready
        was_empty = not ready
        ready.extend(handles)
        if self._bp_final is None:
            self._bp_unfinished -= len(handles)
            if self._bp_stopping and not self._bp_unfinished:
                self._bp_stopped()
        if was_empty and ready:
            self._bp_notify()

    def _bp_notify(self):
        """The ready list has just become non-empty: tell the runner and the waiters."""
        listener = self._bp_listener
        if listener is not None:
            listener()
        if self._bp_waiters:
            self._bp_wake_waiters()

    def _bp_wake_waiters(self):
        waiters, self._bp_waiters = self._bp_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _bp_stopped(self):
        self._bp_final = ProcessorState.STOPPED
        self._bp_wake_stop_waiters()

    def _bp_wake_stop_waiters(self):
        waiters, self._bp_stop_waiters = self._bp_stop_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._bp_waiters and not self._bp_unfinished:
            self._bp_wake_waiters()  # nothing in flight any more

    def _bp_done_future(self):
        loop = self._bp_loop
        if (loop is None or loop.is_closed()) and compat.running_loop() is None:
            return compat.done_outside_loop()  # nothing to bind to
        self._bp_current_loop()
        future = self._bp_new_future()
        future.set_result(None)
        return future

    def _bp_cancelled_future(self):
        future = self._bp_new_future()
        future.cancel()
        return future

    def _bp_failed_future(self, exc, source=None):
        """A future failed with ``exc`` (and the traceback of the future ``source``)."""
        future = self._bp_new_future()
        compat.fail(future, exc, source)
        compat.exception_of(future)  # the handle reports it; asyncio must not log it as lost
        return future

    def _bp_run_coroutine(self, method, argument):
        """Start the coroutine ``method(argument)``; return its future.

        A method that raises, or returns no coroutine, gives a failed future: the
        job's handle reports it and the run goes on.
        """
        try:
            job = method(argument)
            if type(job) is _CoroutineType:
                return self._bp_loop.create_task(job)
        except compat.CancelledError:
            raise
        except Exception as exc:
            return self._bp_failed_future(exc)
        try:
            return compat.as_future(job, self._bp_loop)
        except TypeError:
            return self._bp_failed_future(TypeError(
                "%s.%s() returned %r; it must return a coroutine (write it as `async def`, "
                "or decorate it with batch_processor.compat.coroutine)"
                % (describe(self), method.__name__, job)))

    def _bp_result_future(self, result):
        future = self._bp_new_future()
        future.set_result(result)
        return future

    # -- hooks ----------------------------------------------------------------------

    @abc.abstractmethod
    def _bp_start(self, descriptors):
        """Start or queue one job per descriptor of the list ``descriptors``."""

    @abc.abstractmethod
    def _bp_cancel_all(self):
        """Stop all unfinished work; return its descriptors in feed order."""


def _future_factory(loop):
    """A function of no argument that returns a new pending future of ``loop``."""
    create = getattr(loop, "create_future", None)
    if create is not None:
        return create
    return lambda: compat.new_future(loop)


def as_descriptor_list(descriptors, processor):
    """``descriptors`` as a new list; a clear `TypeError` if it is not an iterable."""
    if isinstance(descriptors, list):
        return list(descriptors)
    if isinstance(descriptors, (six.string_types, bytes)):
        raise TypeError(
            "%s.feed_new() takes an iterable of descriptors, got the string %r; "
            "wrap a single descriptor in a list: [%r]"
            % (describe(processor), descriptors, descriptors))
    try:
        iterator = iter(descriptors)
    except TypeError:
        raise TypeError(
            "%s.feed_new() takes an iterable of descriptors (list, tuple, generator), "
            "got %r; wrap a single descriptor in a list" % (describe(processor), descriptors))
    return list(iterator)
