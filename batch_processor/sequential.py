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

from ._synchronous import SynchronousMixin
from .compat import exception_of
from .interface import BaseBatchProcessor, Handle, describe

__all__ = ["SequentialBatchProcessor", "SequentialBatchProcessorSynchronous"]

logger = logging.getLogger("batch_processor")


class _SequentialBase(BaseBatchProcessor):
    """One worker, taking queued descriptors in batches of at most ``max_batch_size``."""

    max_batch_size = None

    def __init__(self, max_batch_size=None):
        if max_batch_size is not None and (
                not isinstance(max_batch_size, numbers.Integral) or isinstance(max_batch_size, bool)
                or max_batch_size < 1):
            raise ValueError("%s(max_batch_size=%r): give None (all queued) or an integer >= 1"
                             % (type(self).__name__, max_batch_size))
        self.max_batch_size = max_batch_size

    def _bp_reset(self):
        self._bp_queue = collections.deque()
        self._bp_batch = None  # the descriptors of the running batch
        self._bp_batch_future = None
        self._bp_start_scheduled = False

    def _bp_start(self, descriptors):
        self._bp_queue.extend(descriptors)
        if self._bp_batch is None and not self._bp_start_scheduled:
            # Wait for the end of this turn of the loop, so that every feed made in
            # it joins the batch.
            self._bp_start_scheduled = True
            self._bp_loop.call_soon(self._bp_next_batch)

    def _bp_next_batch(self):
        self._bp_start_scheduled = False
        queue = self._bp_queue
        if self._bp_batch is not None or not queue:
            return
        size = self.max_batch_size
        if size is None or size >= len(queue):
            batch = list(queue)
            queue.clear()
        else:
            popleft = queue.popleft
            batch = [popleft() for _ in range(size)]
        self._bp_batch = batch
        logger.debug("%s: a batch of %d descriptors starts", describe(self), len(batch))
        future = self._bp_batch_future = self._bp_launch_batch(batch)
        future.add_done_callback(self._bp_batch_done)

    def _bp_batch_done(self, future):
        if future is not self._bp_batch_future:
            if not future.cancelled():
                exception_of(future)
            return  # killed: the handles were made then
        batch = self._bp_batch
        self._bp_batch = self._bp_batch_future = None
        if future.cancelled():
            handles = [Handle(d, self._bp_cancelled_future()) for d in batch]
        else:
            exc = exception_of(future)
            results = None
            if exc is None:
                results = future.result()
                exc = self._bp_check_results(batch, results)
            if exc is None:
                make = self._bp_result_future
                handles = [Handle(d, make(r)) for d, r in zip(batch, results)]
            else:
                handles = [Handle(d, self._bp_failed_future(exc, future)) for d in batch]
        logger.debug("%s: a batch of %d descriptors ended", describe(self), len(batch))
        self._bp_add_ready(handles)
        if self._bp_queue:
            self._bp_next_batch()

    def _bp_check_results(self, batch, results):
        if not isinstance(results, (list, tuple)):
            return TypeError(
                "%s: the batch function returned %r for a batch of %d descriptors; it must "
                "return a list with one result per descriptor, in order"
                % (describe(self), results, len(batch)))
        if len(results) != len(batch):
            return ValueError(
                "%s: the batch function returned %d results for a batch of %d descriptors; "
                "it must return exactly one result per descriptor, in order"
                % (describe(self), len(results), len(batch)))
        return None

    @abc.abstractmethod
    def _bp_launch_batch(self, batch):
        """Start running ``batch``; return its future (done if it could not start)."""

    def _bp_cancel_all(self):
        descriptors = []
        if self._bp_batch is not None:
            descriptors.extend(self._bp_batch)
            future = self._bp_batch_future
            self._bp_batch = self._bp_batch_future = None
            future.cancel()
        descriptors.extend(self._bp_queue)
        self._bp_queue.clear()
        return descriptors


class SequentialBatchProcessor(_SequentialBase):
    """Runs the coroutine ``_run_batch(descriptors)`` on batches, one at a time.

    Args:
        max_batch_size: the largest batch (``None``: every queued descriptor).
    """

    @abc.abstractmethod
    def _run_batch(self, job_descriptors):
        """Return a coroutine that runs a batch and returns a list of results, one per descriptor."""

    def _bp_launch_batch(self, batch):
        return self._bp_run_coroutine(self._run_batch, list(batch))


class SequentialBatchProcessorSynchronous(SynchronousMixin, _SequentialBase):
    """Runs the plain function ``_run_batch_synchronous(descriptors)`` in ``self._executor``.

    ``_executor`` is read once per batch; by default it is a single-thread pool (with
    a daemon thread) owned by the processor.
    """

    _bp_default_workers = 1

    @abc.abstractmethod
    def _run_batch_synchronous(self, job_descriptors):
        """Run a batch and return a list of results, one per descriptor, in order."""

    def _bp_launch_batch(self, batch):
        return self._bp_submit(self._executor, "_run_batch_synchronous", list(batch))
