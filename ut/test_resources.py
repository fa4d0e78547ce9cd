"""Tests of shared resources: ``Resource``, ``uses=`` and ``batch_processor.devices()``.

Jobs wait on futures (coroutine jobs) or ``threading.Event`` (jobs in threads) that
the test resolves, so every ordering is forced by the test. The only clock is
``job_timeout`` itself, on a job that never ends by itself.
"""
from __future__ import absolute_import, division, print_function

import copy
import json
import os
import pickle
import threading

import pytest

import batch_processor
from batch_processor import (
    BatchProcessorsGraph, JobTimeoutError, Resource, RetryPolicy, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, devices, run_batch_processor,
    run_batch_processors_graph)
from batch_processor.compat import PY2, From, Return, asyncio, coroutine

from helpers import TIMEOUT, campaign, collect, flatten, new_future, outcome, run

SHORT = 0.05  # a job_timeout, for an attempt that never ends by itself

ALL_CLASSES = [SeparateBatchProcessor, SeparateBatchProcessorSynchronous,
               SequentialBatchProcessor, SequentialBatchProcessorSynchronous]
BY_CLASS = pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda cls: cls.__name__)


class Held(SeparateBatchProcessor):
    """A coroutine job: records its start (name, descriptor, devices), then waits for its gate."""

    def __init__(self, log, gates, started, **options):
        SeparateBatchProcessor.__init__(self, **options)
        self.log, self.gates, self.started = log, gates, started

    @coroutine
    def _run_one_job(self, descriptor):
        self.log.append((self.name, descriptor, devices()))
        waiter = self.started.get(descriptor)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        gate = self.gates.get(descriptor)
        if gate is not None:
            yield From(gate)
        if descriptor == "fail":
            raise ValueError("failed on purpose")
        raise Return(descriptor)


def _futures(loop, keys):
    return dict((key, new_future(loop)) for key in keys)


# -- bad input ------------------------------------------------------------------------

def test_a_resource_checks_its_arguments():
    assert Resource("gpu", devices=["0", "1"]).capacity == 2
    assert Resource("licence", 3).capacity == 3
    for bad in (0, -1, 1.5, True, None, "2"):
        with pytest.raises(ValueError, match="capacity"):
            Resource("licence", bad)
    with pytest.raises(TypeError, match="device ids are strings"):
        Resource("gpu", devices=[0, 1])
    with pytest.raises(TypeError, match="list of device ids"):
        Resource("gpu", devices="01")
    with pytest.raises(ValueError, match="each once"):
        Resource("gpu", devices=["0", "0"])
    with pytest.raises(ValueError, match="leave capacity out"):
        Resource("gpu", capacity=3, devices=["0", "1"])
    with pytest.raises(TypeError, match="name"):
        Resource(None, 1)


@BY_CLASS
def test_uses_is_checked_at_construction_naming_the_processor(cls):
    gpu = Resource("gpu", capacity=2)
    with pytest.raises(ValueError, match=r"'trainer'.*3 units of 'gpu'.*capacity is 2"):
        cls.from_function(lambda d: d, uses={gpu: 3}, name="trainer")
    for units in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            cls.from_function(lambda d: d, uses={gpu: units})
    with pytest.raises(TypeError, match="not a batch_processor.Resource"):
        cls.from_function(lambda d: d, uses={"gpu": 1})
    with pytest.raises(TypeError, match="give None or a dict"):
        cls.from_function(lambda d: d, uses=[gpu])
    assert cls.from_function(lambda d: d, uses={gpu: 2}).uses == {gpu: 2}
    assert cls.from_function(lambda d: d).uses is None


def test_uses_is_checked_at_assignment_naming_the_processor():
    gpu = Resource("gpu", capacity=1)
    processor = SeparateBatchProcessor.from_function(lambda d: d, name="trainer")
    with pytest.raises(ValueError, match="trainer.*capacity is 1"):
        processor.uses = {gpu: 2}
    assert processor.uses is None
    processor.uses = {gpu: 1}
    assert processor.uses == {gpu: 1}


# -- admission --------------------------------------------------------------------------

