"""Streaming runners: a run's handles one by one, as soon as they are collected.

`iter_batch_processors_graph` makes a run (`_run._Run`) whose sink is a
`_Channel`: instead of keeping the handles in the result lists, the run puts them
in the channel's queue, and the iterator hands them out. ``next()`` drives the
run's loop in the caller's thread until the queue has something or the run is
over; between two ``next()`` calls the loop does not run. A handle leaves the
queue when it is yielded, so nothing of the stream holds it afterwards.

What a ``next()`` costs: one that finds handles queued pops one and runs no loop.
One that finds the queue empty runs the loop (``run_forever``) until the first
handles arrive: their arrival asks the loop to stop at the end of the turn it is
in, so every handle collected in that turn is queued, and the turn's other
callbacks run, before ``next()`` returns. The SIGINT guard's wakeup sockets are
made once per stream, not once per ``next()``.

The iterator object is referred to by nothing of the run (the channel refers to no
iterator), so dropping it finalises it at once, which kills the run.
"""
from __future__ import absolute_import, division, print_function

import collections
import itertools

from six.moves import zip

from . import compat
from ._interrupt import InterruptibleRun, WakeupSockets
from ._options import CHECKPOINT_INTERVAL, RunOptions
from .compat import asyncio
from ._graph import _single_graph
from ._run import _Run, _cancel_leftovers, _check_no_running_loop, _relaxed_gc
from .interface import BatchProcessorError

__all__ = ["iter_batch_processor", "iter_batch_processors_graph"]


class _Channel(object):
    """The sink of a streaming run: collected handles wait here to be yielded."""

    __slots__ = ("queue", "waiter", "arrived")

    def __init__(self):
        self.queue = collections.deque()  # (processor, handle), in collection order
        self.waiter = None  # a future of the loop, resolved when something arrives
        # A function of no argument, called (once) when something arrives: the
        # synchronous iterator stops its loop with it.
        self.arrived = None

    def put(self, processor, handles):
        self.queue.extend(zip(itertools.repeat(processor), handles))
        self.wake()

    def wake(self, _=None):
        arrived = self.arrived
        if arrived is not None:
            self.arrived = None
            arrived()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_all(self, processors, single):
        """Empty the queue into a partial result: a dict with a key for every
        processor (``single``: the list of the one processor's handles)."""
        results = collections.OrderedDict((processor, []) for processor in processors)
        queue = self.queue
        while queue:
            processor, handle = queue.popleft()
            results[processor].append(handle)
        if single:
            return results[processors[0]]
        return results


def start_stream(graph, initial_descriptors, loop, options, single):
    """A `_Run` on ``loop`` whose handles go to a new `_Channel`; return both.

    An error of the run's start (`SourceError`) gets the stream's ``.results``."""
    channel = _Channel()
    try:
        run = _Run(graph, initial_descriptors, loop, options, sink=channel.put)
    except BatchProcessorError as error:
        if getattr(error, "results", None) is not None:
            error.results = channel.take_all(graph.processors, single)
        raise
    run.future.add_done_callback(channel.wake)
    return run, channel


def stream_error(run, channel, processors, single):
    """The run's exception, its ``.results`` the handles not yet yielded (queue emptied)."""
    error = run.future.exception()
    if isinstance(error, BatchProcessorError) or hasattr(error, "results"):
        error.results = channel.take_all(processors, single)
    return error


def _run_until_arrival(loop, channel):
    """Run ``loop`` until something arrives in ``channel`` (or the run ends: its future's
    callback wakes the channel too), at the end of the loop's turn where it arrived."""
    stop = compat.Stopper(loop)
    channel.arrived = stop.request
    try:
        loop.run_forever()
    finally:
        channel.arrived = None
        stop.withdraw()


