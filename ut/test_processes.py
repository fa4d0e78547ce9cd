"""``executor=`` on the Synchronous processors, and the process pool a processor owns."""
from __future__ import absolute_import, division, print_function

import copy
import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from batch_processor import (
    RetryPolicy, RunTimeoutError, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor.compat import PY2
from batch_processor.interface import describe

py3_only = pytest.mark.skipif(
    PY2, reason="the futures backport's process pool hangs when a worker dies (SPEC.md)")

PICKLES = []


class Where(SeparateBatchProcessorSynchronous):
    """Returns ``(descriptor, worker pid, self.tag)``; special descriptors misbehave."""

    tag = "first"

    def __getstate__(self):
        PICKLES.append(1)
        return super(Where, self).__getstate__()

    def _run_one_job_synchronous(self, descriptor):
        if descriptor == "unpicklable result":
            return threading.Lock()
        if isinstance(descriptor, tuple) and descriptor[0] == "die once":
            marker = descriptor[1]
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(3)
        if descriptor == "block":  # a job that never ends by itself: only a kill ends it
            threading.Event().wait()
        if isinstance(descriptor, tuple) and descriptor[0] == "wait for":
            with open(descriptor[1]) as fifo:  # until the test opens it and closes it
                fifo.read()
        return descriptor, os.getpid(), self.tag


class Batch(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, descriptors):
        return [(d, os.getpid()) for d in descriptors]


#: Changed by a test after import: a forked worker would see the change, a worker that
#: started a fresh interpreter (forkserver, spawn) imports the module anew and does not.
MARK = ["as imported"]


class ReadsTheMark(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, descriptor):
        return MARK[0]


@pytest.mark.skipif(PY2, reason="2.7's process pool can only fork")
def test_workers_do_not_fork_from_this_threaded_process():
    MARK[0] = "changed in the parent after import"
    processor = ReadsTheMark(executor="processes", max_parallel_jobs=1)
    try:
        handles = run_batch_processor(processor, [1])
    finally:
        processor.stop()
        MARK[0] = "as imported"
    assert handles[0].future.result() == "as imported"


def outcomes(handles):
    return dict((h.descriptor if not isinstance(h.descriptor, tuple) else h.descriptor[0],
                 h.future) for h in handles)


def test_jobs_run_in_worker_processes_that_get_the_processor_once():
    del PICKLES[:]
    processor = Where(max_parallel_jobs=2, executor="processes")
    try:
        handles = run_batch_processor(processor, list(range(30)))
        results = [h.future.result() for h in handles]
        assert sorted(r[0] for r in results) == list(range(30))
        pids = set(r[1] for r in results)
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert len(PICKLES) <= 2  # once per worker at most, not once per job
        # kept across runs; workers see the processor as it was when they started
        processor.tag = "second"
        again = [h.future.result() for h in run_batch_processor(processor, [1, 2, 3])]
        # The same two workers at most (a pool starts them as it needs them): a new
        # pool would bring new ones.
        assert len(pids | set(r[1] for r in again)) <= 2
        assert set(r[2] for r in again) == {"first"}
        assert len(PICKLES) <= 2
    finally:
        processor.kill()
    assert multiprocessing.active_children() == []


def test_sequential_processes_run_batches_in_one_worker():
    processor = Batch(max_batch_size=4, executor="processes")
    try:
        handles = run_batch_processor(processor, list(range(10)))
        assert sorted(h.future.result()[0] for h in handles) == list(range(10))
        assert len(set(h.future.result()[1] for h in handles)) == 1
    finally:
        processor.stop()
    assert multiprocessing.active_children() == []


def test_unpicklable_descriptor_or_result_fails_its_own_handle():
    processor = Where(max_parallel_jobs=2, executor="processes")
    try:
        lock = threading.Lock()
        handles = run_batch_processor(processor, [1, lock, "unpicklable result", 2])
        by = dict((id(h.descriptor), h.future) for h in handles)
        for handle in handles:
            if handle.descriptor in (1, 2):
                assert handle.future.result()[0] == handle.descriptor
        for bad in (lock, "unpicklable result"):
            future = [h.future for h in handles if h.descriptor is bad][0]
            message = str(future.exception())
            assert describe(processor) in message
            assert "pickle" in message
        assert by
    finally:
        processor.stop()
    assert multiprocessing.active_children() == []


@py3_only
def test_a_dead_worker_breaks_the_pool_and_a_fresh_one_serves_later_jobs(tmp_path):
    from concurrent.futures.process import BrokenProcessPool
    processor = Where(max_parallel_jobs=1, executor="processes")
    try:
        marker = str(tmp_path / "died")
        handles = run_batch_processor(processor, [("die once", marker)])
        assert isinstance(handles[0].future.exception(), BrokenProcessPool)
        handles = run_batch_processor(processor, [1, 2])
        assert sorted(h.future.result()[0] for h in handles) == [1, 2]
    finally:
        processor.kill()
    assert multiprocessing.active_children() == []


@py3_only
def test_a_matching_retry_runs_the_jobs_of_a_broken_pool_again(tmp_path):
    from concurrent.futures.process import BrokenProcessPool
    processor = Where(max_parallel_jobs=1, executor="processes",
                      retry=RetryPolicy(attempts=2, retry_on=BrokenProcessPool))
    try:
        marker = str(tmp_path / "died")
        handles = run_batch_processor(processor, [("die once", marker)])
        assert handles[0].future.result()[0] == ("die once", marker)
    finally:
        processor.kill()
    assert multiprocessing.active_children() == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_jobs_beyond_the_workers_wait_in_the_pool_and_start_as_workers_free_up(tmp_path):
    from batch_processor._processes import ProcessorPool
    pool = ProcessorPool(Where(), workers=1)
    started = []
    go = str(tmp_path / "go")
    os.mkfifo(go)
    try:
        first = pool.submit_job("_run_one_job_synchronous", ("wait for", go),
                                lambda: started.append("first"))
        second = pool.submit_job("_run_one_job_synchronous", 2, lambda: started.append("second"))
        assert started == ["first"]  # the only worker is busy: the second job waits
        with open(go, "w"):
            pass  # the first job reads to the end of the FIFO, and returns
        assert first.result(60)[0] == ("wait for", go)
        assert started == ["first", "second"]  # it started when the first one ended
        assert second.result(60)[0] == 2
    finally:
        pool.shutdown()


def test_a_job_queued_behind_a_hung_one_runs_in_a_fresh_pool_and_the_run_ends():
    from batch_processor import JobTimeoutError
    processor = Where(max_parallel_jobs=1, executor="processes", job_timeout=2)
    try:
        handles = run_batch_processor(processor, ["block", 2, 3])
    finally:
        processor.kill()
    found = outcomes(handles)
    assert len(handles) == 3
    assert isinstance(found["block"].exception(), JobTimeoutError)
    # The only worker is held by the abandoned job: the pool is terminated, and the
    # jobs that waited in it run in a fresh one (a job's timeout starts when it starts).
    assert [found[value].result()[0] for value in (2, 3)] == [2, 3]
    assert multiprocessing.active_children() == []


def test_more_jobs_wait_in_an_owned_pool_and_never_in_other_executors():
    runtime = Where(max_parallel_jobs=3, executor="processes")._bp_runtime()
    # As many again on Python 3; four times as many on 2.7 (see _processes.jobs_ahead).
    assert (runtime.cap, runtime.queue_ahead) == (3, 12 if PY2 else 3)
    assert Where(max_parallel_jobs=3, executor="threads")._bp_runtime().queue_ahead == 0
    pool = ThreadPoolExecutor(1)
    try:
        assert Where(max_parallel_jobs=3, executor=pool)._bp_runtime().queue_ahead == 0
    finally:
        pool.shutdown()


def test_a_run_timeout_kills_the_workers():
    # Four jobs for two workers: two run, and two wait in the pool's queue (one of
    # them beyond what its call queue takes) when the kill terminates the pool.
    processor = Where(max_parallel_jobs=2, executor="processes")
    with pytest.raises(RunTimeoutError) as raised:
        run_batch_processor(processor, ["block"] * 4, timeout=1.0)
    assert [h.future.cancelled() for h in raised.value.results] == [True] * 4
    assert multiprocessing.active_children() == []


def test_an_executor_instance_is_used_and_never_pickled():
    pool = ThreadPoolExecutor(1)
    try:
        processor = Where(executor=pool)
        assert processor._executor is pool
        clone = pickle.loads(pickle.dumps(processor))
        assert clone._executor is not pool
        assert copy.deepcopy(processor)._executor is pool
        handles = run_batch_processor(processor, [1])
        assert handles[0].future.result()[1] == os.getpid()
    finally:
        pool.shutdown()


def test_threads_run_in_this_process():
    processor = Where(executor="threads")
    assert run_batch_processor(processor, [1])[0].future.result()[1] == os.getpid()


def test_an_overridden_executor_property_wins():
    pool = ThreadPoolExecutor(1)

    class Own(Where):
        @property
        def _executor(self):
            return pool
    try:
        assert Own(executor="processes")._executor is pool
        assert run_batch_processor(Own(executor="processes"), [1])[0].future.result()[1] == \
            os.getpid()
    finally:
        pool.shutdown()


@pytest.mark.parametrize("cls", [Where, Batch])
def test_executor_option_is_checked(cls):
    with pytest.raises(TypeError) as info:
        cls(executor=3)
    assert cls.__name__ in str(info.value)
    with pytest.raises(ValueError) as info:
        cls(executor="process")
    assert cls.__name__ in str(info.value) and "processes" in str(info.value)
