"""A seeded campaign of hostile user objects (issue 22): jobs and batches that raise
anything (``StopIteration``, ``GeneratorExit``, custom ``BaseException``), return
``Failure(StopIteration())``, hang past ``job_timeout``; descriptors whose ``repr``
raises or is not ASCII; with or without retries and a trace; and process-pool
workers that die at random (Python 3).

Whatever the example, the run ends (``timeout=`` is only a watchdog), every
descriptor comes back in exactly one handle, and each handle holds what its job
did: its result, its exception (a ``StopIteration`` as a ``RuntimeError`` naming
the processor, never asyncio's ``TypeError``), or ``JobTimeoutError``.
Python 2.7 imports this module: no ``async``/``await``.
"""
from __future__ import absolute_import, division, print_function

import os
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_processor import (
    Failure, JobTimeoutError, RetryPolicy, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, SequentialBatchProcessorSynchronous, run_batch_processor)
from batch_processor.compat import asyncio

from helpers import TIMEOUT, campaign

PY2 = sys.version_info[0] == 2
BEHAVIOURS = ["return", "raise", "stop", "generator_exit", "custom_base", "failure_stop",
              "hang"]
RELEASE = []  # events of the hanging jobs of the current example


class Custom(BaseException):
    pass


class BadRepr(object):
    """A descriptor whose ``repr`` raises, or is a non-ASCII (byte) string."""

    def __init__(self, key, kind):
        self.key = key
        self.kind = kind

    def __repr__(self):
        if self.kind == "raises":
            raise ValueError("no repr")
        return b"caf\xc3\xa9 \xff" if PY2 else u"caf\xe9 \udcff"


def key_of(descriptor):
    return descriptor.key if isinstance(descriptor, BadRepr) else descriptor[0]


def behaviour_of(descriptor):
    return BEHAVIOURS_BY_KEY[key_of(descriptor)]


BEHAVIOURS_BY_KEY = {}


def act(descriptor, in_batch=False):
    """What the job of ``descriptor`` does; a return value, or it raises."""
    what = behaviour_of(descriptor)
    key = key_of(descriptor)
    if what == "raise":
        raise ValueError("job %d" % key)
    if what == "stop":
        raise StopIteration()
    if what == "generator_exit":
        raise GeneratorExit()
    if what == "custom_base":
        raise Custom("job %d" % key)
    if what == "hang":
        event = threading.Event()
        RELEASE.append(event)
        event.wait(TIMEOUT)
        return "late"
    if what == "failure_stop" and in_batch:
        return Failure(StopIteration())
    return key * 10


class ThreadJobs(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, descriptor):
        return act(descriptor)


class PlainJobs(SeparateBatchProcessor):
    """``_run_one_job`` is a plain function: it raises as it is called."""

    def _run_one_job(self, descriptor):
        if behaviour_of(descriptor) == "hang":
            return asyncio.sleep(TIMEOUT)
        return asyncio.sleep(0, result=act(descriptor))


class ThreadBatches(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, descriptors):
        return [act(d, in_batch=True) if behaviour_of(d) in ("return", "failure_stop") else
                Failure(_exception_of(d)) for d in descriptors]


def _exception_of(descriptor):
    try:
        act(descriptor)
    except BaseException as exc:  # noqa: B902 - what the job raised
        return exc
    return ValueError("no exception")


KINDS = {"threads": ThreadJobs, "plain": PlainJobs, "batches": ThreadBatches}


@st.composite
def examples(draw):
    kind = draw(st.sampled_from(sorted(KINDS)))
    count = draw(st.integers(1, 6))
    behaviours = [draw(st.sampled_from(BEHAVIOURS)) for _ in range(count)]
    reprs = [draw(st.sampled_from(["plain", "raises", "non-ascii"])) for _ in range(count)]
    timeout = "hang" in behaviours or draw(st.booleans())
    retry = draw(st.booleans())
    trace = draw(st.booleans())
    cap = draw(st.sampled_from([None, 1, 2])) if kind != "batches" else None
    return kind, behaviours, reprs, timeout, retry, trace, cap


