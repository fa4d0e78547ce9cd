"""Running plain functions in a ``concurrent.futures`` executor for a processor.

`SynchronousMixin` is shared by ``SeparateBatchProcessorSynchronous`` and
``SequentialBatchProcessorSynchronous``. It submits a function to the processor's
executor and resolves a future of the processor's loop when it ends. Completions
coming from worker threads are queued and handed to the loop in one
``call_soon_threadsafe`` per burst, not one per job; a completion that arrives after
the loop closed (an abandoned thread of a killed run) is dropped without a word.
"""
from __future__ import absolute_import, division, print_function

import collections
import functools
import logging
import pickle
from concurrent.futures import ProcessPoolExecutor

from . import compat
from .interface import describe

if False:  # type checkers only
    from typing import Optional  # noqa: F401

__all__ = ["SynchronousMixin"]

logger = logging.getLogger("batch_processor")


def _call_method(processor, method_name, argument):
    """``processor.method_name(argument)``, submitted as a module function.

    Python 2 cannot pickle a bound method; a process pool can pickle this
    function, the processor (without its runtime state) and the method's name.
    """
    return getattr(processor, method_name)(argument)


class SynchronousMixin(object):
    """Executor plumbing for a `BaseBatchProcessor` subclass."""

    #: Workers of the default executor; ``None``: the standard library's default.
    _bp_default_workers = None  # type: Optional[int]

    def _bp_reset(self):
        """The processor's runtime state, plus the queue of executor completions."""
        super(SynchronousMixin, self)._bp_reset()
        self._bp_completed = collections.deque()
        self._bp_wakeup_pending = False
        self._bp_executor_futures = {}  # loop future -> concurrent future

    @property
    def _executor(self):
        """The `concurrent.futures.Executor` the jobs run in.

        Override it to choose another one (a process pool, a cluster's executor, a
        fresh ``UnsafeThreadPoolExecutor(1)`` per job...); ``None`` means the event
        loop's default executor, as with ``loop.run_in_executor()``. The default is a
        thread pool with daemon threads owned by the processor.
        """
        executor = self.__dict__.get("_bp_default_executor")
        if executor is None:
            from .util import UnsafeThreadPoolExecutor
            executor = UnsafeThreadPoolExecutor(self._bp_default_workers)
            self._bp_default_executor = executor
        return executor

    def _bp_submit(self, executor, method_name, argument):
        """Run ``self.method_name(argument)`` in ``executor``; return a future of the processor's loop."""
        if executor is None:  # as with run_in_executor(): the loop's default executor
            return self._bp_loop.run_in_executor(None, _call_method, self, method_name, argument)
        future = self._bp_new_future()
        try:
            if compat.PY2 and isinstance(executor, ProcessPoolExecutor):
                # The futures backport hangs on what it cannot pickle: find out first.
                pickle.dumps((self, method_name, argument), pickle.HIGHEST_PROTOCOL)
            executor_future = executor.submit(_call_method, self, method_name, argument)
        except Exception as exc:  # a shut-down or broken executor fails this job only
            future.set_exception(exc)
            return future
        self._bp_executor_futures[future] = executor_future
        executor_future.add_done_callback(functools.partial(self._bp_executor_done, future))
        return future

    def _bp_executor_done(self, future, executor_future):
        # Runs in a worker thread (or in the loop's thread if already done).
        self._bp_completed.append((future, executor_future))
        if not self._bp_wakeup_pending:
            self._bp_wakeup_pending = True
            loop = self._bp_loop
            try:
                loop.call_soon_threadsafe(self._bp_drain_completed)
            except (RuntimeError, AttributeError):
                # The loop is closed: the run that wanted this result is over.
                self._bp_wakeup_pending = False

    def _bp_drain_completed(self):
        self._bp_wakeup_pending = False
        completed = self._bp_completed
        pending = self._bp_executor_futures
        while completed:
            future, executor_future = completed.popleft()
            if pending.pop(future, None) is None or future.done():
                continue  # cancelled on the loop's side: killed or timed out
            if executor_future.cancelled():
                future.cancel()
                continue
            exc = executor_future.exception()
            if exc is None:
                future.set_result(executor_future.result())
            else:
                compat.fail(future, exc, executor_future)

    def _bp_cancel_executor_future(self, future):
        """Cancel the loop future ``future`` and, if it can, the work behind it."""
        executor_future = self._bp_executor_futures.pop(future, None)
        if executor_future is not None:
            self._bp_cancel_executor_future_of(executor_future)
        future.cancel()

    def _bp_cancel_all(self):
        """Cancel as the processor does, then whatever is still in the executor."""
        descriptors = super(SynchronousMixin, self)._bp_cancel_all()
        pending, self._bp_executor_futures = self._bp_executor_futures, {}
        for future, executor_future in pending.items():
            self._bp_cancel_executor_future_of(executor_future)
            future.cancel()
        return descriptors

    def _bp_cancel_executor_future_of(self, executor_future):
        if not executor_future.cancel() and not executor_future.done():
            logger.warning("%s: a job already running in its executor cannot be interrupted; "
                           "it is abandoned and its result will be discarded", describe(self))
