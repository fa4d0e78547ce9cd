"""Tests of ``batch_processor.progress``: live progress of a run on stderr."""
from __future__ import absolute_import, division, print_function

import concurrent.futures
import logging

import pytest

from batch_processor import (
    BatchProcessorResultHandle,
    BatchProcessorsGraph,
    ConverterError,
    RunTimeoutError,
    SeparateBatchProcessorSynchronous,
    run_batch_processor,
    run_batch_processors_graph,
)
from batch_processor import progress as progress_module
from batch_processor.interface import describe
from batch_processor.progress import RunProgress, count_outcomes, processor_labels
from helpers import BlockingEcho


# -- processors and converters --------------------------------------------------------

class Source(BlockingEcho):
    """Named for the progress lines the tests read."""


class Worker(SeparateBatchProcessorSynchronous):
    """Returns its descriptor; fails on even ones."""

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor % 2 == 0:
            raise ValueError("even descriptor %r" % (job_descriptor,))
        return job_descriptor


class Sink(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor


def successes(*handles):
    """Converter: the results of the successful handles."""
    return [h.future.result() for h in handles
            if not h.future.cancelled() and h.future.exception() is None]


def make_graph():
    """Source fans out to two Workers, which fan in to a Sink killed before the run.

    Fed [1, 2, -3], the counts are fixed: Source ok 2 (1, 2), failed 1 (-3); each
    Worker gets [1, 2]: ok 1, failed 1; the Sink gets 1 from each Worker and, being
    killed, gives both back cancelled.
    """
    source, left, right, sink = Source(), Worker(), Worker(), Sink()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, left, successes)
    graph.add_connected_processors(source, right, successes)
    graph.add_connected_processors(left, sink, successes)
    graph.add_connected_processors(right, sink, successes)
    sink.kill()  # idle: it only refuses what comes later, cancelled
    return graph, source, left, right, sink


def expected_summary(source, left, right):
    return [
        "Source: fed 3, ok 2, failed 1, cancelled 0",
        "%s: fed 2, ok 1, failed 1, cancelled 0" % describe(left),
        "%s: fed 2, ok 1, failed 1, cancelled 0" % describe(right),
        "Sink: fed 2, ok 0, failed 0, cancelled 2",
    ]


def summary_of(text, count):
    """The last ``count`` lines of ``text``: the summary a run ends with."""
    lines = text.rstrip("\n").split("\n")
    return lines[-count:]


def without_tqdm(monkeypatch):
    monkeypatch.setattr(progress_module, "_bar_class", [None])


def with_tqdm():
    pytest.importorskip("tqdm")


class Stream(object):
    """A non-tty text stream that keeps what is written to it."""

    def __init__(self):
        self.parts = []
        self.flushes = 0

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        self.flushes += 1

    def isatty(self):
        return False

    @property
    def text(self):
        return "".join(self.parts)

    @property
    def lines(self):
        return self.text.split("\n")[:-1]


def handle(outcome, descriptor=None):
    future = concurrent.futures.Future()
    if outcome == "ok":
        future.set_result(descriptor)
    elif outcome == "failed":
        future.set_exception(ValueError(descriptor))
    else:
        assert future.cancel()
    return BatchProcessorResultHandle(descriptor, future)


# -- runs with progress=True ----------------------------------------------------------

@pytest.mark.parametrize("bars", ["tqdm", "plain"])
def test_run_shows_every_processor_and_ends_with_a_summary(bars, capfd, monkeypatch):
    if bars == "tqdm":
        with_tqdm()
    else:
        without_tqdm(monkeypatch)
    graph, source, left, right, sink = make_graph()
    results = run_batch_processors_graph(graph, {source: [1, 2, -3]}, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert summary_of(err, 4) == expected_summary(source, left, right)
    assert [count_outcomes(results[p]) for p in graph.processors] == [
        (2, 1, 0), (1, 1, 0), (1, 1, 0), (0, 0, 2)]
    live = err[:err.rindex("Source: fed 3")]  # what came before the summary
    if bars == "tqdm":
        for label in ["Source", describe(left), describe(right), "Sink"]:
            assert label + ":" in live  # a bar for each
        assert "ok 2, failed 1, cancelled 0" in live  # the bar's final postfix
        assert "3/3" in live
    else:
        assert "[batch_processor] Source: fed 3" in live


def test_run_without_progress_writes_nothing(capfd):
    source, worker = Source(), Worker()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, worker, successes)
    results = run_batch_processors_graph(graph, {source: [1, 2, 3, -1]})
    assert [count_outcomes(results[p]) for p in graph.processors] == [(3, 1, 0), (2, 1, 0)]
    assert capfd.readouterr() == ("", "")
    handles = run_batch_processor(Worker(), [1, 2], progress=False)
    assert count_outcomes(handles) == (1, 1, 0)
    assert capfd.readouterr() == ("", "")


