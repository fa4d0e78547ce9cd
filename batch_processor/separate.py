"""``batch_processor.separate``: processors that run each descriptor as its own job.

`SeparateBatchProcessor` runs ``_run_one_job(descriptor)``, a coroutine, per
descriptor; `SeparateBatchProcessorSynchronous` runs the plain function
``_run_one_job_synchronous(descriptor)`` in an executor. Both cap the number of jobs
running at once with ``max_parallel_jobs``, limit each attempt with ``job_timeout``
and retry failed attempts by a `RetryPolicy`. A job's handle is ready as soon as the
job ends.
"""
from __future__ import absolute_import, division, print_function

import abc
import collections
import logging
import numbers

import attr

from ._synchronous import SynchronousMixin
from .compat import CancelledError, From, Return, asyncio, coroutine, exception_of
from .interface import BaseBatchProcessor, Handle, JobTimeoutError, describe

__all__ = ["RetryPolicy", "SeparateBatchProcessor", "SeparateBatchProcessorSynchronous"]

logger = logging.getLogger("batch_processor")
_DEBUG = logging.DEBUG

_NOTHING = object()


def _check_attempts(instance, attribute, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError("RetryPolicy(attempts=%r): attempts counts every attempt and "
                         "must be an integer >= 1" % (value,))


def _check_backoff(instance, attribute, value):
    if not isinstance(value, numbers.Real) or value < 0:
        raise ValueError("RetryPolicy(backoff=%r): backoff is a number of seconds >= 0" % (value,))


def _as_exception_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _check_retry_on(instance, attribute, value):
    for cls in value:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError("RetryPolicy(retry_on=%r): retry_on takes exception classes" % (value,))


@attr.s(frozen=True)
class RetryPolicy(object):
    """How a Separate processor retries a failed attempt of a job.

    Args:
        attempts: all attempts, the first included (>= 1).
        backoff: before attempt k+1 the job waits ``backoff * 2 ** (k - 1)`` seconds.
        retry_on: the exception classes worth another attempt. Cancellation and
            ``kill()`` are never retried.
    """

    attempts = attr.ib(default=3, validator=_check_attempts)
    backoff = attr.ib(default=0.0, validator=_check_backoff)
    retry_on = attr.ib(default=(Exception,), converter=_as_exception_tuple,
                       validator=_check_retry_on)

    def delay(self, attempt):
        """Seconds to wait after the failed attempt number ``attempt`` (1-based)."""
        return self.backoff * 2 ** (attempt - 1)


def _check_options(cls, max_parallel_jobs, job_timeout, retry):
    name = cls.__name__
    if max_parallel_jobs is not None and (
            not isinstance(max_parallel_jobs, numbers.Integral) or isinstance(max_parallel_jobs, bool)
            or max_parallel_jobs < 1):
        raise ValueError("%s(max_parallel_jobs=%r): give None (no cap) or an integer >= 1"
                         % (name, max_parallel_jobs))
    if job_timeout is not None and (not isinstance(job_timeout, numbers.Real) or job_timeout <= 0):
        raise ValueError("%s(job_timeout=%r): give None (no limit) or a number of seconds > 0"
                         % (name, job_timeout))
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError("%s(retry=%r): give None (one attempt) or a RetryPolicy(...)" % (name, retry))


class _SeparateBase(BaseBatchProcessor):
    """Jobs of one descriptor each, at most ``max_parallel_jobs`` at once."""

    max_parallel_jobs = None
    job_timeout = None
    retry = None

    def __init__(self, max_parallel_jobs=None, job_timeout=None, retry=None):
        _check_options(type(self), max_parallel_jobs, job_timeout, retry)
        self.max_parallel_jobs = max_parallel_jobs
        self.job_timeout = job_timeout
        self.retry = retry

    def _bp_reset(self):
        self._bp_queue = collections.deque()  # fed, waiting for a free slot
        self._bp_running = {}  # the job's future -> its descriptor

    # -- starting jobs ------------------------------------------------------------

    def _bp_start(self, descriptors):
        if self.max_parallel_jobs is None and self.job_timeout is None and self.retry is None:
            # The hot path: one attempt per job, started at once.
            if logger.isEnabledFor(_DEBUG):
                for descriptor in descriptors:
                    logger.debug("%s: job %r starts", describe(self), descriptor)
            attempt, running, done = self._bp_attempt, self._bp_running, self._bp_job_done
            for descriptor in descriptors:
                future = attempt(descriptor)
                running[future] = descriptor
                future.add_done_callback(done)
        else:
            self._bp_queue.extend(descriptors)
            self._bp_fill()

    def _bp_fill(self):
        queue, running = self._bp_queue, self._bp_running
        cap = self.max_parallel_jobs
        plain = self.job_timeout is None and self.retry is None
        while queue and (cap is None or len(running) < cap):
            descriptor = queue.popleft()
            if plain:
                self._bp_launch(descriptor)
            else:
                if logger.isEnabledFor(_DEBUG):
                    logger.debug("%s: job %r starts", describe(self), descriptor)
                task = self._bp_loop.create_task(self._bp_attempts(descriptor))
                running[task] = descriptor
                task.add_done_callback(self._bp_attempts_done)

    def _bp_launch(self, descriptor):
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s: job %r starts", describe(self), descriptor)
        future = self._bp_attempt(descriptor)
        self._bp_running[future] = descriptor
        future.add_done_callback(self._bp_job_done)

    def _bp_job_done(self, future):
        descriptor = self._bp_running.pop(future, _NOTHING)
        try:
            exception_of(future)  # retrieved: the handle carries it
        except CancelledError:
            pass
        if descriptor is _NOTHING:
            return  # killed: its handle was made then
        if logger.isEnabledFor(_DEBUG):
            _log_end(self, descriptor, future)
        ready = self._bp_ready
        ready.append(Handle(descriptor, future))
        self._bp_unfinished -= 1
        if self._bp_queue:
            self._bp_fill()
        if len(ready) == 1:
            self._bp_notify()
        if self._bp_stopping and not self._bp_unfinished:
            self._bp_stopped()

    def _bp_attempts_done(self, task):
        descriptor = self._bp_running.pop(task, _NOTHING)
        outcome = task
        if not task.cancelled() and task.exception() is None:
            outcome = task.result()  # the last attempt's future
        if descriptor is _NOTHING:
            return
        if logger.isEnabledFor(_DEBUG):
            _log_end(self, descriptor, outcome)
        self._bp_add_ready([Handle(descriptor, outcome)])
        if self._bp_queue:
            self._bp_fill()

    # -- one attempt, and many -------------------------------------------------------

    @abc.abstractmethod
    def _bp_attempt(self, descriptor):
        """Start one attempt of a job; return its future (done if it could not start)."""

    def _bp_cancel_attempt(self, future):
        future.cancel()

    @coroutine
    def _bp_attempts(self, descriptor):
        """Run attempts until one succeeds or the retry policy gives up.

        Returns the last attempt's (done) future, so the handle carries its outcome
        exactly; its exception is never raised here, so a ``SystemExit`` from a
        worker thread cannot stop the loop.
        """
        policy, timeout = self.retry, self.job_timeout
        loop = self._bp_loop
        attempt = 0
        while True:
            attempt += 1
            future = self._bp_attempt(descriptor)
            timer, expired = None, []
            if timeout is not None and not future.done():
                timer = loop.call_later(timeout, self._bp_expire, future, expired)
            try:
                yield From(_settled(future, self._bp_new_future()))
            except CancelledError:
                if not future.done():
                    self._bp_cancel_attempt(future)
                elif not future.cancelled():
                    exception_of(future)  # ended as we were killed: nobody else will look
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if future.cancelled():
                if not expired:
                    raise Return(future)  # cancelled by someone else: not retried
                future = self._bp_failed_future(JobTimeoutError(
                    "%s: attempt %d of the job %r ran longer than job_timeout=%s s"
                    % (describe(self), attempt, descriptor, timeout)))
            exc = exception_of(future)
            if (exc is None or policy is None or attempt >= policy.attempts
                    or not isinstance(exc, policy.retry_on)):
                raise Return(future)
            delay = policy.delay(attempt)
            logger.warning("%s: attempt %d of %d of the job %r failed (%r); retrying in %s s",
                           describe(self), attempt, policy.attempts, descriptor, exc, delay)
            if delay > 0:
                yield From(asyncio.sleep(delay))

    def _bp_expire(self, future, expired):
        logger.warning("%s: an attempt ran longer than job_timeout=%s s and is cancelled",
                       describe(self), self.job_timeout)
        expired.append(True)
        self._bp_cancel_attempt(future)

    def _bp_cancel_all(self):
        running, self._bp_running = self._bp_running, {}
        for future in running:
            self._bp_cancel_attempt(future)
        descriptors = list(running.values())
        descriptors.extend(self._bp_queue)
        self._bp_queue.clear()
        return descriptors


def _log_end(processor, descriptor, future):
    if future.cancelled():
        outcome = "is cancelled"
    elif exception_of(future) is not None:
        outcome = "failed: %r" % (exception_of(future),)
    else:
        outcome = "succeeded"
    logger.debug("%s: job %r %s", describe(processor), descriptor, outcome)


def _settled(future, waiter):
    """``waiter``, resolved with ``None`` when ``future`` is done, whatever its outcome."""
    def settle(_):
        if not waiter.done():
            waiter.set_result(None)
    future.add_done_callback(settle)
    return waiter


class SeparateBatchProcessor(_SeparateBase):
    """Runs the coroutine ``_run_one_job(descriptor)`` for each descriptor.

    Args:
        max_parallel_jobs: at most this many jobs run at once, started in feed
            order (``None``: no cap).
        job_timeout: seconds per attempt; a longer attempt is cancelled and fails
            with `JobTimeoutError`.
        retry: a `RetryPolicy`, or ``None`` for one attempt.
    """

    @abc.abstractmethod
    def _run_one_job(self, job_descriptor):
        """Return a coroutine (native, or trollius-style via ``compat.coroutine``) that runs one job."""

    def _bp_attempt(self, descriptor):
        return self._bp_run_coroutine(self._run_one_job, descriptor)


class SeparateBatchProcessorSynchronous(SynchronousMixin, _SeparateBase):
    """Runs the plain function ``_run_one_job_synchronous(descriptor)`` in ``self._executor``.

    ``_executor`` is read once per job. By default it is one thread pool (with daemon
    threads) shared by the processor's jobs, with ``max_parallel_jobs`` workers when
    that is set and the standard library's default number otherwise.
    """

    @property
    def _bp_default_workers(self):
        return self.max_parallel_jobs

    @abc.abstractmethod
    def _run_one_job_synchronous(self, job_descriptor):
        """Run one job and return its result (called in an executor's worker)."""

    def _bp_attempt(self, descriptor):
        return self._bp_submit(self._executor, "_run_one_job_synchronous", descriptor)

    def _bp_cancel_attempt(self, future):
        self._bp_cancel_executor_future(future)
