"""Thread pool whose daemon workers never hold up interpreter exit.

``UnsafeThreadPoolExecutor`` behaves like ``concurrent.futures.ThreadPoolExecutor``
but its workers are daemon threads that nobody joins at exit: a hung job is simply
abandoned (hence "unsafe") instead of blocking the end of the program or of a run.

Daemon threads woken while the interpreter tears itself down are a known way to
crash Python 2.7, so exit is handled with care, the same way on every version:

* an ``atexit`` handler, which runs before any module is torn down, cancels queued
  jobs, makes every idle worker exit and waits for those; after it no worker waits
  on a queue, and no job or thread is started any more;
* a worker whose job ends after that completes the job's future and parks for good
  on a lock nobody releases.  From the moment its job returns it uses only locals
  and default arguments, so module globals already cleared do not matter to it.

Only the public ``concurrent.futures`` API is used: it is the same in the
``futures`` backport on Python 2.7 and in the standard library of Python 3.6-3.15.
The constructor and ``submit`` take what ``ThreadPoolExecutor``'s take
(``initializer``, ``initargs``, ``thread_name_prefix``; ``submit(fn, /, *args,
**kwargs)``), and a failing initializer breaks the pool as it does there (logged
under ``batch_processor.util``, like everything the package logs).
"""
from __future__ import absolute_import, division, print_function

import atexit
import itertools
import logging
import os
import sys
import threading
import weakref
from concurrent.futures import Executor, Future

import six
from six.moves import queue

try:  # Python 3.7+ and the futures backport
    from concurrent.futures.thread import BrokenThreadPool
except ImportError:  # pragma: no cover - Python 3.6
    class BrokenThreadPool(RuntimeError):  # type: ignore[no-redef]
        """Raised when a worker thread's initializer failed: the pool is unusable."""

__all__ = ["BrokenThreadPool", "UnsafeThreadPoolExecutor"]

_LOGGER = logging.getLogger("batch_processor.util")  # ThreadPoolExecutor: "concurrent.futures"
_BROKEN = "A thread initializer failed, the thread pool is not usable anymore"

_EXITING = []  # type: list  # made non-empty by the atexit handler: the interpreter is exiting
_PARK = threading.Lock()  # held forever: workers that finish a job at exit block on it
_PARK.acquire()
_POOLS = weakref.WeakSet()  # type: weakref.WeakSet  # the _Pool of every executor or worker still alive
_POOLS_LOCK = threading.Lock()  # a WeakSet must not grow while being listed
_COUNTER = itertools.count()


def _default_max_workers():
    """Returns: the standard library's default pool size, ``min(32, cpu + 4)``."""
    cpu_count = getattr(os, "process_cpu_count", None) or getattr(os, "cpu_count", None)
    try:
        if cpu_count is None:  # Python 2.7
            import multiprocessing
            cpu_count = multiprocessing.cpu_count
        cpus = cpu_count()
    except NotImplementedError:
        cpus = None
    return min(32, (cpus or 1) + 4)


class _Pool(object):
    """State shared by an executor and its workers; it never refers to the executor."""

    def __init__(self, initializer=None, initargs=()):
        self.queue = queue.Queue()  # (future, fn, args, kwargs) items; None: exit
        self.lock = threading.Lock()  # orders submit, shutdown and the atexit handler
        self.idle = threading.Semaphore(0)  # released by a worker about to be idle
        self.threads = set()
        self.busy = set()  # workers that may be running a job or a future's callbacks
        self.initializer = initializer
        self.initargs = initargs
        self.broken = None  # why the pool is unusable (an initializer failed), or None

    def initialize(self):
        """Run the initializer in a new worker; on failure break the pool.

        Returns:
            ``True`` if the worker may serve, ``False`` if the pool is broken.
        """
        if self.initializer is None:
            return True
        try:
            self.initializer(*self.initargs)
            return True
        except BaseException:
            _LOGGER.critical("Exception in initializer:", exc_info=True)
        queued, stop = [], False
        with self.lock:
            self.broken = _BROKEN
            while True:  # fail what is queued, as ThreadPoolExecutor does
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    queued.append(item[0])
            if stop:
                self.queue.put(None)  # for the other workers to exit
        for future in queued:  # outside the lock: a callback may call submit()
            if future.set_running_or_notify_cancel():
                future.set_exception(BrokenThreadPool(_BROKEN))
        return False

    def stop(self, cancel_futures):
        """Make the workers exit once the queue is empty.

        Args:
            cancel_futures: cancel the jobs still queued instead of running them.
        """
        while cancel_futures:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self.queue.put(None)  # each exiting worker passes it on to the next


def _work(pool, _exiting=_EXITING, _park=_PARK, _exc_info=sys.exc_info,
          _exc_clear=getattr(sys, "exc_clear", None), _py2=six.PY2, _BaseException=BaseException):
    """Body of a worker thread: run the jobs of ``pool`` until told to exit.

    Args:
        pool: the ``_Pool`` to serve.  The other arguments are defaults bound at
            import time so that the end of a job touches no module global.
    """
    me = threading.current_thread()
    if not pool.initialize():
        return
    while True:
        item = pool.queue.get()
        pool.busy.add(me)  # before reading _exiting: see _python_exit
        if item is None or _exiting:
            if item is not None:
                item[0].cancel()
            pool.busy.discard(me)
            pool.queue.put(None)
            return
        future, fn, args, kwargs = item
        item = None
        if future.set_running_or_notify_cancel():
            result = error = None
            try:
                result = fn(*args, **kwargs)
            except _BaseException:  # SystemExit and the like fail the job, not us
                error = _exc_info()
                if _py2:
                    # Python 2 keeps the last exception (its traceback, the job's
                    # frames and all they hold) in the thread until cleared.
                    _exc_clear()
            fn = args = kwargs = None
            if not _exiting:
                pool.idle.release()  # before the result: a waiter may submit again
            try:
                if error is None:
                    future.set_result(result)
                elif _py2:
                    future.set_exception_info(error[1], error[2])
                else:
                    future.set_exception(error[1])
            finally:
                if _exiting:
                    _park.acquire()  # never returns: see the module docstring
            future = result = error = None
        else:
            pool.idle.release()
        pool.busy.discard(me)


