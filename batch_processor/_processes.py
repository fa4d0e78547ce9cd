"""The process pool a Synchronous processor owns with ``executor="processes"``.

`ProcessorPool` wraps a ``concurrent.futures.ProcessPoolExecutor`` so that:

* the processor travels to each worker process once, when the worker starts (the
  pool's ``initializer`` on Python 3; on 2.7, whose backport has no initializer and
  only ``fork``, the workers inherit it when they are forked at the first job): a
  job carries only the name of the method and the pickled descriptor;
* descriptors are pickled before they are submitted, and results are pickled in
  the worker, so what cannot be pickled fails its own job with a message naming
  the processor and the descriptor, and never hangs the 2.7 backport;
* a pool whose worker died (``BrokenProcessPool``) is replaced by a fresh one for
  the jobs submitted afterwards;
* the workers start with a method that is safe in a process that runs threads
  (``forkserver`` where there is one, else ``spawn``; 2.7 has only ``fork``), and
  every pool still alive is shut down at interpreter exit.
"""
from __future__ import absolute_import, division, print_function

import atexit
import collections
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
import weakref
from concurrent.futures import Future, ProcessPoolExecutor

from . import compat
from .interface import describe, safe_repr, safe_str

try:
    from concurrent.futures.process import BrokenProcessPool
except ImportError:  # Python 2.7's backport
    class BrokenProcessPool(RuntimeError):  # type: ignore[no-redef]
        """Stands in for the standard library's error where the backport has none."""

if False:  # type checkers only
    from typing import Any, Dict  # noqa: F401

