"""Sequential processors for real workloads: max_batch_wait, job_timeout, retry, Failure."""
from __future__ import absolute_import, division, print_function

import threading

import pytest

from batch_processor import (
    Failure, JobTimeoutError, RetryPolicy, SeparateBatchProcessor, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, run_batch_processor, run_batch_processors_graph,
    BatchProcessorsGraph)
from batch_processor.compat import From, Return, asyncio, coroutine
from batch_processor.interface import describe


class Recording(SequentialBatchProcessor):
    """Records each batch and the loop time it started; ``script`` fails attempts."""

    def __init__(self, script=(), **kwargs):
        super(Recording, self).__init__(**kwargs)
        self.batches = []
        self.times = []
        self.script = list(script)

    @coroutine
    def _run_batch(self, descriptors):
        self.batches.append(list(descriptors))
        self.times.append(asyncio.get_event_loop().time())
        if self.script:
            action = self.script.pop(0)
            if isinstance(action, BaseException):
                raise action
            if action == "hang":
                yield From(asyncio.Future())
        raise Return([Failure(KeyError(d)) if d == "bad" else d * 10 for d in descriptors])


class RecordingSync(SequentialBatchProcessorSynchronous):
    def __init__(self, script=(), **kwargs):
        super(RecordingSync, self).__init__(**kwargs)
        self.script = list(script)
        self.release = threading.Event()
        self.batches = []

    def _run_batch_synchronous(self, descriptors):
        self.batches.append(list(descriptors))
        if self.script:
            action = self.script.pop(0)
            if action == "hang":
                self.release.wait(30)
            elif isinstance(action, BaseException):
                raise action
        return [Failure(KeyError(d)) if d == "bad" else d * 10 for d in descriptors]


def _results(*handles):
    return [h.future.result() for h in handles]


def results(handles):
    return dict((h.descriptor, h.future.exception() or h.future.result()) for h in handles)


class Feeder(SeparateBatchProcessor):
    """Yields one loop turn per job, so that its results come one at a time."""

    @coroutine
    def _run_one_job(self, descriptor):
        yield From(asyncio.sleep(0))
        raise Return(descriptor)


@pytest.mark.parametrize("kind", [Recording, RecordingSync])
def test_failure_items_fail_their_handle_only(kind):
    processor = kind()
    out = results(run_batch_processor(processor, [1, "bad", 2]))
    assert out[1] == 10 and out[2] == 20
    assert isinstance(out["bad"], KeyError)


def test_failure_holds_an_exception():
    assert Failure(ValueError("x")).exception.args == ("x",)
    with pytest.raises(TypeError):
        Failure("not an exception")


def test_a_batch_waits_for_max_batch_wait_before_starting_short():
    processor = Recording(max_batch_size=100, max_batch_wait=0.05)
    graph = BatchProcessorsGraph()
    feeder = Feeder()
    graph.add_connected_processors(feeder, processor, _results)
    start = []

    class Clock(SeparateBatchProcessor):
        @coroutine
        def _run_one_job(self, descriptor):
            start.append(asyncio.get_event_loop().time())
            raise Return(descriptor)
    clock = Clock()
    graph.add_connected_processors(clock, feeder, _results)
    out = run_batch_processors_graph(graph, {clock: [1, 2, 3]})
    assert sorted(h.future.result() for h in out[processor]) == [10, 20, 30]
    assert processor.batches == [[1, 2, 3]]  # one batch: it waited for the stragglers
    assert processor.times[0] - min(start) >= 0.05 - 1e-3


def test_a_full_batch_starts_without_waiting():
    processor = Recording(max_batch_size=2, max_batch_wait=3600)
    out = results(run_batch_processor(processor, [1, 2, 3, 4]))
    assert out == {1: 10, 2: 20, 3: 30, 4: 40}
    assert processor.batches == [[1, 2], [3, 4]]


@pytest.mark.parametrize("kind", [Recording, RecordingSync])
def test_retry_runs_the_batch_again_and_every_handle_gets_the_last_outcome(kind):
    processor = kind(script=[ValueError("flaky")], retry=RetryPolicy(attempts=2))
    out = results(run_batch_processor(processor, [1, 2, "bad"]))
    assert out[1] == 10 and out[2] == 20 and isinstance(out["bad"], KeyError)
    assert processor.batches == [[1, 2, "bad"]] * 2


@pytest.mark.parametrize("kind", [Recording, RecordingSync])
def test_retry_gives_up_and_fails_every_handle(kind):
    processor = kind(script=[ValueError("a"), ValueError("b")], retry=RetryPolicy(attempts=2))
    out = results(run_batch_processor(processor, [1, 2]))
    assert [str(out[1]), str(out[2])] == ["b", "b"]


@pytest.mark.parametrize("kind", [Recording, RecordingSync])
def test_job_timeout_fails_the_batch_attempt(kind):
    processor = kind(script=["hang"], job_timeout=0.05)
    try:
        out = results(run_batch_processor(processor, [1, 2]))
    finally:
        getattr(processor, "release", threading.Event()).set()
    for value in out.values():
        assert isinstance(value, JobTimeoutError)
        assert describe(processor) in str(value) and "job_timeout" in str(value)


def test_job_timeout_then_retry_succeeds():
    processor = Recording(script=["hang"], job_timeout=0.05,
                          retry=RetryPolicy(attempts=2, retry_on=JobTimeoutError))
    assert results(run_batch_processor(processor, [1])) == {1: 10}


@pytest.mark.parametrize("kind", [Recording, RecordingSync])
@pytest.mark.parametrize("options, error", [
    (dict(max_batch_wait=-1), ValueError), (dict(max_batch_wait=True), ValueError),
    (dict(max_batch_wait=float("inf")), ValueError), (dict(max_batch_wait="1"), ValueError),
    (dict(job_timeout=0), ValueError), (dict(job_timeout=float("nan")), ValueError),
    (dict(job_timeout=False), ValueError), (dict(retry=3), TypeError)])
def test_options_are_checked(kind, options, error):
    with pytest.raises(error) as info:
        kind(**options)
    assert kind.__name__ in str(info.value)
