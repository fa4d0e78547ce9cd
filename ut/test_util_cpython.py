"""CPython's own ``ThreadPoolExecutor`` tests, run on ``UnsafeThreadPoolExecutor``.

Adapted from ``Lib/test/test_concurrent_futures`` (``executor.py``,
``test_thread_pool.py``, ``test_shutdown.py``, ``test_init.py``) of CPython 3.14: pytest
instead of unittest, Python 2.7 syntax, `helpers.TIMEOUT` as the safety net where they
use ``support.SHORT_TIMEOUT``, events instead of sleeps, and ``executor._pool.threads``
for ``executor._threads``. Each test keeps its CPython name.

Those that differ by design, and so are not here as they are:

* ``test_interpreter_shutdown`` and ``test_hang_gh83386``: a job still running at exit
  is abandoned, not waited for (the workers are daemon threads: that is the point of the
  class), so its output never comes. Kept: the exit is clean and does not hang
  (`test_interpreter_shutdown_abandons_a_running_job`).
* ``test_cancel_futures``: timing-based (``time.sleep`` jobs); kept with events.
* ``test_map_timeout``: timing-based; kept with an event and ``timeout=0``.
* ``FailingInitializerMixin.test_initializer``: the failure is logged under
  ``batch_processor.util``, where the package logs everything, not
  ``concurrent.futures``; the rest is as there (`test_failing_initializer`).
* ``test_hang_global_shutdown_lock``: about the standard library's private
  ``_global_shutdown_lock`` after ``fork``; this class has no such lock.
"""
from __future__ import absolute_import, division, print_function

import contextlib
import logging
import os
import re
import sys
import threading
import weakref
from concurrent import futures

import pytest

from batch_processor import util
from batch_processor.util import BrokenThreadPool, UnsafeThreadPoolExecutor
from helpers import TIMEOUT, run_script

PY2 = sys.version_info[0] == 2
WORKER_COUNT = 5


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


class MyObject(object):
    def my_method(self):
        pass


def make_dummy_object(_):
    return MyObject()


def threads_of(executor):
    return executor._pool.threads


@pytest.fixture
def executor():
    pool = UnsafeThreadPoolExecutor(max_workers=WORKER_COUNT)
    yield pool
    pool.shutdown(wait=True)


# -- executor.py: ExecutorTest ------------------------------------------------------------

def test_submit(executor):
    future = executor.submit(pow, 2, 8)
    assert future.result(TIMEOUT) == 256


def test_submit_keyword(executor):
    future = executor.submit(mul, 2, y=8)
    assert future.result(TIMEOUT) == 16
    future = executor.submit(capture, 1, self=2, fn=3)
    assert future.result(TIMEOUT) == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        executor.submit(fn=capture, arg=1)
    with pytest.raises(TypeError):
        executor.submit(arg=1)


