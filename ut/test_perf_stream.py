"""What the streaming runners cost above the batch runners: the work, counted.

``iter_*`` must cost no more than ``run_*`` on the same graph (the benchmarks' workload
1 measures it). The costs a stream may add are counted here, not timed, so the tests
hold on any machine: how often ``next()`` runs the loop, what each run of the loop
sets up, and the garbage collector's threshold while the stream starts its jobs.
"""
from __future__ import absolute_import, division, print_function

import gc

import pytest

from batch_processor import (
    BatchProcessorsGraph, SeparateBatchProcessor, execution, iter_batch_processor,
    iter_batch_processors_graph)
from batch_processor import _interrupt
from batch_processor.compat import Return, asyncio, coroutine

from helpers import TIMEOUT


class Increment(SeparateBatchProcessor):
    @coroutine
    def _run_one_job(self, descriptor):
        raise Return(descriptor + 1)
        yield  # pragma: no cover


def _results(*handles):
    return [h.future.result() for h in handles]


def _chain(length):
    processors = [Increment() for _ in range(length)]
    graph = BatchProcessorsGraph()
    for source, destination in zip(processors, processors[1:]):
        graph.add_connected_processors(source, destination, _results)
    return graph, processors


class _Counted(object):
    """A ``loop_factory`` whose loops count their ``run_forever()`` calls."""

    def __init__(self):
        self.runs = 0

    def __call__(self):
        loop = asyncio.new_event_loop()
        run_forever = loop.run_forever

        def counted():
            self.runs += 1
            return run_forever()
        loop.run_forever = counted
        return loop


def test_next_runs_the_loop_once_per_wave_not_once_per_handle():
    graph, processors = _chain(3)
    factory = _Counted()
    n = 300
    seen = dict((processor, []) for processor in processors)
    for processor, handle in iter_batch_processors_graph(graph, {processors[0]: list(range(n))},
                                                         loop_factory=factory, timeout=TIMEOUT):
        seen[processor].append(handle.future.result())
    for index, processor in enumerate(processors):
        assert sorted(seen[processor]) == list(range(index + 1, n + index + 1))
    # Each stage's jobs end in one turn of the loop, and the handles of a turn come out
    # of next() without running the loop again: one run per stage for 900 handles (the
    # end of the run may take one more), never one per handle.
    assert factory.runs <= len(processors) + 1


def test_bounded_input_runs_the_loop_once_per_refill():
    factory = _Counted()
    n, cap = 400, 100
    handles = list(iter_batch_processor(Increment(), iter(range(n)), max_in_flight=cap,
                                        loop_factory=factory, timeout=TIMEOUT))
    assert sorted(h.future.result() for h in handles) == list(range(1, n + 1))
    assert factory.runs <= n // cap + 1  # one run per refill of the cap


@pytest.mark.usefixtures("default_sigint")
def test_the_sigint_guard_makes_its_sockets_once_per_stream_not_once_per_next(monkeypatch):
    made = []
    watch_socket = _interrupt._watch_socket

    def counted(loop):
        sockets = watch_socket(loop)
        made.append(sockets)
        return sockets
    monkeypatch.setattr(_interrupt, "_watch_socket", counted)
    n = 30
    handles = list(iter_batch_processor(Increment(), iter(range(n)), max_in_flight=1,
                                        timeout=TIMEOUT))  # one run of the loop per handle
    assert sorted(h.future.result() for h in handles) == list(range(1, n + 1))
    assert len(made) == 1
    # Closed with the stream's loop, and the signals write nowhere any more.
    assert all(sock.fileno() == -1 for sock in made[0])
    assert _interrupt.signal.set_wakeup_fd(-1) == -1


@pytest.fixture
def eager_collector():
    """The collector's first threshold well below the library's, as the test found it after."""
    saved = gc.get_threshold()
    gc.set_threshold(700, *saved[1:])
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("eager_collector")
def test_the_stream_starts_its_jobs_with_the_collector_relaxed_and_gives_it_back():
    seen = []

    def descriptors():  # read whole while the stream starts, as the jobs are started
        seen.append(gc.get_threshold()[0])
        for descriptor in range(10):
            yield descriptor
    stream = iter_batch_processor(Increment(), descriptors(), timeout=TIMEOUT)
    between = gc.get_threshold()[0]  # the caller's code runs with its own threshold
    handles = list(stream)
    assert sorted(h.future.result() for h in handles) == list(range(1, 11))
    assert seen == [execution.GC_THRESHOLD]
    assert between == 700 and gc.get_threshold()[0] == 700
