"""Tests of ``batch_processor.trace``: ``trace=PATH`` writes Chrome Trace Event JSON."""
from __future__ import absolute_import, division, print_function

import io
import json
import os

import pytest

from batch_processor import (
    BatchProcessorsGraph,
    ConverterError,
    RetryPolicy,
    RunTimeoutError,
    SeparateBatchProcessor,
    run_batch_processor,
    run_batch_processor_async,
    run_batch_processor_single,
    run_batch_processors_graph,
)
from batch_processor import compat
from batch_processor.compat import From, Return, asyncio, coroutine
from helpers import BlockingEcho, FailOn, Separate, SeparateSync, Sequential, SequentialSync, run


def load(path):
    with io.open(path, encoding="utf-8") as stream:
        events = json.load(stream)
    assert isinstance(events, list)
    return events


def tracks(events):
    """``{tid: track name}`` from the ``thread_name`` metadata events."""
    return dict((e["tid"], e["args"]["name"]) for e in events
                if e["ph"] == "M" and e["name"] == "thread_name")


def complete(events, cat=None, track=None):
    names = tracks(events)
    found = [e for e in events if e["ph"] == "X" and (cat is None or e["cat"] == cat)
             and (track is None or names[e["tid"]] == track)]
    for event in found:
        assert event["dur"] >= 0 and event["ts"] >= 0
        assert set(["pid", "tid", "ts", "dur", "name", "args"]) <= set(event)
    return found


def outcomes(events, **kwargs):
    return sorted(e["args"]["outcome"] for e in complete(events, **kwargs))


@pytest.fixture
def path(tmpdir):
    return str(tmpdir.join("run.trace.json"))


def successes(*handles):
    return [h.future.result() for h in handles
            if not h.future.cancelled() and h.future.exception() is None]


class Flaky(SeparateBatchProcessor):
    """Fails the first ``failures`` attempts of each job, then returns the descriptor."""

    def __init__(self, failures, **kwargs):
        super(Flaky, self).__init__(**kwargs)
        self.failures = failures
        self.tries = {}

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        tries = self.tries[job_descriptor] = self.tries.get(job_descriptor, 0) + 1
        if tries <= self.failures:
            raise ValueError("try %d of %r" % (tries, job_descriptor))
        raise Return(job_descriptor)


