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

if False:  # type checkers only
    from typing import Optional  # noqa: F401

__all__ = ["SynchronousMixin"]


class SynchronousMixin(object):
    """Executor plumbing for a `BaseBatchProcessor` subclass."""

    #: Workers of the default executor; ``None``: the standard library's default.
    _bp_default_workers = None  # type: Optional[int]

    def _bp_reset_executor(self):
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

    def _bp_submit(self, executor, function, argument):
        """Run ``function(argument)`` in ``executor``; return a future of the processor's loop."""
        if executor is None:  # as with run_in_executor(): the loop's default executor
            return self._bp_loop.run_in_executor(None, function, argument)
        future = self._bp_new_future()
        try:
            executor_future = executor.submit(function, argument)
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
                future.set_exception(exc)

    def _bp_cancel_executor_future(self, future):
        """Cancel the loop future ``future`` and, if it can, the work behind it."""
        executor_future = self._bp_executor_futures.pop(future, None)
        if executor_future is not None:
            executor_future.cancel()  # a job already running in a thread is abandoned
        future.cancel()

    def _bp_cancel_executor_futures(self):
        pending, self._bp_executor_futures = self._bp_executor_futures, {}
        for future, executor_future in pending.items():
            executor_future.cancel()
            future.cancel()