def test_a_cheap_processor_cannot_starve_a_big_one(loop):
    gpu = Resource("gpu", capacity=2)
    gates = _futures(loop, ["a1", "a2", "b1"])
    started = _futures(loop, ["a1", "a2", "b1"])
    log = []
    small = Held(log, gates, started, uses={gpu: 1}, name="small")
    big = Held(log, gates, started, uses={gpu: 2}, name="big")

    @coroutine
    def scenario():
        small.feed_new(["a1"])
        yield From(started["a1"])
        big.feed_new(["b1"])  # needs 2 units: 1 is free
        small.feed_new(["a2"])  # 1 unit is free, but the big job asked first
        assert [d for _, d, _ in log] == ["a1"] and gpu.in_use == 1
        gates["a1"].set_result(None)
        yield From(started["b1"])
        assert [d for _, d, _ in log] == ["a1", "b1"] and gpu.in_use == 2
        gates["b1"].set_result(None)
        yield From(started["a2"])
        gates["a2"].set_result(None)
        handles = flatten((yield From(collect(small)))) + flatten((yield From(collect(big))))
        raise Return(handles)

    handles = run(loop, scenario())
    assert sorted(outcome(h) for h in handles) == [("ok", "a1"), ("ok", "a2"), ("ok", "b1")]
    assert [d for _, d, _ in log] == ["a1", "b1", "a2"]
    assert gpu.in_use == 0


def test_max_parallel_jobs_and_units_both_apply(loop):
    licence = Resource("licence", capacity=3)
    gates = _futures(loop, range(4))
    started = _futures(loop, range(4))
    log = []
    capped = Held(log, gates, started, uses={licence: 1}, max_parallel_jobs=2)

    @coroutine
    def scenario():
        capped.feed_new(list(range(4)))
        yield From(started[1])
        assert len(log) == 2 and licence.in_use == 2  # the cap, not the licence, holds them
        for key in range(4):
            gates[key].set_result(None)
        raise Return(flatten((yield From(collect(capped)))))

    assert len(run(loop, scenario())) == 4
    assert licence.in_use == 0


def test_a_retry_holds_no_units_during_its_back_off(loop):
    gpu = Resource("gpu", capacity=1)
    gates = _futures(loop, ["fail"])
    started = _futures(loop, ["fail", "other"])
    log = []
    retried = Held(log, gates, started, uses={gpu: 1}, name="retried",
                   retry=RetryPolicy(attempts=2))
    other = Held(log, {}, started, uses={gpu: 1}, name="other")

    @coroutine
    def scenario():
        retried.feed_new(["fail"])
        yield From(started["fail"])
        other.feed_new(["other"])  # waits for the unit the first attempt holds
        gates["fail"].set_result(None)  # the attempt fails: its unit goes to "other" first
        rounds = yield From(collect(retried))
        rounds += yield From(collect(other))
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    assert [(name, d) for name, d, _ in log] == [
        ("retried", "fail"), ("other", "other"), ("retried", "fail")]
    assert sorted(outcome(h)[0] for h in handles) == ["failed", "ok"]
    assert gpu.in_use == 0


def test_a_timed_out_attempt_gives_its_units_back(loop):
    gpu = Resource("gpu", capacity=1)
    never = new_future(loop)
    log = []
    stuck = Held(log, {"stuck": never}, {}, uses={gpu: 1}, job_timeout=SHORT)
    other = Held(log, {}, {}, uses={gpu: 1})

    @coroutine
    def scenario():
        stuck.feed_new(["stuck"])
        other.feed_new(["other"])
        rounds = yield From(collect(stuck))
        rounds += yield From(collect(other))
        raise Return(flatten(rounds))

    handles = run(loop, scenario())
    by_descriptor = dict((h.descriptor, h) for h in handles)
    assert isinstance(by_descriptor["stuck"].future.exception(), JobTimeoutError)
    assert outcome(by_descriptor["other"]) == ("ok", "other")
    assert gpu.in_use == 0


