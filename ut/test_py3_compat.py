"""Python 3 only: native ``async def`` coroutines everywhere a coroutine is accepted.

This file uses ``async``/``await`` syntax, so ``ut/conftest.py`` keeps Python 2.7
from collecting it.
"""
import asyncio

import pytest

from batch_processor import (
    SeparateBatchProcessor, SequentialBatchProcessor, run_batch_processor,
    run_batch_processor_async)
from batch_processor import compat
from batch_processor.compat import From, Return, coroutine

from helpers import TIMEOUT, run


class NativeSeparate(SeparateBatchProcessor):
    async def _run_one_job(self, job_descriptor):
        await asyncio.sleep(0)
        if job_descriptor < 0:
            raise ValueError(job_descriptor)
        return job_descriptor * 10


class NativeSequential(SequentialBatchProcessor):
    def __init__(self, max_batch_size=None):
        super().__init__(max_batch_size)
        self.batches = []

    async def _run_batch(self, job_descriptors):
        self.batches.append(list(job_descriptors))
        await asyncio.sleep(0)
        return [d + 100 for d in job_descriptors]


def test_coroutine_of_an_async_function_is_the_function_itself():
    async def native(x):
        return x

    assert coroutine(native) is native


def test_native_separate_processor():
    handles = run_batch_processor(NativeSeparate(max_parallel_jobs=2), [1, -2, 3])
    assert sorted(h.descriptor for h in handles) == [-2, 1, 3]
    by_descriptor = dict((h.descriptor, h) for h in handles)
    assert by_descriptor[1].future.result() == 10
    assert by_descriptor[3].future.result() == 30
    assert isinstance(by_descriptor[-2].future.exception(), ValueError)


def test_native_separate_processor_with_retry_and_timeout():
    from batch_processor import RetryPolicy

    class Flaky(SeparateBatchProcessor):
        calls = 0

        async def _run_one_job(self, job_descriptor):
            type(self).calls += 1
            if type(self).calls < 3:
                raise KeyError(type(self).calls)
            return job_descriptor

    processor = Flaky(job_timeout=TIMEOUT, retry=RetryPolicy(attempts=3))
    [handle] = run_batch_processor(processor, ["x"])
    assert handle.future.result() == "x"
    assert Flaky.calls == 3


def test_native_sequential_processor():
    processor = NativeSequential(max_batch_size=2)
    handles = run_batch_processor(processor, [1, 2, 3])
    assert sorted(h.future.result() for h in handles) == [101, 102, 103]
    assert processor.batches == [[1, 2], [3]]


def test_native_sequential_processor_driven_by_hand(loop):
    processor = NativeSequential()
    collected = []

    async def drive():
        processor.feed_new([5, 6])
        while processor.in_flight:
            await processor.wait_ready()
            collected.extend((h.descriptor, h.future.result()) for h in processor.get_ready())

    run(loop, drive())
    assert sorted(collected) == [(5, 105), (6, 106)]


@coroutine
def trollius_double(x):
    yield From(asyncio.sleep(0))
    raise Return(x * 2)


async def native_add_one(x):
    await asyncio.sleep(0)
    return x + 1


def test_async_def_awaits_a_trollius_coroutine(loop):
    async def main():
        doubled = await trollius_double(4)
        return await native_add_one(doubled)

    assert run(loop, main()) == 9


def test_trollius_coroutine_yields_from_a_native_coroutine(loop):
    @coroutine
    def main():
        value = yield From(native_add_one(1))
        doubled = yield From(trollius_double(value))
        raise Return(doubled)

    assert run(loop, main()) == 4


def test_trollius_coroutine_catches_an_exception_of_a_native_one(loop):
    async def fail():
        await asyncio.sleep(0)
        raise KeyError("native")

    @coroutine
    def main():
        try:
            yield From(fail())
        except KeyError as exc:
            raise Return(exc.args)

    assert run(loop, main()) == ("native",)


def test_native_coroutine_catches_cancellation_of_a_trollius_one(loop):
    events = []
    started = loop.create_future()

    @coroutine
    def blocked():
        try:
            started.set_result(None)
            yield From(asyncio.sleep(TIMEOUT * 10))
        finally:
            events.append("trollius cleanup")

    async def main():
        try:
            await blocked()
        except compat.CancelledError:
            events.append("native caught")
            raise

    task = loop.create_task(main())
    run(loop, started)
    task.cancel()
    with pytest.raises(compat.CancelledError):
        run(loop, task)
    assert events == ["trollius cleanup", "native caught"]


def test_awaiting_a_processor_wait_ready(loop):
    processor = NativeSeparate()

    async def main():
        processor.feed_new([1])
        await processor.wait_ready()
        return processor.get_ready()

    [handle] = run(loop, main())
    assert handle.future.result() == 10


@pytest.mark.skipif(not hasattr(asyncio, "run"), reason="asyncio.run() is new in 3.7")
def test_asyncio_run_of_a_main_awaiting_run_batch_processor_async():
    async def main():
        separate = await run_batch_processor_async(NativeSeparate(), [1, 2])
        sequential = await run_batch_processor_async(NativeSequential(), [3])
        return separate, sequential

    separate, sequential = asyncio.run(main())
    assert sorted(h.future.result() for h in separate) == [10, 20]
    assert [h.future.result() for h in sequential] == [103]


def test_run_until_complete_of_a_main_awaiting_run_batch_processor_async(loop):
    async def main():
        return await run_batch_processor_async(NativeSeparate(), [7])

    [handle] = run(loop, main())
    assert handle.descriptor == 7 and handle.future.result() == 70


class ReturnsAsyncioSleep(SeparateBatchProcessor):
    """A plain ``_run_one_job`` that returns asyncio's own coroutine (a generator-based
    one on 3.6, whose ``yield from future`` is not a trollius-style coroutine's)."""

    def _run_one_job(self, job_descriptor):
        return asyncio.sleep(job_descriptor, result=job_descriptor)


def test_a_plain_job_returning_asyncio_sleep_runs_and_times_out():
    from batch_processor import JobTimeoutError, run_batch_processor
    handles = run_batch_processor(ReturnsAsyncioSleep(job_timeout=1.0), [0, TIMEOUT * 10])
    assert handles[0].future.result() == 0
    assert isinstance(handles[1].future.exception(), JobTimeoutError)
