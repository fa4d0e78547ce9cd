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
import sys
from concurrent.futures import ThreadPoolExecutor

import six

from . import compat
from .interface import ProcessorState, describe, safe_repr, safe_str
from .resources import call_with_devices

if False:  # type checkers only
    from typing import Optional  # noqa: F401

__all__ = ["ExecutorRuntime", "SynchronousMixin", "check_executor"]

#: The strings ``executor=`` takes, besides ``None`` and an Executor instance.
EXECUTOR_KINDS = ("threads", "processes")


def check_executor(cls, executor):
    """Refuse an ``executor=`` that is neither None, a kind's name nor an Executor."""
    from concurrent.futures import Executor
    if executor is None or isinstance(executor, Executor):
        return
    if isinstance(executor, six.string_types):
        if executor in EXECUTOR_KINDS:
            return
        raise ValueError("%s(executor=%s): give None (the default thread pool), \"threads\", "
                         "\"processes\" or a concurrent.futures.Executor instance"
                         % (cls.__name__, safe_repr(executor)))
    raise TypeError("%s(executor=%s): give None, \"threads\", \"processes\" or a "
                    "concurrent.futures.Executor instance" % (cls.__name__, safe_repr(executor)))

logger = logging.getLogger("batch_processor")

_PROCESSES = __name__.rsplit(".", 1)[0] + "._processes"


def _loaded(name):
    """The class ``name`` of ``_processes`` if that module is loaded, else ``()``: without
    it nothing can be an instance (process pools load it when first used, so that
    ``import batch_processor`` loads no ``multiprocessing``)."""
    module = sys.modules.get(_PROCESSES)
    return () if module is None else getattr(module, name)


def _py2_process_pool():
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor


def _call_method(processor, method_name, argument):
    """``processor.method_name(argument)``, submitted as a module function.

    Python 2 cannot pickle a bound method; a process pool can pickle this
    function, the processor (without its runtime state) and the method's name.
    """
    try:
        return getattr(processor, method_name)(argument)
    except StopIteration as exc:
        # A future refuses StopIteration (Python 3): fail as asyncio does with it.
        raise _from_stop_iteration(exc, method_name)


def _from_stop_iteration(exc, method_name):
    error = RuntimeError("%s() raised StopIteration (a next() on an exhausted iterator?)"
                         % method_name)
    error.__cause__ = exc
    return error


def _nothing():
    pass


def _call_started(notify, processor, method_name, argument):
    """`_call_method`, after ``notify()`` tells the loop the job starts running now."""
    notify()
    return _call_method(processor, method_name, argument)


class SynchronousMixin(object):
    """The processor side of the Synchronous forms: the executor the jobs run in."""

    #: Workers of the default executor; ``None``: the standard library's default.
    _default_workers = None  # type: Optional[int]
    #: Worker processes of ``executor="processes"``; ``None``: the number of CPUs.
    _default_processes = None  # type: Optional[int]
    #: ``executor=``: None, "threads" or "processes" (an Executor instance is kept in
    #: ``_bp_executor_instance``, which is never pickled nor copied).
    _bp_executor_kind = None
    _bp_executor_instance = None
    _bp_not_pickled = ("_bp_executor_instance",)

    def _bp_set_executor(self, executor):
        """Check and keep the constructor's ``executor=``."""
        check_executor(type(self), executor)
        if executor is None or isinstance(executor, six.string_types):
            self._bp_executor_kind = executor
            self._bp_executor_instance = None
        else:
            self._bp_executor_kind = None
            self._bp_executor_instance = executor

    @property
    def executor(self):
        """``executor=``: None, ``"threads"``, ``"processes"`` or the Executor given; set
        it between runs (the constructor's check at once; the next run uses it)."""
        if self._bp_executor_instance is not None:
            return self._bp_executor_instance
        return self._bp_executor_kind

    @executor.setter
    def executor(self, executor):
        self._bp_set_executor(executor)

    def _bp_owns_process_pool(self):
        """Whether the jobs run in the process pool of ``executor="processes"``."""
        return (self._bp_executor_kind == "processes"
                and type(self)._executor is SynchronousMixin._executor)

    # -- the hook a subclass may override ---------------------------------------------

    @property
    def _executor(self):
        """The `concurrent.futures.Executor` the jobs run in.

        Override it to choose another one (a process pool, a cluster's executor, a
        fresh ``UnsafeThreadPoolExecutor(1)`` each time it is read: once per job of a
        Separate processor, once per batch of a Sequential one...); ``None`` means the event
        loop's default executor, as with ``loop.run_in_executor()``. The default is
        what the constructor's ``executor=`` chose: a thread pool with daemon threads
        owned by the processor (``None``, ``"threads"``), a process pool it owns
        (``"processes"``), or the Executor instance given.
        """
        return self._bp_runtime().configured_executor()