def test_kill_gives_back_held_and_waiting_units(loop):
    gpu = Resource("gpu", capacity=1)
    gates = _futures(loop, ["held"])
    started = _futures(loop, ["held"])
    log = []
    holder = Held(log, gates, started, uses={gpu: 1})
    waiter = Held(log, {}, {}, uses={gpu: 1})
    holder.feed_new(["held"])
    waiter.feed_new(["waits"])
    run(loop, started["held"])
    assert gpu.in_use == 1 and gpu.waiting == 1
    waiter.kill()
    assert gpu.waiting == 0
    holder.kill()
    assert gpu.in_use == 0
    assert [outcome(h)[0] for h in waiter.get_ready()] == ["cancelled"]
    later = Held(log, {}, {}, uses={gpu: 1})
    later.feed_new(["later"])
    assert [outcome(h) for h in flatten(run(loop, collect(later)))] == [("ok", "later")]


def test_sequential_batches_hold_units_and_see_their_devices(loop):
    gpu = Resource("gpu", devices=["0", "1"])
    seen = []

    @coroutine
    def batch(descriptors):
        seen.append((list(descriptors), devices(), gpu.in_use))
        raise Return(list(descriptors))

    processor = SequentialBatchProcessor.from_function(batch, uses={gpu: 2})
    processor.feed_new([1, 2])
    handles = flatten(run(loop, collect(processor)))
    assert sorted(h.future.result() for h in handles) == [1, 2]
    assert seen == [([1, 2], ("0", "1"), 2)]
    assert gpu.in_use == 0


def test_a_sequential_batch_waits_for_units_and_kill_gives_them_back(loop):
    gpu = Resource("gpu", capacity=1)
    gates = _futures(loop, ["held"])
    started = _futures(loop, ["held"])
    holder = Held([], gates, started, uses={gpu: 1})
    batches = []

    @coroutine
    def batch(descriptors):
        batches.append(list(descriptors))
        raise Return(list(descriptors))

    waiting = SequentialBatchProcessor.from_function(batch, uses={gpu: 1})
    holder.feed_new(["held"])
    run(loop, started["held"])
    waiting.feed_new([1, 2])
    run(loop, _turns(loop, 3))
    assert batches == [] and gpu.waiting == 1  # the batch waits for the unit
    waiting.kill()
    assert gpu.waiting == 0
    assert sorted(outcome(h)[0] for h in waiting.get_ready()) == ["cancelled", "cancelled"]
    gates["held"].set_result(None)
    run(loop, collect(holder))
    assert gpu.in_use == 0


def test_a_retried_sequential_batch_holds_units_per_attempt(loop):
    licence = Resource("licence", capacity=1)
    attempts = []

    @coroutine
    def flaky(descriptors):
        attempts.append(licence.in_use)
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        raise Return(list(descriptors))

    processor = SequentialBatchProcessor.from_function(
        flaky, uses={licence: 1}, retry=RetryPolicy(attempts=2), job_timeout=TIMEOUT)
    processor.feed_new([1, 2])
    handles = flatten(run(loop, collect(processor)))
    assert sorted(h.future.result() for h in handles) == [1, 2]
    assert attempts == [1, 1] and licence.in_use == 0


@coroutine
def _turns(loop, count):
    """Let the loop run ``count`` turns (callbacks already scheduled run; no clock)."""
    for _ in range(count):
        yield From(asyncio.sleep(0))


def _sync_job(descriptor):
    return descriptor, devices()


def test_devices_in_threads_and_outside_jobs():
    gpu = Resource("gpu", devices=["a", "b", "c"])
    processor = SeparateBatchProcessorSynchronous.from_function(
        _sync_job, uses={gpu: 2}, max_parallel_jobs=1)
    handles = run_batch_processor(processor, [1, 2])
    assert [h.future.result() for h in handles] == [(1, ("a", "b")), (2, ("a", "b"))]
    assert devices() == ()
    batches = SequentialBatchProcessorSynchronous.from_function(
        lambda ds: [devices()] * len(ds), uses={gpu: 1})
    assert [h.future.result() for h in run_batch_processor(batches, [1])] == [("a",)]


