"""Regression tests of the second reliability campaign: no user object, executor or
timing may hang a run or lose a job (one test, or a few, per finding)."""
from __future__ import absolute_import, division, print_function

import threading
import weakref

import pytest

from batch_processor import (
    BatchProcessorError, BatchProcessorsGraph, ConverterError, JobTimeoutError,
    ProcessorStateError, RetryPolicy, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, compat, run_batch_processor,
    run_batch_processors_graph)
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import TIMEOUT, Separate, SeparateSync, SequentialSync, identity

ALL_SYNC = [SeparateSync, SequentialSync]


def values(*handles):
    return [h.future.result() for h in handles]


def _graph(source, destination, converter):
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, destination, converter)
    return graph


class Unprintable(Exception):
    def __str__(self):
        raise ValueError("no str")

    def __repr__(self):
        raise ValueError("no repr")


class UnreprCallable(object):
    def __call__(self, *handles):
        raise Unprintable()

    def __repr__(self):
        raise ValueError("no repr")

    def __getattr__(self, name):
        raise ValueError("no attribute %s" % name)


class CustomBase(BaseException):
    pass


# -- 1. converters whose exception or repr cannot be printed -----------------------

@pytest.mark.parametrize("converter", [
    lambda *handles: (_ for _ in ()).throw(Unprintable()), UnreprCallable()],
    ids=["exception-str-raises", "callable-repr-raises"])
def test_unprintable_converter_failure_is_a_converter_error(converter):
    source, destination = SeparateSync(), SeparateSync()
    with pytest.raises(ConverterError) as info:
        run_batch_processors_graph(_graph(source, destination, converter), {source: [1]},
                                   timeout=TIMEOUT)
    assert isinstance(info.value.original, Unprintable)
    assert len(info.value.results[source]) == 1


# -- 2. a converter raising a BaseException --------------------------------------

@pytest.mark.parametrize("kind", [CustomBase, GeneratorExit])
def test_converter_base_exception_is_a_converter_error(kind):
    def converter(*handles):
        raise kind("converter")
    source, destination = SeparateSync(), SeparateSync()
    with pytest.raises(ConverterError) as info:
        run_batch_processors_graph(_graph(source, destination, converter), {source: [1]},
                                   timeout=TIMEOUT)
    assert isinstance(info.value.original, kind)


# -- 3. an _executor that raises ---------------------------------------------------

class Unreachable(RuntimeError):
    pass


class NoClusterSeparate(SeparateBatchProcessorSynchronous):
    @property
    def _executor(self):
        raise Unreachable("the cluster cannot be reached")

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor


class NoClusterSequential(SequentialBatchProcessorSynchronous):
    @property
    def _executor(self):
        raise Unreachable("the cluster cannot be reached")

    def _run_batch_synchronous(self, job_descriptors):
        return list(job_descriptors)


@pytest.mark.parametrize("cls", [NoClusterSeparate, NoClusterSequential])
def test_raising_executor_fails_the_jobs_and_releases_the_processor(cls):
    processor = cls()
    for _ in range(2):  # the processor is not left claimed by the first run
        handles = run_batch_processor(processor, [1, 2], timeout=TIMEOUT)
        assert len(handles) == 2
        for handle in handles:
            with pytest.raises(Unreachable):
                handle.future.result()


def test_raising_executor_sequential_kill_works(loop):
    processor = NoClusterSequential()
    processor.feed_new([1])
    processor.kill()  # no missing future
    loop.run_until_complete(asyncio.sleep(0))
    handles = processor.get_ready()
    assert len(handles) == 1


# -- 4. StopIteration out of a thread job or a synchronous batch ------------------

def _stop(descriptor):
    if descriptor == "stop":
        return next(iter([]))
    return descriptor