def test_run_batch_processor_with_progress(capfd, monkeypatch):
    without_tqdm(monkeypatch)
    handles = run_batch_processor(Worker(), [1, 2, 3], progress=True)
    assert count_outcomes(handles) == (2, 1, 0)
    out, err = capfd.readouterr()
    assert out == ""
    assert summary_of(err, 1) == ["Worker: fed 3, ok 2, failed 1, cancelled 0"]


@pytest.mark.parametrize("bars", ["tqdm", "plain"])
def test_summary_after_a_converter_error_counts_the_killed_jobs(bars, capfd, monkeypatch):
    if bars == "tqdm":
        with_tqdm()
    else:
        without_tqdm(monkeypatch)
    source, sink = Source(), Sink()

    def broken(*handles):
        raise RuntimeError("broken converter")

    graph = BatchProcessorsGraph()
    graph.add_connected_processors(source, sink, broken)
    try:
        # 1's handle reaches the converter while "block" waits for the release (or
        # for a thread): the kill cancels it.
        with pytest.raises(ConverterError) as info:
            run_batch_processors_graph(graph, {source: ["block", 1]}, progress=True)
    finally:
        source.release.set()
    assert count_outcomes(info.value.results[source]) == (1, 0, 1)
    out, err = capfd.readouterr()
    assert out == ""
    assert summary_of(err, 2) == [
        "Source: fed 2, ok 1, failed 0, cancelled 1",
        "Sink: fed 0, ok 0, failed 0, cancelled 0",
    ]


def test_summary_after_a_run_timeout(capfd, monkeypatch):
    without_tqdm(monkeypatch)
    source = Source()
    try:
        with pytest.raises(RunTimeoutError) as info:
            # "block" never ends before the release, so the run always times out.
            run_batch_processor(source, ["block"], timeout=0.05, progress=True)
    finally:
        source.release.set()
    assert count_outcomes(info.value.results) == (0, 0, 1)
    out, err = capfd.readouterr()
    assert out == ""
    assert summary_of(err, 1) == ["Source: fed 1, ok 0, failed 0, cancelled 1"]


# -- RunProgress by itself ------------------------------------------------------------

def test_labels_name_classes_and_tell_apart_instances_of_one_class():
    source, left, right, sink = Source(), Worker(), Worker(), Sink()
    assert processor_labels([source, left, right, sink]) == [
        "Source", describe(left), describe(right), "Sink"]
    assert describe(left) != describe(right)
    assert processor_labels([]) == []


def test_count_outcomes():
    handles = [handle("ok", 1), handle("failed", 2), handle("cancelled", 3), handle("ok", 4)]
    assert count_outcomes(handles) == (2, 1, 1)
    assert count_outcomes(iter(handles)) == (2, 1, 1)
    assert count_outcomes([]) == (0, 0, 0)


