"""A checkpointed run that a test watches while it goes (`LiveRun`), and what it runs.

The graph: ``trainer`` (a Separate processor whose jobs on ``free`` descriptors end at
once and whose other jobs wait until the test releases them, one at a time or all)
feeding ``scorer`` (which fails on descriptors whose repr is hostile HTML). The test
waits for records with `LiveRun.wait_for` (an event set after each record), never
with sleeps.
"""
from __future__ import absolute_import, division, print_function

import itertools
import threading

import six

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessorSynchronous, run_batch_processors_graph)
from batch_processor import checkpoint as checkpoint_module
from batch_processor.watch import read_checkpoint

TIMEOUT = 30  # seconds; only a safety net against hangs

_GATES = {}  # key -> threading.Semaphore: a processor keeps its key only, so it pickles
_KEYS = itertools.count()


class Hostile(object):
    """A descriptor whose repr is HTML that would run if a page did not escape it."""

    def __init__(self, number):
        self.number = number

    def __repr__(self):
        return "<script>alert(%d)</script>" % self.number

    def __eq__(self, other):
        return isinstance(other, Hostile) and other.number == self.number

    def __hash__(self):
        return hash(self.number)


class Trainer(SeparateBatchProcessorSynchronous):
    """Descriptors in ``free`` return at once; the others wait for a `LiveRun.release`."""

    def __init__(self, key, free, **kwargs):
        super(Trainer, self).__init__(**kwargs)
        self.key = key
        self.free = list(free)

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor not in self.free:
            gate = _GATES[self.key]
            if not (gate.acquire(timeout=TIMEOUT) if six.PY3 else gate.acquire()):
                raise RuntimeError("the test never released %r" % (job_descriptor,))
        return job_descriptor


class Scorer(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        if isinstance(job_descriptor, Hostile):
            raise ValueError("cannot score <b>%r</b>" % (job_descriptor,))
        return job_descriptor * 10


def to_scorer(*handles):
    return [h.future.result() for h in handles if h.future.exception() is None]


class LiveRun(object):
    """Runs the graph over ``descriptors`` in a thread, recording into ``path``."""

    def __init__(self, path, descriptors, free, interval=0.02, monkeypatch=None, uses=None):
        self.path = path
        self.key = next(_KEYS)
        self.gate = _GATES[self.key] = threading.Semaphore(0)
        self.trainer = Trainer(self.key, free, name="trainer", max_parallel_jobs=4, uses=uses)
        self.scorer = Scorer(name="scorer")
        self.graph = BatchProcessorsGraph()
        self.graph.add_connected_processors(self.trainer, self.scorer, to_scorer)
        self.descriptors = list(descriptors)
        self.interval = interval
        self.recorded = threading.Condition()
        self.records = 0
        self.result = None
        self.error = None
        original = checkpoint_module.Recorder.record
        live = self

        def record(recorder, *args, **kwargs):
            written = original(recorder, *args, **kwargs)
            with live.recorded:
                live.records += 1
                live.recorded.notify_all()
            return written

        monkeypatch.setattr(checkpoint_module.Recorder, "record", record)
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            self.result = run_batch_processors_graph(
                self.graph, {self.trainer: self.descriptors}, checkpoint=self.path,
                checkpoint_interval=self.interval)
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            with self.recorded:
                self.recorded.notify_all()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.release(len(self.descriptors))
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the watched run did not end"

    def release(self, count=1):
        for _ in range(count):
            self.gate.release()

    def wait_for(self, condition, reader=read_checkpoint):
        """Wait, record after record, until ``condition(reader(path))``; return that reading."""
        seen = 0
        for _ in range(int(TIMEOUT / self.interval) + 10):
            with self.recorded:
                while self.records == seen and self.thread.is_alive():
                    self.recorded.wait(TIMEOUT)
                seen = self.records
            status = reader(self.path)
            if condition(status):
                return status
            if not self.thread.is_alive():
                break
        raise AssertionError("the checkpoint never showed what the test waits for: %r; run error: %r"
                             % (status, self.error))
