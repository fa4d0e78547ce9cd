"""Run observers (issue 18, item 2): named events, told only to observers that define them."""
from __future__ import absolute_import, division, print_function

import pytest

from batch_processor import (
    BatchProcessorsGraph, ConverterError, run_batch_processors_graph)
from batch_processor import _observers
from batch_processor._observers import RunObserver, dispatcher

from helpers import Separate


class Recording(RunObserver):
    """Records every event it hears, by name and with the processors' names."""

    def __init__(self, log):
        self.log = log

    def fed(self, node, descriptors, source, keys):
        self.log.append(("fed", node.processor.name, sorted(descriptors), source))

    def started(self):
        self.log.append(("started",))

    def collected(self, node, handles):
        self.log.append(("collected", node.processor.name, sorted(h.descriptor for h in handles)))

    def converted(self, node, handles, outputs):
        self.log.append(("converted", node.processor.name, sorted(h.descriptor for h in handles),
                         [(d.processor.name, sorted(ds)) for d, ds in outputs]))

    def finishing(self):
        self.log.append(("finishing",))

    def before_kill(self):
        self.log.append(("before_kill",))

    def closed(self):
        self.log.append(("closed",))


@pytest.fixture
def log(monkeypatch):
    log = []
    monkeypatch.setattr(_observers, "FEATURES",
                        _observers.FEATURES + [lambda options: Recording(log)])
    return log


def chain(converter):
    first, second = Separate(name="first"), Separate(name="second")
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, second, converter)
    return graph, first, second


def test_the_events_of_a_run_in_order(log, loop_factory):
    graph, first, _ = chain(lambda *handles: [h.future.result() * 10 for h in handles])
    run_batch_processors_graph(graph, {first: [1]}, loop_factory=loop_factory)
    assert log == [
        ("fed", "first", [1], True),
        ("started",),
        ("collected", "first", [1]),
        ("fed", "second", [20], False),
        ("converted", "first", [1], [("second", [20])]),
        ("collected", "second", [20]),
        ("converted", "second", [20], []),
        ("finishing",),
        ("closed",),
    ]


def test_a_failing_converter_never_converts_its_collection(log, loop_factory):
    def broken(*handles):
        raise ValueError("no")
    graph, first, _ = chain(broken)
    with pytest.raises(ConverterError):
        run_batch_processors_graph(graph, {first: [1]}, loop_factory=loop_factory)
    assert [event for event in log if event[0] == "converted"] == []
    assert log[-2:] == [("before_kill",), ("closed",)]
    assert log.count(("closed",)) == 1


def test_an_event_nobody_defines_costs_a_none():
    assert dispatcher([], "fed") is None
    assert dispatcher([RunObserver(), RunObserver()], "collected") is None
    recording = Recording([])
    assert dispatcher([RunObserver(), recording], "fed") == recording.fed
    assert dispatcher([recording], "converting") is None
    both = dispatcher([Recording(recording.log), recording], "started")
    both()
    assert recording.log == [("started",), ("started",)]


def test_a_run_without_features_has_no_observer():
    assert _observers.observers_for(_observers_options()) == []


def _observers_options():
    from batch_processor._options import RunOptions
    return RunOptions()