@pytest.mark.parametrize("cls", ALL_SYNC)
def test_stop_iteration_in_thread_fails_that_job_only(cls):
    processor = cls(fn=_stop, **({"max_batch_size": 1} if cls is SequentialSync else {}))
    handles = run_batch_processor(processor, [1, "stop", 2], timeout=TIMEOUT)
    by_descriptor = dict((h.descriptor, h) for h in handles)
    assert by_descriptor[1].future.result() == 1
    assert by_descriptor[2].future.result() == 2
    with pytest.raises(RuntimeError) as info:
        by_descriptor["stop"].future.result()
    assert "StopIteration" in str(info.value)


# -- 5. an abandoned thread holds no worker; job_timeout counts running time ------

class Hangs(SeparateBatchProcessorSynchronous):
    """The first attempt of "hang" blocks (until the test ends); later ones return."""

    def __init__(self, **kwargs):
        super(Hangs, self).__init__(**kwargs)
        self.release = threading.Event()
        self.attempts = []

    def _run_one_job_synchronous(self, job_descriptor):
        self.attempts.append(job_descriptor)
        if job_descriptor == "hang" and self.attempts.count("hang") == 1:
            self.release.wait(TIMEOUT)
            return "late"
        return job_descriptor


def test_timed_out_thread_does_not_starve_queued_jobs_or_retries():
    processor = Hangs(max_parallel_jobs=1, job_timeout=0.2,
                      retry=RetryPolicy(attempts=2, retry_on=(JobTimeoutError,)))
    try:
        handles = run_batch_processor(processor, ["hang", "a", "b"], timeout=TIMEOUT)
    finally:
        processor.release.set()
    assert sorted(values(*handles)) == ["a", "b", "hang"]


def test_queued_jobs_do_not_time_out_while_waiting():
    processor = Hangs(max_parallel_jobs=1, job_timeout=0.2)
    try:
        handles = run_batch_processor(processor, ["hang", "a"], timeout=TIMEOUT)
    finally:
        processor.release.set()
    by_descriptor = dict((h.descriptor, h) for h in handles)
    with pytest.raises(JobTimeoutError):
        by_descriptor["hang"].future.result()
    assert by_descriptor["a"].future.result() == "a"


# -- 6. processors fed by a converter or by a job are waited for ------------------

def test_processor_fed_by_a_converter_is_waited_for():
    source, side, sink = SeparateSync(), SeparateSync(), SeparateSync()
    graph = _graph(source, sink, lambda *handles: [])
    graph.add_processor(side)

    def feeding(*handles):
        side.feed_new(values(*handles))
        return []
    graph.add_connected_processors(source, sink, feeding)
    results = run_batch_processors_graph(graph, {source: [1, 2]}, timeout=TIMEOUT)
    assert sorted(values(*results[side])) == [3, 4]


class FeedsOther(SeparateBatchProcessor):
    def __init__(self, other):
        super(FeedsOther, self).__init__()
        self.other = other

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.other.feed_new([job_descriptor])
        yield From(asyncio.sleep(0))
        raise Return(job_descriptor)


def test_processor_fed_by_an_async_job_is_waited_for():
    other = SeparateSync()
    feeder = FeedsOther(other)
    graph = BatchProcessorsGraph()
    graph.add_processor(feeder)
    graph.add_processor(other)
    results = run_batch_processors_graph(graph, {feeder: [1, 2]}, timeout=TIMEOUT)
    assert sorted(values(*results[other])) == [2, 3]


# -- 7. synchronous runs in several threads at once -------------------------------

def test_concurrent_sync_runs_in_threads():
    errors = []

    def runs():
        try:
            for _ in range(15):
                handles = run_batch_processor(Separate(), list(range(20)), timeout=TIMEOUT)
                assert sorted(values(*handles)) == list(range(1, 21))
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=runs) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 4)
    assert errors == []


@pytest.mark.skipif(not compat.PY2, reason="trollius keeps all tasks in one WeakSet")
def test_all_tasks_does_not_iterate_the_shared_weakset(monkeypatch, loop):
    class Changing(weakref.WeakSet):
        def __iter__(self):
            raise RuntimeError("Set changed size during iteration")
    tasks = Changing(asyncio.Task._all_tasks)
    monkeypatch.setattr(asyncio.Task, "_all_tasks", tasks)
    task = loop.create_task(asyncio.sleep(0))
    tasks.add(task)
    assert compat.all_tasks(loop) == set([task])
    loop.run_until_complete(task)


