"""Regression tests of the third reliability campaign (issue 22): threads, interrupts,
plain jobs, batches and traces. One test, or a few, per finding; each failed before
its fix. Python 2.7 imports this module: no ``async``/``await``."""
from __future__ import absolute_import, division, print_function

import io
import json
import threading

import pytest

from batch_processor import (
    Failure, JobTimeoutError, RetryPolicy, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor.compat import asyncio

from helpers import PY2, TIMEOUT


def outcomes(handles):
    """``{descriptor: result, or the exception's type}`` of ``handles``."""
    found = {}
    for handle in handles:
        future = handle.future
        if future.cancelled():
            found[handle.descriptor] = "cancelled"
        elif future.exception() is not None:
            found[handle.descriptor] = type(future.exception())
        else:
            found[handle.descriptor] = future.result()
    return found


# -- 0a. abandoned threads of the default pool never starve the queued jobs ---------

class HangsTwoWorkers(SeparateBatchProcessorSynchronous):
    """Jobs "h..." block until the test ends; the default pool has two workers."""

    _default_workers = 2

    def __init__(self, **kwargs):
        super(HangsTwoWorkers, self).__init__(**kwargs)
        self.release = threading.Event()

    def _run_one_job_synchronous(self, job_descriptor):
        if str(job_descriptor).startswith("h"):
            self.release.wait(TIMEOUT)
            return "late"
        return job_descriptor


def test_abandoned_threads_do_not_starve_queued_jobs_without_a_cap():
    processor = HangsTwoWorkers(job_timeout=0.2)
    try:
        handles = run_batch_processor(processor, ["h1", "h2", "a", "b"], timeout=TIMEOUT)
    finally:
        processor.release.set()
    assert outcomes(handles) == {"h1": JobTimeoutError, "h2": JobTimeoutError,
                                 "a": "a", "b": "b"}


class HangsInUserPool(HangsTwoWorkers):
    """The same in a thread pool of the user's, which the library cannot grow."""

    def __init__(self, **kwargs):
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(2)
        super(HangsInUserPool, self).__init__(executor=self.pool, **kwargs)


def test_abandoned_threads_of_a_user_pool_never_hang_the_run():
    processor = HangsInUserPool(job_timeout=0.2)
    try:
        handles = run_batch_processor(processor, ["h1", "h2", "a"], timeout=TIMEOUT)
    finally:
        processor.release.set()
        processor.pool.shutdown(wait=True)
    found = outcomes(handles)
    assert found["h1"] is JobTimeoutError and found["h2"] is JobTimeoutError
    # "a" cannot run before a worker is back: its wait counts, and it times out too.
    assert found["a"] in ("a", JobTimeoutError)


class HangsInTheLoopsExecutor(HangsTwoWorkers):
    """The same in the event loop's default executor: ``_executor`` is ``None``."""

    @property
    def _executor(self):
        return None


def test_abandoned_threads_of_the_loops_default_executor_never_hang_the_run(loop_factory):
    from concurrent.futures import ThreadPoolExecutor
    pools = []

    def two_threads():
        loop = loop_factory()
        pools.append(ThreadPoolExecutor(2))
        loop.set_default_executor(pools[-1])
        return loop

    processor = HangsInTheLoopsExecutor(job_timeout=0.2)
    try:
        handles = run_batch_processor(processor, ["h1", "h2", "a"], timeout=TIMEOUT,
                                      loop_factory=two_threads)
    finally:
        processor.release.set()
        for pool in pools:
            pool.shutdown(wait=True)
    found = outcomes(handles)
    assert found["h1"] is JobTimeoutError and found["h2"] is JobTimeoutError
    assert found["a"] in ("a", JobTimeoutError)  # as in a pool of the user's


# -- 0b. KeyboardInterrupt or SystemExit as a job or a batch starts -------------------

class InterruptingExecutorSequential(SequentialBatchProcessorSynchronous):
    def __init__(self, kind, **kwargs):
        super(InterruptingExecutorSequential, self).__init__(**kwargs)
        self.kind = kind

    @property
    def _executor(self):
        raise self.kind("at the start")

    def _run_batch_synchronous(self, job_descriptors):  # pragma: no cover - never starts
        return list(job_descriptors)


class InterruptingSequential(SequentialBatchProcessor):
    def __init__(self, kind, **kwargs):
        super(InterruptingSequential, self).__init__(**kwargs)
        self.kind = kind

    def _run_batch(self, job_descriptors):  # a plain function, raising as it is called
        raise self.kind("at the start")


class InterruptingExecutorSeparate(SeparateBatchProcessorSynchronous):
    def __init__(self, kind, **kwargs):
        super(InterruptingExecutorSeparate, self).__init__(**kwargs)
        self.kind = kind

    @property
    def _executor(self):
        raise self.kind("at the start")

    def _run_one_job_synchronous(self, job_descriptor):  # pragma: no cover
        return job_descriptor


class InterruptingSeparate(SeparateBatchProcessor):
    def __init__(self, kind, **kwargs):
        super(InterruptingSeparate, self).__init__(**kwargs)
        self.kind = kind

    def _run_one_job(self, job_descriptor):
        raise self.kind("at the start")


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("cls", [InterruptingExecutorSequential, InterruptingSequential])
@pytest.mark.parametrize("options", [{}, {"job_timeout": TIMEOUT}], ids=["plain", "timed"])
def test_interrupt_as_a_batch_starts_ends_the_run_with_every_job(cls, kind, options):
    processor = cls(kind, **options)
    with pytest.raises(kind) as info:
        run_batch_processor(processor, [1, 2, 3], timeout=TIMEOUT)
    # Every fed job comes back, cancelled by the kill that ended the interrupted run.
    results = getattr(info.value, "results", None)
    if results is not None:
        assert sorted(h.descriptor for h in results) == [1, 2, 3]
    assert processor.in_flight == 0
    assert processor.state.value == "killed"


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("cls", [InterruptingExecutorSequential, InterruptingSequential,
                                 InterruptingExecutorSeparate, InterruptingSeparate])
@pytest.mark.parametrize("options", [{}, {"job_timeout": TIMEOUT}], ids=["plain", "timed"])
def test_interrupt_as_work_starts_by_hand_then_kill(loop, cls, kind, options):
    processor = cls(kind, **options)
    with pytest.raises(kind):
        processor.feed_new([1, 2])  # a Separate job starts at once
        spin(loop)  # a batch, or a task, a turn later
    processor.kill()  # no AttributeError: the started work has a future
    spin(loop)
    assert sorted(h.descriptor for h in processor.get_ready()) == [1, 2]
    assert processor.in_flight == 0


def spin(loop, turns=5):
    """Run a few turns of ``loop`` (no task of its own is left if one raises)."""
    for _ in range(turns):
        loop.call_soon(loop.stop)
        loop.run_forever()


# -- 0c, 3. StopIteration from a plain job, a plain batch, a Failure item -------------

class PlainStopSeparate(SeparateBatchProcessor):
    def _run_one_job(self, job_descriptor):  # not a coroutine function
        if job_descriptor == "stop":
            raise StopIteration()
        return asyncio.sleep(0, result=job_descriptor)


class PlainStopSequential(SequentialBatchProcessor):
    def _run_batch(self, job_descriptors):
        raise StopIteration()


def test_stop_iteration_from_a_plain_job_fails_that_job_with_a_runtime_error():
    handles = run_batch_processor(PlainStopSeparate(), [1, "stop", 2], timeout=TIMEOUT)
    found = outcomes(handles)
    assert found[1] == 1 and found[2] == 2
    assert found["stop"] is RuntimeError
    error = [h for h in handles if h.descriptor == "stop"][0].future.exception()
    assert "StopIteration" in str(error) and "PlainStopSeparate" in str(error)


def test_stop_iteration_from_a_plain_batch_fails_the_batch_with_a_runtime_error():
    handles = run_batch_processor(PlainStopSequential(), [1, 2], timeout=TIMEOUT)
    assert outcomes(handles) == {1: RuntimeError, 2: RuntimeError}


def _stop_item(descriptors):
    return [Failure(StopIteration()) if d == "stop" else d for d in descriptors]


def test_failure_of_stop_iteration_fails_that_handle_only():
    processor = SequentialBatchProcessorSynchronous.from_function(_stop_item)
    handles = run_batch_processor(processor, [1, "stop", 2], timeout=TIMEOUT)
    found = outcomes(handles)
    assert found[1] == 1 and found[2] == 2
    assert found["stop"] is RuntimeError


# -- 4. a non-ASCII byte-string repr with trace= (2.7) ------------------------------

class BytesRepr(object):
    def __repr__(self):
        return b"caf\xc3\xa9 \xff" if PY2 else u"caf\xe9 \udcff"


def test_non_ascii_repr_in_the_trace(tmpdir):
    path = str(tmpdir.join("run.json"))
    processor = SequentialBatchProcessorSynchronous.from_function(list)
    other = SeparateBatchProcessorSynchronous.from_function(repr)
    handles = run_batch_processor(processor, [BytesRepr(), 1], timeout=TIMEOUT, trace=path)
    assert len(handles) == 2
    handles = run_batch_processor(other, [BytesRepr()], timeout=TIMEOUT, trace=path)
    assert len(handles) == 1
    with io.open(path, encoding="utf-8") as stream:
        events = json.load(stream)
    assert [e for e in events if e["ph"] == "X"]


# -- 4b. each attempt of a retried Sequential batch is one trace event -------------

class FailsOnce(SequentialBatchProcessorSynchronous):
    def __init__(self, **kwargs):
        super(FailsOnce, self).__init__(**kwargs)
        self.tries = 0

    def _run_batch_synchronous(self, job_descriptors):
        self.tries += 1
        if self.tries == 1:
            raise ValueError("first try")
        return list(job_descriptors)


@pytest.mark.parametrize("async_kind", [False, True])
def test_retried_batch_attempts_are_events(tmpdir, async_kind):
    path = str(tmpdir.join("run.json"))
    if async_kind:
        tries = []

        def batch(descriptors):
            tries.append(1)
            if len(tries) == 1:
                raise ValueError("first try")
            return asyncio.sleep(0, result=list(descriptors))
        processor = SequentialBatchProcessor.from_function(batch, retry=RetryPolicy(attempts=2))
    else:
        processor = FailsOnce(retry=RetryPolicy(attempts=2))
    handles = run_batch_processor(processor, [1, 2], timeout=TIMEOUT, trace=path)
    assert outcomes(handles) == {1: 1, 2: 2}
    with io.open(path, encoding="utf-8") as stream:
        events = json.load(stream)
    batches = [e for e in events if e["ph"] == "X" and e["cat"] == "batch"]
    assert sorted(e["args"]["outcome"] for e in batches) == ["failed", "ok"]


# -- 4c. feed_new outside any run names the processor ---------------------------------

def test_feed_outside_a_run_names_the_processor(restore_current_loop):
    processor = SeparateBatchProcessorSynchronous.from_function(repr, name="lonely")
    asyncio.set_event_loop(None)
    with pytest.raises(RuntimeError) as info:
        processor.feed_new([1])
    assert "lonely" in str(info.value)
    assert processor.in_flight == 0


# -- 12. log lines and progress bars do not overwrite each other ----------------------

class Writes(object):
    """A stream that keeps every write apart."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass


def test_log_lines_go_through_tqdm_while_bars_are_drawn():
    pytest.importorskip("tqdm")
    import logging
    from batch_processor.progress import RunProgress, write_line
    stream = Writes()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("batch_processor.test_campaign3")
    log.addHandler(handler)
    log.propagate = False
    processor = SeparateBatchProcessorSynchronous.from_function(repr, name="bars")
    try:
        progress = RunProgress([processor], stream=stream, bars=True)
        progress.fed(processor, 2)
        log.warning("a log line")
        write_line("a line of the program's", stream)
        progress.close()
        log.warning("after the bars")
    finally:
        log.removeHandler(handler)
    text = "".join(stream.writes)
    for line in ("a log line", "a line of the program's"):
        before = text[:text.index(line)]
        # tqdm cleared the bar (which ends in no newline) before the line was written.
        assert before.endswith(("\r", "\n")), repr(before[-80:])
        assert "bars:" in text[text.index(line):]  # and drew it again after it
    assert handler.stream is stream  # the handler is given back its stream
    assert text.endswith("after the bars\n")  # written as it is once the bars are gone