def test_map(executor):
    assert list(executor.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert (list(executor.map(pow, range(10), range(10), chunksize=3))
            == list(map(pow, range(10), range(10))))


def test_map_exception(executor):
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(executor):
    release = threading.Event()
    results = []
    try:
        with pytest.raises(futures.TimeoutError):
            for value in executor.map(lambda x: x or release.wait(TIMEOUT), [1, 2, 0], timeout=0):
                results.append(value)
    finally:
        release.set()
    assert results in ([], [1], [1, 2])  # what was done when the 0 s ran out


def test_shutdown_race_issue12456(executor):
    executor.map(str, [2] * (WORKER_COUNT + 1))
    executor.shutdown()


def test_no_stale_references(executor):
    my_object = MyObject()
    my_object_collected = threading.Event()
    my_object_callback = weakref.ref(my_object, lambda obj: my_object_collected.set())  # noqa: F841
    executor.submit(my_object.my_method)  # the future is discarded on purpose
    del my_object
    assert my_object_collected.wait(TIMEOUT), "stale reference not collected"


@pytest.mark.parametrize("number", [0, -1])
def test_max_workers_negative(number):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        UnsafeThreadPoolExecutor(max_workers=number)


def test_free_reference(executor):
    # The worker may still hold the result for an instant after handing it over (it is
    # an argument of set_result while the waiter wakes): wait for the last reference
    # to go, as CPython's test now does, through the weakref's callback.
    for obj in executor.map(make_dummy_object, range(10)):
        freed = threading.Event()
        ref = weakref.ref(obj, lambda _, freed=freed: freed.set())
        del obj
        assert freed.wait(TIMEOUT)
        assert ref() is None


# -- test_thread_pool.py: ThreadPoolExecutorTest ----------------------------------------

def test_map_submits_without_iteration(executor):
    finished = []
    executor.map(finished.append, range(10))
    executor.shutdown(wait=True)
    assert sorted(finished) == list(range(10))


def test_default_workers():
    executor = UnsafeThreadPoolExecutor()
    cpu_count = getattr(os, "process_cpu_count", None) or getattr(os, "cpu_count", None)
    cpus = cpu_count() if cpu_count else __import__("multiprocessing").cpu_count()
    assert executor._max_workers == min(32, (cpus or 1) + 4)
    executor.shutdown()


def test_saturation():
    executor = UnsafeThreadPoolExecutor(4)
    sem = threading.Semaphore(0)
    for _ in range(15 * executor._max_workers):
        executor.submit(sem.acquire)
    assert len(threads_of(executor)) == executor._max_workers
    for _ in range(15 * executor._max_workers):
        sem.release()
    executor.shutdown(wait=True)


def test_idle_thread_reuse():
    executor = UnsafeThreadPoolExecutor()
    executor.submit(mul, 21, 2).result(TIMEOUT)
    executor.submit(mul, 6, 7).result(TIMEOUT)
    executor.submit(mul, 3, 14).result(TIMEOUT)
    assert len(threads_of(executor)) == 1
    executor.shutdown(wait=True)


def _fork_process_and_return_exitcode():
    import multiprocessing
    context = multiprocessing if PY2 else multiprocessing.get_context("fork")
    process = context.Process(target=int)
    process.start()
    process.join(TIMEOUT)
    return process.exitcode


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# The test forks from a worker thread on purpose (bpo-43944); 3.12+ warns about that.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_process_fork_from_a_threadpool():
    with UnsafeThreadPoolExecutor(1) as pool:
        exitcode = pool.submit(_fork_process_and_return_exitcode).result(TIMEOUT)
    assert exitcode == 0


@pytest.mark.skipif(not hasattr(futures._base, "_result_or_cancel"),
                    reason="Executor.map of this Python does not cancel the future it waited "
                           "for on a timeout (gh-95166, fixed in 3.12 and some 3.8-3.11 releases)")
def test_executor_map_current_future_cancel():
    stop_event = threading.Event()
    log = []

    def log_n_wait(ident):
        log.append("ident=%r started" % (ident,))
        try:
            stop_event.wait(TIMEOUT)
        finally:
            log.append("ident=%r stopped" % (ident,))

    with UnsafeThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(log_n_wait, ident="first")  # saturates the pool
        try:
            with contextlib.closing(pool.map(log_n_wait, ["second", "third"], timeout=0)) as gen:
                with pytest.raises(futures.TimeoutError):
                    next(gen)
        finally:
            stop_event.set()
        future.result(TIMEOUT)
    # "second" is cancelled by the TimeoutError, "third" because it was still queued
    assert log == ["ident='first' started", "ident='first' stopped"]


# -- test_shutdown.py: ExecutorShutdownTest and ThreadPoolShutdownTest -------------------

def test_run_after_shutdown(executor):
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)


def test_interpreter_shutdown_abandons_a_running_job():
    returncode, stdout, stderr = run_script("""
        from __future__ import print_function
        import threading
        from batch_processor.util import UnsafeThreadPoolExecutor
        started, never = threading.Event(), threading.Event()

        def job():
            started.set()
            never.wait()
            print("apple")

        t = UnsafeThreadPoolExecutor(5)
        t.submit(job)
        started.wait()
    """)
    assert (returncode, stdout, stderr) == (0, "", "")


def test_submit_after_interpreter_shutdown():
    returncode, stdout, stderr = run_script("""
        from __future__ import print_function
        import atexit
        @atexit.register
        def run_last():
            try:
                t.submit(id, None)
            except RuntimeError:
                print("runtime-error")
                raise
        from batch_processor.util import UnsafeThreadPoolExecutor
        t = UnsafeThreadPoolExecutor(5)
    """)
    assert "RuntimeError: cannot schedule new futures" in stderr
    assert stdout.strip() == "runtime-error"


def test_hang_issue12364(executor):
    futures_ = [executor.submit(mul, i, i) for i in range(50)]
    executor.shutdown()
    assert [f.result(TIMEOUT) for f in futures_] == [i * i for i in range(50)]


def test_cancel_futures():
    release = threading.Event()
    started = [threading.Event() for _ in range(WORKER_COUNT)]

    def block(i):
        started[i].set()
        return release.wait(TIMEOUT)

    executor = UnsafeThreadPoolExecutor(WORKER_COUNT)
    running = [executor.submit(block, i) for i in range(WORKER_COUNT)]
    queued = [executor.submit(int) for _ in range(45)]
    assert all(event.wait(TIMEOUT) for event in started)  # every worker is busy
    executor.shutdown(wait=False, cancel_futures=True)
    release.set()
    executor.shutdown(wait=True)
    assert all(future.cancelled() for future in queued)
    assert all(future.done() and future.exception() is None for future in running)


def test_hang_gh94440():
    executor = UnsafeThreadPoolExecutor(max_workers=1)
    executor.submit(int).result(TIMEOUT)
    executor.submit(int).cancel()
    shutdown = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
    shutdown.start()
    shutdown.join(TIMEOUT)
    assert not shutdown.is_alive(), "shutdown(wait=True) hangs"


