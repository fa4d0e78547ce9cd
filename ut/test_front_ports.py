"""The port contract (``_runtime.Port``): the same scenarios through a library
processor's runtime and through the `PublicPort` of a hand-written processor."""
from __future__ import absolute_import, division, print_function

import pytest

from batch_processor import (
    ProcessorState, ProcessorStateError, SeparateBatchProcessor)
from batch_processor._runtime import Port, PublicPort, Runtime, attach
from batch_processor import compat
from batch_processor.compat import From, Return, asyncio, coroutine

import helpers
from helpers import new_future, outcome


class GatedJobs(SeparateBatchProcessor):
    """Job ``d`` ends with ``d`` when the test calls ``open(d)``."""

    def __init__(self, loop):
        super(GatedJobs, self).__init__()
        self.gates = {}
        self.loop = loop

    def gate(self, descriptor):
        if descriptor not in self.gates:
            self.gates[descriptor] = new_future(self.loop)
        return self.gates[descriptor]

    def open(self, descriptor):
        self.gate(descriptor).set_result(None)

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(self.gate(job_descriptor))
        raise Return(job_descriptor)


HandWritten = helpers.Delegating  # the public contract by hand



@pytest.fixture(params=["runtime", "public"])
def ported(request, loop):
    """``(port, jobs)``: a port of either kind, and the `GatedJobs` behind it."""
    jobs = GatedJobs(loop)
    if request.param == "runtime":
        port = attach(jobs, loop)
        assert isinstance(port, Runtime)
    else:
        port = attach(HandWritten(jobs), loop)
        assert isinstance(port, PublicPort)
    assert isinstance(port, Port)
    yield port, jobs
    jobs.kill()
    left = [task for task in compat.all_tasks(loop) if not task.done()]
    if left:  # the killed jobs' tasks end at the loop's next turn
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


class Events(object):
    """The port's callbacks, recorded; ``next_ready()`` is a future of the next ready call."""

    def __init__(self, loop):
        self.loop = loop
        self.seen = []
        self.waiter = None
        self.ready = self._ready  # one bound method: release() compares by identity

    def _ready(self):
        self.seen.append("ready")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def busy(self):
        self.seen.append("busy")

    def next_ready(self):
        self.waiter = new_future(self.loop)
        return self.waiter


def test_the_listener_fires_on_ready_handles_only_and_busy_on_idle_to_busy(ported, loop):
    port, jobs = ported
    events = Events(loop)
    port.listen(events.ready, events.busy)
    assert port.in_flight == 0 and port.state is ProcessorState.IDLE
    port.feed([1, 2])
    assert events.seen == ["busy"]  # no "ready" for idle -> busy: no empty step
    assert port.in_flight == 2 and port.state is ProcessorState.RUNNING
    assert port.take_ready() == []
    for descriptor in (1, 2):
        ready = events.next_ready()
        jobs.open(descriptor)
        helpers.run(loop, ready)
        (handle,) = port.take_ready()
        assert outcome(handle) == ("ok", descriptor)
    assert events.seen == ["busy", "ready", "ready"]
    assert port.in_flight == 0 and port.state is ProcessorState.IDLE
    port.feed([3])  # idle again: busy again
    assert events.seen[-1] == "busy"
    port.kill()
    port.release(events.ready)


def test_kill_ends_every_job_cancelled_and_refuses_feeds(ported, loop):
    port, jobs = ported
    events = Events(loop)
    port.listen(events.ready, events.busy)
    port.feed([1, 2])
    ready = events.next_ready()
    port.kill()
    helpers.run(loop, ready)
    handles = port.take_ready()
    assert sorted(h.descriptor for h in handles) == [1, 2]
    assert all(outcome(h) == ("cancelled", None) for h in handles)
    assert port.in_flight == 0 and port.state is ProcessorState.KILLED
    with pytest.raises(ProcessorStateError):
        port.feed([3])
    port.release(events.ready)


def test_release_stops_the_callbacks(ported, loop):
    port, jobs = ported
    events = Events(loop)
    port.listen(events.ready, events.busy)
    port.feed([1])
    port.release(events.ready)
    jobs.open(1)
    done = new_future(loop)
    jobs.gate(1).add_done_callback(lambda _: loop.call_soon(done.set_result, None))
    helpers.run(loop, done)
    while port.in_flight and not port.take_ready():
        helpers.run(loop, jobs.wait_ready())
    port.feed([2])
    assert events.seen == ["busy"]
    port.kill()


def test_observers_and_fault_watchers(ported, loop):
    port, _ = ported
    observing = port.observe(None)
    assert observing is isinstance(port, Runtime)  # a hand-written processor's jobs are its own
    port.watch_faults(None)
    port.configure()
