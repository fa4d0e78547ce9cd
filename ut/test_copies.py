"""Copies and pickles of processors are processors that run: the runtime is never copied."""
from __future__ import absolute_import, division, print_function

import copy
import gc
import pickle

import pytest

import helpers
from batch_processor import (
    ProcessorState, SeparateBatchProcessor, SeparateBatchProcessorSynchronous,
    SequentialBatchProcessor, SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor import execution
from batch_processor.compat import Return, coroutine


class Stage(object):
    """Configuration a user would give a processor: a function and some state."""

    def __init__(self, fn=helpers.inc, **kwargs):
        super(Stage, self).__init__(**kwargs)
        self.fn = fn
        self.table = {"weights": list(range(10))}


class Separate(Stage, SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, job_descriptor):
        raise Return(self.fn(job_descriptor))
        yield  # a generator: trollius style


class SeparateSync(Stage, SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        return self.fn(job_descriptor)


class Sequential(Stage, SequentialBatchProcessor):
    @coroutine
    def _run_batch(self, job_descriptors):
        raise Return([self.fn(d) for d in job_descriptors])
        yield


class SequentialSync(Stage, SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return [self.fn(d) for d in job_descriptors]


KINDS = [Separate, SeparateSync, Sequential, SequentialSync]


def results(handles):
    return sorted(handle.future.result() for handle in handles)

COPIES = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda processor: pickle.loads(pickle.dumps(processor, pickle.HIGHEST_PROTOCOL)),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_of_a_processor_that_ran_runs_on_its_own(kind, how):
    original = kind(name="stage")
    assert results((run_batch_processor(original, [1, 2]))) == [2, 3]
    clone = COPIES[how](original)
    assert clone is not original
    assert clone.name == "stage"
    assert clone.state is ProcessorState.IDLE and clone.in_flight == 0
    assert results((run_batch_processor(clone, [5, 6]))) == [6, 7]
    # ... and the original still runs, with a runtime of its own.
    assert results((run_batch_processor(original, [7]))) == [8]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_of_a_killed_processor_is_a_fresh_one(kind, how):
    original = kind()
    original.kill()
    clone = COPIES[how](original)
    assert original.state is ProcessorState.KILLED
    assert clone.state is ProcessorState.IDLE
    assert results((run_batch_processor(clone, [1]))) == [2]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_a_pickle_holds_the_processors_attributes_and_no_runtime(kind):
    processor = kind(name="kept")
    run_batch_processor(processor, [1])
    state = processor.__getstate__()
    assert "_bp_rt" not in state
    assert state["_name"] == "kept"
    clone = pickle.loads(pickle.dumps(processor))
    assert clone.fn is helpers.inc and clone.table == processor.table


def test_the_collector_threshold_can_be_left_alone(monkeypatch):
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        monkeypatch.setattr(execution, "GC_THRESHOLD", None)
        assert run_batch_processor(helpers_threshold(), [1])[0].future.result() == 700
        monkeypatch.setattr(execution, "GC_THRESHOLD", 12345)
        assert run_batch_processor(helpers_threshold(), [1])[0].future.result() == 12345
        assert gc.get_threshold()[0] == 700
    finally:
        gc.set_threshold(*before)


def helpers_threshold():
    return SeparateSync(fn=lambda _: gc.get_threshold()[0])
