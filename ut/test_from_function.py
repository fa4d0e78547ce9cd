"""``from_function(fn, **options)`` on the four processor classes."""
from __future__ import absolute_import, division, print_function

import copy
import multiprocessing
import os
import pickle

import pytest

from batch_processor import (
    SeparateBatchProcessor, SeparateBatchProcessorSynchronous, SequentialBatchProcessor,
    SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor.compat import Return, coroutine


def square(x):
    return x * x


def squares(xs):
    return [x * x for x in xs]


def square_and_pid(x):
    return x * x, os.getpid()


@coroutine
def square_async(x):
    raise Return(x * x)


@coroutine
def squares_async(xs):
    raise Return([x * x for x in xs])


CASES = [(SeparateBatchProcessor, square_async), (SeparateBatchProcessorSynchronous, square),
         (SequentialBatchProcessor, squares_async), (SequentialBatchProcessorSynchronous, squares)]


@pytest.mark.parametrize("cls, fn", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_from_function_runs_fn_and_is_named_after_it(cls, fn):
    processor = cls.from_function(fn)
    assert isinstance(processor, cls)
    assert processor.name == fn.__name__
    handles = run_batch_processor(processor, [1, 2, 3])
    assert sorted(h.future.result() for h in handles) == [1, 4, 9]
    clone = pickle.loads(pickle.dumps(processor))
    assert clone.fn is fn and clone.name == fn.__name__
    assert copy.copy(processor).fn is fn


def test_options_go_to_the_constructor():
    processor = SequentialBatchProcessorSynchronous.from_function(
        squares, max_batch_size=2, name="sq")
    assert processor.name == "sq" and processor.max_batch_size == 2
    with pytest.raises(ValueError):
        SeparateBatchProcessorSynchronous.from_function(square, max_parallel_jobs=0)
    with pytest.raises(TypeError) as info:
        SeparateBatchProcessor.from_function(3)
    assert "SeparateBatchProcessor" in str(info.value)


def test_processes_run_a_module_level_function():
    processor = SeparateBatchProcessorSynchronous.from_function(
        square_and_pid, executor="processes", max_parallel_jobs=1)
    try:
        handles = run_batch_processor(processor, [2, 3])
        assert sorted(h.future.result()[0] for h in handles) == [4, 9]
        assert os.getpid() not in set(h.future.result()[1] for h in handles)
    finally:
        processor.stop()
    assert multiprocessing.active_children() == []


def test_processes_refuse_an_unpicklable_function():
    with pytest.raises(TypeError) as info:
        SeparateBatchProcessorSynchronous.from_function(lambda x: x, executor="processes")
    assert "module level" in str(info.value)