class _GraphIterator(object):
    """The iterator `iter_batch_processors_graph` and `iter_batch_processor` return."""

    def __init__(self, graph, initial_descriptors, options, single):
        self._ended = True  # until the run is made: nothing for __del__ to end
        _check_no_running_loop(options.runner)
        self._single = single
        self._processors = graph.processors
        loop = self._loop = (options.loop_factory or asyncio.new_event_loop)()
        self._wakeup = WakeupSockets(loop)  # made when first needed, closed with the loop
        self._ended = False
        token = compat.enter_loop(loop)
        try:
            with _relaxed_gc:  # the run starts the first jobs now: as many objects as in a step
                self._run, self._channel = start_stream(graph, initial_descriptors, loop,
                                                         options, single)
        except BaseException:
            self._ended = True
            try:
                _cancel_leftovers(loop)
            finally:
                self._wakeup.close()
                loop.close()
                compat.leave_loop(token)
            raise
        compat.leave_loop(token)
        self._queue = self._channel.queue

    def __iter__(self):
        return self

    def __next__(self):
        queue = self._queue
        item = queue.popleft() if queue else self._wait()  # nothing queued: run the loop
        return item[1] if self._single else item

    next = __next__  # Python 2

    def _wait(self):
        """The next ``(processor, handle)`` once the loop has collected one; the run's
        error, or StopIteration at its end."""
        if self._ended:
            raise StopIteration
        self._drive()
        future = self._run.future
        if future.done() and not future.cancelled() and future.exception() is not None:
            error = stream_error(self._run, self._channel, self._processors, self._single)
            self._end()
            raise error
        queue = self._channel.queue
        if not queue:
            self._end()
            raise StopIteration
        return queue.popleft()

    def _drive(self):
        """Run the loop until the run collected something or ended."""
        run, channel, loop = self._run, self._channel, self._loop
        queue, future = channel.queue, run.future
        if future.done():
            return
        interrupted = None
        token = compat.enter_loop(loop)
        try:
            with _relaxed_gc:
                with InterruptibleRun(loop, future, self._wakeup) as interrupt:
                    try:
                        while not queue and not future.done() and not interrupt.requested:
                            _run_until_arrival(loop, channel)
                    except KeyboardInterrupt as exc:
                        interrupted = exc
                    except BaseException:
                        run.cancel()
                        raise
                if interrupt.requested:
                    interrupted = KeyboardInterrupt()
        finally:
            compat.leave_loop(token)
        if interrupted is not None:  # Ctrl-C: every processor is killed, the run is over
            run.cancel()
            interrupted.results = channel.take_all(self._processors, self._single)
            self._end()
            raise interrupted

    def _end(self):
        """Kill what still runs, release the processors, close the loop."""
        if self._ended:
            return
        self._ended = True
        loop = self._loop
        token = compat.enter_loop(loop)
        try:
            self._run.cancel()
            _cancel_leftovers(loop)
        finally:
            try:
                self._wakeup.close()
            finally:
                loop.close()
                compat.leave_loop(token)
                self._channel.queue.clear()

    def close(self):
        """Stop the run now: every processor is killed, nothing is left running."""
        self._end()

    def __del__(self):
        try:
            self._end()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._end()


def iter_batch_processors_graph(graph, initial_descriptors, timeout=None, keep_results=None,
                                progress=False, loop_factory=None, max_in_flight=None,
                                checkpoint=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                                trace=None):
    """Run ``graph`` and yield ``(processor, handle)`` for each handle of the kept
    processors as soon as the run collects it.

    The run advances while the caller waits in ``next()``; a handle yielded is not
    held by the run any more. The keyword arguments are those of
    `run_batch_processors_graph`, checked at the call. An error of the run is raised
    from ``next()``, its ``.results`` a dict of the handles collected and not yet
    yielded. Closing the iterator (``close()``, leaving a ``with`` block, or dropping
    it) kills every processor and ends the run (a checkpoint records what was done
    first, so a run given the same checkpoint again resumes).
    """
    options = RunOptions(timeout, keep_results, progress, loop_factory, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="iter_batch_processors_graph")
    return _GraphIterator(graph, initial_descriptors, options, single=False)


def iter_batch_processor(batch_processor, descriptors, timeout=None, keep_results=None,
                         progress=False, loop_factory=None, max_in_flight=None, checkpoint=None,
                         checkpoint_interval=CHECKPOINT_INTERVAL, trace=None):
    """Run one processor over ``descriptors`` and yield its handles as they are collected.

    As `iter_batch_processors_graph`, yielding handles alone; errors' ``.results``
    are lists.
    """
    options = RunOptions(timeout, keep_results, progress, loop_factory, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="iter_batch_processor")
    return _GraphIterator(_single_graph(batch_processor), {batch_processor: descriptors}, options,
                          single=True)