def test_plain_lines_fed_done_close():
    source, worker = Source(), Worker()
    stream = Stream()
    progress = RunProgress([source, worker], stream=stream, bars=False, interval=0)
    assert stream.text == ""
    progress.fed(source, 3)
    assert stream.lines == ["[batch_processor] Source: fed 3, done 0 (ok 0, failed 0, cancelled 0)"]
    progress.done(source, [handle("ok"), handle("failed"), handle("cancelled")])
    assert stream.lines[-1] == (
        "[batch_processor] Source: fed 3, done 3 (ok 1, failed 1, cancelled 1)")
    progress.fed(worker, 1)
    progress.done(worker, [handle("ok")])
    assert stream.lines[-2:] == [
        "[batch_processor] Worker: fed 1, done 0 (ok 0, failed 0, cancelled 0)",
        "[batch_processor] Worker: fed 1, done 1 (ok 1, failed 0, cancelled 0)",
    ]
    assert progress.counts(source) == (3, 1, 1, 1)
    assert progress.counts(worker) == (1, 1, 0, 0)
    before = len(stream.lines)
    progress.close()
    assert stream.lines[before:] == [
        "Source: fed 3, ok 1, failed 1, cancelled 1",
        "Worker: fed 1, ok 1, failed 0, cancelled 0",
    ]
    assert stream.flushes > 0
    after = stream.text
    progress.close()  # closing again changes nothing
    progress.fed(source, 1)  # nor do late calls
    progress.done(source, [handle("ok")])
    assert stream.text == after


def test_plain_lines_are_throttled_and_close_shows_the_last_counts():
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream, bars=False, interval=3600)
    progress.fed(source, 2)  # the first change is shown at once
    assert stream.lines == ["[batch_processor] Source: fed 2, done 0 (ok 0, failed 0, cancelled 0)"]
    progress.done(source, [handle("ok")])  # within the interval: not shown
    progress.done(source, [handle("failed")])
    progress.fed(source, 5)
    assert len(stream.lines) == 1
    progress.close()
    assert stream.lines[1:] == ["Source: fed 7, ok 1, failed 1, cancelled 0"]


def test_a_throttled_change_is_drawn_later_on_the_running_loop(monkeypatch):
    calls = []

    class Timer(object):
        cancelled = False

        def cancel(self):
            self.cancelled = True

    class FakeLoop(object):
        def call_later(self, delay, callback, *args):
            timer = Timer()
            calls.append((delay, callback, args, timer))
            return timer

    monkeypatch.setattr(progress_module.compat, "running_loop", lambda: FakeLoop())
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream, bars=False, interval=3600)
    progress.fed(source, 2)
    assert calls == []  # drawn at once
    progress.done(source, [handle("ok")])
    progress.done(source, [handle("ok")])
    assert len(calls) == 1  # one timer for any number of changes
    delay, callback, args, timer = calls[0]
    assert 0 < delay <= 3600
    assert len(stream.lines) == 1
    callback(*args)
    assert stream.lines[1:] == ["[batch_processor] Source: fed 2, done 2 (ok 2, failed 0, cancelled 0)"]
    progress.done(source, [handle("cancelled")])
    assert len(calls) == 2
    progress.close()
    assert calls[1][3].cancelled  # close() cancels the pending timer
    assert stream.lines[2:] == ["Source: fed 2, ok 2, failed 0, cancelled 1"]


def test_thousands_of_handles_per_call():
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream, bars=False, interval=3600)
    handles = ([handle("ok")] * 3000 + [handle("failed")] * 2000 + [handle("cancelled")] * 1000)
    progress.fed(source, 12000)
    progress.done(source, handles)
    progress.done(source, handles)
    progress.close()
    assert stream.lines[-1] == "Source: fed 12000, ok 6000, failed 4000, cancelled 2000"


def test_unknown_processors_and_empty_calls_are_ignored():
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream, bars=False, interval=0)
    progress.fed(Worker(), 3)
    progress.done(Worker(), [handle("ok")])
    progress.fed(source, 0)
    progress.done(source, [])
    assert stream.text == ""
    progress.close()
    assert stream.lines == ["Source: fed 0, ok 0, failed 0, cancelled 0"]


