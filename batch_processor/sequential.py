"""``batch_processor.sequential``: processors that run batches, one after another.

A Sequential processor has one worker. Whenever the worker is free and descriptors
are queued, it takes the queued ones in feed order (at most ``max_batch_size``) as a
batch and runs ``_run_batch(descriptors)`` (a coroutine) or
``_run_batch_synchronous(descriptors)`` (a plain function, in an executor), which
returns one result per descriptor, in order. The batch's handles are ready when the
batch ends; descriptors fed meanwhile wait for the next batch. Feeds made in the same
turn of the event loop join the same batch.
"""
from __future__ import absolute_import, division, print_function

import abc
import collections
import functools
import itertools
import logging
import numbers

from ._runtime import Runtime, library_callback
from ._synchronous import ExecutorRuntime, SynchronousMixin
from .compat import exception_of
from .interface import (
    BaseBatchProcessor, Failure, Handle, check_name, describe, function_processor, safe_repr)

__all__ = ["SequentialBatchProcessor", "SequentialBatchProcessorSynchronous"]

logger = logging.getLogger("batch_processor")


def _check_seconds(cls, option, value, zero_ok):
    if value is None:
        return
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value
            or value in (float("inf"), float("-inf")) or value < 0 or (value == 0 and not zero_ok)):
        raise ValueError("%s(%s=%s): give None or a finite number of seconds %s"
                         % (cls.__name__, option, safe_repr(value), ">= 0" if zero_ok else "> 0"))


def _check_options(cls, max_batch_size, max_batch_wait, job_timeout, retry):
    """The constructor's checks of the options (also made as each run starts)."""
    if max_batch_size is not None and (
            not isinstance(max_batch_size, numbers.Integral) or isinstance(max_batch_size, bool)
            or max_batch_size < 1):
        raise ValueError("%s(max_batch_size=%s): give None (all queued) or an integer >= 1"
                         % (cls.__name__, safe_repr(max_batch_size)))
    _check_seconds(cls, "max_batch_wait", max_batch_wait, True)
    _check_seconds(cls, "job_timeout", job_timeout, False)
    from .separate import RetryPolicy
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError("%s(retry=%s): give None (one attempt) or a RetryPolicy(...)"
                        % (cls.__name__, safe_repr(retry)))


class _SequentialBase(BaseBatchProcessor):
    """One worker, taking queued descriptors in batches of at most ``max_batch_size``."""

    max_batch_size = None
    max_batch_wait = None
    job_timeout = None
    retry = None

    def __init__(self, max_batch_size=None, max_batch_wait=None, job_timeout=None, retry=None,
                 name=None, uses=None):
        cls = type(self)
        check_name(cls, name)
        _check_options(cls, max_batch_size, max_batch_wait, job_timeout, retry)
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait
        self.job_timeout = job_timeout
        self.retry = retry
        self.name = name
        self.uses = uses

    @classmethod
    def from_function(cls, fn, **options):
        """A processor whose batch is ``fn(descriptors)``; ``options`` are the constructor's.

        ``fn`` is a coroutine function for `SequentialBatchProcessor`, a plain
        function for `SequentialBatchProcessorSynchronous` (picklable, defined at
        module level, with ``executor="processes"``); it returns one result per
        descriptor, in order. ``name`` defaults to ``fn.__name__``.
        """
        return function_processor(cls, cls._bp_function_class, fn, options)