def expected(kind, what, key):
    """The outcome a handle must hold: a value, or an exception class."""
    if what == "hang":
        return JobTimeoutError
    if what == "return" or (what == "failure_stop" and kind != "batches"):
        return key * 10  # Failure(...) means something in a batch's list only
    if what in ("stop", "failure_stop"):
        return RuntimeError
    return {"raise": ValueError, "generator_exit": GeneratorExit, "custom_base": Custom}[what]


@settings(max_examples=campaign(120 if not PY2 else 60, 30), deadline=None, database=None, derandomize=True)
@given(examples())
def test_hostile_jobs_never_hang_nor_lose_a_descriptor(tmpdir_factory, example):
    kind, behaviours, reprs, timeout, retry, trace, cap = example
    BEHAVIOURS_BY_KEY.clear()
    descriptors = []
    for key, (what, look) in enumerate(zip(behaviours, reprs)):
        BEHAVIOURS_BY_KEY[key] = what
        descriptors.append((key,) if look == "plain" else BadRepr(key, look))
    options = {}
    if timeout:
        options["job_timeout"] = 0.2
    if retry:
        options["retry"] = RetryPolicy(attempts=2, retry_on=(ValueError,))
    if cap is not None:
        options["max_parallel_jobs"] = cap
    if kind == "batches":
        options["max_batch_size"] = 2
    processor = KINDS[kind](**options)
    path = str(tmpdir_factory.mktemp("trace").join("t.json")) if trace else None
    try:
        handles = run_batch_processor(processor, descriptors, timeout=TIMEOUT, trace=path)
    finally:
        while RELEASE:
            RELEASE.pop().set()
    assert sorted(id(h.descriptor) for h in handles) == sorted(id(d) for d in descriptors)
    for handle in handles:
        key = key_of(handle.descriptor)
        want = expected(kind, behaviours[key], key)
        if kind == "batches" and "hang" in behaviours[key - key % 2:key - key % 2 + 2]:
            want = JobTimeoutError  # its batch (fed at once: pairs in order) timed out
        future = handle.future
        assert not future.cancelled()
        if isinstance(want, type):
            assert isinstance(future.exception(), want), (behaviours[key], future.exception())
            if want is RuntimeError:
                assert "StopIteration" in str(future.exception())
        else:
            assert future.result() == want
    if path is not None:
        import io
        import json
        with io.open(path, encoding="utf-8") as stream:
            json.load(stream)  # valid JSON, whatever the reprs


class DiesAtRandom(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, descriptor):
        if descriptor[1]:
            os._exit(3)
        return descriptor[0]


@pytest.mark.skipif(PY2, reason="the futures backport's pool hangs when a worker dies (SPEC)")
@settings(max_examples=campaign(12, 4), deadline=None, database=None, derandomize=True)
@given(st.lists(st.booleans(), min_size=1, max_size=5), st.sampled_from([1, 2]))
def test_workers_killed_at_random_never_lose_a_job(dies, workers):
    from concurrent.futures.process import BrokenProcessPool
    processor = DiesAtRandom(max_parallel_jobs=workers, executor="processes")
    descriptors = [(i, die) for i, die in enumerate(dies)]
    try:
        handles = run_batch_processor(processor, descriptors, timeout=TIMEOUT)
    finally:
        processor.kill()
    assert sorted(h.descriptor for h in handles) == descriptors
    for handle in handles:
        if handle.descriptor[1]:
            assert isinstance(handle.future.exception(), BrokenProcessPool)
        elif handle.future.exception() is None:
            assert handle.future.result() == handle.descriptor[0]
        else:  # an innocent job of a pool broken by another one's death
            assert isinstance(handle.future.exception(), BrokenProcessPool)