def test_tqdm_bars_on_a_non_tty_stream():
    with_tqdm()
    source, left, right = Source(), Worker(), Worker()
    stream = Stream()
    progress = RunProgress([source, left, right], stream=stream, bars=True)
    assert progress._bars is not None
    progress.fed(source, 4)
    progress.done(source, [handle("ok"), handle("ok"), handle("failed"), handle("cancelled")])
    progress.fed(left, 2)
    progress.done(left, [handle("ok")])
    progress.close()
    text = stream.text
    for label in ["Source", describe(left), describe(right)]:
        assert label + ":" in text
    assert "4/4" in text and "1/2" in text  # done out of fed, on the bars
    assert "ok 2, failed 1, cancelled 1" in text
    assert stream.lines[-3:] == [
        "Source: fed 4, ok 2, failed 1, cancelled 1",
        "%s: fed 2, ok 1, failed 0, cancelled 0" % describe(left),
        "%s: fed 0, ok 0, failed 0, cancelled 0" % describe(right),
    ]
    assert progress._bars is None  # the bars were closed


def test_bars_true_without_tqdm_says_what_to_install(monkeypatch):
    without_tqdm(monkeypatch)
    with pytest.raises(ImportError, match="pip install tqdm"):
        RunProgress([Source()], stream=Stream(), bars=True)


def test_without_tqdm_the_default_is_plain_lines(monkeypatch):
    without_tqdm(monkeypatch)
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream)
    progress.fed(source, 1)
    progress.close()
    assert stream.lines == ["[batch_processor] Source: fed 1, done 0 (ok 0, failed 0, cancelled 0)",
                            "Source: fed 1, ok 0, failed 0, cancelled 0"]


def test_a_failing_stream_never_fails_the_run(caplog):
    class Broken(Stream):
        def write(self, text):
            raise IOError("disk full")

    caplog.set_level(logging.WARNING, logger="batch_processor")
    source = Source()
    progress = RunProgress([source], stream=Broken(), bars=False, interval=0)
    progress.fed(source, 1)  # fails to draw: logged once, then quiet
    progress.done(source, [handle("ok")])
    progress.close()
    assert progress.counts(source) == (1, 1, 0, 0)
    warnings = [r for r in caplog.records if r.name == "batch_processor"]
    assert len(warnings) == 1
    assert "progress display failed" in warnings[0].getMessage()


# -- running counts, cycles and long jobs ---------------------------------------------

class FakeLoop(object):
    """Records ``call_later`` calls; the test runs the callbacks itself."""

    def __init__(self):
        self.calls = []

    def call_later(self, delay, callback, *args):
        timer = FakeTimer(delay, callback, args)
        self.calls.append(timer)
        return timer

    def pending(self):
        return [timer for timer in self.calls if not timer.cancelled and not timer.ran]


class FakeTimer(object):
    def __init__(self, delay, callback, args):
        self.delay, self.callback, self.args = delay, callback, args
        self.cancelled = self.ran = False

    def cancel(self):
        self.cancelled = True

    def run(self):
        self.ran = True
        self.callback(*self.args)


def test_running_counts_the_attempts_that_started_and_did_not_end():
    source, worker = Source(), Worker()
    stream = Stream()
    progress = RunProgress([source, worker], stream=stream, bars=False, interval=0)
    observer = progress.observer()
    progress.observed(source)
    progress.fed(source, 3)
    assert progress.running(source) == 0  # fed, none started yet
    assert stream.lines[-1] == (
        "[batch_processor] Source: fed 3, running 0, done 0 (ok 0, failed 0, cancelled 0)")
    observer.job_started(source, "a", 1)
    observer.job_started(source, "b", 2)
    assert progress.running(source) == 2
    observer.ended("a")
    progress.done(source, [handle("ok")])
    assert progress.running(source) == 1
    assert stream.lines[-1] == (
        "[batch_processor] Source: fed 3, running 1, done 1 (ok 1, failed 0, cancelled 0)")
    observer.ended("b")  # a retry comes next: in flight, not running
    observer.ended("b")  # ending twice changes nothing
    assert progress.running(source) == 0
    observer.batch_started(worker, "batch", [1, 2])  # not observed: fed - done counts
    progress.fed(worker, 2)
    assert progress.running(worker) == 2
    progress.done(source, [handle("cancelled"), handle("cancelled")])  # killed
    assert progress.running(source) == 0
    progress.close()
    assert stream.lines[-2:] == ["Source: fed 3, ok 1, failed 0, cancelled 2",
                                 "Worker: fed 2, ok 0, failed 0, cancelled 0"]