def test_a_release_from_another_thread_wakes_a_waiter_on_this_loop(loop):
    gpu = Resource("gpu", capacity=1)
    held, release = threading.Event(), threading.Event()

    def hold(descriptor):
        held.set()
        assert release.wait(TIMEOUT)
        return descriptor

    other_thread = SeparateBatchProcessorSynchronous.from_function(hold, uses={gpu: 1})
    results = []
    thread = threading.Thread(target=lambda: results.extend(
        run_batch_processor(other_thread, ["there"])))
    thread.start()
    try:
        assert held.wait(TIMEOUT)
        log = []
        here = Held(log, {}, {}, uses={gpu: 1})
        here.feed_new(["here"])  # waits: the other run's job holds the unit
        assert log == [] and gpu.waiting == 1
        release.set()
        handles = flatten(run(loop, collect(here)))
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert [outcome(h) for h in handles] == [("ok", "here")]
    assert [outcome(h) for h in results] == [("ok", "there")]
    assert gpu.in_use == 0


def test_two_runs_in_two_threads_never_exceed_the_capacity():
    licence = Resource("licence", capacity=2)
    lock = threading.Lock()
    running, peak = [0], [0]

    def job(descriptor):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            assert licence.in_use <= licence.capacity
        with lock:
            running[0] -= 1
        return descriptor

    outcomes = []

    def one_run():
        processor = SeparateBatchProcessorSynchronous.from_function(
            job, uses={licence: 1}, max_parallel_jobs=4)
        outcomes.extend(outcome(h) for h in run_batch_processor(processor, range(20)))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(outcomes) == 40 and all(kind == "ok" for kind, _ in outcomes)
    assert peak[0] <= 2 and licence.in_use == 0


def test_uses_set_between_runs_takes_effect_in_the_next_run():
    gpu = Resource("gpu", devices=["3"])
    processor = SeparateBatchProcessorSynchronous.from_function(_sync_job)
    assert [h.future.result() for h in run_batch_processor(processor, [1])] == [(1, ())]
    processor.uses = {gpu: 1}
    assert [h.future.result() for h in run_batch_processor(processor, [2])] == [(2, ("3",))]
    processor.uses = None
    assert [h.future.result() for h in run_batch_processor(processor, [3])] == [(3, ())]


# -- copies and pickles --------------------------------------------------------------------

def test_a_resource_is_shared_by_copies_and_left_behind_by_a_pickle():
    gpu = Resource("gpu", devices=["0", "1"])
    processor = SeparateBatchProcessorSynchronous.from_function(_sync_job, uses={gpu: 1})
    assert copy.deepcopy(processor).uses == {gpu: 1}
    assert list(copy.deepcopy(processor).uses)[0] is gpu
    # A processor pickled (to a worker process, into a checkpoint) leaves its uses
    # behind: units are counted in the process that runs the graph.
    assert pickle.loads(pickle.dumps(processor)).uses is None
    state = {"restored": True}
    processor.__setstate__(state)  # as a checkpoint restores a processor
    assert processor.uses == {gpu: 1} and processor.restored
    # A Resource pickled on its own is a new one, of the same name, capacity and ids.
    resource = pickle.loads(pickle.dumps(gpu))
    assert resource is not gpu
    assert (resource.name, resource.capacity, resource.devices) == ("gpu", 2, ("0", "1"))
    licence = pickle.loads(pickle.dumps(Resource("licence", 3)))
    assert (licence.name, licence.capacity, licence.devices) == ("licence", 3, None)


def test_the_top_level_package_exports_resource_and_devices():
    assert batch_processor.Resource is Resource
    assert batch_processor.devices is devices
    assert "Resource" in batch_processor.__all__ and "devices" in batch_processor.__all__


# -- worker processes ------------------------------------------------------------------------

def _where(descriptor):
    return descriptor, devices(), os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()


def test_each_worker_process_serves_one_device_set():
    gpu = Resource("gpu", devices=["0", "1"])
    processor = SeparateBatchProcessorSynchronous.from_function(
        _where, uses={gpu: 1}, executor="processes")
    try:
        handles = run_batch_processor(processor, range(6))
    finally:
        processor.kill()
    results = [h.future.result() for h in handles]
    pids = {}
    for _, held, visible, pid in results:
        assert len(held) == 1 and visible == held[0]
        pids.setdefault(held, set()).add(pid)
    assert all(len(served) == 1 for served in pids.values())  # one worker per device set
    assert len(set.union(*pids.values())) == len(pids)  # and a worker per set
    assert gpu.in_use == 0