class SequentialRuntime(Runtime):
    """The engine of a Sequential processor: one batch at a time.

    ``queue`` holds the fed descriptors not yet in a batch; ``batch`` is the running
    batch's descriptors and ``batch_future`` its future (both ``None`` while the
    worker is free). A batch starts at the end of the loop's turn in which the
    worker became free or the first descriptor was queued, so that the feeds of
    one turn join one batch.
    """

    settles_at_end = True
    observes_attempts = False  # the observer sees each batch whole (started, ended)
    cap = 1  # one batch at a time

    def __init__(self, processor):
        Runtime.__init__(self, processor)
        self.reset()
        self.configure()

    def configure(self):
        """Read ``max_batch_wait``, ``job_timeout`` and ``retry`` (at each run: see
        `Port.configure`; ``max_batch_size`` is read per batch); the constructor's
        error for an invalid one."""
        processor = self.processor
        wait = getattr(processor, "max_batch_wait", None)
        timeout = getattr(processor, "job_timeout", None)
        retry = getattr(processor, "retry", None)
        _check_options(type(processor), getattr(processor, "max_batch_size", None), wait,
                       timeout, retry)
        # (``uses``, the shared resources a batch holds, is read here too.)
        if self.unfinished:
            return  # the batches run with the options they started with: the next run
        self.wait = wait
        if timeout is not None or retry is not None:
            self.launch = self.launch_attempts
            self.observes_attempts = True  # each attempt is an event, not the batch whole
        else:
            self.__dict__.pop("launch", None)
            self.__dict__.pop("observes_attempts", None)

    def reset(self):
        self.queue = collections.deque()
        self.batch = None
        self.batch_future = None
        self.start_scheduled = False
        self.queued_at = collections.deque()  # with max_batch_wait: when each was queued
        self.timer = None
        self.units = None  # the request of units for the next batch, while it waits
        self.batch_units = None  # the request whose units the running batch holds

    def start(self, descriptors):
        queue = self.queue
        queue.extend(descriptors)
        if self.wait is not None:
            now = self.loop.time()
            if len(descriptors) == 1:
                self.queued_at.append(now)
            else:
                self.queued_at.extend(itertools.repeat(now, len(descriptors)))
            if self.timer is not None:
                # The batch waits for its oldest descriptor's deadline, and the timer
                # set for it starts the batch then; only a full batch starts sooner.
                # (Fed one at a time, a descriptor would otherwise cost a loop
                # callback and a clock reading just to learn that it must wait.)
                size = self.processor.max_batch_size
                if size is None or len(queue) < size:
                    return
        if self.batch is None and not self.start_scheduled:
            self.start_scheduled = True
            self.loop.call_soon(self.next_batch)

    @library_callback
    def next_batch(self):
        self.start_scheduled = False
        queue = self.queue
        if not queue or not self.admits(0 if self.batch is None else 1):
            return
        size = self.processor.max_batch_size
        if self.wait is not None and self.keep_waiting(size):
            return
        request = self.units
        if request is not None or self.processor.uses is not None:
            if request is None:
                request = self.units = self.acquire(self.admitted)
            if request is not None and not request.granted:
                return  # the batch forms when its units are granted
            self.units = None
        if size is None or size >= len(queue):
            batch = list(queue)
            queue.clear()
        else:
            popleft = queue.popleft
            batch = [popleft() for _ in range(size)]
        if self.wait is not None:
            for _ in batch:
                self.queued_at.popleft()
        self.batch = batch
        logger.debug("%s: a batch of %d descriptors starts", describe(self.processor), len(batch))
        # A batch that cannot start (its _executor raises...) fails, alone.
        try:
            if request is None:
                future = self.batch_future = self.guarded(self.launch, batch)
            else:
                self.batch_units = request
                future = self.batch_future = self.guarded(functools.partial(
                    self.launch_holding, request, functools.partial(self.launch, units=request)),
                    batch)
        except BaseException:  # KeyboardInterrupt, SystemExit: the run is interrupted
            # The batch still has a future, which the kill that follows cancels.
            future = self.batch_future = self.new_future()
            future.add_done_callback(self.batch_done)
            raise
        if self.observer is not None and not self.observes_attempts:
            self.observer.batch_started(self.processor, future, batch)
        future.add_done_callback(self.batch_done)

    def keep_waiting(self, size):
        """With ``max_batch_wait``: true (and a timer set) if the batch should wait to fill."""
        if size is not None and len(self.queue) >= size:
            waiting = False
        else:
            remaining = self.queued_at[0] + self.wait - self.loop.time()
            waiting = remaining > 0
        timer = self.timer
        if waiting:
            if timer is None:
                self.timer = self.loop.call_later(remaining, self.timer_fired)
        elif timer is not None:
            self.timer = None
            timer.cancel()
        return waiting

    def show_attempt(self, observer, future, batch, attempt):
        observer.batch_started(self.processor, future, batch)

    def attempt_outcome(self, batch, future):
        return _batch_outcome(future, batch, self)  # its results may be wrong

    def slot_freed(self):
        self.next_batch()

    @library_callback
    def admitted(self, request):
        """The units the next batch waited for are granted (from the loop)."""
        if request is not self.units:
            request.release()  # killed meanwhile
            return
        self.next_batch()

    def timer_fired(self):
        self.timer = None
        self.next_batch()

    def launch(self, batch, units=None):
        return self.launch_batch(batch)

    def attempt(self, batch, on_start=None):
        return self.launch_batch(batch)

    def describe_attempt(self, batch):
        return "the batch of %d descriptors %s" % (len(batch), safe_repr(batch, 120))

    def launch_attempts(self, batch, units=None):
        task = self.start_task(self.attempts(batch, units))
        outer = self.new_future()

        def unwrap(task):  # the batch's outcome: its last attempt's future
            if outer.done():
                if not task.cancelled():
                    exception_of(task)
                return
            if task.cancelled():
                outer.cancel()
            elif exception_of(task) is not None:
                self.fail_into(outer, task)
            else:
                last = task.result()
                if last.cancelled():
                    outer.cancel()
                elif exception_of(last) is not None:
                    self.fail_into(outer, last)
                else:
                    outer.set_result(last.result())

        def cancel_task(outer):
            if outer.cancelled() and not task.done():
                task.cancel()
        task.add_done_callback(unwrap)
        outer.add_done_callback(cancel_task)
        return outer

    def fail_into(self, future, source):
        from . import compat
        compat.fail(future, exception_of(source), source)


    @library_callback
    def batch_done(self, future):
        if self.observer is not None and not self.observes_attempts:
            self.observer.ended(future, _batch_outcome(
                future, self.batch if future is self.batch_future else None, self))
        if future is not self.batch_future:
            if not future.cancelled():
                exception_of(future)
            return  # killed: the handles were made then
        batch = self.batch
        self.batch = self.batch_future = None
        self.release_units()
        if future.cancelled():
            handles = [Handle(d, self.cancelled_future()) for d in batch]
        else:
            exc = exception_of(future)
            results = None
            if exc is None:
                results = future.result()
                exc = self.check_results(batch, results)
            if exc is None:
                make = self.result_future
                handles = [Handle(d, self.failed_future(r.exception) if type(r) is Failure
                                  else make(r)) for d, r in zip(batch, results)]
            else:
                handles = [Handle(d, self.failed_future(exc, future)) for d in batch]
        logger.debug("%s: a batch of %d descriptors ended", describe(self.processor), len(batch))
        self.end(handles)
        if self.queue:
            self.slot_freed()

    def check_results(self, batch, results):
        if not isinstance(results, (list, tuple)):
            return TypeError(
                "%s: the batch function returned %s for a batch of %d descriptors; it must "
                "return a list with one result per descriptor, in order"
                % (describe(self.processor), safe_repr(results), len(batch)))
        if len(results) != len(batch):
            return ValueError(
                "%s: the batch function returned %d results for a batch of %d descriptors; "
                "it must return exactly one result per descriptor, in order"
                % (describe(self.processor), len(results), len(batch)))
        return None

    def release_units(self):
        """Give back the units of the running batch, and stop asking for the next one's."""
        for request in (self.batch_units, self.units):
            if request is not None:
                request.release()
        self.batch_units = self.units = None

    def orphan_all(self):
        self.release_units()
        descriptors = []
        if self.batch is not None:
            descriptors.extend(self.batch)
        self.batch = self.batch_future = None
        descriptors.extend(self.queue)
        self.queue.clear()
        return descriptors

    def launch_batch(self, batch):  # pragma: no cover - each form implements it
        """Start running ``batch``; return its future (done if it could not start)."""
        raise NotImplementedError

    def cancel_all(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queued_at.clear()
        self.release_units()
        descriptors = []
        if self.batch is not None:
            descriptors.extend(self.batch)
            future = self.batch_future
            self.batch = self.batch_future = None
            future.cancel()
        descriptors.extend(self.queue)
        self.queue.clear()
        return descriptors


def _batch_outcome(future, batch, runtime):
    """How the batch of ``future`` ended, for an observer: its results may be wrong."""
    if future.cancelled() or exception_of(future) is not None or batch is None:
        return None  # read from the future
    if runtime.check_results(batch, future.result()) is not None:
        return "failed"
    return "ok"


class _CoroutineRuntime(SequentialRuntime):
    def launch_batch(self, batch):
        return self.run_coroutine(self.processor._run_batch, list(batch))


class SequentialBatchProcessor(_SequentialBase):
    """Runs the coroutine ``_run_batch(descriptors)`` on batches, one at a time.

    Args:
        max_batch_size: the largest batch (``None``: every queued descriptor).
        max_batch_wait: seconds; a batch starts when ``max_batch_size`` descriptors
            are queued or the oldest queued one has waited this long, whichever
            comes first (``None``: as soon as the worker is free).
        job_timeout: seconds per batch attempt; a longer one is cancelled and fails
            with `JobTimeoutError`.
        retry: a `RetryPolicy` for failed batch attempts (``None``: one attempt).
            Every handle of the batch gets the last attempt's outcome.
        name: what messages, logs, progress and pictures call the processor
            (``None``: its class name).
        uses: ``{Resource: units}``: a batch starts only when these units are free,
            and holds them while its attempt runs (``None``: no shared resource).

    An item of the returned list that is a `Failure` fails its descriptor's handle
    with ``Failure.exception``; the other items succeed.
    """

    _runtime_class = _CoroutineRuntime

    # -- the hook a subclass implements --------------------------------------------

    @abc.abstractmethod
    def _run_batch(self, job_descriptors):
        """Return a coroutine that runs a batch and returns a list of results, one per descriptor."""


class _ThreadRuntime(ExecutorRuntime, SequentialRuntime):
    method_name = "_run_batch_synchronous"

    def configure(self):
        SequentialRuntime.configure(self)
        if not self.unfinished:
            self.configure_executor()

    def launch_batch(self, batch):
        return self.submit(self.processor._executor, list(batch))

    def cancel_attempt(self, future):
        self.cancel_executor_future(future)


class SequentialBatchProcessorSynchronous(SynchronousMixin, _SequentialBase):
    """Runs the plain function ``_run_batch_synchronous(descriptors)`` in ``self._executor``.

    Args:
        max_batch_size, max_batch_wait, job_timeout, retry, name, uses: as for
            `SequentialBatchProcessor`.
        executor: ``None`` or ``"threads"`` (a single-thread pool, with a daemon
            thread, owned by the processor), ``"processes"`` (a pool of one worker
            process it owns, holding a copy of the processor made when the worker
            started), or a ``concurrent.futures.Executor`` instance, used as it is
            and never pickled.

    ``_executor`` is read once per batch.
    """

    _runtime_class = _ThreadRuntime
    _default_workers = 1
    _default_processes = 1

    def __init__(self, max_batch_size=None, max_batch_wait=None, job_timeout=None, retry=None,
                 name=None, executor=None, uses=None):
        _SequentialBase.__init__(self, max_batch_size, max_batch_wait, job_timeout, retry, name,
                                 uses)
        self._bp_set_executor(executor)

    # -- the hooks a subclass implements or overrides ----------------------------------

    @abc.abstractmethod
    def _run_batch_synchronous(self, job_descriptors):
        """Run a batch and return a list of results, one per descriptor, in order."""


class SequentialFunction(SequentialBatchProcessor):
    """What `SequentialBatchProcessor.from_function` makes: the batch is ``self.fn(descriptors)``."""

    def __init__(self, fn, **options):
        self.fn = fn
        SequentialBatchProcessor.__init__(self, **options)

    def _run_batch(self, job_descriptors):
        return self.fn(job_descriptors)


class SequentialFunctionSynchronous(SequentialBatchProcessorSynchronous):
    """What `SequentialBatchProcessorSynchronous.from_function` makes."""

    def __init__(self, fn, **options):
        self.fn = fn
        SequentialBatchProcessorSynchronous.__init__(self, **options)

    def _run_batch_synchronous(self, job_descriptors):
        return self.fn(job_descriptors)


SequentialBatchProcessor._bp_function_class = SequentialFunction  # type: ignore[attr-defined]
SequentialBatchProcessorSynchronous._bp_function_class = SequentialFunctionSynchronous  # type: ignore[attr-defined]
