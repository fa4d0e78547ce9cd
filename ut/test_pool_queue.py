"""How an owned process pool takes the jobs handed to it beyond its workers.

On 2.7 the pool's manager thread is woken at a submit only while no result is sure to
wake it (``_processes._Executor27``): these tests hold workers busy with FIFOs and check
that a job handed over meanwhile still runs at once on a free worker, and that jobs
handed over while every worker is busy all run once the workers free up.
Python 2.7 imports this module: no ``async``/``await``."""
from __future__ import absolute_import, division, print_function

import os

import pytest

from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor
from batch_processor._processes import ProcessorPool, jobs_ahead
from batch_processor.compat import PY2

from helpers import TIMEOUT

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")

JOB = "_run_one_job_synchronous"


class WaitsForFifos(SeparateBatchProcessorSynchronous):
    """Job ``("wait for", path)`` reads the FIFO ``path`` to its end; others return at once."""

    def _run_one_job_synchronous(self, descriptor):
        if isinstance(descriptor, tuple) and descriptor[0] == "wait for":
            with open(descriptor[1]) as fifo:
                fifo.read()
        return descriptor


def fifo(tmp_path, name):
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


def release(path):
    with open(path, "w"):
        pass  # the job waiting on it reads to the end, and returns


def test_a_job_handed_over_while_a_worker_is_busy_runs_at_once_on_the_free_one(tmp_path):
    pool = ProcessorPool(WaitsForFifos(), workers=2)
    go = fifo(tmp_path, "go")
    try:
        busy = pool.submit_job(JOB, ("wait for", go))
        # Only the busy job is in the pool: no result is on its way to wake the pool's
        # manager thread, so each submit must wake it, or the job waits for ``busy``.
        for value in range(5):
            assert pool.submit_job(JOB, value).result(TIMEOUT) == value
        assert not busy.done()
        release(go)
        assert busy.result(TIMEOUT) == ("wait for", go)
    finally:
        pool.shutdown(kill=True)  # a job still waiting for its FIFO is terminated


def test_jobs_handed_over_while_every_worker_is_busy_all_run(tmp_path):
    pool = ProcessorPool(WaitsForFifos(), workers=2)
    gates = [fifo(tmp_path, "go%d" % index) for index in range(2)]
    try:
        busy = [pool.submit_job(JOB, ("wait for", gate)) for gate in gates]
        # More jobs than workers are pending from here on: the submits need not wake
        # the manager thread; the busy jobs' results do.
        queued = [pool.submit_job(JOB, value) for value in range(10)]
        assert not any(future.done() for future in busy)
        for gate in gates:
            release(gate)
        assert [future.result(TIMEOUT) for future in queued] == list(range(10))
        assert [future.result(TIMEOUT) for future in busy] == [("wait for", g) for g in gates]
        # And once the pool is idle, one more job runs (its submit wakes the thread).
        assert pool.submit_job(JOB, "last").result(TIMEOUT) == "last"
    finally:
        pool.shutdown(kill=True)  # a job still waiting for its FIFO is terminated


def test_a_run_hands_its_pool_the_jobs_ahead_and_gets_every_result_once():
    processor = WaitsForFifos(max_parallel_jobs=2, executor="processes")
    try:
        handles = run_batch_processor(processor, list(range(200)), timeout=TIMEOUT)
    finally:
        processor.stop()
    assert sorted(h.future.result() for h in handles) == list(range(200))
    assert processor._bp_runtime().queue_ahead == jobs_ahead(2) == (8 if PY2 else 2)


def test_a_terminated_pool_s_call_queue_takes_the_sentinels_of_its_dead_workers_when_full():
    # The manager thread of a terminated 2.7 pool puts a sentinel for each dead worker
    # on the call queue, which the jobs queued ahead may have filled: it must not wait
    # for room (it would never end, and its threads would be torn down at exit).
    import multiprocessing
    import threading
    from batch_processor._processes import _end_feeder, _keep_reader_open
    queue = multiprocessing.Queue(1)
    queue.put("a job nobody will take")
    _keep_reader_open(queue)
    putting = threading.Thread(target=queue.put, args=(None,))
    putting.daemon = True
    putting.start()
    putting.join(TIMEOUT)
    assert not putting.is_alive()
    _end_feeder(queue)
    queue._thread.join(TIMEOUT)
    assert not queue._thread.is_alive()


def test_a_stream_over_an_owned_pool_yields_every_handle_once():
    # With more jobs handed ahead than workers (2.7), the loop hears of some ends
    # together with later ones (`ExecutorRuntime.pool_keeps_busy`): none is lost.
    from batch_processor import iter_batch_processor
    processor = WaitsForFifos(max_parallel_jobs=2, executor="processes")
    try:
        seen = [h.future.result() for h in iter_batch_processor(processor, list(range(300)))]
    finally:
        processor.stop()
    assert sorted(seen) == list(range(300))
