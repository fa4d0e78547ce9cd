"""Initial iterables that raise (issue 22, items 1 and 2): a `SourceError` naming the
processor, never a raw exception nor a hang, read whole or lazily, on every runner."""
from __future__ import absolute_import, division, print_function

import pytest

from batch_processor import (
    BatchProcessorsGraph, ProcessorState, SourceError, execution, iter_batch_processor,
    run_batch_processor, run_batch_processors_graph)

from helpers import PY2, Separate, descriptors_of


class Custom(BaseException):
    """A user's exception that is not an ``Exception``."""


def raising(exc, after=2):
    for i in range(after):
        yield i
    raise exc


RAISED = [KeyError("boom"), TypeError("bad item"), GeneratorExit(), Custom("custom")]
IDS = ["KeyError", "TypeError", "GeneratorExit", "Custom"]


@pytest.mark.parametrize("exc", RAISED, ids=IDS)
@pytest.mark.parametrize("max_in_flight", [None, 1], ids=["whole", "lazy"])
def test_a_source_that_raises_is_a_source_error_naming_the_processor(exc, max_in_flight,
                                                                    loop_factory):
    processor = Separate(name="the_reader")
    other = Separate(name="other")
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    graph.add_processor(other)
    with pytest.raises(SourceError) as info:
        run_batch_processors_graph(graph, {processor: raising(exc), other: [7]},
                                   max_in_flight=max_in_flight, timeout=30,
                                   loop_factory=loop_factory)
    error = info.value
    assert error.original is exc and error.processor is processor
    if not PY2:
        assert error.__cause__ is exc
    assert "the_reader" in str(error)
    assert list(error.results) == [processor, other]
    assert processor.state is ProcessorState.KILLED and other.state is ProcessorState.KILLED
    assert id(processor) not in execution._claimed and id(other) not in execution._claimed
    if max_in_flight is None:  # read whole: nothing ran
        assert processor.seen == [] and other.seen == []
        assert error.results == {processor: [], other: []}
    else:  # what was fed came back
        assert descriptors_of(error.results[processor]) == [0, 1]


@pytest.mark.parametrize("exc", RAISED, ids=IDS)
@pytest.mark.parametrize("max_in_flight", [None, 1], ids=["whole", "lazy"])
def test_one_processor_gives_a_list(exc, max_in_flight):
    with pytest.raises(SourceError) as info:
        run_batch_processor(Separate(), raising(exc, after=0), max_in_flight=max_in_flight)
    assert info.value.results == []


@pytest.mark.parametrize("exc", RAISED, ids=IDS)
@pytest.mark.parametrize("max_in_flight", [None, 1], ids=["whole", "lazy"])
def test_in_a_stream(exc, max_in_flight):
    got = []
    with pytest.raises(SourceError) as info:
        for handle in iter_batch_processor(Separate(), raising(exc), max_in_flight=max_in_flight):
            got.append(handle)
    assert info.value.original is exc
    assert len(got) + len(info.value.results) == (0 if max_in_flight is None else 2)


def test_a_list_is_still_read_whole_and_a_non_iterable_is_a_type_error():
    processor = Separate()
    assert descriptors_of(run_batch_processor(processor, [1, 2])) == [1, 2]
    with pytest.raises(TypeError, match="iterable"):
        run_batch_processor(Separate(), 3)
    with pytest.raises(TypeError, match="iterable"):
        run_batch_processor(Separate(), 3, max_in_flight=1)
