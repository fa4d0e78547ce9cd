"""Property-based fault campaign: random graphs, processors, jobs, converters and kills.

Each example builds the processors and converters a `strategies.Scenario` describes,
runs the graph (``timeout=`` serves as a watchdog: reaching it means a hang) and
checks, whatever failed, was killed or stopped:

* every processor's handles hold exactly the descriptors fed to it (the initial
  ones plus what the converters returned for it: the very objects), each in one
  handle, and no handle appears twice;
* every successful handle holds the model's result for its descriptor, every failed
  one the exception its job raised, and a cancelled one appears only where a kill,
  a stop or an aborted run explains it (after a stop: exactly the descriptors fed
  after it);
* each converter saw every handle of its source once; jobs never ran more at once
  than ``max_parallel_jobs``, batches were never larger than ``max_batch_size``;
* a run without faults returns exactly what `strategies.simulate` computes;
* a raising converter ends the run with a `ConverterError` that names it and holds
  the same invariants in ``.results``.

Jobs that block until killed get killed by the harness a few loop turns after they
start, so every run ends; their threads are released at the end of each run.
"""
from __future__ import absolute_import, division, print_function

import collections
import gc
import logging
import sys
import threading

import pytest
from hypothesis import HealthCheck, event, given, settings

import strategies
from helpers import campaign, outcome
from batch_processor import (
    BatchProcessorResultHandle, BatchProcessorsGraph, ConverterError, ProcessorState,
    ProcessorStateError, RetryPolicy, RunTimeoutError, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, UnsafeThreadPoolExecutor, compat, run_batch_processor,
    run_batch_processor_async, run_batch_processors_graph, run_batch_processors_graph_async)
from batch_processor.compat import From, Return, asyncio, coroutine
from strategies import behaviour, convert, is_sequential, job_result

PY3 = sys.version_info[0] >= 3
WATCHDOG = 30  # seconds: a run that reaches it has hung; never a measurement

# Synchronous processors built with shared_executor use this pool. It is larger than
# the most jobs one run can feed, so threads blocked until the end of a run never
# starve the jobs of another processor.
SHARED_EXECUTOR = UnsafeThreadPoolExecutor(strategies.LIMIT + 16)

FINAL = (ProcessorState.STOPPED, ProcessorState.KILLED)


class JobFailure(Exception):
    """Raised by a job whose behaviour is "raise"."""

    def __init__(self, pid, descriptor=None, batch=None):
        Exception.__init__(self, pid, descriptor, batch)
        self.pid, self.descriptor, self.batch = pid, descriptor, batch


class ConverterBoom(Exception):
    """Raised by a converter on its ``raise_at``-th call."""


class NoEq(list):
    """A descriptor that cannot be compared (as numpy arrays cannot, usefully)."""

    __hash__ = None

    def __eq__(self, other):
        raise TypeError("a NoEq descriptor was compared: the library must not compare descriptors")

    __ne__ = __eq__


def key(descriptor):
    """The model's (hashable) form of a descriptor, a tuple or a list."""
    return tuple(descriptor)


# -- processors ---------------------------------------------------------------------------

class _Mixin(object):
    def _setup(self, harness, pid, spec):
        self.harness, self.pid, self.spec = harness, pid, spec

    def _pick_executor(self, default):
        self.harness.capture_loop()  # read in the loop's thread, once per job or batch
        return SHARED_EXECUTOR if self.spec.shared_executor else default.fget(self)


def _separate_options(spec):
    retry = None
    if spec.attempts is not None:
        retry = RetryPolicy(attempts=spec.attempts, backoff=0.0, retry_on=JobFailure)
    return dict(max_parallel_jobs=spec.cap, job_timeout=spec.job_timeout, retry=retry)


class AsyncSeparate(_Mixin, SeparateBatchProcessor):
    def __init__(self, harness, pid, spec):
        SeparateBatchProcessor.__init__(self, **_separate_options(spec))
        self._setup(harness, pid, spec)

    @coroutine
    def _run_one_job(self, job_descriptor):
        results = yield From(self.harness.async_job(self, [job_descriptor]))
        raise Return(results[0])