class ExecutorRuntime(object):
    """The runtime side: submits jobs to an executor and resolves loop futures.

    Mixed into a `Runtime` subclass that names, in ``method_name``, the processor's
    method a job runs. ``executor_futures`` maps the loop future of each submitted
    job to its executor future; ``completed`` queues the executor futures that
    ended, from whichever thread, until the loop takes them (one wake-up per burst).
    The default thread pool is made on first use and kept across runs.
    """

    method_name = None  # type: Optional[str]
    owned_executor = None
    #: An executor made for the current run only (`DaskExecutorMixin`'s copy of the
    #: processor on its cluster): dropped when the run releases the processor.
    run_executor = None

    def reset(self):
        super(ExecutorRuntime, self).reset()
        self.completed = collections.deque()
        self.wakeup_pending = False
        self.executor_futures = {}

    #: The worker count the owned executor was made with.
    owned_workers = None

    def default_executor(self):
        executor = self.owned_executor
        if executor is None or isinstance(executor, _loaded("ProcessorPool")):
            from .util import UnsafeThreadPoolExecutor
            workers = self.owned_workers = self.processor._default_workers
            executor = UnsafeThreadPoolExecutor(workers)
            self.owned_executor = executor
        return executor

    def configure_executor(self):
        """As a run starts, with nothing in flight: an owned executor that no longer
        matches the processor's options (``executor``, ``max_parallel_jobs``) is shut
        down, and the next job makes the one they ask for."""
        owned = self.owned_executor
        if owned is None:
            return
        processor = self.processor
        if isinstance(owned, _loaded("ProcessorPool")):
            keep = (processor._bp_executor_kind == "processes"
                    and processor._bp_executor_instance is None
                    and self.owned_workers == processor._default_processes)
        else:
            keep = (processor._bp_executor_kind != "processes"
                    and processor._bp_executor_instance is None
                    and self.owned_workers == processor._default_workers)
        if not keep:
            self.owned_executor = self.owned_workers = None
            owned.shutdown(wait=False)

    def configured_executor(self):
        """The executor the constructor's ``executor=`` chose."""
        processor = self.processor
        instance = processor._bp_executor_instance
        if instance is not None:
            return instance
        if processor._bp_executor_kind == "processes":
            return self.process_pool()
        return self.default_executor()

    def process_pool(self):
        """The processor's own `ProcessorPool`, made on first use and kept across runs.

        For a job that holds device ids (``launch_devices``): the pool of one worker
        that serves that device set, made on first use and kept as long.
        """
        from ._processes import ProcessorPool, default_workers
        held = self.launch_devices
        if held:
            pools = self.__dict__.setdefault("device_pools", {})
            pool = pools.get(held)
            if pool is None:
                pool = pools[held] = ProcessorPool(self.processor, 1, devices=held)
            return pool
        pool = self.owned_executor
        if not isinstance(pool, ProcessorPool):
            self.owned_workers = self.processor._default_processes
            workers = self.owned_workers or default_workers()
            pool = self.owned_executor = ProcessorPool(self.processor, workers)
        return pool

    def submit_to_pool(self, pool, argument, on_start=None):
        """Run a job in ``pool``, a `ProcessorCopies`; return a future of the loop."""
        future = self.new_future()
        started = None
        if on_start is not None:
            started = functools.partial(self.notify_start, on_start)
        try:
            executor_future = pool.submit_job(self.method_name, argument, started)
        except Exception as exc:  # unpicklable, shut down: this job fails, not the run
            future.set_exception(exc)
            return future
        self.executor_futures[future] = executor_future
        executor_future.add_done_callback(functools.partial(self.executor_done, future))
        return future

    def release(self, callback):
        super(ExecutorRuntime, self).release(callback)
        self.end_run_executor()

    def end_run_executor(self, replacement=None):
        """The run is over (or made another): its executor is told, with ``release()``."""
        executor, self.run_executor = self.run_executor, replacement
        if executor is not None:
            executor.release()

    def stopped(self):
        """Stopped or killed: the owned process pool goes (its workers terminated on kill)."""
        super(ExecutorRuntime, self).stopped()
        self.end_run_executor()
        pool = self.owned_executor
        if isinstance(pool, _loaded("ProcessorPool")):
            pool.shutdown(kill=self.final is ProcessorState.KILLED)
        for pool in self.__dict__.pop("device_pools", {}).values():
            pool.shutdown(kill=self.final is ProcessorState.KILLED)

    def submit(self, executor, argument, on_start=None):
        """Run ``processor.method_name(argument)`` in ``executor``; return a future of the loop.

        ``on_start()`` is called from the loop when the job starts running: for a
        thread pool when a worker takes it, for other executors when it is submitted.
        """
        processor = self.processor
        if isinstance(executor, _loaded("ProcessorCopies")):
            return self.submit_to_pool(executor, argument, on_start)
        if executor is None:
            executor = self.loop_default_executor()
        call, head = _call_method, ()
        if on_start is not None:
            if isinstance(executor, (ThreadPoolExecutor, self.thread_pool_class())):
                call, head = _call_started, (functools.partial(self.notify_start, on_start),)
            else:  # a hidden default executor (None) too: its queue cannot be watched
                self.loop.call_soon(on_start)
        held = self.launch_devices
        if held:  # the job holds device ids: devices() returns them where it runs
            call, head = call_with_devices, (held, call) + head
        if executor is None:  # a loop that hides its default executor (uvloop)
            return self.loop.run_in_executor(None, call, *(head + (
                processor, self.method_name, argument)))
        future = self.new_future()
        try:
            if compat.PY2 and isinstance(executor, _py2_process_pool()):
                # The futures backport hangs on what it cannot pickle: find out first.
                pickle.dumps((processor, self.method_name, argument), pickle.HIGHEST_PROTOCOL)
            executor_future = executor.submit(call, *(head + (
                processor, self.method_name, argument)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a shut-down or broken executor fails this job only
            future.set_exception(exc)
            return future
        if executor is self.owned_executor:
            executor_future.bp_owned = executor
        elif call is _call_started:
            executor_future.bp_on_start = on_start  # see `start_waiting_timers`
        self.executor_futures[future] = executor_future
        executor_future.add_done_callback(functools.partial(self.executor_done, future))
        return future

    def executor_done(self, future, executor_future):
        # Runs in a worker thread (or in the loop's thread if already done).
        self.completed.append((future, executor_future))
        if not self.wakeup_pending and not self.pool_keeps_busy(executor_future):
            self.wakeup_pending = True
            try:
                self.loop.call_soon_threadsafe(self.drain_completed)
            except (RuntimeError, AttributeError):
                # The loop is closed: the run that wanted this result is over.
                self.wakeup_pending = False

    def loop_default_executor(self):
        """The loop's default executor, which ``_executor = None`` asks for, made as
        ``loop.run_in_executor(None, ...)`` makes it; ``None`` where the loop hides it.

        Seen as an executor, its jobs are watched as in any thread pool of the user's:
        one that waits there behind abandoned jobs has its ``job_timeout`` counting."""
        loop = self.loop
        try:
            executor = loop._default_executor
        except AttributeError:
            return None
        if executor is None:
            loop.run_in_executor(None, _nothing)  # the loop makes the one it would use
            executor = getattr(loop, "_default_executor", None)
        return executor

    def pool_keeps_busy(self, executor_future):
        """Whether the loop may hear of this end later, with another: the job's owned pool
        still holds more jobs waiting for a worker than it has workers, so no worker
        idles meanwhile, and another of them ends first. Only where jobs have no timer
        that an end heard late could trip (no ``job_timeout``, no ``retry``), and
        only with more jobs handed ahead than workers (`_processes.jobs_ahead`: 2.7,
        where each wake-up of the loop costs the workers a share of the CPU)."""
        owner = getattr(executor_future, "_owner", None)
        if owner is None or getattr(self, "per_attempt", True):
            return False
        generation = owner.generation
        return generation is not None and len(generation.waiting) > generation.workers

    @staticmethod
    def thread_pool_class():
        from .util import UnsafeThreadPoolExecutor
        return UnsafeThreadPoolExecutor

    def notify_start(self, on_start):
        # Runs in the worker thread that starts the job.
        try:
            self.loop.call_soon_threadsafe(on_start)
        except (RuntimeError, AttributeError):
            pass  # the loop is closed: the run that wanted it is over

    def drain_completed(self):
        self.wakeup_pending = False
        completed = self.completed
        while completed:
            future, executor_future = completed.popleft()
            try:
                self.deliver(future, executor_future)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # one bad completion never loses the others
                if not future.done():
                    future.set_exception(RuntimeError(
                        "%s: the outcome of a job could not be handed back (%s)"
                        % (describe(self.processor), safe_str(exc))))

    def deliver(self, future, executor_future):
        if self.executor_futures.pop(future, None) is None or future.done():
            return  # cancelled on the loop's side: killed or timed out
        if executor_future.cancelled():
            future.cancel()
            return
        exc = executor_future.exception()
        if exc is None:
            future.set_result(executor_future.result())
        else:
            if isinstance(exc, StopIteration):  # from an executor of the user's
                exc = _from_stop_iteration(exc, self.method_name)
            compat.fail(future, exc, executor_future)

    def cancel_executor_future(self, future):
        """Cancel the loop future ``future`` and, if it can, the work behind it."""
        executor_future = self.executor_futures.pop(future, None)
        if executor_future is not None:
            self.cancel_work(executor_future)
        future.cancel()

    def cancel_all(self):
        """Cancel as the kind does, then whatever is still in the executor."""
        # The jobs still queued in an owned pool first: a running job abandoned before
        # them would hand them its worker, and they would be abandoned there too.
        for executor_future in list(self.executor_futures.values()):
            if getattr(executor_future, "queued", False):
                executor_future.cancel()
        descriptors = super(ExecutorRuntime, self).cancel_all()
        pending, self.executor_futures = self.executor_futures, {}
        for future, executor_future in pending.items():
            self.cancel_work(executor_future)
            future.cancel()
        return descriptors

    def orphan_all(self):
        """As `cancel_all` for a closed loop: stop the work, touch no future of the loop."""
        descriptors = super(ExecutorRuntime, self).orphan_all()
        pending, self.executor_futures = self.executor_futures, {}
        for executor_future in pending.values():
            self.cancel_work(executor_future)
        return descriptors

    def cancel_work(self, executor_future):
        if not executor_future.cancel() and not executor_future.done():
            owned = getattr(executor_future, "bp_owned", None)
            if owned is not None:
                # The abandoned job keeps its worker: let the pool start another one
                # for the jobs that follow, until it returns.
                owned._grow(1)
                executor_future.add_done_callback(lambda _: owned._grow(-1))
            else:
                self.start_waiting_timers()
            logger.warning("%s: a job already running in its executor cannot be interrupted; "
                           "it is abandoned and its result will be discarded",
                           describe(self.processor))

    def start_waiting_timers(self):
        """A job is abandoned in a thread pool of the user's, which cannot grow: the
        jobs that wait there for a thread may never get one, so their ``job_timeout``
        counts from now (a job that then starts keeps the timer already running)."""
        for executor_future in list(self.executor_futures.values()):
            on_start = getattr(executor_future, "bp_on_start", None)
            if on_start is not None and not executor_future.running() \
                    and not executor_future.done():
                on_start()