__all__ = ["BrokenProcessPool", "ProcessorCopies", "ProcessorPool", "shutdown_all"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL

# -- the worker side -----------------------------------------------------------------

#: In a worker process: token -> the processor it runs jobs for. In the parent on 2.7:
#: the processors whose pools are about to fork their workers.
_PROCESSORS = {}  # type: Dict[int, Any]


def _init_worker(token, processor_bytes, devices=()):
    """A worker process starts: unpickle the processor once, for all its jobs.

    Ctrl-C is left to the main process, which stops the run and ends the workers. A
    worker that serves a device set sees it in ``CUDA_VISIBLE_DEVICES`` before the
    processor is unpickled (frameworks read it once, when they are imported).
    """
    _ignore_interrupts()
    if devices:
        _serve_devices(token, devices)
    _PROCESSORS[token] = pickle.loads(processor_bytes)


#: token -> the device ids the workers of that pool serve (in a worker; in the parent
#: on 2.7, while a pool's workers fork).
_DEVICES = {}  # type: Dict[int, Any]


def _serve_devices(token, devices):
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    _DEVICES[token] = tuple(devices)


def _ignore_interrupts():
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # pragma: no cover - not the main thread
        pass


def _run_job(token, method_name, descriptor_bytes):
    """``processor.method_name(descriptor)`` in a worker; returns ``(ok, payload)``.

    ``(True, bytes)``: the pickled result. ``(False, text)``: the result could not be
    pickled, and ``text`` says why. An exception the job raises is raised again if
    it can be pickled, else replaced by a `RuntimeError` that describes it.
    """
    processor = _PROCESSORS[token]
    descriptor = pickle.loads(descriptor_bytes)
    try:
        devices = _DEVICES.get(token)
        if devices:  # batch_processor.devices() returns them during the job
            from .resources import call_with_devices
            result = call_with_devices(devices, getattr(processor, method_name), descriptor)
        else:
            result = getattr(processor, method_name)(descriptor)
    except Exception as exc:
        try:
            pickle.dumps(exc, _PROTOCOL)
        except Exception:
            raise RuntimeError("the job raised %s, which cannot be pickled back to the "
                               "parent process:\n%s" % (safe_str(exc), traceback.format_exc()))
        raise
    try:
        return True, pickle.dumps(result, _PROTOCOL)
    except Exception as exc:
        return False, "its result %s cannot be pickled (%s)" % (safe_repr(result), safe_str(exc))


# -- the parent side -----------------------------------------------------------------

_tokens = itertools.count(1)
_live = weakref.WeakSet() if hasattr(weakref, "WeakSet") else None  # type: Any
_live_lock = threading.Lock()


#: 2.7's backport takes neither a start method nor an initializer: there the workers
#: fork at the first job and inherit the processor.
_FORKED_WORKERS = compat.PY2


def _context():
    """A multiprocessing context safe in a process with threads, or ``None`` (2.7)."""
    get_context = getattr(multiprocessing, "get_context", None)
    if get_context is None or _FORKED_WORKERS:
        return None  # fork only
    methods = multiprocessing.get_all_start_methods()
    return get_context("forkserver" if "forkserver" in methods else "spawn")


def _new_executor(workers, context, initializer, initargs):
    """A ``ProcessPoolExecutor`` whose workers start in ``context``, with an initializer."""
    if sys.version_info >= (3, 7):
        return ProcessPoolExecutor(workers, mp_context=context, initializer=initializer,
                                   initargs=initargs)
    return _Executor36(workers, context, initializer, initargs)


class _Executor36(ProcessPoolExecutor):
    """3.6's ``ProcessPoolExecutor`` with what 3.7 added: a start method and an initializer.

    3.6's pool makes its queues and workers with the default context (``fork``, unsafe
    in a process with threads); this one makes them with ``context``.
    """

    def __init__(self, workers, context, initializer, initargs):
        ProcessPoolExecutor.__init__(self, workers)
        from concurrent.futures import process
        self._bp_context = context
        self._bp_initializer = (initializer, initargs)
        self._call_queue = context.Queue(self._max_workers + process.EXTRA_QUEUED_CALLS)
        self._call_queue._ignore_epipe = True
        self._result_queue = context.SimpleQueue()

    def _adjust_process_count(self):
        for _ in range(len(self._processes), self._max_workers):
            worker = self._bp_context.Process(
                target=_worker36, args=(self._call_queue, self._result_queue)
                + self._bp_initializer)
            worker.start()
            self._processes[worker.pid] = worker


def _worker36(call_queue, result_queue, initializer, initargs):
    from concurrent.futures import process
    initializer(*initargs)
    process._process_worker(call_queue, result_queue)


class _JobFuture(Future):
    """The future of one job: the worker's pickled answer, unpickled here.

    Cancelling it while the job waits in the pool's queue cancels this future only:
    the pool's own future is left alone, for the pools of 3.8 to 3.11 fail when they
    break with a cancelled job in their queue (their manager thread dies on
    ``InvalidStateError``). The job is then skipped if the pool is terminated (as on
    ``kill()``), or it runs and its outcome is dropped. A job already running cannot
    be cancelled.
    """

    def __init__(self, inner, pool):
        Future.__init__(self)
        self._inner = inner
        self._pool = pool  # the `ProcessorPool` that counts it as in flight, until it ends
        self.counted = True
        self.started = False  # a worker took it (as the pool counts: see ProcessorPool)
        self.on_start = None  # the ``started`` callback of `ProcessorPool.submit_job`

    def cancel(self):
        inner = self._inner
        if not self.started and not inner.done():
            return self.drop()  # still queued: nothing is abandoned
        if inner.running() or inner.done():
            if not inner.done():
                # Abandoned where it runs (a job_timeout, a kill): it no longer holds
                # back the start of the jobs queued behind it, whose timers must run.
                self._pool.job_left(self)
            return self.cancelled()
        return self.drop()

    def drop(self):
        """Cancel this future, whatever the pool's future does."""
        with self._condition:
            if self.done():
                return self.cancelled()
            Future.cancel(self)
            self.set_running_or_notify_cancel()
            return True

    def settle(self, result=None, exception=None):
        """Set the outcome, unless cancelled meanwhile (from the loop's thread)."""
        with self._condition:
            if self.done():
                return
            if exception is not None:
                self.set_exception(exception)
            else:
                self.set_result(result)


class ProcessorCopies(object):
    """An executor that holds copies of one processor and runs their methods by name.

    ``submit_job(method_name, argument, started=None)`` returns a
    ``concurrent.futures.Future`` of ``copy.method_name(argument)``; a job carries the
    argument and the method's name, never the processor. ``started()``, which may be
    called from any thread, is called when the job starts running.
    """

    def submit_job(self, method_name, argument, started=None):  # pragma: no cover
        raise NotImplementedError


class ProcessorPool(ProcessorCopies):
    """A process pool of ``workers`` processes, each holding a copy of ``processor``.

    Made on first use and kept until `shutdown`; a broken pool is replaced at the
    next submit. ``submit_job(method_name, descriptor, started=None)`` returns a
    ``concurrent.futures.Future`` of ``processor.method_name(descriptor)``.

    More jobs than workers may be submitted: the others wait in the pool's queue, so
    that a worker that ends a job takes the next one at once, without waiting for the
    event loop to hear of the end and submit more. The pool serves its queue in order,
    one job per free worker, and so does the count of started jobs here: a job is
    ``started()`` when it is submitted to a pool with a free worker, else when an
    earlier job ends.
    """

    def __init__(self, processor, workers, devices=()):
        self.processor = processor
        self.workers = workers
        self.devices = devices  # the device set its workers serve, if any
        self.token = next(_tokens)
        self.pool = None
        self.broken = False
        self.closed = False
        self.lock = threading.Lock()
        self.in_flight = 0  # submitted and not yet ended
        self.waiting = collections.deque()  # the `_JobFuture` of each job beyond the workers
        with _live_lock:
            _live.add(self)

    def __repr__(self):
        return "<ProcessorPool of %s, %d workers>" % (describe(self.processor), self.workers)

    # -- pools ----------------------------------------------------------------------

    def current_pool(self):
        with self.lock:
            if self.closed:
                raise RuntimeError("%s: its process pool was shut down (the processor was "
                                   "stopped or killed); make a new processor to run more jobs"
                                   % describe(self.processor))
            stale = None
            if self.pool is not None and (self.broken or getattr(self.pool, "_broken", False)):
                stale, self.pool = self.pool, None
            if self.pool is None:
                self.pool = self.new_pool()
                self.broken = False
            pool = self.pool
        if stale is not None:  # outside the lock: its manager thread's callbacks take it
            _terminate(stale)
        return pool

    def new_pool(self):
        processor = self.processor
        try:
            processor_bytes = pickle.dumps(processor, _PROTOCOL)
        except Exception as exc:
            raise TypeError(
                "%s cannot be pickled to its worker processes (%s); keep unpicklable "
                "attributes (locks, clients, open files) out of it, or list them in the "
                "class attribute _bp_not_pickled" % (describe(processor), safe_str(exc)))
        context = _context()
        if context is None:
            return ProcessPoolExecutor(self.workers)  # 2.7: workers forked at the first job
        return _new_executor(self.workers, context, _init_worker,
                             (self.token, processor_bytes, self.devices))

    # -- jobs -----------------------------------------------------------------------

    def submit_job(self, method_name, descriptor, started=None):
        processor = self.processor
        try:
            descriptor_bytes = pickle.dumps(descriptor, _PROTOCOL)
        except Exception as exc:
            raise TypeError(
                "%s: the job %s cannot be sent to a worker process: its descriptor cannot "
                "be pickled (%s); feed picklable descriptors to a processor with "
                "executor=\"processes\"" % (describe(processor), safe_repr(descriptor),
                                             safe_str(exc)))
        pool = self.current_pool()
        try:
            inner = self.submit_inner(pool, method_name, descriptor_bytes)
        except BrokenProcessPool:
            self.broken = True
            inner = self.submit_inner(self.current_pool(), method_name, descriptor_bytes)
        outer = _JobFuture(inner, self)
        outer.on_start = started
        with self.lock:
            self.in_flight += 1
            waits = self.in_flight > self.workers
            if waits:
                self.waiting.append(outer)
            else:
                outer.started = True
        if started is not None and not waits:
            started()
        inner.add_done_callback(lambda done: self.job_done(outer, done, pool, descriptor))
        return outer

    def submit_inner(self, pool, method_name, descriptor_bytes):
        if _FORKED_WORKERS:
            first = getattr(pool, "_queue_management_thread", None) is None
            if first:  # the workers fork now, and inherit the processor
                _PROCESSORS[self.token] = self.processor
                previous = _swap_sigint(signal.SIG_IGN)  # and Ctrl-C ignored
                if self.devices:  # and their device set
                    environment = os.environ.get("CUDA_VISIBLE_DEVICES")
                    _serve_devices(self.token, self.devices)
            try:
                return pool.submit(_run_job, self.token, method_name, descriptor_bytes)
            finally:
                if first:
                    _PROCESSORS.pop(self.token, None)
                    _swap_sigint(previous)
                    if self.devices:
                        _DEVICES.pop(self.token, None)
                        if environment is None:
                            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                        else:
                            os.environ["CUDA_VISIBLE_DEVICES"] = environment
        return pool.submit(_run_job, self.token, method_name, descriptor_bytes)

    def job_left(self, outer):
        """``outer`` ended or was abandoned: the oldest waiting job counts as started."""
        with self.lock:
            if not outer.counted:
                return
            outer.counted = False
            self.in_flight -= 1
            started = None
            if self.waiting:
                waiting = self.waiting.popleft()
                waiting.started = True
                started = waiting.on_start
        if started is not None:
            started()

    def job_done(self, outer, inner, pool, descriptor):
        self.job_left(outer)  # a worker is free: the oldest waiting job starts there
        if inner.cancelled():  # by the pool itself (shut down with cancel_futures)
            outer.drop()
            return
        exc = inner.exception()
        if exc is not None:
            if isinstance(exc, BrokenProcessPool):
                with self.lock:
                    if self.pool is pool:
                        self.broken = True
            outer.settle(exception=exc)
            return
        if outer.done():
            return  # cancelled while it waited: its result is not wanted
        ok, payload = inner.result()
        if not ok:
            outer.settle(exception=TypeError(
                "%s: the job %s cannot send its result back from its worker process: %s; "
                "return picklable values from a processor with executor=\"processes\""
                % (describe(self.processor), safe_repr(descriptor), payload)))
            return
        try:
            result = pickle.loads(payload)
        except Exception as exc:
            outer.settle(exception=exc)
        else:
            outer.settle(result)

    def submit(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker, as ``Executor.submit`` (everything pickled)."""
        return self.current_pool().submit(fn, *args, **kwargs)

    # -- the end --------------------------------------------------------------------

    def shutdown(self, wait=True, kill=False):
        """Shut the pool down for good; ``kill``: terminate the workers first."""
        with self.lock:
            self.closed = True
            pool, self.pool = self.pool, None
        if pool is not None:
            if kill:
                _terminate(pool)
            else:
                pool.shutdown(wait=wait)


def _swap_sigint(handler):
    """Set the SIGINT handler (from the main thread only); return the previous one."""
    if handler is None or not isinstance(threading.current_thread(), threading._MainThread):
        return None
    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # pragma: no cover
        return None


def _terminate(pool):
    """Stop a pool now: its workers are terminated, its jobs abandoned.

    A pool with no job left is shut down the ordinary way (its workers exit).
    """
    if not getattr(pool, "_pending_work_items", True):
        pool.shutdown(wait=True)
        return
    thread = getattr(pool, "_executor_manager_thread", None) or \
        getattr(pool, "_queue_management_thread", None)
    processes = getattr(pool, "_processes", None) or ()
    processes = list(processes.values() if isinstance(processes, dict) else processes)
    for process in processes:
        try:
            process.terminate()
        except Exception:  # pragma: no cover - already gone
            pass
    for process in processes:
        try:
            process.join(5)
            if process.is_alive() and hasattr(process, "kill"):  # SIGTERM handled
                process.kill()
                process.join(5)
        except Exception:  # pragma: no cover
            pass
    if compat.PY2:
        _end_backport_pool(pool, thread)
        return
    if thread is not None:
        # The manager thread sees the dead workers and cleans up; shutting down before
        # it is done closes its queue under it (3.7 and 3.8 then raise in that thread).
        thread.join(5)
    _shutdown_now(pool)


def _end_backport_pool(pool, thread):
    """2.7: end a pool whose workers were terminated.

    The backport's manager thread never learns that workers died: it waits for their
    results, and a thread left reading the result queue at exit fails there with a
    traceback. The pending jobs fail (their workers are gone) and the pool is shut
    down, which wakes the thread with no job pending; it then waits, silently, to hand
    its sentinels to the dead workers. The interpreter would join it at exit: exit
    forgets it (it is a daemon thread).
    """
    pending = getattr(pool, "_pending_work_items", None) or {}
    for work_id in list(pending):
        item = pending.pop(work_id, None)
        if item is not None and not item.future.done():
            item.future.set_exception(BrokenProcessPool(
                "the process pool was terminated with this job in it"))
    _shutdown_now(pool)
    if thread is not None:
        from concurrent.futures import process as backport
        getattr(backport, "_threads_queues", {}).pop(thread, None)


def _shutdown_now(pool):
    try:
        pool.shutdown(wait=False)
    except Exception:  # pragma: no cover - a broken pool
        pass


def shutdown_all():
    """Terminate the workers of every pool still alive (at interpreter exit)."""
    with _live_lock:
        pools = list(_live)
    for pool in pools:
        pool.shutdown(kill=True)


atexit.register(shutdown_all)


def default_workers():
    try:
        return os.cpu_count() or 1
    except AttributeError:  # Python 2.7
        return multiprocessing.cpu_count()