def _die_once(descriptor):
    marker = descriptor
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return devices(), os.getpid()


@pytest.mark.skipif(PY2, reason="the futures backport's process pool hangs when a worker "
                    "dies (SPEC.md)")
def test_a_worker_that_dies_frees_its_units_and_is_replaced(tmpdir):
    gpu = Resource("gpu", devices=["7"])
    processor = SeparateBatchProcessorSynchronous.from_function(
        _die_once, uses={gpu: 1}, executor="processes",
        retry=RetryPolicy(attempts=2, retry_on=(Exception,)))
    try:
        handles = run_batch_processor(processor, [str(tmpdir.join("died"))])
    finally:
        processor.kill()
    held, pid = handles[0].future.result()
    assert held == ("7",) and pid != os.getpid()
    assert gpu.in_use == 0


# -- the property ----------------------------------------------------------------------------

def test_graph_with_resources_units_never_exceed_capacity_and_every_job_ends():
    from hypothesis import given, settings, strategies as st

    @st.composite
    def setups(draw):
        capacities = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        specs = []
        for _ in range(draw(st.integers(1, 4))):
            chosen = draw(st.lists(st.integers(0, len(capacities) - 1), max_size=2, unique=True))
            uses = dict((i, draw(st.integers(1, capacities[i]))) for i in chosen)
            kind = draw(st.sampled_from(["separate", "threads", "sequential"]))
            cap = draw(st.one_of(st.none(), st.integers(1, 3)))
            fails = draw(st.booleans())
            specs.append((kind, uses, cap, fails))
        jobs = draw(st.integers(1, 8))
        return capacities, specs, jobs

    @settings(max_examples=campaign(40, 15), deadline=None)
    @given(setups())
    def check(setup):
        capacities, specs, jobs = setup
        resources = [Resource("r%d" % i, c) for i, c in enumerate(capacities)]
        lock = threading.Lock()
        over = []

        def look():
            with lock:
                for resource in resources:
                    if not 0 <= resource.in_use <= resource.capacity:
                        over.append(resource)

        graph = BatchProcessorsGraph()
        processors = []
        for index, (kind, uses, cap, fails) in enumerate(specs):
            uses = dict((resources[i], units) for i, units in uses.items()) or None
            retry = RetryPolicy(attempts=2) if fails else None
            if kind == "separate":
                @coroutine
                def job(d, fails=fails):
                    look()
                    yield From(asyncio.sleep(0))
                    look()
                    if fails and d % 3 == 0:
                        raise ValueError(d)
                    raise Return(d + 1)
                processor = SeparateBatchProcessor.from_function(
                    job, uses=uses, max_parallel_jobs=cap, retry=retry, name="p%d" % index)
            elif kind == "threads":
                def job(d, fails=fails):
                    look()
                    if fails and d % 3 == 0:
                        raise ValueError(d)
                    return d + 1
                processor = SeparateBatchProcessorSynchronous.from_function(
                    job, uses=uses, max_parallel_jobs=cap, retry=retry, name="p%d" % index)
            else:
                @coroutine
                def job(ds):
                    look()
                    yield From(asyncio.sleep(0))
                    raise Return([d + 1 for d in ds])
                processor = SequentialBatchProcessor.from_function(
                    job, uses=uses, max_batch_size=cap, retry=retry, name="p%d" % index)
            processors.append(processor)
            graph.add_processor(processor)
        for source, destination in zip(processors, processors[1:]):
            graph.add_connected_processors(source, destination, lambda *handles: [
                h.future.result() for h in handles if h.future.exception() is None])
        results = run_batch_processors_graph(graph, {processors[0]: list(range(jobs))},
                                             timeout=TIMEOUT)
        assert over == []
        assert len(results[processors[0]]) == jobs
        for processor in processors:
            assert all(h.future.done() for h in results[processor])
        assert [r.in_use for r in resources] == [0] * len(resources)

    check()


