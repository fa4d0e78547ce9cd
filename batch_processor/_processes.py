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
import errno
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

from six.moves.queue import Full

from . import compat
from .interface import describe, safe_repr, safe_str

try:
    from concurrent.futures.process import _RemoteTraceback
except ImportError:  # Python 2.7's backport
    _RemoteTraceback = None  # type: ignore[assignment,misc]
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
_FORKED_WORKERS_AT_IMPORT = compat.PY2  # see _FORKED_WORKERS


def _init_worker(token, processor_bytes, program=None, devices=()):
    """A worker process starts: unpickle the processor once, for all its jobs.

    Ctrl-C is left to the main process, which stops the run and ends the workers.
    ``program``: the pid of the program that owns the pool, watched (`_watch_parent`).
    A worker that serves a device set sees it in ``CUDA_VISIBLE_DEVICES`` before the
    processor is unpickled (frameworks read it once, when they are imported).
    """
    _ignore_interrupts()
    _watch_parent(program)
    if devices:
        _serve_devices(token, devices)
    _PROCESSORS[token] = pickle.loads(processor_bytes)


#: token -> the device ids the workers of that pool serve (in a worker; in the parent
#: on 2.7, while a pool's workers fork).
_DEVICES = {}  # type: Dict[int, Any]


def _serve_devices(token, devices):
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    _DEVICES[token] = tuple(devices)


#: Seconds between two looks of a worker at its parent: a worker whose parent died
#: (SIGKILL: nothing shut the pool down) ends within this, plus the OS's reparenting.
_ORPHAN_CHECK = 0.5
_watching = []  # type: list


def _watch_parent(program=None):
    """Start, once per worker process, a daemon thread that ends the process when the
    program that owns its pool dies without ending it (SIGKILL). 2.7's workers are
    forked by the program: their parent pid changes when it dies. 3.x's are forked by
    the forkserver, which lives as long as they do (they hold its "alive" pipe): they
    watch the program's pid, given to the initializer. Once the workers have ended, the
    forkserver and the resource tracker see their pipes close and end too."""
    if _watching:
        return
    thread = threading.Thread(target=_orphan_watchdog, args=(os.getppid(), program),
                              name="batch_processor orphan watchdog")
    thread.daemon = True
    thread.start()
    _watching.append(thread)


def _orphan_watchdog(parent, program):
    import time
    while os.getppid() == parent and (program is None or _alive(program)):
        time.sleep(_ORPHAN_CHECK)
    os._exit(1)  # the job running, if any, is abandoned: its program is gone


