"""Processors and tools shared by the tests of ``batch_processor``.

The processors here are small and observable: they record what they ran, and the
ones meant to be interrupted block on a `threading.Event` (`Blocker`) or on a future
of the loop (`Gated`) until the test releases them, so that tests order events
without sleeping. Every processor that pickling may reach (process pools) is
defined at module level.
"""
from __future__ import absolute_import, division, print_function

import os
import subprocess
import sys
import textwrap
import threading

from batch_processor import (
    SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous,
    SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous,
    UnsafeThreadPoolExecutor,
)
from batch_processor.compat import From, Return, asyncio, coroutine

TIMEOUT = 30  # seconds; only a safety net against hangs, never a measurement
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- plain functions for the processors below --------------------------------------

def inc(value):
    return value + 1


def dec(value):
    return value - 1


def identity(value):
    return value


# -- processors that apply a function to each descriptor ---------------------------

class Separate(SeparateBatchProcessor):
    """Async Separate processor: each job is a coroutine returning ``fn(descriptor)``.

    ``seen`` lists the descriptors in the order their jobs started.
    """

    def __init__(self, fn=inc, **kwargs):
        super(Separate, self).__init__(**kwargs)
        self.fn = fn
        self.seen = []

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.seen.append(job_descriptor)
        yield From(asyncio.sleep(0))  # a real suspension: the job is a coroutine
        raise Return(self.fn(job_descriptor))