class UnsafeThreadPoolExecutor(Executor):
    """A ``ThreadPoolExecutor`` whose daemon workers are never joined at exit."""

    def __init__(self, max_workers=None, thread_name_prefix="", initializer=None, initargs=()):
        """Create an executor; threads are started lazily, on ``submit``.

        Args:
            max_workers: the most threads to run at once; ``None`` for the standard
                library's default, ``min(32, cpu + 4)``.
            thread_name_prefix: prefix of the threads' names, which end in ``_<k>``.
            initializer: called as ``initializer(*initargs)`` in each worker thread
                before its first job. If it raises, the pool is broken: the queued
                jobs and every later ``submit`` fail with ``BrokenThreadPool``.
            initargs: the initializer's arguments.

        Raises:
            ValueError: if ``max_workers`` is not positive.
            TypeError: if ``initializer`` is neither ``None`` nor callable.
        """
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0, got %r" % (max_workers,))
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable, got %r" % (initializer,))
        self._max_workers = max_workers
        self._prefix = thread_name_prefix or "UnsafeThreadPoolExecutor-%d" % next(_COUNTER)
        self._shutdown = False
        self._pool = pool = _Pool(initializer, tuple(initargs))
        with _POOLS_LOCK:
            _POOLS.add(pool)

        def wake_on_collect(_, work_queue=pool.queue, exiting=_EXITING):
            if not exiting:  # once exiting, nobody waits on the queue
                work_queue.put(None)
        pool.executor_ref = weakref.ref(self, wake_on_collect)

    def submit(*args, **kwargs):
        """``submit(fn, /, *args, **kwargs)``: schedule ``fn(*args, **kwargs)`` on a worker thread.

        ``self`` and ``fn`` are positional only (written for Python 2.7 too), so the
        call may pass keyword arguments of those names to ``fn``.

        Returns:
            a ``concurrent.futures.Future`` for the call's outcome.

        Raises:
            TypeError: if ``fn`` is not given positionally.
            BrokenThreadPool: once an initializer failed.
            RuntimeError: after ``shutdown`` or once the interpreter is exiting.
        """
        if len(args) < 2:
            raise TypeError("submit() missing 1 required positional argument: 'fn'"
                            if args else "submit() needs an executor to be called on")
        self, fn, args = args[0], args[1], args[2:]
        pool = self._pool
        with pool.lock:
            if pool.broken:
                raise BrokenThreadPool(pool.broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _EXITING:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            future = Future()
            pool.queue.put((future, fn, args, kwargs))
            if not pool.idle.acquire(False) and len(pool.threads) < self._max_workers:
                self._start_worker()
            return future

    def _start_worker(self):
        """Start one more worker thread (``self._pool.lock`` held)."""
        pool = self._pool
        thread = threading.Thread(name="%s_%d" % (self._prefix, len(pool.threads)),
                                  target=_work, args=(pool,))
        thread.daemon = True
        thread.start()
        pool.threads.add(thread)

    def _grow(self, count):
        """Allow ``count`` more (or, negative, fewer) workers: a worker held by an
        abandoned job is replaced, and the allowance returns when that job ends.

        The replacement starts at once if jobs wait in the queue: they would
        otherwise wait for a ``submit`` that may never come.
        """
        pool = self._pool
        with pool.lock:
            self._max_workers += count
            if (count > 0 and not self._shutdown and not pool.broken and not _EXITING
                    and not pool.queue.empty() and len(pool.threads) < self._max_workers):
                self._start_worker()

    def shutdown(self, wait=True, cancel_futures=False):
        """Stop accepting jobs and let the workers exit once the queue is drained.

        Args:
            wait: join the workers (never the calling thread, nor any worker once the
                interpreter is exiting, as those may be parked for good).
            cancel_futures: cancel the queued jobs that have not started yet.
        """
        pool = self._pool
        with pool.lock:
            self._shutdown = True
            pool.stop(cancel_futures)
        if wait and not _EXITING:
            me = threading.current_thread()
            for thread in list(pool.threads):
                if thread is not me:
                    thread.join()


@atexit.register
def _python_exit():
    """Make the idle workers of every pool exit, and wait for them to be gone.

    A worker counts as busy from the moment it takes an item until it is back to
    waiting, and it reads ``_EXITING`` after marking itself busy, so a worker seen
    idle here is sure to see ``_EXITING`` set and to exit without starting its job.
    """
    _EXITING.append(True)
    with _POOLS_LOCK:
        pools = list(_POOLS)
    for pool in pools:
        with pool.lock:
            pool.stop(cancel_futures=True)
    for pool in pools:
        for thread in list(pool.threads):
            if thread not in pool.busy:
                thread.join()
