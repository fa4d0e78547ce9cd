"""Tests of ``batch_processor.separate``: one job per descriptor, capped, timed, retried.

Jobs wait behind *gates* that the test opens (a loop future for coroutine jobs, a
`threading.Event` for jobs in threads), so every ordering is forced by the test,
never by time. The only clocks are ``job_timeout`` itself, on jobs that never end
by themselves.
"""
from __future__ import absolute_import, division, print_function

import collections
import gc
import logging
import os
import threading
import time
from concurrent.futures import Executor

import attr
import pytest

from batch_processor import (
    JobTimeoutError, ProcessorState, RetryPolicy, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, UnsafeThreadPoolExecutor, run_batch_processor,
    run_batch_processor_single)
from batch_processor.compat import CancelledError, From, Return, asyncio, coroutine

from helpers import (
    GATES, TIMEOUT, ErrorRecords, GatedSeparate, GatedSeparateSync, RecordingExecutor,
    RecordingSeparateSync, a_later_job, callbacks_ran, collect, collect_some, done, flatten,
    outcome, run)

SHORT = 0.05  # a job_timeout, for attempts that never end by themselves

KINDS = [GatedSeparate, GatedSeparateSync]
BY_KIND = pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)


class Rendezvous(object):
    """``arrive()`` returns once ``parties`` threads have arrived: they ran at once."""

    def __init__(self, parties):
        self.parties = parties
        self.arrived = 0
        self.condition = threading.Condition()

    def arrive(self):
        deadline = time.time() + TIMEOUT  # a safety net only
        with self.condition:
            self.arrived += 1
            self.condition.notify_all()
            while self.arrived < self.parties:
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise RuntimeError("only %d of %d jobs ran at once"
                                       % (self.arrived, self.parties))
                self.condition.wait(remaining)
        return threading.current_thread()


# == max_parallel_jobs =================================================================

@pytest.mark.parametrize("options", [{}, {"job_timeout": TIMEOUT, "retry": RetryPolicy(2)}],
                         ids=["plain", "timed_and_retried"])
@BY_KIND
def test_never_more_than_max_parallel_jobs_and_as_many_when_waiting(loop, gates, kind, options):
    processor = kind(gates, max_parallel_jobs=2, **options)

    @coroutine
    def scenario():
        processor.feed_new(range(6))
        yield From(gates.wait_started(2))  # two waiting: two run at once
        yield From(a_later_job(kind))  # a third would have started by now
        # The first two start together (in two threads, for a Synchronous kind): in
        # either order. Each later one starts alone, when a running one ends.
        assert sorted(gates.started) == [0, 1]
        for next_one in range(2, 6):
            gates.open(next_one - 2)  # the oldest running job ends...
            yield From(gates.wait_started(next_one + 1))  # ...and the next one starts
            yield From(a_later_job(kind))
            assert sorted(gates.started[:2]) == [0, 1]
            assert gates.started[2:] == list(range(2, next_one + 1))
            assert gates.running == 2
        gates.open_all()
        rounds = yield From(collect(processor))
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", done(d)) for d in range(6)]
    assert gates.max_running == 2
    assert sorted(gates.started[:2]) == [0, 1] and gates.started[2:] == [2, 3, 4, 5]


@BY_KIND
def test_one_at_a_time_starts_in_feed_order(loop, gates, kind):
    processor = kind(gates, max_parallel_jobs=1)
    descriptors = [5, 3, 9, 1, 7]

    @coroutine
    def scenario():
        processor.feed_new(descriptors)
        for count, descriptor in enumerate(descriptors, 1):
            yield From(gates.wait_started(count))
            yield From(a_later_job(kind))  # a second job would have started by now
            assert gates.started == descriptors[:count]
            gates.open(descriptor)
        yield From(collect(processor))

    run(loop, scenario())
    assert gates.started == descriptors
    assert gates.max_running == 1


@BY_KIND
def test_without_a_cap_every_job_runs_at_once(loop, gates, kind):
    # 4 jobs: the default thread pool has at least 5 workers
    count = 4 if kind is GatedSeparateSync else 20
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new(range(count))
        yield From(gates.wait_started(count))  # none has ended
        assert gates.running == count
        gates.open_all()
        yield From(collect(processor))

    run(loop, scenario())
    assert gates.max_running == count


