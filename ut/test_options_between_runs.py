"""SPEC "Options between runs": a processor's options are attributes; a change made
between two runs takes effect in the next run; an invalid value raises the
constructor's error when the next run starts, before anything runs."""
from __future__ import absolute_import, division, print_function

import pytest

from batch_processor import (
    JobTimeoutError, RetryPolicy, SeparateBatchProcessor, SequentialBatchProcessor,
    SeparateBatchProcessorSynchronous, execution, run_batch_processor)
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import outcome


class Overlapping(SeparateBatchProcessor):
    """Jobs that give the loop a few turns; ``most`` is the largest number that ran at once."""

    def __init__(self, **kwargs):
        super(Overlapping, self).__init__(**kwargs)
        self.running = self.most = 0
        self.ran = []

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.ran.append(job_descriptor)
        self.running += 1
        self.most = max(self.most, self.running)
        for _ in range(3):
            yield From(asyncio.sleep(0))
        self.running -= 1
        raise Return(job_descriptor)


def test_max_parallel_jobs_changed_between_runs(loop_factory):
    processor = Overlapping(max_parallel_jobs=1)
    run_batch_processor(processor, range(6), loop_factory=loop_factory)
    assert processor.most == 1
    processor.max_parallel_jobs, processor.most = 3, 0
    run_batch_processor(processor, range(6), loop_factory=loop_factory)
    assert processor.most == 3
    processor.max_parallel_jobs, processor.most = None, 0
    run_batch_processor(processor, range(6), loop_factory=loop_factory)
    assert processor.most == 6


class Stuck(SeparateBatchProcessor):
    """Descriptor 0 never ends by itself; the others end at once."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        if job_descriptor == 0:
            yield From(asyncio.sleep(3600))
        raise Return(job_descriptor)


def test_job_timeout_set_after_a_first_run(loop_factory):
    processor = Stuck()
    assert [outcome(h) for h in run_batch_processor(processor, [1], loop_factory=loop_factory)] \
        == [("ok", 1)]
    processor.job_timeout = 0.01
    (handle,) = run_batch_processor(processor, [0], timeout=60, loop_factory=loop_factory)
    kind, exc = outcome(handle)
    assert kind == "failed" and isinstance(exc, JobTimeoutError)
    processor.job_timeout = None  # and back: no timer, the job ends by itself
    assert [outcome(h) for h in run_batch_processor(processor, [2], loop_factory=loop_factory)] \
        == [("ok", 2)]


class FailsOnce(SeparateBatchProcessor):
    def __init__(self, **kwargs):
        super(FailsOnce, self).__init__(**kwargs)
        self.calls = 0

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.calls += 1
        if self.calls % 2:
            raise ValueError("first attempt")
        raise Return(job_descriptor)
        yield  # pragma: no cover


def test_retry_set_after_a_first_run(loop_factory):
    processor = FailsOnce()
    assert outcome(run_batch_processor(processor, [1], loop_factory=loop_factory)[0])[0] == "failed"
    processor.calls = 0
    processor.retry = RetryPolicy(attempts=2)
    assert outcome(run_batch_processor(processor, [1], loop_factory=loop_factory)[0]) == ("ok", 1)


class Batches(SequentialBatchProcessor):
    @coroutine
    def _run_batch(self, job_descriptors):
        if 0 in job_descriptors:
            yield From(asyncio.sleep(3600))
        raise Return(list(job_descriptors))


def test_a_sequential_job_timeout_set_after_a_first_run(loop_factory):
    processor = Batches()
    assert [outcome(h) for h in run_batch_processor(processor, [1], loop_factory=loop_factory)] \
        == [("ok", 1)]
    processor.job_timeout = 0.01
    (handle,) = run_batch_processor(processor, [0], timeout=60, loop_factory=loop_factory)
    assert isinstance(outcome(handle)[1], JobTimeoutError)


@pytest.mark.parametrize("cls, option, value", [
    (Overlapping, "max_parallel_jobs", 0),
    (Overlapping, "job_timeout", "1"),
    (Overlapping, "retry", 3),
    (Batches, "max_batch_size", 0),
    (Batches, "max_batch_wait", -1),
    (Batches, "job_timeout", float("nan")),
])
def test_an_invalid_value_fails_as_the_next_run_starts(cls, option, value):
    processor = cls()
    run_batch_processor(processor, [1])
    setattr(processor, option, value)
    with pytest.raises((ValueError, TypeError)) as info:
        run_batch_processor(processor, [2])
    assert "%s(%s=" % (cls.__name__, option) in str(info.value)
    assert id(processor) not in execution._claimed
    with pytest.raises(type(info.value)) as constructor:
        cls(**{option: value})
    assert str(constructor.value) == str(info.value)


class Sync(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor


def test_executor_is_an_attribute_checked_at_assignment():
    processor = Sync(executor="threads")
    assert processor.executor == "threads"
    with pytest.raises(ValueError, match=r"Sync\(executor='bogus'\)"):
        processor.executor = "bogus"
    assert processor.executor == "threads"
    processor.executor = None
    assert outcome(run_batch_processor(processor, [3])[0]) == ("ok", 3)