class SyncSeparate(_Mixin, SeparateBatchProcessorSynchronous):
    def __init__(self, harness, pid, spec):
        SeparateBatchProcessorSynchronous.__init__(self, **_separate_options(spec))
        self._setup(harness, pid, spec)

    @property
    def _executor(self):
        return self._pick_executor(SeparateBatchProcessorSynchronous._executor)

    def _run_one_job_synchronous(self, job_descriptor):
        return self.harness.sync_job(self, [job_descriptor])[0]


class AsyncSequential(_Mixin, SequentialBatchProcessor):
    def __init__(self, harness, pid, spec):
        SequentialBatchProcessor.__init__(self, max_batch_size=spec.cap)
        self._setup(harness, pid, spec)

    @coroutine
    def _run_batch(self, job_descriptors):
        results = yield From(self.harness.async_job(self, job_descriptors))
        raise Return(results)


class SyncSequential(_Mixin, SequentialBatchProcessorSynchronous):
    def __init__(self, harness, pid, spec):
        SequentialBatchProcessorSynchronous.__init__(self, max_batch_size=spec.cap)
        self._setup(harness, pid, spec)

    @property
    def _executor(self):
        return self._pick_executor(SequentialBatchProcessorSynchronous._executor)

    def _run_batch_synchronous(self, job_descriptors):
        return self.harness.sync_job(self, job_descriptors)


CLASSES = {
    "separate": AsyncSeparate,
    "separate_sync": SyncSeparate,
    "sequential": AsyncSequential,
    "sequential_sync": SyncSequential,
}


def _new_future(loop):
    create = getattr(loop, "create_future", None)
    return create() if create is not None else asyncio.Future(loop=loop)


# -- the harness: builds a scenario's graph and records what happens ---------------------