# -- what progress and traces show -----------------------------------------------------------

class Recorder(object):
    """An observer (as progress and traces are): the descriptors whose attempts started."""

    def __init__(self, loop):
        self.started, self.ends = [], []
        self.first = new_future(loop)

    def job_started(self, processor, key, descriptor, attempt=1):
        self.started.append(descriptor)
        if not self.first.done():
            self.first.set_result(None)

    def batch_started(self, processor, key, batch):
        self.job_started(processor, key, list(batch))

    def ended(self, key, outcome=None):
        self.ends.append(key)


def test_a_job_waiting_for_units_is_not_shown_running(loop):
    gpu = Resource("gpu", capacity=1)
    gates = _futures(loop, ["first"])
    recorder = Recorder(loop)
    processor = Held([], gates, {}, uses={gpu: 1})
    processor._bp_attach(loop).observe(recorder)
    processor.feed_new(["first", "second"])
    run(loop, recorder.first)
    assert recorder.started == ["first"]  # "second" waits for the unit
    gates["first"].set_result(None)
    run(loop, collect(processor))
    assert recorder.started == ["first", "second"]


def _pause(descriptor):
    return descriptor


def test_a_trace_never_shows_more_jobs_running_than_units(tmpdir):
    licence = Resource("licence", capacity=1)
    path = str(tmpdir.join("trace.json"))
    first = SeparateBatchProcessorSynchronous.from_function(
        _pause, uses={licence: 1}, name="first")
    second = SeparateBatchProcessor.from_function(
        _coroutine_pause, uses={licence: 1}, name="second")
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, second, lambda *handles: [
        h.future.result() for h in handles])
    run_batch_processors_graph(graph, {first: list(range(6))}, trace=path)
    with open(path) as stream:
        events = [e for e in json.load(stream) if e["ph"] == "X" and e["cat"] == "job"]
    assert len(events) == 12
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start + 1  # one at a time (1 microsecond of rounding)


@coroutine
def _coroutine_pause(descriptor):
    yield From(asyncio.sleep(0))
    raise Return(descriptor)


def _read_fifo(path):
    with open(path) as stream:
        return stream.read()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_jobs_queued_in_an_owned_pool_are_not_running_nor_abandoned(loop, tmpdir, caplog):
    fifos = [str(tmpdir.join(name)) for name in ("running", "queued")]
    for fifo in fifos:
        os.mkfifo(fifo)
    processor = SeparateBatchProcessorSynchronous.from_function(
        _read_fifo, max_parallel_jobs=1, executor="processes")
    recorder = Recorder(loop)
    processor._bp_attach(loop).observe(recorder)
    processor.feed_new(fifos)  # both go to the pool: the second waits in its queue
    run(loop, recorder.first)
    assert recorder.started == [fifos[0]]
    caplog.clear()
    processor.kill()
    abandoned = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert len(abandoned) == 1  # the running job; the queued one never started
    assert recorder.started == [fifos[0]]
    assert sorted(outcome(h)[0] for h in processor.get_ready()) == ["cancelled", "cancelled"]


class _Lines(object):
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.extend(line for line in text.splitlines() if line.strip())

    def flush(self):
        pass


def test_a_progress_line_counts_a_job_waiting_for_units_as_not_running(loop):
    from batch_processor.progress import RunProgress
    gpu = Resource("gpu", capacity=1)
    gates = _futures(loop, ["first"])
    started = _futures(loop, ["first"])
    processor = Held([], gates, started, uses={gpu: 1}, name="trainer")
    stream = _Lines()
    progress = RunProgress([processor], stream=stream, bars=False, interval=0)
    processor._bp_attach(loop).observe(progress.observer())
    progress.observed(processor)
    processor.feed_new(["first", "second"])
    progress.fed(processor, 2)
    run(loop, started["first"])
    assert progress.running(processor) == 1  # "second" waits for the unit
    assert "fed 2, running 1, done 0" in stream.lines[-1]
    gates["first"].set_result(None)
    run(loop, collect(processor))
    progress.close()