def _alive(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:
        with open("/proc/%d/stat" % pid, "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (IOError, OSError, IndexError):
        return True  # no /proc: kill() said it exists


def _after_fork_27(_):
    """2.7: a worker forked by a processor's pool watches its parent too."""
    if _PROCESSORS:
        _watch_parent()


class _ForkHook(object):
    """Kept alive by this module: ``register_after_fork`` holds its key weakly."""


_fork_hook = _ForkHook()
if _FORKED_WORKERS_AT_IMPORT:
    from multiprocessing import util as _mp_util
    _mp_util.register_after_fork(_fork_hook, _after_fork_27)


def _ignore_interrupts():
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # pragma: no cover - not the main thread
        pass


def _run_job(token, method_name, descriptor_bytes):
    """``processor.method_name(descriptor)`` in a worker; returns ``(kind, payload, text)``.

    ``("ok", bytes, None)``: the pickled result. ``("unpicklable", None, why)``: the
    result could not be pickled. ``("raised", bytes, traceback)``: the job raised; the
    exception is pickled here (or replaced by a `RuntimeError` that describes it), and
    unpickled by the parent in the job's own callback, so an exception the parent cannot
    unpickle fails that job alone instead of the pool's result queue.
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
        text = traceback.format_exc()
        try:
            return "raised", pickle.dumps(exc, _PROTOCOL), text
        except Exception:
            error = RuntimeError("the job raised %s, which cannot be pickled back to the "
                                 "parent process:\n%s" % (safe_str(exc), text))
            return "raised", pickle.dumps(error, _PROTOCOL), text
    try:
        return "ok", pickle.dumps(result, _PROTOCOL), None
    except Exception as exc:
        return "unpicklable", None, "its result %s cannot be pickled (%s)" % (
            safe_repr(result), safe_str(exc))


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


def _preload_main_imports(context):
    """Have the fork server import, once, the installed packages the main script uses.

    A worker started by the fork server runs the program's main script again (as
    ``__mp_main__``), and so imports what it imports: a second or more per worker, for
    every new pool, with scikit-learn or a deep-learning framework imported at its top.
    The fork server is meant to import ``__main__`` once for all its workers, but
    Python 3.6 to 3.13 never do (``ForkServer.ensure_running`` asks for the key
    ``main_path``, which ``spawn.get_preparation_data`` calls ``init_main_from_path``).
    So, as the first pool starts the fork server, the modules of the installed
    packages (``site-packages``) that the main script's names come from are given as
    its preload: workers are forked with them imported, and the script's run in
    each worker finds them there. Nothing is done when the fork server runs already
    or the program set a preload of its own.
    """
    if context.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver
    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_address", True) is not None or \
            getattr(server, "_preload_modules", None) != ["__main__"]:
        return
    names = _main_imports()
    if names:
        context.set_forkserver_preload(["__main__"] + names)


def _main_imports():
    """The installed modules (``site-packages``) that the main module's names come from,
    directly or through the program's own modules that it imports (two levels)."""
    import types
    standard = os.path.dirname(os.__file__)
    names = []  # type: list
    seen = set()  # type: set

    def visit(module, depth):
        for value in list(vars(module).values()):
            if isinstance(value, types.ModuleType):
                name = value.__name__
            elif isinstance(value, (type, types.FunctionType)):
                name = getattr(value, "__module__", None)
            else:
                continue
            if not isinstance(name, str) or name in seen:
                continue
            seen.add(name)
            found = sys.modules.get(name)
            path = getattr(found, "__file__", None) or ""
            if "site-packages" in path or "dist-packages" in path:
                names.append(name)
            elif path and depth and not path.startswith(standard):
                visit(found, depth - 1)  # a module of the program's own

    main = sys.modules.get("__main__")
    if main is not None:
        seen.update(("__main__", "__mp_main__"))
        visit(main, 2)
    return names


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


class _Executor27(ProcessPoolExecutor):
    """2.7's backport pool, whose ``submit`` wakes the manager thread only when needed.

    The backport wakes its manager thread at every submit by putting ``None`` on the
    result queue: a trip through a feeder thread, a pipe and the manager thread, per
    job, on a core the workers want. The manager thread moves submitted jobs to the
    workers' queue each time it wakes, and it wakes at every result: while more jobs
    are pending than there are workers, a result is on its way (the workers' queue is
    full, or a worker runs a job), and the job submitted now is moved when it comes.
    """

    def submit(self, fn, *args, **kwargs):
        if len(self._pending_work_items) <= self._max_workers or \
                self._queue_management_thread is None:
            return ProcessPoolExecutor.submit(self, fn, *args, **kwargs)
        from concurrent.futures import process as backport
        with self._shutdown_lock:
            if self._shutdown_thread:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = Future()
            self._pending_work_items[self._queue_count] = backport._WorkItem(
                future, fn, args, kwargs)
            self._work_ids.put(self._queue_count)
            self._queue_count += 1
            return future


class _JobFuture(Future):
    """The future of one job: the worker's pickled answer, unpickled here.

    Cancelling it while the job waits in the pool's queue cancels this future only:
    the pool's own future is left alone, for the pools of 3.8 to 3.11 fail when they
    break with a cancelled job in their queue (their manager thread dies on
    ``InvalidStateError``). The job is then skipped if the pool is terminated (as on
    ``kill()``), or it runs and its outcome is dropped. A job already running cannot
    be cancelled: it is abandoned (`ProcessorPool.abandon`).

    ``generation`` is the `_Generation` (pool) the job is in now, ``inner`` that pool's
    future of it; a job moved to a fresh pool gets new ones.
    """

    def __init__(self, owner, method_name, descriptor, descriptor_bytes, started):
        Future.__init__(self)
        self._owner = owner  # the `ProcessorPool`
        self.method_name = method_name
        self.descriptor = descriptor
        self.descriptor_bytes = descriptor_bytes
        self.started = started
        self.generation = None
        self.inner = None
        self.counted = False  # holds one of its pool's workers (as the count goes)
        self.abandoned = False

    @property
    def queued(self):
        """Still waiting for a worker (as the pool counts): it never started."""
        return not self.counted and not self.done()

    def cancel(self):
        inner = self.inner
        if inner is not None and not self.counted and not inner.done():
            return self.drop()  # still queued: nothing is abandoned
        if inner is not None and (inner.running() or inner.done()):
            if not inner.done():
                self._owner.abandon(self)
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


class _Generation(object):
    """One ``ProcessPoolExecutor`` of a `ProcessorPool`, and the count of its workers' jobs.

    ``occupied`` counts the jobs that hold a worker (started, abandoned ones included,
    until they end); ``waiting`` the jobs beyond the workers, in order; ``jobs`` every
    job not yet ended; ``abandoned`` the jobs abandoned while they run. When every
    worker holds an abandoned job, the jobs still wanted cannot have started: the pool
    is terminated (its hung workers with it) and they move to a fresh one.
    """

    def __init__(self, executor, workers):
        self.executor = executor
        self.workers = workers
        self.occupied = 0
        self.abandoned = 0
        self.waiting = collections.deque()
        self.jobs = []


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
        self.generation = None  # the current `_Generation`: a ProcessPoolExecutor
        self.broken = False
        self.closed = False
        self.lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def __repr__(self):
        return "<ProcessorPool of %s, %d workers>" % (describe(self.processor), self.workers)

    # -- pools ----------------------------------------------------------------------

    def current_pool(self):
        return self.current_generation().executor

    def current_generation(self):
        with self.lock:
            if self.closed:
                raise RuntimeError("%s: its process pool was shut down (the processor was "
                                   "stopped or killed); make a new processor to run more jobs"
                                   % describe(self.processor))
            stale = None
            generation = self.generation
            if generation is not None and (
                    self.broken or getattr(generation.executor, "_broken", False)):
                stale, self.generation = generation, None
            if self.generation is None:
                self.generation = _Generation(self.new_pool(), self.workers)
                self.broken = False
            generation = self.generation
        if stale is not None:  # outside the lock: its manager thread's callbacks take it
            _terminate(stale.executor)
        return generation

    @property
    def pool(self):
        """The current ``ProcessPoolExecutor``, or ``None``."""
        generation = self.generation
        return None if generation is None else generation.executor

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
            return _Executor27(self.workers)  # 2.7: workers forked at the first job
        _preload_main_imports(context)
        return _new_executor(self.workers, context, _init_worker,
                             (self.token, processor_bytes, os.getpid(), self.devices))

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
        outer = _JobFuture(self, method_name, descriptor, descriptor_bytes, started)
        self.place(outer)
        return outer

    def place(self, outer):
        """Submit the job ``outer`` to the current pool (a fresh one if it broke)."""
        generation = self.current_generation()
        try:
            inner = self.submit_inner(generation.executor, outer.method_name,
                                      outer.descriptor_bytes)
        except BrokenProcessPool:
            self.broken = True
            generation = self.current_generation()
            inner = self.submit_inner(generation.executor, outer.method_name,
                                      outer.descriptor_bytes)
        with self.lock:
            outer.generation, outer.inner = generation, inner
            generation.jobs.append(outer)
            starts = generation.occupied < generation.workers
            if starts:
                generation.occupied += 1
                outer.counted = True
            else:
                generation.waiting.append(outer)
        if starts and outer.started is not None:
            outer.started()
        inner.add_done_callback(lambda done: self.job_done(outer, done, generation))

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

    def leave(self, outer, generation):
        """``outer`` ended in ``generation`` (lock held): its worker, if it held one, takes
        the oldest waiting job. Returns that job, whose ``started()`` is to be called."""
        try:
            generation.jobs.remove(outer)
        except ValueError:
            return None
        if not outer.counted:
            try:
                generation.waiting.remove(outer)
            except ValueError:
                pass
            return None
        outer.counted = False
        generation.occupied -= 1
        if outer.abandoned:
            generation.abandoned -= 1
        if generation.waiting:
            following = generation.waiting.popleft()
            following.counted = True
            generation.occupied += 1
            return following
        return None

    def abandon(self, outer):
        """The running job ``outer`` is abandoned (a job_timeout, a kill): its worker is
        still busy with it. Once every worker of its pool is, the pool is terminated
        (the hung workers with it) and the jobs still wanted move to a fresh pool: none
        of them can have started."""
        with self.lock:
            generation = outer.generation
            if outer.abandoned or generation is None or outer not in generation.jobs:
                return
            outer.abandoned = True
            if not outer.counted:  # counted as waiting: it holds a worker all the same
                try:
                    generation.waiting.remove(outer)
                except ValueError:
                    pass
                outer.counted = True
                generation.occupied += 1
            generation.abandoned += 1
            if generation.abandoned < generation.workers:
                return
            if self.generation is generation:
                self.generation = None
            moving = [job for job in generation.jobs if not job.abandoned and not job.done()]
            for job in generation.jobs:
                job.generation = None  # the outcomes of that pool are not wanted any more
            generation.jobs, generation.waiting = [], collections.deque()
            closed = self.closed
        _terminate(generation.executor)
        for job in moving:
            if closed:
                job.settle(exception=BrokenProcessPool("the process pool was shut down"))
                continue
            job.counted = False
            try:
                self.place(job)
            except Exception as exc:  # shut down meanwhile: the job fails, alone
                job.settle(exception=exc)

    def job_done(self, outer, inner, generation):
        with self.lock:
            if outer.generation is not generation:
                return  # moved to another pool, or that pool was terminated for good
            following = self.leave(outer, generation)
            outer.generation = None
        if following is not None and following.started is not None and not following.done():
            following.started()
        if inner.cancelled():  # by the pool itself (shut down with cancel_futures)
            outer.drop()
            return
        exc = inner.exception()
        if exc is not None:
            if isinstance(exc, BrokenProcessPool):
                with self.lock:
                    if self.generation is generation:
                        self.broken = True
            outer.settle(exception=exc)
            return
        if outer.done():
            return  # cancelled while it waited: its result is not wanted
        kind, payload, text = inner.result()
        if kind == "unpicklable":
            outer.settle(exception=TypeError(
                "%s: the job %s cannot send its result back from its worker process: %s; "
                "return picklable values from a processor with executor=\"processes\""
                % (describe(self.processor), safe_repr(outer.descriptor), text)))
            return
        try:
            value = pickle.loads(payload)
        except Exception as exc:
            what = "the exception it raised" if kind == "raised" else "its result"
            error = TypeError(
                "%s: the job %s sent back %s, which cannot be unpickled in this process "
                "(%s); raise and return objects that unpickle (their classes importable, "
                "their __init__ or __reduce__ able to rebuild them)%s"
                % (describe(self.processor), safe_repr(outer.descriptor), what, safe_str(exc),
                   (":\n" + text) if text else ""))
            error.__cause__ = exc
            outer.settle(exception=error)
            return
        if kind == "raised":
            if _RemoteTraceback is not None and text:
                value.__cause__ = _RemoteTraceback(text)
            outer.settle(exception=value)
        else:
            outer.settle(value)

    def submit(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker, as ``Executor.submit`` (everything pickled)."""
        return self.current_pool().submit(fn, *args, **kwargs)

    # -- the end --------------------------------------------------------------------

    def shutdown(self, wait=True, kill=False):
        """Shut the pool down for good; ``kill``: terminate the workers first."""
        with self.lock:
            self.closed = True
            generation, self.generation = self.generation, None
        if generation is not None:
            pool = generation.executor
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
    _forget_dead_writers(pool)
    if thread is not None:
        # The manager thread sees the dead workers and cleans up; shutting down before
        # it is done closes its queue under it (3.7 and 3.8 then raise in that thread).
        thread.join(5)
    _shutdown_now(pool)


def _forget_dead_writers(pool):
    """3.6: the pool wakes its manager thread (at shutdown, and at exit) by writing to
    the result queue, under the queue's write lock; a worker terminated while it wrote
    its result holds that lock for good. Its workers all terminated, the pool's own
    thread is the queue's only writer left: it needs no lock. (3.7+ wake the thread
    through a pipe of their own.)"""
    if hasattr(pool, "_queue_management_thread_wakeup") or \
            hasattr(pool, "_executor_manager_thread_wakeup"):
        return
    queue = getattr(pool, "_result_queue", None)
    if queue is not None and getattr(queue, "_wlock", None) is not None:
        queue._wlock = None


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
    queues = [getattr(pool, name, None) for name in ("_call_queue", "_result_queue")]
    _keep_reader_open(queues[0])
    for queue in queues:
        # A worker terminated while it wrote its result holds the result queue's write
        # lock for good: the feeder thread that writes the shutdown's wake-up there
        # then waits forever, and multiprocessing would join it at exit (a hang at
        # exit, seen after closing a stream early). Exit does not wait for them.
        if queue is not None and hasattr(queue, "cancel_join_thread"):
            queue.cancel_join_thread()
    _shutdown_now(pool)
    if thread is None:
        return
    from concurrent.futures import process as backport
    getattr(backport, "_threads_queues", {}).pop(thread, None)
    # Threads of this pool still running when the interpreter tears its modules down
    # fail there with a traceback ("most likely raised during interpreter shutdown"):
    # multiprocessing's exit wakes the queues' feeder threads to end them, and exit
    # waits for none of them. So they end now. The manager thread, woken by the
    # shutdown, hands the dead workers their sentinels and closes the call queue
    # (whose feeder then ends); the result queue's feeder is told to end once the
    # manager thread, its only user, has ended. If the wake-up is stuck behind the
    # result queue's write lock, which a terminated worker held, the manager thread
    # and that feeder stay blocked for good, silently; the call queue's feeder is
    # told to end then (the manager thread's sentinels, if it ever woke, are dropped).
    if _lock_is_free(getattr(queues[1], "_wlock", None)):
        thread.join(_END_THREADS)
    if thread.is_alive():
        _end_feeder(queues[0])
        return
    _end_feeder(queues[1])
    for queue in queues:
        feeder = getattr(queue, "_thread", None)
        if feeder is not None:
            feeder.join(_END_THREADS)


#: 2.7: seconds a terminated pool's threads are given to end (they take milliseconds,
#: unless a terminated worker left a lock held: see `_end_backport_pool`).
_END_THREADS = 1.0


def _lock_is_free(lock):
    """2.7: whether the multiprocessing lock ``lock`` can be taken within a moment (the
    feeder thread of its queue may hold it while it writes)."""
    if lock is None:
        return True
    if not lock.acquire(True, 0.2):
        return False
    lock.release()
    return True


def _end_feeder(queue):
    """2.7: tell the feeder thread of ``queue`` to end once it wrote what it holds, as
    ``close()`` does, but leave the read end open (see `_keep_reader_open`): nothing is
    put on the queue after this (its pool is shut down and its manager thread ended)."""
    if queue is None or not hasattr(queue, "_close"):
        return
    queue._closed = True
    end_feeder, queue._close = queue._close, None
    if end_feeder is not None:
        end_feeder()


def _keep_reader_open(call_queue):
    """2.7: the call queue of a terminated pool. The manager thread closes it once it
    handed the dead workers their sentinels, but its feeder thread may still be writing
    them to the pipe: with the read end closed too, it fails with ``EPIPE`` and prints
    a traceback (not at exit).
    Closing then only ends the feeder, after it wrote what it holds; the read end
    stays open (a few bytes in the pipe) until the queue is collected."""
    if call_queue is None or not hasattr(call_queue, "_close"):
        return

    def close(queue=call_queue):
        _end_feeder(queue)
    call_queue.close = close

    # The sentinels go to workers that are dead: they must not wait for room in a
    # queue that jobs nobody will take fill up (with as many jobs queued as
    # `jobs_ahead` hands the pool, they would: the manager thread would then never
    # end). A sentinel that finds the queue full is dropped.
    put = call_queue.put

    def put_or_drop(item, block=True, timeout=None, queue=call_queue):
        if queue._closed:
            return  # its feeder was told to end (`_end_backport_pool`)
        try:
            put(item, False)
        except Full:
            pass
    call_queue.put = put_or_drop


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
if hasattr(threading, "_register_atexit"):  # Python 3.9+
    # concurrent.futures joins the pools' manager threads at threading's exit, before
    # atexit handlers run, and a manager thread waits for its workers' jobs: one
    # abandoned in a hung worker would hold exit for good. Registered after that join
    # (the module imported it above), this runs before it and terminates such pools.
    threading._register_atexit(lambda: _end_abandoned())


def _end_abandoned():
    """Terminate the pools that have a job abandoned in a worker (the interpreter exits)."""
    with _live_lock:
        pools = list(_live)
    for pool in pools:
        generation = pool.generation
        if generation is not None and generation.abandoned:
            pool.shutdown(kill=True)


def jobs_ahead(workers):
    """How many jobs a Separate processor hands its pool of ``workers`` beyond those
    that run: as many again on Python 3, where a dead worker fails every job in its
    pool; four times as many on 2.7, whose loop hears of ends later (its pool's
    threads and the loop share one core's worth of interpreter lock), and where a
    worker that dies hangs its pool whatever is queued (see SPEC)."""
    return workers * 4 if compat.PY2 else workers


def default_workers():
    try:
        return os.cpu_count() or 1
    except AttributeError:  # Python 2.7
        return multiprocessing.cpu_count()