def test_threads_terminate(executor):
    sem = threading.Semaphore(0)
    for _ in range(3):
        executor.submit(sem.acquire)
    assert len(threads_of(executor)) == 3
    for _ in range(3):
        sem.release()
    executor.shutdown()
    for thread in threads_of(executor):
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_context_manager_shutdown():
    with UnsafeThreadPoolExecutor(max_workers=5) as e:
        executor = e
        assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    for thread in threads_of(executor):
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_del_shutdown():
    executor = UnsafeThreadPoolExecutor(max_workers=5)
    results = executor.map(abs, range(-5, 5))
    threads = threads_of(executor)
    del executor
    for thread in list(threads):
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert list(results) == [abs(v) for v in range(-5, 5)]


def test_shutdown_no_wait():
    executor = UnsafeThreadPoolExecutor(max_workers=5)
    results = executor.map(abs, range(-5, 5))
    threads = threads_of(executor)
    executor.shutdown(wait=False)
    for thread in list(threads):
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert list(results) == [abs(v) for v in range(-5, 5)]


def test_thread_names_assigned():
    executor = UnsafeThreadPoolExecutor(max_workers=5, thread_name_prefix="SpecialPool")
    executor.map(abs, range(-5, 5))
    threads = list(threads_of(executor))
    del executor
    for thread in threads:
        assert re.match(r"^SpecialPool_[0-4]$", thread.name)
        thread.join(TIMEOUT)


def test_thread_names_default():
    executor = UnsafeThreadPoolExecutor(max_workers=5)
    executor.map(abs, range(-5, 5))
    threads = list(threads_of(executor))
    del executor
    for thread in threads:
        assert re.search(r"ThreadPoolExecutor-\d+_[0-4]$", thread.name)
        thread.join(TIMEOUT)


def test_cancel_futures_wait_false():
    # CPython's test leaves it to chance whether print runs as the interpreter exits;
    # here the worker is known busy, so the print is queued and surely cancelled (a
    # daemon thread printing while 2.7 tears its modules down complains on stderr).
    returncode, stdout, stderr = run_script("""
        from __future__ import print_function
        import threading
        from batch_processor.util import UnsafeThreadPoolExecutor
        t = UnsafeThreadPoolExecutor(1)
        started, go = threading.Event(), threading.Event()
        busy = t.submit(lambda: (started.set(), go.wait(30)))
        assert started.wait(30)
        apple = t.submit(print, "apple")
        t.shutdown(wait=False, cancel_futures=True)
        go.set()
        busy.result()
        assert apple.cancelled()
    """)
    assert (returncode, stderr) == (0, "")
    assert stdout.strip() == ""


# -- test_init.py: InitializerMixin and FailingInitializerMixin --------------------------

INITIALIZER_STATUS = ["uninitialized"]


def init(x):
    INITIALIZER_STATUS[0] = x


def get_init_status():
    return INITIALIZER_STATUS[0]


def init_fail():
    raise ValueError("error in initializer")


def test_initializer():
    INITIALIZER_STATUS[0] = "uninitialized"
    executor = UnsafeThreadPoolExecutor(2, initializer=init, initargs=("initialized",))
    try:
        results = [executor.submit(get_init_status) for _ in range(2)]
        assert [f.result(TIMEOUT) for f in results] == ["initialized"] * 2
    finally:
        executor.shutdown(wait=True)


def test_failing_initializer(caplog):
    executor = UnsafeThreadPoolExecutor(2, initializer=init_fail)
    try:
        with caplog.at_level(logging.CRITICAL, logger="batch_processor.util"):
            future = executor.submit(get_init_status)
            with pytest.raises(BrokenThreadPool):
                future.result(TIMEOUT)
        assert any(record.getMessage() == "Exception in initializer:"
                   and isinstance(record.exc_info[1], ValueError)
                   and str(record.exc_info[1]) == "error in initializer"
                   for record in caplog.records if record.exc_info)
        assert executor._pool.broken  # the pool is broken from here on, and stays so
        with pytest.raises(BrokenThreadPool):
            executor.submit(get_init_status)
    finally:
        executor.shutdown(wait=True)


def test_broken_thread_pool_is_the_standard_one_where_there_is_one():
    standard = getattr(futures.thread, "BrokenThreadPool", None)
    assert util.BrokenThreadPool is (standard or util.BrokenThreadPool)
    if standard is not None:
        assert issubclass(BrokenThreadPool, futures.BrokenExecutor if hasattr(
            futures, "BrokenExecutor") else futures._base.BrokenExecutor)


def test_initializer_must_be_callable():
    with pytest.raises(TypeError, match="initializer must be a callable"):
        UnsafeThreadPoolExecutor(1, initializer=42)
