"""Faults the runner survives: dying workers, unpicklable data, BaseException in
threads, Ctrl-C, and runs that must stay quiet and leak-free."""
from __future__ import absolute_import, division, print_function

import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessorSynchronous,
    ProcessorState, run_batch_processor, run_batch_processors_graph)
from batch_processor.compat import PY2, Return, coroutine
from helpers import child_options, make_process_pool  # the pool spawns its workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

py3_only = pytest.mark.skipif(
    PY2, reason="the futures backport's process pool hangs when a worker dies (SPEC.md)")


def _die_or_double(descriptor):
    if descriptor == "die":
        os._exit(3)
    if descriptor == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if descriptor == "unpicklable-result":
        return lambda: None
    return descriptor * 2


class PerJobPool(SeparateBatchProcessorSynchronous):
    """Every job in a process pool of its own."""

    @property
    def _executor(self):
        return make_process_pool(1)

    def _run_one_job_synchronous(self, job_descriptor):
        return _die_or_double(job_descriptor)


class SharedPool(SeparateBatchProcessorSynchronous):
    def __init__(self, pool):
        super(SharedPool, self).__init__()
        self.pool = pool

    def __getstate__(self):
        state = super(SharedPool, self).__getstate__()
        state.pop("pool")
        return state

    @property
    def _executor(self):
        return self.pool

    def _run_one_job_synchronous(self, job_descriptor):
        return _die_or_double(job_descriptor)


def outcomes(handles):
    """descriptor -> 'cancelled' | exception class | result."""
    result = {}
    for handle in handles:
        future = handle.future
        key = handle.descriptor if not callable(handle.descriptor) else "callable"
        if future.cancelled():
            result[key] = "cancelled"
        elif future.exception() is not None:
            result[key] = type(future.exception())
        else:
            result[key] = future.result()
    return result


@py3_only
@pytest.mark.parametrize("how", ["die", "sigkill"])
def test_a_dying_worker_fails_only_its_own_job_with_a_pool_per_job(how):
    from concurrent.futures.process import BrokenProcessPool
    handles = run_batch_processor(PerJobPool(), [1, how, 3])
    assert len(handles) == 3
    assert outcomes(handles) == {1: 2, how: BrokenProcessPool, 3: 6}


@py3_only
@pytest.mark.skipif(
    sys.version_info < (3, 7),
    reason="3.6's ProcessPoolExecutor terminates the other workers when one dies, maybe while "
           "one holds its result queue's lock; shutdown() and interpreter exit then deadlock "
           "on that lock (3.7 wakes its thread through a pipe of its own instead)")
def test_a_dying_worker_of_a_shared_pool_fails_jobs_instead_of_hanging():
    from concurrent.futures.process import BrokenProcessPool
    pool = make_process_pool(2)
    try:
        handles = run_batch_processor(SharedPool(pool), ["die"] + list(range(6)))
    finally:
        pool.shutdown(wait=True)  # a broken pool's manager thread ends by itself
    found = outcomes(handles)
    assert len(handles) == 7
    assert found["die"] is BrokenProcessPool
    for value in range(6):  # done before the death, or failed by it: never lost
        assert found[value] in (value * 2, BrokenProcessPool)


@pytest.mark.skipif(sys.version_info < (3, 8), reason="needs the pool's pickling-error reporting of 3.8+")
def test_unpicklable_descriptor_and_result_fail_their_own_handles():
    pool = make_process_pool(1)
    unpicklable = threading.Lock()
    try:
        handles = run_batch_processor(SharedPool(pool), [1, unpicklable, "unpicklable-result", 4])
    finally:
        pool.shutdown(wait=True)
    by_descriptor = dict((id(h.descriptor), h.future) for h in handles)
    assert len(handles) == 4
    assert by_descriptor[id(unpicklable)].exception() is not None
    assert by_descriptor[id("unpicklable-result")].exception() is not None
    assert outcomes([h for h in handles if h.descriptor in (1, 4)]) == {1: 2, 4: 8}


class RaisesBaseException(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor == "exit":
            raise SystemExit(5)
        if job_descriptor == "interrupt":
            raise KeyboardInterrupt()
        return job_descriptor


@pytest.mark.parametrize("retry", [None, "retry"])
def test_system_exit_and_keyboard_interrupt_in_a_worker_thread_stay_in_their_handles(retry):
    from batch_processor import RetryPolicy
    processor = RaisesBaseException(retry=RetryPolicy(attempts=2) if retry else None)
    handles = run_batch_processor(processor, ["exit", "interrupt", "fine"])
    found = outcomes(handles)
    assert found == {"exit": SystemExit, "interrupt": KeyboardInterrupt, "fine": "fine"}


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, threading
    from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor

    forever = threading.Event()
    started = []

    class Blocks(SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, job_descriptor):
            started.append(job_descriptor)
            if len(started) == 3:
                sys.stdout.write("blocked\\n")
                sys.stdout.flush()
            forever.wait()

    run_batch_processor(Blocks(max_parallel_jobs=3), range(10))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_ends_a_run_with_threads_blocked_forever():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [ROOT, os.environ.get("PYTHONPATH")] if p))
    child = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, **child_options())
    try:
        assert child.stdout.readline() == b"blocked\n"
        child.send_signal(signal.SIGINT)
        timer = threading.Timer(5.0, child.kill)  # a watchdog, not a synchronisation
        timer.start()
        try:
            _, stderr = child.communicate()
        finally:
            timer.cancel()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode not in (0, -signal.SIGKILL), stderr
    assert b"KeyboardInterrupt" in stderr
    assert b"Traceback" in stderr


