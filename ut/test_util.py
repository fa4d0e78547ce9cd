"""Tests of ``batch_processor.util.UnsafeThreadPoolExecutor``."""
from __future__ import absolute_import, division, print_function

import gc
import threading

import pytest

from batch_processor.util import UnsafeThreadPoolExecutor
from helpers import TIMEOUT, run_script


def current_thread():
    return threading.current_thread()


def fail(exc):
    raise exc


def join_all(threads):
    for thread in threads:
        thread.join(TIMEOUT)
    return [thread for thread in threads if thread.is_alive()]


def test_submit_returns_result():
    with UnsafeThreadPoolExecutor(2) as executor:
        assert executor.submit(pow, 2, 10).result(TIMEOUT) == 1024
        assert executor.submit(dict, a=1).result(TIMEOUT) == {"a": 1}


def test_exception_propagates():
    with UnsafeThreadPoolExecutor(2) as executor:
        future = executor.submit(fail, ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            future.result(TIMEOUT)
        assert isinstance(future.exception(TIMEOUT), ValueError)


def test_map():
    with UnsafeThreadPoolExecutor(3) as executor:
        assert list(executor.map(pow, range(10), [2] * 10)) == [i ** 2 for i in range(10)]


def test_context_manager_joins_workers():
    with UnsafeThreadPoolExecutor(3) as executor:
        threads = [executor.submit(current_thread) for _ in range(6)]
    threads = set(future.result(0) for future in threads)
    assert not any(thread.is_alive() for thread in threads)


def test_submit_after_shutdown_raises():
    executor = UnsafeThreadPoolExecutor(1)
    executor.submit(int).result(TIMEOUT)
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(int)
    executor.shutdown(wait=False, cancel_futures=True)  # shutting down twice is fine


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_must_be_positive(max_workers):
    with pytest.raises(ValueError, match="max_workers"):
        UnsafeThreadPoolExecutor(max_workers)


def test_default_max_workers():
    executor = UnsafeThreadPoolExecutor()
    assert 5 <= executor._max_workers <= 32
    executor.shutdown()


@pytest.mark.parametrize("max_workers", [1, 3])
def test_max_workers_honoured(max_workers):
    lock = threading.Lock()
    state = {"running": 0, "peak": 0}
    all_running, release = threading.Event(), threading.Event()

    def job():
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            if state["running"] == max_workers:
                all_running.set()
        release.wait(TIMEOUT)
        with lock:
            state["running"] -= 1
        return threading.current_thread()

    with UnsafeThreadPoolExecutor(max_workers) as executor:
        futures = [executor.submit(job) for _ in range(3 * max_workers)]
        assert all_running.wait(TIMEOUT)  # max_workers jobs do run at once
        assert not any(future.done() for future in futures)
        release.set()
        threads = set(future.result(TIMEOUT) for future in futures)
    assert state["peak"] == max_workers  # and never more
    assert len(threads) == max_workers


def test_idle_thread_is_reused():
    with UnsafeThreadPoolExecutor(4) as executor:
        threads = set(executor.submit(current_thread).result(TIMEOUT) for _ in range(5))
    assert len(threads) == 1
    assert threads.pop().name.startswith("UnsafeThreadPoolExecutor-")


def test_thread_names():
    release = threading.Event()
    with UnsafeThreadPoolExecutor(2) as executor:
        futures = [executor.submit(lambda: release.wait(TIMEOUT) and current_thread())
                   for _ in range(2)]
        release.set()
        names = sorted(future.result(TIMEOUT).name for future in futures)
    prefix = names[0][:-len("_0")]
    assert names == [prefix + "_0", prefix + "_1"]
    assert prefix.startswith("UnsafeThreadPoolExecutor-")
    assert prefix[len("UnsafeThreadPoolExecutor-"):].isdigit()


def test_workers_are_daemon_threads():
    with UnsafeThreadPoolExecutor(1) as executor:
        assert executor.submit(current_thread).result(TIMEOUT).daemon


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_base_exception_fails_future_and_worker_survives(exc_type):
    with UnsafeThreadPoolExecutor(1) as executor:
        first = executor.submit(current_thread).result(TIMEOUT)
        with pytest.raises(exc_type):
            executor.submit(fail, exc_type()).result(TIMEOUT)
        assert executor.submit(current_thread).result(TIMEOUT) is first
        assert first.is_alive()


def test_shutdown_cancel_futures():
    started, release = threading.Event(), threading.Event()

    def block():
        started.set()
        return release.wait(TIMEOUT)

    executor = UnsafeThreadPoolExecutor(1)
    running = executor.submit(block)
    queued = [executor.submit(int) for _ in range(3)]
    assert started.wait(TIMEOUT)
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(future.cancelled() for future in queued)
    release.set()
    assert running.result(TIMEOUT) is True
    executor.shutdown(wait=True)


def test_shutdown_without_wait_runs_queued_jobs_then_workers_exit():
    release = threading.Event()
    executor = UnsafeThreadPoolExecutor(1)
    futures = [executor.submit(release.wait, TIMEOUT)] + [executor.submit(current_thread)]
    executor.shutdown(wait=False)
    release.set()
    thread = futures[1].result(TIMEOUT)
    assert join_all([thread]) == []


def test_shutdown_from_own_worker_does_not_deadlock():
    executor = UnsafeThreadPoolExecutor(2)
    future = executor.submit(lambda: executor.shutdown(wait=True) or current_thread())
    thread = future.result(TIMEOUT)
    assert join_all([thread]) == []


def _one_job_on_a_fresh_executor():
    executor = UnsafeThreadPoolExecutor(1)
    return executor.submit(current_thread).result(TIMEOUT)


def test_collected_executor_threads_exit():
    threads = [_one_job_on_a_fresh_executor() for _ in range(20)]
    gc.collect()
    assert len(set(threads)) == 20
    assert join_all(threads) == []


def test_interpreter_exits_despite_hung_job():
    returncode, stdout, stderr = run_script("""
        import threading
        from batch_processor.util import UnsafeThreadPoolExecutor

        never = threading.Event()
        executor = UnsafeThreadPoolExecutor(2)
        executor.submit(never.wait)
        print(executor.submit(lambda: "ok").result())
    """)
    assert (returncode, stdout.strip(), stderr) == (0, "ok", "")


def test_interpreter_exits_cleanly_with_jobs_ending_during_shutdown():
    returncode, stdout, stderr = run_script("""
        import threading
        import time
        from batch_processor.util import UnsafeThreadPoolExecutor

        def spin(n):
            for _ in range(n):
                time.sleep(0.001)
            return n

        never = threading.Event()
        executors = []
        for i in range(20):
            executor = UnsafeThreadPoolExecutor(4)
            executor.submit(never.wait)
            for k in range(6):
                executor.submit(spin, 7 * i * k)
            executors.append(executor)
        for i in range(10):  # collected at once, their jobs still running
            UnsafeThreadPoolExecutor(1).submit(spin, 10 * i)
        executors[0].submit(spin, 0).result()
        print("ok")
    """)
    assert (returncode, stdout.strip(), stderr) == (0, "ok", "")