# -- 8. a processor whose loop was closed with jobs in flight ---------------------

def test_kill_after_the_loop_closed_then_run_again():
    processor = Hangs()
    loop = asyncio.new_event_loop()
    token = compat.enter_loop(loop)
    try:
        if not compat.PY2:
            asyncio.set_event_loop(loop)
        processor.feed_new(["hang"])
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        compat.leave_loop(token)
        if not compat.PY2:
            asyncio.set_event_loop(None)
    try:
        with pytest.raises(ProcessorStateError) as info:
            run_batch_processor(processor, [1], timeout=TIMEOUT)
        assert "kill()" in str(info.value)
        processor.kill()  # no 'Event loop is closed'
        handles = processor.get_ready()
        assert len(handles) == 1 and all(h.future.cancelled() for h in handles)
        again = run_batch_processor(Hangs(), ["y"], timeout=TIMEOUT)  # the message's advice
        assert values(*again) == ["y"]
    finally:
        processor.release.set()


def test_hand_driven_kill_then_new_processor_runs(loop):
    # the remedy on a loop that is still open keeps working as before
    processor = SeparateSync()
    processor.feed_new([1])
    processor.kill()
    assert len(processor.get_ready()) == 1


# -- 9. a descriptor whose repr raises, with job_timeout --------------------------

class Unrepr(object):
    def __init__(self, kind=ValueError):
        self.kind = kind

    def __repr__(self):
        raise self.kind("no repr")


class SlowOnUnrepr(SeparateBatchProcessorSynchronous):
    def __init__(self, **kwargs):
        super(SlowOnUnrepr, self).__init__(**kwargs)
        self.release = threading.Event()

    def _run_one_job_synchronous(self, job_descriptor):
        self.release.wait(TIMEOUT)
        return job_descriptor


class SlowAsyncOnUnrepr(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(TIMEOUT))
        raise Return(job_descriptor)


@pytest.mark.parametrize("kind", [ValueError, CustomBase, GeneratorExit])
@pytest.mark.parametrize("cls", [SlowOnUnrepr, SlowAsyncOnUnrepr])
def test_unrepr_descriptor_times_out_with_job_timeout_error(cls, kind):
    processor = cls(job_timeout=0.1, retry=RetryPolicy(attempts=1))
    try:
        handles = run_batch_processor(processor, [Unrepr(kind)], timeout=TIMEOUT)
    finally:
        getattr(processor, "release", threading.Event()).set()
    with pytest.raises(JobTimeoutError):
        handles[0].future.result()


# -- 10. a batch result that is not a list and whose repr raises ------------------

class BadResultBatch(SequentialBatchProcessor):
    def __init__(self, kind):
        super(BadResultBatch, self).__init__()
        self.kind = kind

    @coroutine
    def _run_batch(self, job_descriptors):
        yield From(asyncio.sleep(0))
        raise Return(Unrepr(self.kind))


class BadResultBatchSync(SequentialBatchProcessorSynchronous):
    def __init__(self, kind):
        super(BadResultBatchSync, self).__init__()
        self.kind = kind

    def _run_batch_synchronous(self, job_descriptors):
        return Unrepr(self.kind)


@pytest.mark.parametrize("kind", [ValueError, CustomBase, GeneratorExit])
@pytest.mark.parametrize("cls", [BadResultBatch, BadResultBatchSync])
def test_unrepr_non_list_batch_result_fails_the_handles(cls, kind):
    handles = run_batch_processor(cls(kind), [1, 2], timeout=TIMEOUT)
    assert len(handles) == 2
    for handle in handles:
        with pytest.raises(TypeError):
            handle.future.result()


# -- 11. options: finite numbers of seconds, no booleans --------------------------

BAD_SECONDS = [float("nan"), float("inf"), -float("inf"), True, False, "1", None]