@BY_KIND
def test_stop_lets_queued_jobs_run_too(loop, gates, kind):
    processor = kind(gates, max_parallel_jobs=1)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(1))
        stopped = processor.stop()
        assert processor.state is ProcessorState.STOPPING
        gates.open_all()
        rounds = yield From(collect(processor))
        yield From(stopped)
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", done(1)), ("ok", done(2)), ("ok", done(3))]
    assert processor.state is ProcessorState.STOPPED
    assert gates.started == [1, 2, 3]


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_max_parallel_jobs_must_be_a_positive_integer(value):
    with pytest.raises((ValueError, TypeError)) as info:
        Misbehaving(max_parallel_jobs=value)
    assert "max_parallel_jobs" in str(info.value)


# == a job's handle ====================================================================

@BY_KIND
def test_a_handle_is_ready_as_soon_as_its_job_ends(loop, gates, kind):
    processor = kind(gates)

    @coroutine
    def scenario():
        processor.feed_new([1, 2, 3])
        yield From(gates.wait_started(3))
        order = []
        for descriptor in (2, 3, 1):
            gates.open(descriptor)
            rounds = yield From(collect_some(processor))
            order.append([h.descriptor for h in flatten(rounds)])
            assert processor.in_flight == 3 - len(order)
        raise Return(order)

    assert run(loop, scenario()) == [[2], [3], [1]]


class Misbehaving(SeparateBatchProcessor):
    """``_run_one_job`` raises, or returns something that is not a coroutine."""

    def _run_one_job(self, job_descriptor):
        if job_descriptor == "raise":
            raise KeyError("raised before any coroutine")
        if job_descriptor == "value":
            return 42
        if job_descriptor == "none":
            return None
        return _echo(job_descriptor)


@coroutine
def _echo(value):
    yield From(asyncio.sleep(0))
    raise Return(value)


@pytest.mark.parametrize("options", [
    {},
    {"max_parallel_jobs": 1},
    {"job_timeout": TIMEOUT},
    {"retry": RetryPolicy(attempts=2, retry_on=(ZeroDivisionError,))},
], ids=["plain", "capped", "timed", "retried"])
def test_a_misbehaving_run_one_job_fails_its_own_handle(options):
    handles = run_batch_processor(Misbehaving(**options), ["raise", "value", "ok", "none"])
    assert len(handles) == 4
    by_descriptor = dict((h.descriptor, h.future) for h in handles)
    assert by_descriptor["ok"].result() == "ok"
    raised = by_descriptor["raise"].exception()
    assert isinstance(raised, KeyError)
    assert raised.args == ("raised before any coroutine",)
    for descriptor, shown in (("value", "42"), ("none", "None")):
        error = by_descriptor[descriptor].exception()
        assert isinstance(error, TypeError)
        message = str(error)
        assert "Misbehaving" in message
        assert "_run_one_job" in message
        assert "coroutine" in message
        assert shown in message


# == executors =========================================================================

class CountingReads(SeparateBatchProcessorSynchronous):
    """Counts how often ``_executor`` is read; every read gives the same pool."""

    def __init__(self, **options):
        super(CountingReads, self).__init__(**options)
        self.reads = 0
        self.pool = UnsafeThreadPoolExecutor(2)

    @property
    def _executor(self):
        self.reads += 1
        return self.pool

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor * 2


@pytest.mark.parametrize("options", [{}, {"max_parallel_jobs": 2}], ids=["uncapped", "capped"])
def test_executor_is_read_once_per_job(options):
    processor = CountingReads(**options)
    try:
        handles = run_batch_processor(processor, range(7))
        assert sorted(h.future.result() for h in handles) == [d * 2 for d in range(7)]
        assert processor.reads == 7
        run_batch_processor(processor, [10, 11])
        assert processor.reads == 9
    finally:
        processor.pool.shutdown(wait=True)


class SomeSeparateProcessor(SeparateBatchProcessorSynchronous):
    """The seed's example, as written there."""

    @property
    def _executor(self):
        # We create a new separate thread for each job
        return UnsafeThreadPoolExecutor(1)

    def _run_one_job_synchronous(self, job_descriptor):
        # type: (int) -> int
        return job_descriptor + 1


def test_the_seed_example():
    res = run_batch_processor_single(
        batch_processor=SomeSeparateProcessor(),
        descriptor=25
    )
    assert res.descriptor == 25
    assert res.future.result() == 26