class Forever(SeparateBatchProcessor):
    """Its jobs never end by themselves."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(compat.new_future(compat.current_loop()))
        raise Return(job_descriptor)


# -- what a trace holds ---------------------------------------------------------------

@pytest.mark.parametrize("kind", [Separate, SeparateSync])
def test_one_event_per_job_on_a_track_named_after_the_processor(kind, path, loop_factory):
    processor = kind(name="adder")
    handles = run_batch_processor(processor, [1, 2, 3, 4], trace=path, loop_factory=loop_factory)
    assert sorted(h.future.result() for h in handles) == [2, 3, 4, 5]
    events = load(path)
    jobs = complete(events, cat="job")
    assert len(jobs) == 4
    assert set(tracks(events)[e["tid"]] for e in jobs) == set(["adder"])
    assert sorted(e["args"]["descriptor"] for e in jobs) == ["1", "2", "3", "4"]
    assert outcomes(events, cat="job") == ["ok"] * 4
    assert all(e["args"]["processor"] == e["name"] == "adder" for e in jobs)


def test_overlapping_jobs_of_a_processor_never_overlap_on_one_track(path):
    run_batch_processor(Separate(), list(range(20)), trace=path)
    events = load(path)
    by_tid = {}
    for event in complete(events, cat="job"):
        by_tid.setdefault(event["tid"], []).append((event["ts"], event["ts"] + event["dur"]))
    for spans in by_tid.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start


@pytest.mark.parametrize("kind", [Sequential, SequentialSync])
def test_one_event_per_batch_with_its_size(kind, path):
    processor = kind(max_batch_size=2)
    run_batch_processor(processor, [1, 2, 3, 4, 5], trace=path)
    events = load(path)
    batches = complete(events, cat="batch", track=kind.__name__)
    assert len(batches) == len(processor.batches) == 3
    assert sorted(e["args"]["size"] for e in batches) == [1, 2, 2]
    assert sorted(e["args"]["descriptors"] for e in batches) == [["1", "2"], ["3", "4"], ["5"]]
    assert outcomes(events, cat="batch") == ["ok"] * 3


def test_a_batch_with_wrong_results_is_failed(path):
    processor = SequentialSync()
    processor._run_batch_synchronous = lambda descriptors: []  # one result missing
    handles = run_batch_processor(processor, [1], trace=path)
    assert isinstance(handles[0].future.exception(), ValueError)
    assert outcomes(load(path), cat="batch") == ["failed"]


def test_every_retry_is_an_event(path):
    flaky = Flaky(1, retry=RetryPolicy(attempts=3), name="flaky")
    hopeless = Flaky(5, retry=RetryPolicy(attempts=3), name="hopeless")
    graph = BatchProcessorsGraph()
    graph.add_processor(flaky)
    graph.add_processor(hopeless)
    results = run_batch_processors_graph(graph, {flaky: ["a", "b"], hopeless: ["c"]}, trace=path)
    assert sorted(h.future.result() for h in results[flaky]) == ["a", "b"]
    events = load(path)
    assert outcomes(events, track="flaky") == ["failed", "failed", "ok", "ok"]
    assert outcomes(events, track="hopeless") == ["failed"] * 3
    attempts = sorted(e["args"]["attempt"] for e in complete(events, track="hopeless"))
    assert attempts == [1, 2, 3]
    errors = [e["args"]["error"] for e in complete(events, track="hopeless")]
    assert all("ValueError" in error for error in errors)


def test_an_attempt_past_job_timeout_is_a_timeout(path):
    processor = Forever(job_timeout=0.01, retry=RetryPolicy(attempts=2))
    handles = run_batch_processor(processor, ["x"], trace=path)
    assert type(handles[0].future.exception()).__name__ == "JobTimeoutError"
    assert outcomes(load(path), cat="job") == ["timeout", "timeout"]


def test_failed_jobs_and_converter_calls(path):
    source = FailOn(bad=[2], name="source")
    sink = Separate(name="sink")
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, successes)
    run_batch_processors_graph(graph, {source: [1, 2, 3]}, trace=path)
    events = load(path)
    assert outcomes(events, track="source") == ["failed", "ok", "ok"]
    assert outcomes(events, track="sink") == ["ok", "ok"]
    calls = complete(events, cat="converter", track="converters")
    assert calls and all(e["name"] == "successes" for e in calls)
    assert sum(e["args"]["handles"] for e in calls) == 3
    assert sum(e["args"]["descriptors"] for e in calls) == 2
    assert all(e["args"]["from"] == "source" and e["args"]["to"] == "sink" for e in calls)


def test_two_processors_of_one_name_get_told_apart(path):
    left, right = Separate(), Separate()
    graph = BatchProcessorsGraph()
    graph.add_processor(left)
    graph.add_processor(right)
    run_batch_processors_graph(graph, {left: [1], right: [2]}, trace=path)
    names = set(tracks(load(path)).values())
    assert len(names - set(["converters"])) == 2
    assert all(name.startswith("Separate@") for name in names - set(["converters"]))


def test_the_async_runner_and_the_single_runner_take_it(path, loop):
    handles = run(loop, run_batch_processor_async(Separate(), [1, 2], trace=path))
    assert len(handles) == 2
    assert outcomes(load(path), cat="job") == ["ok", "ok"]
    run_batch_processor_single(Separate(), 1, trace=path)
    assert outcomes(load(path), cat="job") == ["ok"]


def test_without_trace_nothing_observes(tmpdir):
    processor = Separate()
    run_batch_processor(processor, [1])
    assert processor._bp_runtime().observer is None
    assert tmpdir.listdir() == []


def test_an_unwritable_path_is_refused_before_anything_runs(tmpdir):
    processor = Separate()
    missing = str(tmpdir.join("no such directory", "run.json"))
    with pytest.raises(ValueError, match="trace=.*cannot write the trace there"):
        run_batch_processor(processor, [1], trace=missing)
    assert processor.seen == []
    run_batch_processor(processor, [1])  # not left claimed by the failed run
    assert processor.seen == [1]


# -- valid JSON whatever the end --------------------------------------------------------

def test_valid_after_a_converter_error(path):
    source = BlockingEcho(name="source")
    sink = Separate(name="sink")
    graph = BatchProcessorsGraph()

    def broken(*handles):
        raise RuntimeError("broken")
    graph.add_connected_processors(source, sink, broken)
    try:
        with pytest.raises(ConverterError):
            run_batch_processors_graph(graph, {source: ["block", 1]}, trace=path)
    finally:
        source.release.set()
    events = load(path)
    assert outcomes(events, track="source") == ["cancelled", "ok"]  # "block" was killed
    calls = complete(events, cat="converter")
    assert [e["args"]["outcome"] for e in calls] == ["failed"]
    assert "RuntimeError" in calls[0]["args"]["error"]


def test_valid_after_a_run_timeout(path):
    source = BlockingEcho()
    try:
        with pytest.raises(RunTimeoutError):
            run_batch_processor(source, ["block"], timeout=0.05, trace=path)
    finally:
        source.release.set()
    assert outcomes(load(path), cat="job") == ["cancelled"]


def test_valid_after_a_keyboard_interrupt(path):
    source = Separate(name="source")
    sink = Forever(name="sink")
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, successes)

    def interrupt(*handles):
        raise KeyboardInterrupt
    graph.add_connected_processors(source, Separate(name="other"), interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_batch_processors_graph(graph, {source: [1]}, trace=path)
    events = load(path)
    assert outcomes(events, track="source") == ["ok"]


def test_valid_after_a_processor_is_killed(path):
    processor = Forever(name="forever")

    def kill(*handles):
        processor.kill()
        return []
    trigger = Separate(name="trigger")
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    graph.add_connected_processors(trigger, processor, kill)
    results = run_batch_processors_graph(graph, {processor: [1, 2], trigger: [0]}, trace=path)
    assert all(h.future.cancelled() for h in results[processor])
    events = load(path)
    assert outcomes(events, track="forever") == ["cancelled", "cancelled"]
    assert os.path.getsize(path) > 0


def test_a_failing_trace_file_never_fails_the_run(path, caplog, monkeypatch):
    from batch_processor import trace as trace_module
    real = trace_module.TraceWriter._write

    def write(self, event):
        if event["ph"] == "X":
            self._file.close()  # writing now raises ValueError, as a full disk raises
        real(self, event)
    monkeypatch.setattr(trace_module.TraceWriter, "_write", write)
    handles = run_batch_processor(Separate(), [1, 2, 3], trace=path)
    assert sorted(h.future.result() for h in handles) == [2, 3, 4]
    assert any("writing the trace" in r.getMessage() for r in caplog.records)