class SeparateSync(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor: ``fn(descriptor)`` in the default executor.

    ``threads`` lists the thread of every job.
    """

    def __init__(self, fn=inc, **kwargs):
        super(SeparateSync, self).__init__(**kwargs)
        self.fn = fn
        self.seen = []
        self.threads = []

    def _run_one_job_synchronous(self, job_descriptor):
        self.seen.append(job_descriptor)
        self.threads.append(threading.current_thread())
        return self.fn(job_descriptor)


class Sequential(SequentialBatchProcessor):
    """Async Sequential processor; ``batches`` records every batch it ran."""

    def __init__(self, fn=inc, **kwargs):
        super(Sequential, self).__init__(**kwargs)
        self.fn = fn
        self.batches = []

    @property
    def seen(self):
        return [d for batch in self.batches for d in batch]

    @coroutine
    def _run_batch(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        yield From(asyncio.sleep(0))
        raise Return([self.fn(d) for d in job_descriptors])


class SequentialSync(SequentialBatchProcessorSynchronous):
    """Synchronous Sequential processor; ``batches`` records every batch it ran."""

    def __init__(self, fn=inc, **kwargs):
        super(SequentialSync, self).__init__(**kwargs)
        self.fn = fn
        self.batches = []

    @property
    def seen(self):
        return [d for batch in self.batches for d in batch]

    def _run_batch_synchronous(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        return [self.fn(d) for d in job_descriptors]


#: The four kinds of processor, to parametrize tests that any kind must pass.
KINDS = [Separate, SeparateSync, Sequential, SequentialSync]


class FailOn(SeparateBatchProcessor):
    """Async Separate processor whose job raises ``ValueError`` for the descriptors in ``bad``."""

    def __init__(self, bad, fn=identity, **kwargs):
        super(FailOn, self).__init__(**kwargs)
        self.bad = set(bad)
        self.fn = fn

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        if job_descriptor in self.bad:
            raise ValueError("bad descriptor %r" % (job_descriptor,))
        raise Return(self.fn(job_descriptor))


# -- processors that wait for the test ---------------------------------------------

_BLOCKERS = []  # every Blocker made, released by conftest after each test


def release_all_blockers():
    """Release every `Blocker` made so far, so that no thread waits after a test."""
    while _BLOCKERS:
        _BLOCKERS.pop().release()


class Blocker(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor whose jobs block until `release` is called.

    A job records its descriptor in ``started``, waits for the release and returns
    its descriptor. `wait_started` lets a thread wait until jobs have started.
    """

    def __init__(self, **kwargs):
        super(Blocker, self).__init__(**kwargs)
        self.started = []
        self.finished = []
        self._condition = threading.Condition()
        self._released = threading.Event()
        _BLOCKERS.append(self)

    def _run_one_job_synchronous(self, job_descriptor):
        with self._condition:
            self.started.append(job_descriptor)
            self._condition.notify_all()
        released = self._released.wait(TIMEOUT)
        self.finished.append(job_descriptor)
        if not released:
            raise RuntimeError("the test never released %r" % (job_descriptor,))
        return job_descriptor

    def wait_started(self, count):
        """Block until ``count`` jobs have started; True, or False after `TIMEOUT`."""
        with self._condition:
            while len(self.started) < count:
                before = len(self.started)
                self._condition.wait(TIMEOUT)  # notified by every start
                if len(self.started) == before:
                    return False
        return True

    def release(self):
        self._released.set()


class BlockingEcho(SeparateBatchProcessorSynchronous):
    """Returns its descriptor; fails on negative ones; "block" sets ``started`` and
    waits for ``release``."""

    def __init__(self, **kwargs):
        super(BlockingEcho, self).__init__(**kwargs)
        self.started = threading.Event()
        self.release = threading.Event()

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor == "block":
            self.started.set()
            self.release.wait(TIMEOUT)
            return job_descriptor
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        return job_descriptor


class Call(SeparateBatchProcessorSynchronous):
    """Synchronous Separate processor whose descriptors are functions called in a thread."""

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor()


class Trigger(SeparateBatchProcessor):
    """Async Separate processor whose descriptor is a pair ``(wait, action)``.

    The job calls the blocking ``wait()`` in a worker thread, then ``action()`` on
    the event loop's thread (where processors may be stopped or killed), and returns
    what ``action()`` returned.
    """

    def __init__(self):
        super(Trigger, self).__init__()
        self.executor = UnsafeThreadPoolExecutor(1)

    @coroutine
    def _run_one_job(self, job_descriptor):
        wait, action = job_descriptor
        loop = asyncio.get_event_loop()
        yield From(loop.run_in_executor(self.executor, wait))
        raise Return(action())


class Gated(SeparateBatchProcessor):
    """Async Separate processor whose jobs wait for the loop future ``gate``.

    ``gate`` and ``all_started`` are futures of the test's loop, set by the test;
    ``all_started`` gets a result when ``expected`` jobs have started.
    """

    def __init__(self, gate, all_started, expected):
        super(Gated, self).__init__()
        self.gate = gate
        self.all_started = all_started
        self.expected = expected
        self.started = []

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.started.append(job_descriptor)
        if len(self.started) == self.expected and not self.all_started.done():
            self.all_started.set_result(None)
        yield From(self.gate)
        raise Return(job_descriptor)


# -- process pools -----------------------------------------------------------------

def make_process_pool(max_workers=2):
    """A ``ProcessPoolExecutor``; on 3.7+ its workers are spawned, not forked.

    Forking a process that runs threads (the tests' executors) can deadlock the child.
    """
    from concurrent.futures import ProcessPoolExecutor
    if sys.version_info >= (3, 7):
        import multiprocessing
        return ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn"))
    return ProcessPoolExecutor(max_workers)


class _ProcessPoolMixin(object):
    """``_executor`` is the process pool given to the constructor, never pickled."""

    def __getstate__(self):
        state = super(_ProcessPoolMixin, self).__getstate__()
        state.pop("pool", None)
        return state

    @property
    def _executor(self):
        return self.pool


class ProcessPoolSquare(_ProcessPoolMixin, SeparateBatchProcessorSynchronous):
    """Separate processor run in a process pool: returns ``(d * d, pid of the worker)``."""

    def __init__(self, pool, **kwargs):
        super(ProcessPoolSquare, self).__init__(**kwargs)
        self.pool = pool

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        return job_descriptor * job_descriptor, os.getpid()


class ProcessPoolBatchSquare(_ProcessPoolMixin, SequentialBatchProcessorSynchronous):
    """Sequential processor run in a process pool: ``[(d * d, pid)]`` for a batch."""

    def __init__(self, pool, **kwargs):
        super(ProcessPoolBatchSquare, self).__init__(**kwargs)
        self.pool = pool

    def _run_batch_synchronous(self, job_descriptors):
        pid = os.getpid()
        return [(d * d, pid) for d in job_descriptors]


# -- looking at results ------------------------------------------------------------

def outcome(handle):
    """``("ok", result)``, ``("failed", exception)`` or ``("cancelled", None)``."""
    future = handle.future
    assert future.done()
    if future.cancelled():
        return "cancelled", None
    exc = future.exception()
    if exc is not None:
        return "failed", exc
    return "ok", future.result()


def descriptors_of(handles):
    """The sorted descriptors of ``handles`` (to compare multisets)."""
    return sorted(handle.descriptor for handle in handles)


def results_of(handles):
    """``{descriptor: result}`` of successful handles (descriptors assumed distinct)."""
    return dict((h.descriptor, h.future.result()) for h in handles)


def run_script(source=None, path=None):
    """Run Python ``source`` (or the file ``path``) in a fresh interpreter.

    Returns:
        ``(returncode, stdout, stderr)``, the outputs decoded. A hang is killed after
        `TIMEOUT` seconds.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    if path is None:
        command = [sys.executable, "-c", textwrap.dedent(source)]
    else:
        command = [sys.executable, path]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        stdout, stderr = process.communicate()
    finally:
        timer.cancel()
    return process.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