class ThreadPerJob(SeparateBatchProcessorSynchronous):
    """The seed's per-job executor; its jobs wait for each other at a rendezvous."""

    def __init__(self, rendezvous):
        super(ThreadPerJob, self).__init__()
        self.rendezvous = rendezvous
        self.executors = []

    @property
    def _executor(self):
        executor = UnsafeThreadPoolExecutor(1)
        self.executors.append(executor)
        return executor

    def _run_one_job_synchronous(self, job_descriptor):
        return self.rendezvous.arrive()


def test_a_fresh_executor_per_job_gives_every_job_its_own_thread():
    processor = ThreadPerJob(Rendezvous(4))
    handles = run_batch_processor(processor, range(4))
    threads = [h.future.result() for h in handles]  # each ran while all others waited
    assert len(set(threads)) == 4
    assert threading.current_thread() not in threads
    assert len(set(processor.executors)) == 4


class Plain(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return threading.current_thread()


def _default_workers():
    cpu_count = getattr(os, "process_cpu_count", None) or getattr(os, "cpu_count", None)
    if cpu_count is None:
        import multiprocessing
        cpu_count = multiprocessing.cpu_count
    return min(32, (cpu_count() or 1) + 4)


def _check_pool_size(executor, workers):
    """``executor`` runs ``workers`` jobs at once, and never on more than that many threads."""
    rendezvous = Rendezvous(workers)
    threads = [f.result(TIMEOUT) for f in [executor.submit(rendezvous.arrive)
                                            for _ in range(workers)]]
    assert len(set(threads)) == workers
    # with every worker blocked, one more job does not start
    release = threading.Event()
    blockers = [executor.submit(release.wait, TIMEOUT) for _ in range(workers)]
    extra = executor.submit(threading.current_thread)
    try:
        assert not extra.running() and not extra.done()
    finally:
        release.set()
    assert all(blocker.result(TIMEOUT) for blocker in blockers)
    threads.append(extra.result(TIMEOUT))
    threads.extend(executor.submit(threading.current_thread).result(TIMEOUT)
                   for _ in range(workers))
    assert len(set(threads)) == workers


def test_default_executor_has_max_parallel_jobs_workers_and_is_shared():
    processor = Plain(max_parallel_jobs=3)
    executor = processor._executor
    assert isinstance(executor, Executor)
    assert processor._executor is executor
    handles = run_batch_processor(processor, range(9))
    assert processor._executor is executor  # one pool for all the processor's jobs
    assert len(set(h.future.result() for h in handles)) <= 3
    _check_pool_size(executor, 3)


def test_default_executor_without_a_cap_has_the_standard_number_of_workers():
    processor = Plain()
    executor = processor._executor
    assert processor._executor is executor
    run_batch_processor(processor, range(3))
    assert processor._executor is executor
    _check_pool_size(executor, _default_workers())


# == job_timeout =======================================================================

@BY_KIND
def test_job_timeout_fails_the_attempt_with_job_timeout_error(loop, gates, kind):
    processor = kind(gates, job_timeout=SHORT)

    @coroutine
    def scenario():
        processor.feed_new(["hung"])  # its gate is never opened
        rounds = yield From(collect(processor))
        raise Return(flatten(rounds))

    [handle] = run(loop, scenario())
    error = handle.future.exception()
    assert isinstance(error, JobTimeoutError)
    assert kind.__name__ in str(error)
    assert processor.state is ProcessorState.IDLE
    if kind is GatedSeparate:
        assert gates.cancelled == ["hung"]  # the attempt's coroutine was cancelled
    assert gates.finished == []


def test_job_timeout_abandons_the_thread_and_discards_its_late_result(loop, gates):
    processor = RecordingSeparateSync(gates, job_timeout=SHORT)
    processor.executor = RecordingExecutor(1)

    @coroutine
    def scenario():
        processor.feed_new(["hung"])
        rounds = yield From(collect(processor))
        assert gates.running == 1  # still blocked in its thread
        gates.open_all()
        yield From(callbacks_ran(loop, processor.executor.futures))
        yield From(a_later_job(processor))  # a thread job handed back after the late one
        raise Return((flatten(rounds), processor.get_ready()))

    try:
        [handle], late = run(loop, scenario())
    finally:
        processor.executor.shutdown(wait=False)
    assert isinstance(handle.future.exception(), JobTimeoutError)
    assert gates.finished == ["hung"]
    assert late == set()
    assert processor.in_flight == 0


@BY_KIND
def test_jobs_within_job_timeout_succeed(loop, gates, kind):
    processor = kind(gates, job_timeout=TIMEOUT)
    gates.open_all()
    processor.feed_new([1, 2])
    handles = flatten(run(loop, collect(processor)))
    assert sorted(outcome(h) for h in handles) == [("ok", done(1)), ("ok", done(2))]


@pytest.mark.parametrize("value", [0, -1, "1"])
def test_job_timeout_must_be_a_positive_number(value):
    with pytest.raises((ValueError, TypeError)) as info:
        Misbehaving(job_timeout=value)
    assert "job_timeout" in str(info.value)


# == RetryPolicy =======================================================================

BLOCK = "block"  # a step of a script: the attempt never ends by itself


class Scripted(SeparateBatchProcessor):
    """Attempt k of job d follows ``script[d][k - 1]``: raise it, block, or return it."""

    def __init__(self, gates, script, **options):
        super(Scripted, self).__init__(**options)
        self.gates_key = gates.key
        self.script = script
        self.calls = collections.Counter()

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.calls[job_descriptor] += 1
        attempt = self.calls[job_descriptor]
        step = self.script[job_descriptor][attempt - 1]
        if step == BLOCK:
            yield From(GATES[self.gates_key].coroutine_job(
                [(job_descriptor, attempt)], (job_descriptor, attempt), None))
        if isinstance(step, BaseException):
            yield From(asyncio.sleep(0))
            raise step
        # a value is returned in the attempt's first step: no job_timeout can beat it
        raise Return(step)


class ScriptedSync(SeparateBatchProcessorSynchronous):
    """The same in threads."""

    def __init__(self, gates, script, **options):
        super(ScriptedSync, self).__init__(**options)
        self.gates_key = gates.key
        self.script = script
        self.calls = collections.Counter()
        self.lock = threading.Lock()

    def _run_one_job_synchronous(self, job_descriptor):
        with self.lock:
            self.calls[job_descriptor] += 1
            attempt = self.calls[job_descriptor]
        step = self.script[job_descriptor][attempt - 1]
        if step == BLOCK:
            GATES[self.gates_key].thread_job(
                [(job_descriptor, attempt)], (job_descriptor, attempt), None)
        if isinstance(step, BaseException):
            raise step
        return step


BY_SCRIPTED = pytest.mark.parametrize("scripted", [Scripted, ScriptedSync], ids=["coroutine", "thread"])


def _run_scripted(loop, processor, descriptors):
    """Drive ``processor`` by hand; return ``{descriptor: handle}``, checking one handle each."""
    processor.feed_new(descriptors)
    handles = flatten(run(loop, collect(processor)))
    assert sorted(h.descriptor for h in handles) == sorted(descriptors)
    return dict((h.descriptor, h) for h in handles)


@BY_SCRIPTED
def test_retry_counts_every_attempt_and_keeps_the_last_outcome(loop, gates, scripted):
    errors = [ValueError(1), ValueError(2), ValueError(3), ValueError("never")]
    processor = scripted(gates, {"job": errors}, retry=RetryPolicy(attempts=3))
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 3
    assert handles["job"].future.exception() is errors[2]


@BY_SCRIPTED
def test_retry_stops_at_the_first_success(loop, gates, scripted):
    script = {"a": [KeyError("a1"), "a ok"], "b": ["b ok"], "c": [OSError(), IOError(), "c ok"]}
    processor = scripted(gates, script, retry=RetryPolicy(attempts=5))
    handles = _run_scripted(loop, processor, ["a", "b", "c"])
    assert dict(processor.calls) == {"a": 2, "b": 1, "c": 3}
    assert dict((d, h.future.result()) for d, h in handles.items()) == {
        "a": "a ok", "b": "b ok", "c": "c ok"}


@BY_SCRIPTED
@pytest.mark.parametrize("retry", [None, RetryPolicy(attempts=1)], ids=["None", "attempts=1"])
def test_one_attempt_without_retry(loop, gates, scripted, retry):
    processor = scripted(gates, {"job": [ValueError("once"), "never"]}, retry=retry)
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 1
    assert isinstance(handles["job"].future.exception(), ValueError)


@BY_SCRIPTED
def test_retry_on_selects_the_exceptions_worth_another_attempt(loop, gates, scripted):
    script = {
        "not matched": [ValueError("v"), "never"],
        "matched": [KeyError("k"), IndexError("i"), "ok"],  # both are LookupErrors
        "matched then not": [KeyError("k"), ValueError("v"), "never"],
    }
    processor = scripted(gates, script,
                         retry=RetryPolicy(attempts=4, retry_on=(LookupError, ZeroDivisionError)))
    handles = _run_scripted(loop, processor, list(script))
    assert dict(processor.calls) == {"not matched": 1, "matched": 3, "matched then not": 2}
    assert isinstance(handles["not matched"].future.exception(), ValueError)
    assert handles["matched"].future.result() == "ok"
    assert isinstance(handles["matched then not"].future.exception(), ValueError)


@pytest.mark.parametrize("retry_on", [(JobTimeoutError,), (Exception,)],
                         ids=["JobTimeoutError", "Exception"])
def test_job_timeout_error_is_retried_when_retry_on_matches_it(loop, gates, retry_on):
    processor = Scripted(gates, {"job": [BLOCK, "second attempt"]}, job_timeout=SHORT,
                         retry=RetryPolicy(attempts=2, retry_on=retry_on))
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 2
    assert handles["job"].future.result() == "second attempt"
    assert gates.cancelled == [("job", 1)]  # the timed-out attempt was cancelled


@BY_SCRIPTED
def test_job_timeout_error_is_not_retried_when_retry_on_does_not_match(loop, gates, scripted):
    processor = scripted(gates, {"job": [BLOCK, "never"]}, job_timeout=SHORT,
                         retry=RetryPolicy(attempts=3, retry_on=(KeyError,)))
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 1
    assert isinstance(handles["job"].future.exception(), JobTimeoutError)


def test_every_attempt_timing_out_ends_with_job_timeout_error(loop, gates):
    processor = Scripted(gates, {"job": [BLOCK, BLOCK, "never"]}, job_timeout=SHORT,
                         retry=RetryPolicy(attempts=2))
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 2
    assert isinstance(handles["job"].future.exception(), JobTimeoutError)
    assert gates.cancelled == [("job", 1), ("job", 2)]


@BY_SCRIPTED
def test_kill_is_never_retried(loop, gates, scripted):
    processor = scripted(gates, {"job": [BLOCK] * 5}, retry=RetryPolicy(attempts=5))

    @coroutine
    def scenario():
        processor.feed_new(["job"])
        yield From(gates.wait_started(1))
        processor.kill()
        killed = processor.get_ready()
        gates.open_all()  # a thread job ends now: its late result must not count
        yield From(gates.wait_ended(1))  # the attempt is over (cancelled, or its thread returned)
        yield From(a_later_job(scripted))  # a retry, or the late result, would be here by now
        raise Return((killed, processor.get_ready()))

    killed, late = run(loop, scenario())
    [handle] = killed
    assert handle.future.cancelled()
    assert late == set()
    assert processor.calls["job"] == 1
    if scripted is Scripted:
        assert gates.cancelled == [("job", 1)]


def test_kill_during_the_backoff_ends_the_job_without_another_attempt(loop, gates):
    processor = Scripted(gates, {"job": [ValueError("first"), "never"]},
                         retry=RetryPolicy(attempts=2, backoff=TIMEOUT * 100))

    @coroutine
    def scenario():
        processor.feed_new(["job"])
        while processor.calls["job"] < 1:
            yield From(asyncio.sleep(0))
        yield From(a_later_job(processor))  # the first attempt failed; the job waits its backoff
        processor.kill()
        killed = processor.get_ready()
        yield From(a_later_job(processor))  # a second attempt would have started by now
        raise Return(killed)

    [handle] = run(loop, scenario())  # and the loop fixture finds no task left behind
    assert handle.future.cancelled()
    assert processor.calls["job"] == 1


def test_cancellation_of_an_attempt_from_inside_is_not_retried(loop, gates):
    class CancelsItself(SeparateBatchProcessor):
        calls = 0

        @coroutine
        def _run_one_job(self, job_descriptor):
            type(self).calls += 1
            yield From(asyncio.sleep(0))
            raise CancelledError()

    processor = CancelsItself(retry=RetryPolicy(attempts=3, retry_on=(BaseException,)))
    processor.feed_new(["job"])
    [handle] = flatten(run(loop, collect(processor)))
    assert handle.future.cancelled()
    assert CancelsItself.calls == 1


def test_backoff_doubles_before_each_new_attempt(loop, gates, monkeypatch):
    delays = []
    original_sleep = asyncio.sleep

    def recording_sleep(delay, *args, **kwargs):
        if delay:
            delays.append(delay)
        return original_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    errors = [ValueError(k) for k in range(4)]
    processor = Scripted(gates, {"job": errors}, retry=RetryPolicy(attempts=4, backoff=0.5))
    handles = _run_scripted(loop, processor, ["job"])
    assert processor.calls["job"] == 4
    assert handles["job"].future.exception() is errors[3]
    assert delays == [0.5, 1.0, 2.0]  # backoff * 2 ** (k - 1) before attempt k + 1


def test_no_backoff_means_no_wait(loop, gates, monkeypatch):
    delays = []
    original_sleep = asyncio.sleep

    def recording_sleep(delay, *args, **kwargs):
        if delay:
            delays.append(delay)
        return original_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    processor = Scripted(gates, {"job": [KeyError(), KeyError(), "ok"]},
                         retry=RetryPolicy(attempts=3))
    handles = _run_scripted(loop, processor, ["job"])
    assert handles["job"].future.result() == "ok"
    assert delays == []


def test_retry_policy_is_an_attrs_class_with_the_spec_defaults():
    assert attr.has(RetryPolicy)
    assert [field.name for field in attr.fields(RetryPolicy)] == [
        "attempts", "backoff", "retry_on"]
    policy = RetryPolicy()
    assert policy.attempts == 3
    assert policy.backoff == 0.0
    assert tuple(policy.retry_on) == (Exception,)
    assert RetryPolicy(attempts=2, backoff=1.5, retry_on=(KeyError,)) == RetryPolicy(
        2, 1.5, (KeyError,))


@pytest.mark.parametrize("attempts", [0, -1, 1.5, "3", None])
def test_retry_policy_attempts_must_be_an_integer_of_at_least_one(attempts):
    with pytest.raises((ValueError, TypeError)) as info:
        RetryPolicy(attempts=attempts)
    assert "attempts" in str(info.value)


@pytest.mark.parametrize("backoff", [-0.5, -1, "1", None])
def test_retry_policy_backoff_must_be_a_non_negative_number(backoff):
    with pytest.raises((ValueError, TypeError)) as info:
        RetryPolicy(backoff=backoff)
    assert "backoff" in str(info.value)


@pytest.mark.parametrize("retry_on", [(int,), ("ValueError",), (ValueError, 3)],
                         ids=["int", "a string", "a number"])
def test_retry_policy_retry_on_takes_exception_classes(retry_on):
    with pytest.raises((ValueError, TypeError)) as info:
        RetryPolicy(retry_on=retry_on)
    assert "retry_on" in str(info.value)


def test_retry_must_be_a_retry_policy():
    with pytest.raises(TypeError) as info:
        Misbehaving(retry=3)
    assert "RetryPolicy" in str(info.value)


@BY_KIND
def test_retry_policy_is_accepted_by_both_separate_processors(loop, gates, kind):
    processor = kind(gates, max_parallel_jobs=1, job_timeout=TIMEOUT,
                     retry=RetryPolicy(attempts=2))
    assert processor.retry == RetryPolicy(attempts=2)
    gates.open_all()
    processor.feed_new([1, 2])
    handles = flatten(run(loop, collect(processor)))
    assert sorted(outcome(h) for h in handles) == [("ok", done(1)), ("ok", done(2))]


# == regressions =======================================================================

# Python 3.6 in debug mode wraps coroutines in a CoroWrapper, which once went through
# an extra wrapper task: killed before its first step, the job was never awaited.
@pytest.mark.allow_asyncio_errors  # the test checks the asyncio log itself
def test_kill_before_a_job_took_its_first_step_leaves_no_unawaited_coroutine(loop):
    errors = ErrorRecords()
    logging.getLogger("asyncio").addHandler(errors)
    processor = Misbehaving()

    @coroutine
    def scenario():
        processor.feed_new(["ok"])  # inside the running (debug) loop
        processor.kill()  # before the job's task took a step
        yield From(a_later_job(processor))  # the killed task is over by then
        raise Return(processor.get_ready())

    try:
        [handle] = run(loop, scenario())
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(errors)
    assert handle.future.cancelled()
    assert [record.getMessage() for record in errors.records] == []