class Harness(object):
    """One example: the processors and converters, and a record of every event of a run."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.procs = [CLASSES[spec.kind](self, pid, spec) for pid, spec in enumerate(scenario.procs)]
        self.lock = threading.Lock()
        self.errors = []  # violations seen while running
        self.converters = []
        self.graph = BatchProcessorsGraph()
        for p in self.procs:
            self.graph.add_processor(p)
        for index, edge in enumerate(scenario.edges):
            converter = self._converter(index, edge)
            self.converters.append(converter)
            self.graph.add_connected_processors(self.procs[edge.src], self.procs[edge.dst], converter)
        self.release = threading.Event()
        self.over = True
        self.loop = None

    def new_run(self):
        """Forget the previous run (if any); return the initial descriptors for this one."""
        procs, scenario = self.procs, self.scenario
        self.release.set()  # threads blocked in the previous run return
        self.release = threading.Event()
        self.over = False
        self.loop = None
        self.fed = [collections.Counter() for _ in procs]  # keys of the descriptors fed
        self.fed_ids = [collections.Counter() for _ in procs]  # and the objects
        self.fed_objects = []  # keeps them alive, so that their ids stay theirs
        self.job_calls = [0] * len(procs)
        self.running = [0] * len(procs)
        self.conv_calls = [0] * len(scenario.edges)
        self.seen = [[] for _ in scenario.edges]  # the handles each converter got
        self.converter_failed = None  # (edge index, the original exception or its type)
        # pid -> Counter of what was fed before its effective stop / kill
        self.stopped_at = dict((pid, collections.Counter()) for pid, p in enumerate(procs)
                               if p.state is ProcessorState.STOPPED)
        self.killed_at = dict((pid, collections.Counter()) for pid, p in enumerate(procs)
                              if p.state is ProcessorState.KILLED)
        self.faults = []  # what happened that the fault-free model does not know
        self.stop_waiters = []  # (pid, what stop() returned)
        initial = collections.OrderedDict()
        if scenario.empty_feeds:
            for p in procs:
                initial[p] = []
        for pid, descriptor in scenario.initial:
            initial.setdefault(procs[pid], []).append(self.make(descriptor))
        return initial

    def make(self, descriptor):
        kind = self.scenario.descriptor_type
        return {"list": list, "noeq": NoEq}.get(kind, tuple)(descriptor)

    def record_fed(self, pid, descriptors):
        self.fed[pid].update(key(d) for d in descriptors)
        self.fed_ids[pid].update(id(d) for d in descriptors)
        self.fed_objects.extend(descriptors)

    def capture_loop(self):
        loop = asyncio.get_event_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            self.errors.append("a job or converter ran on another loop")

    # -- kill and stop (in the loop's thread) -------------------------------------------

    def act(self, pid, action, why):
        processor = self.procs[pid]
        before, in_flight = processor.state, processor.in_flight
        snapshot = collections.Counter(self.fed[pid])
        if action == "kill":
            processor.kill()
        else:
            self.stop_waiters.append((pid, processor.stop()))
        after = processor.state
        self.faults.append((why, action, pid, before.value, after.value))
        if processor.in_flight != in_flight:
            # Killed jobs become ready (cancelled) handles: none lost, none made up.
            self.errors.append("%s() changed in_flight of processor %d from %d to %d"
                               % (action, pid, in_flight, processor.in_flight))
        if before in FINAL:
            if after is not before:
                self.errors.append("%s() on a %s processor %d made it %s"
                                   % (action, before.value, pid, after.value))
            return
        if action == "kill":
            if after is not ProcessorState.KILLED:
                self.errors.append("kill() left processor %d %s" % (pid, after.value))
            self.killed_at[pid] = snapshot
        else:
            expected = (ProcessorState.STOPPED,) if before is ProcessorState.IDLE else (
                ProcessorState.STOPPING, ProcessorState.STOPPED)
            if after not in expected:
                self.errors.append("stop() made processor %d %s from %s"
                                   % (pid, after.value, before.value))
            self.stopped_at.setdefault(pid, snapshot)

    def _fire(self, where, index, k):
        if self.over:
            return  # a late callback of an abandoned thread
        for point in self.scenario.kill_points:
            if point.where == where and point.index == index and point.k == k:
                self.act(point.target, point.action, "%s %d call %d" % (where, index, k))

    def _call_threadsafe(self, function, *args):
        if self.over:
            return
        try:
            self.loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: the run is over
            pass

    def _on_block(self, pid):
        """A job blocks until killed: kill its processor after ``kill_delay`` loop turns."""
        if self.over:
            return
        self.faults.append(("block", pid))
        self._kill_later(pid, self.scenario.procs[pid].kill_delay)

    def _kill_later(self, pid, turns):
        if self.over:
            return
        if turns:
            self.loop.call_soon(self._kill_later, pid, turns - 1)
        else:
            self.act(pid, "kill", "blocked job")

    # -- jobs -----------------------------------------------------------------------

    def _enter(self, processor, descriptors):
        """Count a job (or batch) starting and check the processor's caps.

        Returns ``(call number, the run's counters of running jobs)`` for `_leave`.
        """
        spec, pid = processor.spec, processor.pid
        if descriptors and id(descriptors[0]) not in self.fed_ids[pid]:
            # A thread job of an earlier run that a worker took just before that run's
            # kill, and that reaches the processor's code only now: not this run's.
            return 0, [0] * len(self.procs)
        with self.lock:
            self.job_calls[pid] += 1
            self.running[pid] += 1
            running, call = self.running[pid], (self.job_calls[pid], self.running)
        if is_sequential(spec):
            if running > 1:
                self.errors.append("processor %d runs %d batches at once" % (pid, running))
            if spec.cap is not None and len(descriptors) > spec.cap:
                self.errors.append("processor %d got a batch of %d, max_batch_size=%d"
                                   % (pid, len(descriptors), spec.cap))
            if not descriptors:
                self.errors.append("processor %d got an empty batch" % pid)
        elif spec.cap is not None and running > spec.cap:
            self.errors.append("processor %d runs %d jobs at once, max_parallel_jobs=%d"
                               % (pid, running, spec.cap))
        return call

    def _leave(self, processor, call):
        with self.lock:
            call[1][processor.pid] -= 1  # the counters of the run the job started in

    def _failure(self, processor, descriptors):
        if is_sequential(processor.spec):
            return JobFailure(processor.pid, batch=tuple(key(d) for d in descriptors))
        return JobFailure(processor.pid, descriptor=key(descriptors[0]))

    @coroutine
    def async_job(self, processor, descriptors):
        """The job (Separate) or batch (Sequential) of an async processor."""
        self.capture_loop()
        call = self._enter(processor, descriptors)
        try:
            self._fire("job", processor.pid, call[0])
            behaviours = [behaviour(processor.spec, key(d)) for d in descriptors]
            if "block" in behaviours:
                self._on_block(processor.pid)
                yield From(_new_future(self.loop))  # never resolved: only the kill ends it
                self.errors.append("a blocked job of processor %d went on" % processor.pid)
            if "slow" in behaviours:
                for _ in range(1 + descriptors[0][0] % 3):
                    yield From(asyncio.sleep(0))
            if "raise" in behaviours:
                raise self._failure(processor, descriptors)
            raise Return([job_result(processor.pid, processor.spec, key(d)) for d in descriptors])
        finally:
            self._leave(processor, call)

    def sync_job(self, processor, descriptors):
        """The job (Separate) or batch (Sequential) of a synchronous processor, in a thread."""
        release = self.release
        call = self._enter(processor, descriptors)
        try:
            self._call_threadsafe(self._fire, "job", processor.pid, call[0])
            behaviours = [behaviour(processor.spec, key(d)) for d in descriptors]
            if "block" in behaviours:
                self._call_threadsafe(self._on_block, processor.pid)
                release.wait()
            if "slow" in behaviours:
                sum(range(1000 * (1 + descriptors[0][0] % 3)))
            if "raise" in behaviours:
                raise self._failure(processor, descriptors)
            return [job_result(processor.pid, processor.spec, key(d)) for d in descriptors]
        finally:
            self._leave(processor, call)

    # -- converters -----------------------------------------------------------------

    def _converter(self, index, edge):
        harness = self

        def converter(*handles):
            harness.capture_loop()
            harness.conv_calls[index] += 1
            k = harness.conv_calls[index]
            harness.seen[index].extend(handles)
            if not handles:
                harness.errors.append("converter %d called with no handle" % index)
            for handle in handles:
                if not isinstance(handle, BatchProcessorResultHandle) or not handle.future.done():
                    harness.errors.append("converter %d got %r" % (index, handle))
            harness._fire("converter", index, k)
            out = []
            for handle in handles:
                out.extend(harness.make(d)
                           for d in convert(edge, key(handle.descriptor), model_outcome(handle)))
            if edge.raise_at == k:
                return harness._fail_converter(index, edge, out)
            if edge.container == "generator":
                def generate():
                    for descriptor in out:
                        yield descriptor
                    harness.record_fed(edge.dst, out)  # fed once the runner took them all
                return generate()
            harness.record_fed(edge.dst, out)
            return tuple(out) if edge.container == "tuple" else out

        converter.__name__ = converter.__qualname__ = "converter_%d_%d_to_%d" % (
            index, edge.src, edge.dst)
        return converter

    def _fail_converter(self, index, edge, out):
        if edge.raise_how == "raise":
            exc = ConverterBoom("edge %d" % index)
            self.converter_failed = (index, exc)
            raise exc
        if edge.raise_how == "raise_in_generator":
            exc = ConverterBoom("edge %d, halfway through its generator" % index)
            self.converter_failed = (index, exc)

            def generate():
                for descriptor in out[:len(out) // 2]:
                    yield descriptor
                raise exc
            return generate()
        self.converter_failed = (index, TypeError)
        return None if edge.raise_how == "return_none" else len(out)


def model_outcome(handle):
    """A done handle as the model sees it: ``("ok", result)``, ``("fail",)`` or ``("cancelled",)``."""
    what, value = outcome(handle)
    if what == "ok":
        return ("ok", value)
    return ("fail",) if what == "failed" else ("cancelled",)


# -- running ----------------------------------------------------------------------------

def _run_in_own_loop(runner, *args, **kwargs):
    """An ``_async`` runner, on a loop the test makes, runs and closes."""
    loop = asyncio.new_event_loop()
    token = compat.enter_loop(loop)  # trollius needs it current; nothing on Python 3
    try:
        return loop.run_until_complete(runner(*args, **kwargs))
    finally:
        try:
            tasks = [task for task in compat.all_tasks(loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            loop.close()
            compat.leave_loop(token)


def run_once(harness):
    """One run of the harness's graph; checks everything; returns what happened."""
    scenario, procs = harness.scenario, harness.procs
    initial = harness.new_run()
    keep = None if scenario.keep is None else [procs[pid] for pid in scenario.keep]
    refusing = [p for p in initial if p.state in FINAL]
    if refusing:
        # Initial descriptors for a stopped or killed processor: refused before anything runs.
        with pytest.raises(ProcessorStateError):
            run_batch_processors_graph(harness.graph, initial, timeout=WATCHDOG)
        assert harness.job_calls == [0] * len(procs) and harness.conv_calls == [0] * len(
            scenario.edges), "a refused run ran something"
        for p in refusing:
            del initial[p]
    for p, descriptors in initial.items():
        harness.record_fed(procs.index(p), descriptors)

    error = None
    try:
        if len(procs) == 1 and not scenario.edges and procs[0].state not in FINAL:
            # One processor: the single-processor runners, which return a list.
            results = {procs[0]: run_single(scenario.runner, procs[0], initial, keep)}
        elif scenario.runner == "async":
            results = _run_in_own_loop(run_batch_processors_graph_async, harness.graph, initial,
                                       timeout=WATCHDOG, keep_results=keep)
        else:
            results = run_batch_processors_graph(harness.graph, initial, timeout=WATCHDOG,
                                                 keep_results=keep)
    except ConverterError as exc:
        error = exc
        results = exc.results
    except RunTimeoutError as exc:
        pytest.fail("the run hung: %s\nfaults: %r\nresults: %r" % (exc, harness.faults, exc.results))
    finally:
        harness.over = True
        harness.release.set()
    if error is None:
        assert harness.converter_failed is None, (
            "converter %d failed but the run raised nothing" % harness.converter_failed[0])
    else:
        check_converter_error(harness, error)
    check(harness, results, error)
    return error


def run_single(runner, processor, initial, keep):
    descriptors = initial.get(processor, [])
    if runner == "async":
        handles = _run_in_own_loop(run_batch_processor_async, processor, descriptors,
                                   timeout=WATCHDOG, keep_results=keep)
    else:
        handles = run_batch_processor(processor, descriptors, timeout=WATCHDOG, keep_results=keep)
    assert isinstance(handles, list)
    return handles


# -- the properties -----------------------------------------------------------------

def check(harness, results, error):
    scenario, procs = harness.scenario, harness.procs
    context = "faults: %r" % (harness.faults,)
    assert not harness.errors, (harness.errors, context)
    aborted = error is not None
    kept = set(range(len(procs)) if scenario.keep is None else scenario.keep)

    assert isinstance(results, dict)
    assert sorted(id(p) for p in results) == sorted(id(p) for p in procs), context
    handles_of = []  # per processor: its handles, or those its converters saw if not kept
    for pid, processor in enumerate(procs):
        handles = results[processor]
        assert isinstance(handles, list)
        if pid in kept:
            handles_of.append(handles)
        else:
            assert handles == [], ("keep_results dropped processor %d" % pid, context)
            seen = collections.OrderedDict()
            for index, edge in enumerate(scenario.edges):
                if edge.src == pid:
                    seen.update((id(h), h) for h in harness.seen[index])
            handles_of.append(list(seen.values()))
    every = [h for handles in handles_of for h in handles]
    assert len(set(id(h) for h in every)) == len(every), ("a handle appears twice", context)
    for handle in every:
        assert isinstance(handle, BatchProcessorResultHandle)
        assert handle.future.done(), handle

    for pid, (processor, spec) in enumerate(zip(procs, scenario.procs)):
        handles = handles_of[pid]
        killed = pid in harness.killed_at
        stopped = pid in harness.stopped_at
        if pid in kept:
            # Exactly the descriptors fed to it, each in one handle, as the very objects.
            got = collections.Counter(key(h.descriptor) for h in handles)
            assert got == harness.fed[pid], (
                "processor %d (%s): handles %r, fed %r"
                % (pid, spec.kind, sorted(got.elements()), sorted(harness.fed[pid].elements())),
                context)
            assert collections.Counter(id(h.descriptor) for h in handles) == harness.fed_ids[pid], (
                "processor %d: a handle holds another object than the descriptor fed" % pid)

        cancelled = collections.Counter()
        for handle in handles:
            descriptor, what = key(handle.descriptor), model_outcome(handle)
            if what[0] == "ok":
                assert what[1] == job_result(pid, spec, descriptor), (pid, handle, context)
                if not is_sequential(spec):
                    assert behaviour(spec, descriptor) in ("ok", "slow"), (pid, handle, context)
            elif what[0] == "fail":
                exc = handle.future.exception()
                assert isinstance(exc, JobFailure) and exc.pid == pid, (pid, handle, context)
                if is_sequential(spec):
                    assert descriptor in exc.batch, (pid, handle, context)
                    assert "raise" in [behaviour(spec, d) for d in exc.batch], (pid, handle, context)
                else:
                    assert exc.descriptor == descriptor, (pid, handle, context)
                    assert behaviour(spec, descriptor) == "raise", (pid, handle, context)
            else:
                cancelled[descriptor] += 1
        if cancelled:
            assert killed or stopped or aborted, (
                "processor %d (%s) has cancelled handles %r but was neither killed nor "
                "stopped" % (pid, spec.kind, sorted(cancelled.elements())), context)
        if pid in kept and killed:
            # What was fed after the kill is refused: it comes back cancelled.
            after_kill = harness.fed[pid] - harness.killed_at[pid]
            assert not after_kill - cancelled, (pid, after_kill, cancelled, context)
        elif pid in kept and stopped and not aborted:
            # Stop is graceful: exactly the descriptors fed after it come back cancelled.
            after_stop = harness.fed[pid] - harness.stopped_at[pid]
            assert cancelled == after_stop, (
                "processor %d (%s) stopped: cancelled %r, fed after the stop %r"
                % (pid, spec.kind, sorted(cancelled.elements()), sorted(after_stop.elements())),
                context)

        if aborted:
            assert processor.state in FINAL, (pid, processor.state, context)
        else:
            assert processor.in_flight == 0, (pid, processor.in_flight, context)
            expected = ProcessorState.IDLE
            if killed:
                expected = ProcessorState.KILLED
            elif stopped:
                expected = ProcessorState.STOPPED
            assert processor.state is expected, (pid, processor.state, context)

    # Every stop() awaitable is done: its jobs all ended, or a kill ended them.
    for pid, waiter in harness.stop_waiters:
        assert waiter.done() and waiter.exception() is None, (pid, waiter, context)

    # Each converter got every handle of its source once (some, if the run aborted),
    # except the cancelled ones of descriptors refused by a stopped or killed source.
    for index, edge in enumerate(scenario.edges):
        seen = [id(h) for h in harness.seen[index]]
        assert len(set(seen)) == len(seen), ("converter %d got a handle twice" % index, context)
        if edge.src not in kept:
            continue
        source = results[procs[edge.src]]
        assert set(seen) <= set(id(h) for h in source), (index, context)
        if not aborted:
            for handle in source:
                if id(handle) not in set(seen):
                    assert handle.future.cancelled(), (
                        "converter %d never saw %r" % (index, handle), context)
                    assert edge.src in harness.killed_at or edge.src in harness.stopped_at, (
                        index, handle, context)

    # Without faults the run gives exactly what the plain-Python model computes.
    fed, outcomes, exact = strategies.simulate(scenario)
    if exact and not harness.faults and not aborted and not (harness.killed_at or harness.stopped_at):
        event("checked against the model")
        for pid, processor in enumerate(procs):
            assert harness.fed[pid] == fed[pid], (pid, harness.fed[pid], fed[pid])
            if pid in kept:
                got = collections.Counter((key(h.descriptor), model_outcome(h)) for h in results[processor])
                assert got == outcomes[pid], (pid, sorted(got.items()), sorted(outcomes[pid].items()))


def check_converter_error(harness, exc):
    assert harness.converter_failed is not None, ("unexpected ConverterError", exc)
    index, original = harness.converter_failed
    edge = harness.scenario.edges[index]
    assert exc.converter is harness.converters[index]
    assert exc.source is harness.procs[edge.src]
    assert exc.destination is harness.procs[edge.dst]
    if isinstance(original, type):
        assert isinstance(exc.original, original), exc.original
    else:
        assert exc.original is original, exc.original
    assert exc.__cause__ is exc.original
    assert harness.converters[index].__name__ in str(exc), str(exc)


class LoopLog(logging.Handler):
    """Collects what the event loop logs at ERROR: "exception was never retrieved",
    "Task was destroyed but it is pending"... each a lost or swallowed outcome."""

    def __init__(self):
        logging.Handler.__init__(self, logging.ERROR)
        self.records = []
        self.loggers = [logging.getLogger(name) for name in ("asyncio", "trollius")]

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        for logger in self.loggers:
            logger.removeHandler(self)

    def take(self):
        records, self.records = self.records, []
        return [record.getMessage() for record in records]


@pytest.mark.allow_asyncio_errors  # checked here, per example
@settings(max_examples=campaign(300 if PY3 else 100, 60), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(strategies.scenarios())
def test_every_descriptor_comes_back_once_with_the_right_result(scenario):
    check_scenario(scenario)


def check_scenario(scenario):
    """Run ``scenario`` (twice if it says so) and check every property."""
    with LoopLog() as log:
        harness = Harness(scenario)
        try:
            error = run_once(harness)
            event("converter error" if error is not None else "run ended")
            event("faults: %s" % (", ".join(sorted(set(f[0].split()[0] for f in harness.faults)))
                                  or "none"))
            if scenario.rerun:
                event("rerun")
                run_once(harness)  # the same processors, on a new loop
        finally:
            harness.over = True
            harness.release.set()
        gc.collect(1)  # lost futures and tasks say so when they are collected (young ones suffice)
        logged = log.take()
        assert not logged, logged


class _FailsAsKilled(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        asyncio.get_event_loop().call_soon(self.kill)  # lands before the job's end is seen
        raise JobFailure(0, descriptor=job_descriptor)
        yield  # a generator: a trollius-style coroutine


class _Echo(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        raise Return(job_descriptor)
        yield  # a generator: a trollius-style coroutine


@pytest.mark.allow_asyncio_errors  # asserted here
@pytest.mark.parametrize("options", [dict(retry=RetryPolicy(attempts=2)), dict(job_timeout=60.0)],
                         ids=["retry", "job_timeout"])
def test_job_failing_as_its_processor_is_killed_logs_nothing(options):
    """Found by the campaign (on trollius, where cancel() of a done future does not
    mark its exception retrieved): the attempt that failed as the kill landed must
    not be reported as "exception was never retrieved"."""
    with LoopLog() as log:
        processor = _FailsAsKilled(**options)
        handles = run_batch_processors_graph(_single(processor), {processor: [1]})[processor]
        assert [h.future.cancelled() for h in handles] == [True]
        del handles, processor
        gc.collect()
        assert log.take() == []


@pytest.mark.parametrize("runner", ["run_batch_processor", "run_batch_processors_graph"])
def test_a_run_with_an_empty_initial_feed_ends(runner):
    """Found by the campaign: an empty initial feed once left the run waiting forever."""
    processor = _Echo()
    try:
        if runner == "run_batch_processor":
            handles = run_batch_processor(processor, [], timeout=2)
        else:
            handles = run_batch_processors_graph(_single(processor), {processor: iter(())},
                                                 timeout=2)[processor]
    except RunTimeoutError as exc:
        pytest.fail("the run with nothing to do hung: %s" % exc)
    assert handles == []


def _single(processor):
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    return graph