def test_a_batch_counts_all_its_jobs_and_a_killed_attempt_never_goes_below_zero():
    source = Source()
    progress = RunProgress([source], stream=Stream(), bars=False, interval=0)
    observer = progress.observer()
    progress.observed(source)
    progress.fed(source, 3)
    observer.batch_started(source, "batch", [1, 2, 3])
    assert progress.running(source) == 3
    progress.done(source, [handle("cancelled")] * 3)  # the kill handed them back first
    assert progress.running(source) == 0
    observer.ended("batch")
    assert progress.running(source) == 0
    progress.close()


def test_a_run_shows_running_counts_in_plain_lines(capfd, monkeypatch):
    without_tqdm(monkeypatch)
    source = Source()
    run_batch_processor(source, [1, 2], progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "[batch_processor] Source: fed 2, running " in err
    assert summary_of(err, 1) == ["Source: fed 2, ok 2, failed 0, cancelled 0"]


def test_no_bar_is_complete_before_the_run_ends(monkeypatch):
    """A cycle: all that Source was fed is done, but the Worker's output may come back."""
    with_tqdm()
    monkeypatch.setattr(progress_module.compat, "running_loop", lambda: None)
    source, worker = Source(), Worker()
    stream = Stream()
    progress = RunProgress([source, worker], stream=stream, bars=True, interval=0)
    progress.fed(source, 1)
    assert "0/1" in stream.text
    progress.done(source, [handle("ok")])
    progress.fed(worker, 1)
    progress.done(worker, [handle("ok")])  # nothing in flight for a moment, between steps
    progress.fed(source, 2)  # fed again around the cycle
    progress.done(source, [handle("ok")])
    live = stream.text
    assert "1/?" in live  # Source: done all it was fed so far, more may come
    assert "1/3" in live
    assert "100%" not in live and "1/1" not in live
    progress.done(source, [handle("ok")])
    assert "3/?" in stream.text
    progress.close()
    final = stream.text[len(live):]
    assert "3/3" in final and "1/1" in final  # the totals, when the run is over
    assert "100%" in final


def test_bars_are_redrawn_on_a_timer_while_work_is_in_flight(monkeypatch):
    with_tqdm()
    loop = FakeLoop()
    monkeypatch.setattr(progress_module.compat, "running_loop", lambda: loop)
    source = Source()
    stream = Stream()
    progress = RunProgress([source], stream=stream, bars=True)

    def beats():
        return [timer for timer in loop.pending() if timer.callback == progress._on_heartbeat]

    progress.fed(source, 1)  # a long job starts
    assert [timer.delay for timer in beats()] == [progress_module.BAR_INTERVAL]
    for _ in range(3):  # nothing ends, yet the bar is redrawn and the timer re-armed
        before = len(stream.parts)
        beats()[0].run()
        assert len(stream.parts) > before
        assert [timer.delay for timer in beats()] == [progress_module.BAR_INTERVAL]
    progress.done(source, [handle("ok")])  # nothing in flight: the next beat is the last
    for timer in loop.pending():
        timer.run()
    assert beats() == []
    progress.fed(source, 1)  # busy again: the timer comes back
    assert len(beats()) == 1
    progress.close()
    assert loop.pending() == []  # close() cancels it
    assert stream.lines[-1] == "Source: fed 2, ok 1, failed 0, cancelled 0"


def test_plain_lines_have_no_periodic_timer(monkeypatch):
    without_tqdm(monkeypatch)
    loop = FakeLoop()
    monkeypatch.setattr(progress_module.compat, "running_loop", lambda: loop)
    source = Source()
    progress = RunProgress([source], stream=Stream(), interval=3600)
    progress.fed(source, 1)
    assert loop.calls == []  # a plain line is written only when something changed
    progress.close()


def test_labels_use_the_processors_names():
    fast, slow = Worker(name="fast"), Worker(name="slow")
    twin = Worker(name="fast")
    assert processor_labels([fast, slow]) == ["fast", "slow"]
    labels = processor_labels([fast, twin])
    assert labels[0] != labels[1] and all(label.startswith("fast@") for label in labels)
