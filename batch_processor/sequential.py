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
import logging
import numbers

from ._runtime import Runtime
from ._synchronous import ExecutorRuntime, SynchronousMixin
from .compat import exception_of
from .interface import BaseBatchProcessor, Handle, check_name, describe, safe_repr

__all__ = ["SequentialBatchProcessor", "SequentialBatchProcessorSynchronous"]

logger = logging.getLogger("batch_processor")


class _SequentialBase(BaseBatchProcessor):
    """One worker, taking queued descriptors in batches of at most ``max_batch_size``."""

    max_batch_size = None

    def __init__(self, max_batch_size=None, name=None):
        check_name(type(self), name)
        if max_batch_size is not None and (
                not isinstance(max_batch_size, numbers.Integral) or isinstance(max_batch_size, bool)
                or max_batch_size < 1):
            raise ValueError("%s(max_batch_size=%r): give None (all queued) or an integer >= 1"
                             % (type(self).__name__, max_batch_size))
        self.max_batch_size = max_batch_size
        self.name = name


class SequentialRuntime(Runtime):
    """The engine of a Sequential processor: one batch at a time.

    ``queue`` holds the fed descriptors not yet in a batch; ``batch`` is the running
    batch's descriptors and ``batch_future`` its future (both ``None`` while the
    worker is free). A batch starts at the end of the loop's turn in which the
    worker became free or the first descriptor was queued, so that the feeds of
    one turn join one batch.
    """

    def __init__(self, processor):
        Runtime.__init__(self, processor)
        self.reset()

    def reset(self):
        self.queue = collections.deque()
        self.batch = None
        self.batch_future = None
        self.start_scheduled = False

    def start(self, descriptors):
        self.queue.extend(descriptors)
        if self.batch is None and not self.start_scheduled:
            self.start_scheduled = True
            self.loop.call_soon(self.next_batch)

    def next_batch(self):
        self.start_scheduled = False
        queue = self.queue
        if self.batch is not None or not queue:
            return
        size = self.processor.max_batch_size
        if size is None or size >= len(queue):
            batch = list(queue)
            queue.clear()
        else:
            popleft = queue.popleft
            batch = [popleft() for _ in range(size)]
        self.batch = batch
        logger.debug("%s: a batch of %d descriptors starts", describe(self.processor), len(batch))
        future = self.batch_future = self.launch_batch(batch)
        future.add_done_callback(self.batch_done)

    def batch_done(self, future):
        if future is not self.batch_future:
            if not future.cancelled():
                exception_of(future)
            return  # killed: the handles were made then
        batch = self.batch
        self.batch = self.batch_future = None
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
                handles = [Handle(d, make(r)) for d, r in zip(batch, results)]
            else:
                handles = [Handle(d, self.failed_future(exc, future)) for d in batch]
        logger.debug("%s: a batch of %d descriptors ended", describe(self.processor), len(batch))
        self.end(handles)
        if self.queue:
            self.next_batch()

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

    def launch_batch(self, batch):  # pragma: no cover - each form implements it
        """Start running ``batch``; return its future (done if it could not start)."""
        raise NotImplementedError

    def cancel_all(self):
        descriptors = []
        if self.batch is not None:
            descriptors.extend(self.batch)
            future = self.batch_future
            self.batch = self.batch_future = None
            future.cancel()
        descriptors.extend(self.queue)
        self.queue.clear()
        return descriptors


class _CoroutineRuntime(SequentialRuntime):
    def launch_batch(self, batch):
        return self.run_coroutine(self.processor._run_batch, list(batch))


class SequentialBatchProcessor(_SequentialBase):
    """Runs the coroutine ``_run_batch(descriptors)`` on batches, one at a time.

    Args:
        max_batch_size: the largest batch (``None``: every queued descriptor).
        name: what messages, logs, progress and pictures call the processor
            (``None``: its class name).
    """

    _runtime_class = _CoroutineRuntime

    # -- the hook a subclass implements --------------------------------------------

    @abc.abstractmethod
    def _run_batch(self, job_descriptors):
        """Return a coroutine that runs a batch and returns a list of results, one per descriptor."""


class _ThreadRuntime(ExecutorRuntime, SequentialRuntime):
    method_name = "_run_batch_synchronous"

    def launch_batch(self, batch):
        return self.submit(self.processor._executor, list(batch))


class SequentialBatchProcessorSynchronous(SynchronousMixin, _SequentialBase):
    """Runs the plain function ``_run_batch_synchronous(descriptors)`` in ``self._executor``.

    Args:
        max_batch_size, name: as for `SequentialBatchProcessor`.
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

    def __init__(self, max_batch_size=None, name=None, executor=None):
        _SequentialBase.__init__(self, max_batch_size, name)
        self._bp_set_executor(executor)

    # -- the hooks a subclass implements or overrides ----------------------------------

    @abc.abstractmethod
    def _run_batch_synchronous(self, job_descriptors):
        """Run a batch and return a list of results, one per descriptor, in order."""