class SignalsThenBlocks(SeparateBatchProcessorSynchronous):
    """Jobs 0 and "signal" send SIGINT to their own process; all but "signal" then
    wait for ``release``."""

    def __init__(self, release, **options):
        super(SignalsThenBlocks, self).__init__(**options)
        self.release = release

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor in (0, "signal"):
            os.kill(os.getpid(), signal.SIGINT)
        if job_descriptor != "signal":
            self.release.wait()
        return job_descriptor


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.usefixtures("default_sigint")
def test_sigint_during_a_run_kills_every_processor_and_raises_keyboard_interrupt():
    release = threading.Event()
    first, second = SignalsThenBlocks(release, max_parallel_jobs=2), SignalsThenBlocks(release)
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, second, lambda *handles: [h.descriptor for h in handles])
    try:
        with pytest.raises(KeyboardInterrupt):
            run_batch_processors_graph(graph, {first: [0, 1, 2]})
    finally:
        release.set()
    assert first.state is ProcessorState.KILLED and second.state is ProcessorState.KILLED
    assert first.in_flight == 0 and second.in_flight == 0
    # The runner leaves signal handling as it found it.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("handler", ["the program's own", "ignored"])
def test_a_sigint_handler_the_program_installed_is_left_alone(handler):
    received = []

    def mine(signum, frame):
        received.append(signum)
    if handler == "ignored":
        mine = signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, mine)
    try:
        handles = run_batch_processor(SignalsThenBlocks(threading.Event()), ["signal"])
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [h.future.result() for h in handles] == ["signal"]
    assert received == ([signal.SIGINT] if handler == "the program's own" else [])


class Flaky(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        if job_descriptor % 3 == 0:
            raise ValueError(job_descriptor)
        raise Return(job_descriptor)


class FlakyThreads(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        if 4 in job_descriptors:
            raise RuntimeError("batch with 4")
        return job_descriptors


def _noisy_graph_run():
    graph = BatchProcessorsGraph()
    first, second = Flaky(), FlakyThreads(max_batch_size=2)
    graph.add_connected_processors(
        first, second, lambda *hs: [h.descriptor for h in hs if h.future.exception() is None])
    return run_batch_processors_graph(graph, {first: range(20)})


def test_failures_are_never_reported_as_lost_exceptions(capfd, caplog):
    caplog.set_level(logging.DEBUG)
    results = _noisy_graph_run()
    del results
    gc.collect()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud == []


def _count_fds():
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return len(os.listdir(folder))
    pytest.skip("no way to count open file descriptors here")


def test_many_small_runs_leave_no_threads_fds_or_objects_behind():
    def small_run():
        handles = run_batch_processor(FlakyThreads(), range(3))
        assert len(handles) == 3
        _noisy_graph_run()

    for _ in range(100):  # warm up caches, pools and lazily created state
        small_run()
    gc.collect()
    threads = set(threading.enumerate())
    fds, objects = _count_fds(), len(gc.get_objects())
    for _ in range(1000):
        small_run()
    gc.collect()
    for thread in set(threading.enumerate()) - threads:
        thread.join(10)  # idle workers of collected executors are on their way out
    assert threading.active_count() <= len(threads)
    assert _count_fds() <= fds
    # Flat: a leak of even one object per run would add 1,000.
    assert len(gc.get_objects()) - objects < 500


class OnTheLoopsExecutor(SeparateBatchProcessorSynchronous):
    _executor = None

    def _run_one_job_synchronous(self, job_descriptor):
        return threading.current_thread().name, job_descriptor


def test_an_executor_of_none_means_the_loops_default_executor():
    handles = run_batch_processor(OnTheLoopsExecutor(), [1, 2])
    assert sorted(h.future.result()[1] for h in handles) == [1, 2]
    assert all(h.future.result()[0] != threading.current_thread().name for h in handles)


class SeesGCThreshold(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return gc.get_threshold()[0]


def test_a_run_relaxes_the_collector_and_restores_it():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        handles = run_batch_processor(SeesGCThreshold(), [1])
        assert handles[0].future.result() == 50000
        assert gc.get_threshold() == (700,) + tuple(before[1:])
        gc.set_threshold(0, *before[1:])  # collection disabled: left alone
        assert run_batch_processor(SeesGCThreshold(), [1])[0].future.result() == 0
    finally:
        gc.set_threshold(*before)
