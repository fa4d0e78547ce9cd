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
import functools
import logging
import numbers

import attr

from . import resources
from ._runtime import Runtime, library_callback
from ._synchronous import ExecutorRuntime, SynchronousMixin
from .compat import exception_of
from .interface import (
    BaseBatchProcessor, Handle, check_name, check_seconds, describe, function_processor,
    safe_repr)

__all__ = ["RetryPolicy", "SeparateBatchProcessor", "SeparateBatchProcessorSynchronous"]

logger = logging.getLogger("batch_processor")
_DEBUG = logging.DEBUG

_NOTHING = object()


def _check_attempts(instance, attribute, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError("RetryPolicy(attempts=%s): attempts counts every attempt and "
                         "must be an integer >= 1" % (safe_repr(value),))


def _check_backoff(instance, attribute, value):
    if value is None:
        raise ValueError("RetryPolicy(backoff=None): backoff is a finite number of seconds >= 0")
    check_seconds("RetryPolicy", "backoff", value, allow_zero=True)


def _as_exception_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _check_retry_on(instance, attribute, value):
    for cls in value:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError("RetryPolicy(retry_on=%s): retry_on takes exception classes"
                            % (safe_repr(value),))


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


def _check_options(cls, max_parallel_jobs, job_timeout, retry, processor_name):
    check_name(cls, processor_name)
    name = cls.__name__
    if max_parallel_jobs is not None and (
            not isinstance(max_parallel_jobs, numbers.Integral) or isinstance(max_parallel_jobs, bool)
            or max_parallel_jobs < 1):
        raise ValueError("%s(max_parallel_jobs=%s): give None (no cap) or an integer >= 1"
                         % (name, safe_repr(max_parallel_jobs)))
    check_seconds(name, "job_timeout", job_timeout)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError("%s(retry=%s): give None (one attempt) or a RetryPolicy(...)"
                        % (name, safe_repr(retry)))


class _SeparateBase(BaseBatchProcessor):
    """Jobs of one descriptor each, at most ``max_parallel_jobs`` at once."""

    max_parallel_jobs = None
    job_timeout = None
    retry = None

    def __init__(self, max_parallel_jobs=None, job_timeout=None, retry=None, name=None,
                 uses=None):
        _check_options(type(self), max_parallel_jobs, job_timeout, retry, name)
        self.max_parallel_jobs = max_parallel_jobs
        self.job_timeout = job_timeout
        self.retry = retry
        self.name = name
        self.uses = uses

    @classmethod
    def from_function(cls, fn, **options):
        """A processor whose job is ``fn(descriptor)``; ``options`` are the constructor's.

        ``fn`` is a coroutine function for `SeparateBatchProcessor`, a plain function
        for `SeparateBatchProcessorSynchronous` (picklable, defined at module level,
        with ``executor="processes"``). ``name`` defaults to ``fn.__name__``.
        """
        return function_processor(cls, cls._bp_function_class, fn, options)


class SeparateRuntime(Runtime):
    """The engine of a Separate processor: one job per descriptor.

    How a job starts is chosen once, when the runtime is made, from the
    processor's options: at once (no cap, no time limit, no retry: the hot path),
    queued for a free slot (``max_parallel_jobs``), or as a task that runs
    attempts (``job_timeout`` or ``retry``). ``running`` maps the future of each
    started job (its attempt's, or its attempts' task) to its descriptor; ``queue``
    holds the fed jobs waiting for a slot.
    """

    def __init__(self, processor):
        Runtime.__init__(self, processor)
        self.reset()
        self.configure()

    def configure(self):
        """Read ``max_parallel_jobs``, ``job_timeout`` and ``retry`` (at each run: see
        `Port.configure`); the constructor's error for an invalid one."""
        processor = self.processor
        _check_options(type(processor), processor.max_parallel_jobs, processor.job_timeout,
                       processor.retry, None)
        # (``uses``, the shared resources a job holds, is read here too.)
        if self.unfinished:
            return  # jobs run with the options they started with: the next run
        guarded = processor.job_timeout is not None or processor.retry is not None
        self.cap = processor.max_parallel_jobs
        self.launch = self.launch_attempts if guarded else self.launch_one
        self.per_attempt = guarded  # its attempts ask for their units themselves

    def reset(self):
        self.queue = collections.deque()
        self.running = {}
        self.admitting = collections.OrderedDict()  # request -> descriptor waiting for units
        self.holding = {}  # future of a started job -> the request of the units it holds
        self.unannounced = {}  # future of a job still queued in its executor -> descriptor

    # -- starting jobs ------------------------------------------------------------

    def start(self, descriptors):
        if self.cap is None and not self.queue and self.processor.uses is None:
            launch = self.launch  # the hot path: nothing to wait for
            remaining = iter(descriptors)
            try:
                for descriptor in remaining:
                    launch(descriptor)
            except BaseException:  # KeyboardInterrupt, SystemExit: the run is interrupted
                self.queue.extend(remaining)  # not lost: started as jobs end, or killed
                raise
            return
        self.queue.extend(descriptors)
        self.fill()

    def fill(self):
        queue, running, admits, launch = self.queue, self.running, self.admits, self.launch
        if self.per_attempt or self.processor.uses is None:
            while queue and admits(len(running)):
                launch(queue.popleft())
            return
        uses, admitting, holding = self.processor.uses, self.admitting, self.holding
        while queue and admits(len(running) + len(admitting), True):
            if not admitting:  # none of ours waits: take what is free for many at once
                room = self.room(len(running), True)
                taken = resources.take(uses, len(queue) if room is None else min(room, len(queue)))
                if taken:
                    launch_one = self.launch_one
                    for _ in range(taken):
                        holding[launch_one(queue.popleft())] = uses
                    continue
            descriptor = queue.popleft()
            request = resources.acquire(uses, self.loop, self.admitted)
            if request.granted:
                self.launch_granted(descriptor, request)
            else:
                admitting[request] = descriptor  # it waits for its units, in its turn

    slot_freed = fill

    @library_callback
    def admitted(self, request):
        """The units a job waited for are granted (from the loop)."""
        descriptor = self.admitting.pop(request, _NOTHING)
        if descriptor is _NOTHING:
            request.release()  # its job was killed meanwhile
            return
        self.launch_granted(descriptor, request)

    def launch_granted(self, descriptor, request):
        if request is None:
            self.launch_one(descriptor)
            return
        future = self.launch_holding(request, self.launch_one, descriptor)
        if future is not None and future in self.running:
            self.holding[future] = request
        else:  # pragma: no cover - it could not start
            request.release()

    def launch_one(self, descriptor):
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s: job %s starts", describe(self.processor), safe_repr(descriptor))
        observer = self.observer
        try:
            if observer is None:
                future = self.guarded(self.attempt, descriptor)
            elif self.signals_start:  # shown when a worker takes it, not while it is queued
                key = []
                future = self.guarded(functools.partial(self.attempt, on_start=functools.partial(
                    self.announce, key, descriptor)), descriptor)
                key.append(future)
                self.unannounced[future] = descriptor
            else:
                future = self.guarded(self.attempt, descriptor)
                observer.job_started(self.processor, future, descriptor)
        except BaseException:  # KeyboardInterrupt, SystemExit: the run is interrupted
            self.abort_start(descriptor)
            raise
        self.running[future] = descriptor
        future.add_done_callback(self.job_done)
        return future

    def announce(self, key, descriptor):
        """A worker took the job of ``key[0]``: the observer sees it run from now."""
        future = key[0]
        if self.unannounced.pop(future, _NOTHING) is not _NOTHING:
            observer = self.observer
            if observer is not None:  # (ended already, if its end came in the same burst)
                observer.job_started(self.processor, future, descriptor)

    def launch_attempts(self, descriptor):
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s: job %s starts", describe(self.processor), safe_repr(descriptor))
        try:
            task = self.start_task(self.attempts(descriptor))  # eager: runs now
        except BaseException:  # KeyboardInterrupt, SystemExit: the run is interrupted
            self.abort_start(descriptor)
            raise
        self.running[task] = descriptor
        task.add_done_callback(self.attempts_done)

    def abort_start(self, descriptor):
        """The start of ``descriptor``'s job raised KeyboardInterrupt or SystemExit.

        The job still counts as running, with a future of its own that the kill
        which ends the interrupted run cancels: nothing fed is lost.
        """
        future = self.new_future()
        self.running[future] = descriptor
        future.add_done_callback(self.job_done)

    @library_callback
    def job_done(self, future):
        self.finish(future, future)

    @library_callback
    def attempts_done(self, task):
        outcome = task
        if not task.cancelled() and task.exception() is None:
            outcome = task.result()  # the last attempt's future
        self.finish(task, outcome)

    def finish(self, future, outcome):
        """The job of ``future`` ended with the done future ``outcome``."""
        descriptor = self.running.pop(future, _NOTHING)
        if self.holding:
            held = self.holding.pop(future, None)
            if held is not None:  # the attempt ended: its units go back
                _give_back(held)
        if not outcome.cancelled():
            exception_of(outcome)  # retrieved: the handle carries it
        observer = self.observer
        if observer is not None:
            announce = None
            if self.unannounced and future in self.unannounced:
                announce = [observer, self.unannounced.pop(future), 1]
            # (an attempts' task is not an attempt: the observer ignores it)
            self.report_end(observer, future, None, announce)
        if descriptor is _NOTHING:
            return  # killed: its handle was made then
        if logger.isEnabledFor(_DEBUG):
            _log_end(self.processor, descriptor, outcome)
        self.end([Handle(descriptor, outcome)])
        if self.queue:
            self.slot_freed()

    # -- one attempt, and many -------------------------------------------------------

    def describe_attempt(self, descriptor):
        return "the job %s" % (safe_repr(descriptor),)

    def orphan_all(self):
        running, self.running = self.running, {}
        descriptors = list(running.values())
        descriptors.extend(self.release_units())
        descriptors.extend(self.queue)
        self.queue.clear()
        return descriptors

    def cancel_all(self):
        running, self.running = self.running, {}
        for future in running:
            self.cancel_attempt(future)
        descriptors = list(running.values())
        descriptors.extend(self.release_units())
        descriptors.extend(self.queue)
        self.queue.clear()
        return descriptors

    def release_units(self):
        """Give back every unit held or asked for; return the descriptors that waited."""
        holding, self.holding = self.holding, {}
        admitting, self.admitting = self.admitting, collections.OrderedDict()
        for held in list(holding.values()) + list(admitting):
            _give_back(held)
        return list(admitting.values())


def _give_back(held):
    """Give back what a job holds: a ``resources.Request``, or ``uses`` from ``take``."""
    if type(held) is dict:
        resources.give_back(held)
    else:
        held.release()


def _log_end(processor, descriptor, future):
    if future.cancelled():
        outcome = "is cancelled"
    elif exception_of(future) is not None:
        outcome = "failed: %s" % (safe_repr(exception_of(future)),)
    else:
        outcome = "succeeded"
    logger.debug("%s: job %s %s", describe(processor), safe_repr(descriptor), outcome)


class _CoroutineRuntime(SeparateRuntime):
    def attempt(self, descriptor, on_start=None):
        return self.run_coroutine(self.processor._run_one_job, descriptor)


class SeparateBatchProcessor(_SeparateBase):
    """Runs the coroutine ``_run_one_job(descriptor)`` for each descriptor.

    Args:
        max_parallel_jobs: at most this many jobs run at once, started in feed
            order (``None``: no cap).
        job_timeout: seconds per attempt; a longer attempt is cancelled and fails
            with `JobTimeoutError`.
        retry: a `RetryPolicy`, or ``None`` for one attempt.
        name: what messages, logs, progress and pictures call the processor
            (``None``: its class name).
        uses: ``{Resource: units}``: a job starts only when these units are free,
            and holds them while its attempt runs (``None``: no shared resource).
    """

    _runtime_class = _CoroutineRuntime

    # -- the hook a subclass implements --------------------------------------------

    @abc.abstractmethod
    def _run_one_job(self, job_descriptor):
        """Return a coroutine (native, or trollius-style via ``compat.coroutine``) that runs one job."""


class _ThreadRuntime(ExecutorRuntime, SeparateRuntime):
    method_name = "_run_one_job_synchronous"
    signals_start = True

    def configure(self):
        SeparateRuntime.configure(self)
        if self.unfinished:
            return
        processor = self.processor
        self.configure_executor()
        self.__dict__.pop("queue_ahead", None)  # an earlier run's pool may not be this one's
        if self.cap is not None and processor._bp_owns_process_pool():
            from ._processes import default_workers, jobs_ahead
            # More jobs wait in the pool's own queue, so that a worker never idles
            # while the loop hears of an end and submits the next job; the pool has
            # max_parallel_jobs workers, so no more than that many run at once.
            self.queue_ahead = jobs_ahead(processor._default_processes or default_workers())

    def attempt(self, descriptor, on_start=None):
        return self.submit(self.processor._executor, descriptor, on_start)

    def cancel_attempt(self, future):
        self.cancel_executor_future(future)


class SeparateBatchProcessorSynchronous(SynchronousMixin, _SeparateBase):
    """Runs the plain function ``_run_one_job_synchronous(descriptor)`` in ``self._executor``.

    Args:
        max_parallel_jobs, job_timeout, retry, name, uses: as for `SeparateBatchProcessor`.
        executor: ``None`` or ``"threads"`` (a thread pool the processor owns),
            ``"processes"`` (a process pool it owns, of ``max_parallel_jobs``
            workers, default the number of CPUs, each holding a copy of the processor
            made when the worker started; as many jobs again wait in the pool's
            queue, so that a worker takes its next job as soon as it ends one, and
            ``job_timeout`` counts from when a worker takes it), or a
            ``concurrent.futures.Executor`` instance, used as it is and never pickled.

    ``_executor`` is read once per job. By default it is one thread pool (with daemon
    threads) shared by the processor's jobs, with ``max_parallel_jobs`` workers when
    that is set and the standard library's default number otherwise.
    """

    _runtime_class = _ThreadRuntime

    def __init__(self, max_parallel_jobs=None, job_timeout=None, retry=None, name=None,
                 executor=None, uses=None):
        _SeparateBase.__init__(self, max_parallel_jobs, job_timeout, retry, name, uses)
        self._bp_set_executor(executor)

    @property
    def _default_workers(self):
        return self.max_parallel_jobs

    @property
    def _default_processes(self):
        return self.max_parallel_jobs

    # -- the hooks a subclass implements or overrides ----------------------------------

    @abc.abstractmethod
    def _run_one_job_synchronous(self, job_descriptor):
        """Run one job and return its result (called in an executor's worker)."""


class SeparateFunction(SeparateBatchProcessor):
    """What `SeparateBatchProcessor.from_function` makes: the job is ``self.fn(descriptor)``."""

    def __init__(self, fn, **options):
        self.fn = fn
        SeparateBatchProcessor.__init__(self, **options)

    def _run_one_job(self, job_descriptor):
        return self.fn(job_descriptor)


class SeparateFunctionSynchronous(SeparateBatchProcessorSynchronous):
    """What `SeparateBatchProcessorSynchronous.from_function` makes."""

    def __init__(self, fn, **options):
        self.fn = fn
        SeparateBatchProcessorSynchronous.__init__(self, **options)

    def _run_one_job_synchronous(self, job_descriptor):
        return self.fn(job_descriptor)


SeparateBatchProcessor._bp_function_class = SeparateFunction  # type: ignore[attr-defined]
SeparateBatchProcessorSynchronous._bp_function_class = SeparateFunctionSynchronous  # type: ignore[attr-defined]