@pytest.mark.parametrize("value", BAD_SECONDS[:-1])
def test_run_timeout_must_be_finite_seconds(value):
    with pytest.raises(ValueError):
        run_batch_processor(SeparateSync(), [1], timeout=value)


@pytest.mark.parametrize("value", BAD_SECONDS[:-1])
@pytest.mark.parametrize("cls", [Separate, SeparateSync])
def test_job_timeout_must_be_finite_seconds(cls, value):
    with pytest.raises(ValueError):
        cls(job_timeout=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_backoff_must_be_finite_seconds(value):
    with pytest.raises(ValueError):
        RetryPolicy(backoff=value)


def test_good_seconds_still_accepted():
    RetryPolicy(backoff=0)
    Separate(job_timeout=1)
    assert len(run_batch_processor(SeparateSync(), [1], timeout=TIMEOUT * 1.5)) == 1


# -- 12. the same BaseException policy on 2.7 and 3.x ----------------------------

class RaisesInJob(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(self.helper(job_descriptor))
        raise Return(job_descriptor)

    @coroutine
    def helper(self, job_descriptor):
        yield From(asyncio.sleep(0))
        if job_descriptor == "custom":
            raise CustomBase("custom")
        if job_descriptor == "exit":
            raise GeneratorExit("exit")
        raise Return(None)


class RaisesInBatch(SequentialBatchProcessor):
    @coroutine
    def _run_batch(self, job_descriptors):
        yield From(asyncio.sleep(0))
        if "custom" in job_descriptors:
            raise CustomBase("custom")
        if "exit" in job_descriptors:
            raise GeneratorExit("exit")
        raise Return(list(job_descriptors))


@pytest.mark.parametrize("kind, descriptor", [(CustomBase, "custom"), (GeneratorExit, "exit")])
def test_base_exception_in_async_job_fails_that_job_alone(kind, descriptor):
    handles = run_batch_processor(RaisesInJob(), [1, descriptor, 2], timeout=TIMEOUT)
    by_descriptor = dict((h.descriptor, h) for h in handles)
    assert by_descriptor[1].future.result() == 1
    assert by_descriptor[2].future.result() == 2
    with pytest.raises(kind):
        by_descriptor[descriptor].future.result()


@pytest.mark.parametrize("kind, descriptor", [(CustomBase, "custom"), (GeneratorExit, "exit")])
def test_base_exception_in_async_batch_fails_that_batch_alone(kind, descriptor):
    processor = RaisesInBatch(max_batch_size=1)
    handles = run_batch_processor(processor, [1, descriptor, 2], timeout=TIMEOUT)
    by_descriptor = dict((h.descriptor, h) for h in handles)
    assert by_descriptor[1].future.result() == 1
    assert by_descriptor[2].future.result() == 2
    with pytest.raises(kind):
        by_descriptor[descriptor].future.result()


# -- defence in depth: a library callback that raises anyway ----------------------

def test_raising_run_step_ends_the_run_as_a_library_bug(monkeypatch):
    from batch_processor import execution

    def broken(self, node):
        raise ZeroDivisionError("injected")
    monkeypatch.setattr(execution._Run, "_collect", broken)
    with pytest.raises(BatchProcessorError) as info:
        run_batch_processor(SeparateSync(), [1, 2], timeout=TIMEOUT)
    assert "bug of batch_processor" in str(info.value)
    assert info.value.results is not None


def test_raising_runtime_callback_ends_the_run_as_a_library_bug(monkeypatch):
    from batch_processor import separate

    def broken(self, future, outcome):
        raise ZeroDivisionError("injected")
    monkeypatch.setattr(separate.SeparateRuntime, "finish", broken)
    processor = Separate(fn=identity)
    with pytest.raises(BatchProcessorError) as info:
        run_batch_processor(processor, [1, 2], timeout=TIMEOUT)
    assert "bug of batch_processor" in str(info.value)
    assert "finish" in str(info.value) or "job_done" in str(info.value)
    handles = info.value.results  # run_batch_processor's partial result: the list
    assert len(handles) == 2 and all(h.future.cancelled() for h in handles)
