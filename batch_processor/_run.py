"""``batch_processor._run``: one run of a graph (`_Run`) and the helpers of runners.

A run (`_Run`) is event-driven: each processor calls back when it has ready
handles, the run collects them, passes them through the converters of the
processor's outgoing edges and feeds the results on. Nothing polls and nothing
sleeps, and the cost of a step is that of the processors that had something to
say: idle processors cost nothing. The run ends when no processor has anything in
flight. ``execution`` (the batch runners) and ``_streaming`` (the streaming
runners) both build on this module, which imports neither.
"""
from __future__ import absolute_import, division, print_function

import collections
import itertools
import gc
import logging
import numbers
import threading

import six

from . import compat
from ._graph import BatchProcessorsGraph
from ._runtime import Observers, attach
from .compat import asyncio
from .interface import (
    AbstractBatchProcessor, BatchProcessorError, ConverterError, GraphError, Handle,
    ProcessorState, ProcessorStateError, RunTimeoutError,
    SourceError, as_descriptor_list, check_seconds, describe, processor_labels, safe_repr, safe_str)

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Dict  # noqa: F401

logger = logging.getLogger("batch_processor")

_REFUSING = (ProcessorState.STOPPING, ProcessorState.STOPPED, ProcessorState.KILLED)


def _converter_name(converter):
    """How messages call a converter; never raises, whatever the converter is."""
    for attribute in ("__qualname__", "__name__"):
        try:
            name = getattr(converter, attribute, None)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            name = None
        if isinstance(name, six.string_types) and name:
            return name
    return safe_repr(converter)


# Processors taking part in a run now, by id: one run at a time each.
_claimed = {}  # type: Dict[int, _Run]
_claimed_lock = threading.Lock()


class _Node(object):
    """A processor as one run sees it: the processor, its port, its outgoing edges."""

    __slots__ = ("processor", "port", "out", "kept", "mark")

    def __init__(self, processor, kept):
        self.processor = processor
        self.port = None  # attached when the run starts
        self.out = []  # (destination node, converter)
        self.kept = kept  # the list its handles go to, or None
        self.mark = None


class _Run(object):
    """One run of a graph on ``loop``; ``future`` gets the result dict.

    Two extension points:

    * ``sink``: ``None`` keeps the handles of the kept processors in the result
      lists. A callable ``sink(processor, handles)`` gets them instead, as soon as
      they are collected (the result lists then stay empty): the streaming runners
      consume handles this way.
    * ``max_in_flight``: ``None`` reads the initial iterables whole at the start. An
      integer ``n`` keeps them as iterators (``_sources``) and reads them lazily,
      round-robin, while fewer than ``n`` jobs are in flight (``in_flight``: fed and
      not yet collected); see `_refill`.
    """

    def __init__(self, graph, initial_descriptors, loop, timeout=None, keep_results=None,
                 progress=False, max_in_flight=None, sink=None, checkpoint=None,
                 checkpoint_interval=1.0, trace=None):
        if not isinstance(graph, BatchProcessorsGraph):
            raise TypeError("expected a BatchProcessorsGraph, got %s" % safe_repr(graph))
        self.loop = loop
        self.trace = None
        self.timeout = _check_timeout(timeout)
        self.max_in_flight = _check_max_in_flight(max_in_flight)
        self.sink = sink
        self.in_flight = 0  # jobs fed by this run and not yet collected
        processors = graph.processors
        kept_ids = _kept_ids(graph, keep_results)
        self.results = collections.OrderedDict()
        nodes = {}
        for processor in processors:
            handles = []
            self.results[processor] = handles
            kept = kept_ids is None or id(processor) in kept_ids
            nodes[id(processor)] = _Node(processor, handles if kept else None)
        for source, destination, converter in graph.edges:
            nodes[id(source)].out.append((nodes[id(destination)], converter))
        self.nodes = nodes
        feeds = _initial_feeds(graph, initial_descriptors, nodes, lazy=self.max_in_flight is not None)
        self._sources = collections.deque()  # [node, iterator] still to read, lazily
        if self.max_in_flight is not None:
            order = dict((id(processor), i) for i, processor in enumerate(processors))
            feeds.sort(key=lambda feed: order[id(feed[0].processor)])  # the graph's order
            self._sources.extend([node, iterator] for node, iterator, _, _ in feeds)
            feeds = []
        self.progress = None
        self.future = compat.new_future(loop)
        self._dirty = collections.deque()
        self._busy = set()
        self._scheduled = False
        self._timer = None
        self.recorder = None
        self._observer = None
        if trace is not None:
            from .trace import TraceWriter
            self.trace = TraceWriter(trace, processors)
        try:
            self._claim()
        except BaseException:
            self._close()
            raise
        if checkpoint is not None:
            ordered = [nodes[id(processor)] for processor in processors]
            try:
                restored, pending = self._open_checkpoint(
                    checkpoint, checkpoint_interval, graph, ordered)
            except BaseException:
                self._close()
                raise
            if self.recorder.finished:
                self._close()
                self.future.set_result(self.results)
                return
            feeds = self._resumed_feeds(feeds, restored, pending, ordered)
        if progress:
            from .progress import RunProgress
            self.progress = RunProgress(processors)
        self._observer = self._make_observer()
        try:
            for node in six.itervalues(nodes):
                node.port = attach(node.processor, loop)
                if self._observer is not None and node.port.observe(self._observer):
                    if self.progress is not None:
                        self.progress.observed(node.processor)
                node.mark = self._marker(node)
                node.port.listen(node.mark)
                watch = getattr(node.port, "watch_faults", None)
                if watch is not None:
                    watch(self.library_bug)
                if node.port.in_flight:
                    self._busy.add(node)
        except BaseException:
            self._close()
            raise
        try:
            for node, descriptors, source, keys in feeds:
                self._feed(node, descriptors, source, keys)
        except BaseException:  # KeyboardInterrupt: nothing is left running
            self.kill_all()
            self._close()
            raise
        if self.recorder is not None:
            self.recorder.start()
        if self.timeout is not None:
            self._timer = loop.call_later(self.timeout, self._on_timeout)
        self.future.add_done_callback(self._on_future_done)
        self._schedule()

    # -- checkpoints ----------------------------------------------------------------

    def _open_checkpoint(self, path, interval, graph, ordered):
        """Open the run's checkpoint; return what an earlier run recorded in it."""
        from .checkpoint import Recorder
        self.recorder = recorder = Recorder(path, graph, ordered, interval, self.loop)
        try:
            restored, pending = recorder.load()
        except BaseException:
            recorder.close(write=False)
            raise
        for index, handles in sorted(restored.items()):
            ordered[index].kept.extend(handles)
        if recorder.finished:
            recorder.close(write=False)
            logger.warning("checkpoint=%r is of a finished run: its recorded result is returned "
                           "and nothing runs; delete the file (or use another path) to run "
                           "the graph again", recorder.path)
        elif recorder.resumed:
            logger.warning("checkpoint=%r: resuming a run that stopped; %d handles recorded, "
                           "%d jobs to run again", recorder.path,
                           sum(len(h) for h in restored.values()), len(pending))
        return restored, pending

    def _resumed_feeds(self, feeds, restored, pending, ordered):
        """The feeds of a resumed run: its jobs in flight again, then untaken initial items."""
        taken = self.recorder.taken
        again = collections.OrderedDict()
        for index, key, descriptor in pending:
            keys, descriptors = again.setdefault(index, ([], []))
            keys.append(key)
            descriptors.append(descriptor)
        resumed = [(ordered[index], descriptors, False, keys)
                   for index, (keys, descriptors) in again.items()]
        for node, descriptors, source, keys in feeds:
            skip = taken[ordered.index(node)]
            resumed.append((node, descriptors[skip:], source, keys))
        for entry in self._sources:  # lazy sources: skip what the first run took
            entry[1] = itertools.islice(entry[1], taken[ordered.index(entry[0])], None)
        return resumed

    # -- wiring ---------------------------------------------------------------------

    def _claim(self):
        with _claimed_lock:
            for node in six.itervalues(self.nodes):
                other = _claimed.get(id(node.processor))
                if other is not None:
                    raise ProcessorStateError(
                        "%s is already part of a running graph; a processor runs in one graph "
                        "at a time: wait for that run to end, or use another instance"
                        % describe(node.processor))
            for node in six.itervalues(self.nodes):
                _claimed[id(node.processor)] = self

    def _release(self):
        with _claimed_lock:
            for node in six.itervalues(self.nodes):
                if _claimed.get(id(node.processor)) is self:
                    del _claimed[id(node.processor)]
                if node.port is not None:
                    node.port.release(node.mark)
                    if self._observer is not None:
                        node.port.observe(None)
                    unwatch = getattr(node.port, "watch_faults", None)
                    if unwatch is not None:
                        unwatch(None)

    def _make_observer(self):
        """What watches the processors' attempts: the trace, the progress, both or nothing."""
        observers = []
        if self.trace is not None:
            observers.append(self.trace)
        if self.progress is not None:
            observers.append(self.progress.observer())
        if len(observers) > 1:
            return Observers(observers)
        return observers[0] if observers else None

    def _marker(self, node):
        dirty = self._dirty

        def mark():
            if self.future.done():
                return
            dirty.append(node)
            if not self._scheduled:
                self._schedule()
        return mark

    def _schedule(self):
        self._scheduled = True
        self.loop.call_soon(self._step)

    # -- the work -------------------------------------------------------------------

    def _feed(self, node, descriptors, source=False, keys=None):
        if not descriptors:
            return
        if self.recorder is not None:
            self.recorder.fed(node, descriptors, source, keys)
        try:
            node.port.feed(descriptors)
        except ProcessorStateError:
            self._refuse(node, descriptors)
            return
        self.in_flight += len(descriptors)
        if self.progress is not None:
            self.progress.fed(node.processor, len(descriptors))
        self._busy.add(node)

    def _refuse(self, node, descriptors):
        """Descriptors for a stopped or killed processor come back cancelled."""
        logger.warning("%s is %s: %d descriptors for it are returned cancelled",
                       describe(node.processor), node.processor.state.value, len(descriptors))
        handles = []
        for descriptor in descriptors:
            future = compat.new_future(self.loop)
            future.cancel()
            handles.append(Handle(descriptor, future))
        if self.progress is not None:
            self.progress.fed(node.processor, len(handles))
            self.progress.done(node.processor, handles)
        if self.recorder is not None:
            self.recorder.collected(node, handles)
        if node.kept is not None:
            self._deliver(node, handles)

    def _deliver(self, node, handles):
        """Hand the collected ``handles`` of a kept processor to the result or the sink."""
        if self.sink is None:
            node.kept.extend(handles)
        else:
            self.sink(node.processor, handles)

    def _refill(self):
        """Read the lazy sources, round-robin, while fewer than ``max_in_flight`` jobs
        are in flight; feed what was read. False when a source raised (the run is over)."""
        sources = self._sources
        while sources and self.in_flight < self.max_in_flight:
            budget = self.max_in_flight - self.in_flight
            batches = collections.OrderedDict()  # node id -> (node, descriptors)
            failure = None
            while budget > 0 and sources:
                entry = sources[0]
                try:
                    descriptor = next(entry[1])
                except StopIteration:
                    sources.popleft()
                    continue
                except Exception as exc:  # the user's iterable: the run stops
                    sources.clear()
                    failure = (entry[0], exc)
                    break
                except BaseException:  # KeyboardInterrupt raised while reading
                    sources.clear()
                    self.kill_all()
                    self._close()
                    raise
                sources.rotate(-1)
                node = entry[0]
                batch = batches.get(id(node))
                if batch is None:
                    batch = batches[id(node)] = (node, [])
                batch[1].append(descriptor)
                budget -= 1
            for node, descriptors in six.itervalues(batches):
                self._feed(node, descriptors, True)
            if failure is not None:
                self._abort(self._source_error(*failure))
                return False
        return True

    def _source_error(self, node, exc):
        error = SourceError(
            "the initial descriptors for %s raised %s while the run read them; the run was "
            "stopped, every processor killed, and the partial results are in .results. "
            "Make the iterable for %s end without raising (catch errors inside the "
            "generator), or give a list" % (
                describe(node.processor), safe_str(exc), describe(node.processor)),
            processor=node.processor, original=exc)
        error.__cause__ = exc
        return error

    def _step(self):
        self._scheduled = False
        if self.future.done():
            return
        dirty, busy = self._dirty, self._busy
        convert = self._convert if self.trace is None else self._convert_traced
        try:
            while dirty:
                node = dirty.popleft()
                handles = self._collect(node)
                if handles:
                    for destination, converter in node.out:
                        descriptors = convert(converter, handles, node, destination)
                        if descriptors:
                            self._feed(destination, descriptors)
                if node.port.in_flight:
                    busy.add(node)  # also fed by someone else (a converter, a job)
                else:
                    busy.discard(node)
        except _ConverterFailure as failure:
            self._abort(failure.error)
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a bug of the library: end the run, never hang
            self.library_bug(exc, "the run's step")
            return
        if self._sources and not self._refill():
            return
        if not busy and not self._sources:
            self._finish()

    def library_bug(self, exc, where):
        """A callback of the library raised ``exc``: kill everything, end the run with an error."""
        logger.error("batch_processor: %s raised %s; this is a bug of batch_processor (please "
                     "report it); every processor is killed and the run ends",
                     where, safe_str(exc), exc_info=(type(exc), exc, getattr(exc, "__traceback__", None)))
        error = BatchProcessorError(
            "%s raised %s: this is a bug of batch_processor, please report it; the run was "
            "stopped, every processor killed, and the partial results are in .results"
            % (where, safe_str(exc)))
        error.__cause__ = exc
        error.original = exc
        try:
            self.kill_all()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # pragma: no cover - the kill itself is broken
            logger.exception("batch_processor: killing the processors failed too")
        self._dirty.clear()
        self._busy.clear()
        error.results = self.results
        self._close()
        if not self.future.done():
            self.future.set_exception(error)

    def _collect(self, node):
        """Take the ready handles of ``node``'s processor, keep and count them; return them."""
        handles = node.port.take_ready()
        if handles:
            if self.recorder is not None:
                self.recorder.collected(node, handles)
            self.in_flight -= len(handles)
            if self.in_flight < 0:  # jobs fed by hand before the run started
                self.in_flight = 0
            if node.kept is not None:
                self._deliver(node, handles)
            if self.progress is not None:
                self.progress.done(node.processor, handles)
        return handles

    def _convert_traced(self, converter, handles, source, destination):
        trace = self.trace
        started = trace.now()
        try:
            descriptors = self._convert(converter, handles, source, destination)
        except _ConverterFailure as failure:
            trace.converter_call(converter, started, source.processor, destination.processor,
                                 len(handles), 0, failure.error.original)
            raise
        trace.converter_call(converter, started, source.processor, destination.processor,
                             len(handles), len(descriptors))
        return descriptors

    def _convert(self, converter, handles, source, destination):
        try:
            descriptors = converter(*handles)
            if isinstance(descriptors, list):
                return descriptors
            if descriptors is None or isinstance(descriptors, (six.string_types, bytes)):
                raise TypeError("it returned %s, not an iterable of descriptors"
                                % safe_repr(descriptors))
            try:
                iterator = iter(descriptors)
            except TypeError:
                raise TypeError("it returned %s, not an iterable of descriptors"
                                % safe_repr(descriptors))
            return list(iterator)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # GeneratorExit, custom BaseException: a failure too
            error = ConverterError(
                "the converter %s from %s to %s failed: %s; the run was stopped and every "
                "processor killed. A converter must return an iterable of descriptors (a list, "
                "maybe empty) and handle failed and cancelled handles itself: check "
                "handle.future.cancelled() and handle.future.exception() before .result()"
                % (_converter_name(converter), describe(source.processor),
                   describe(destination.processor), safe_str(exc)),
                converter=converter, source=source.processor,
                destination=destination.processor, original=exc)
            error.__cause__ = exc
            raise _ConverterFailure(error)

    # -- the end --------------------------------------------------------------------

    def _finish(self):
        recorder = self.recorder
        if recorder is not None:
            try:
                recorder.close(finished=True)
            except Exception as exc:
                from .checkpoint import CheckpointError
                error = CheckpointError(
                    "the run ended but its last record could not be written to checkpoint=%r "
                    "(%s); the results are in .results, and running again resumes from the "
                    "record before" % (recorder.path, safe_str(exc)))
                error.__cause__ = exc
                self._abort(error)
                return
        self._close()
        self.future.set_result(self.results)

    def _record_before_kill(self):
        """Write what the run has done before it kills everything (kills are not recorded)."""
        recorder = self.recorder
        if recorder is not None:
            try:
                recorder.close(finished=False)
            except Exception:
                logger.warning("the last record of checkpoint=%r could not be written; running "
                               "again resumes from the record before", recorder.path,
                               exc_info=True)

    def _on_timeout(self):
        self._timer = None
        if self.future.done():
            return
        labels = processor_labels(node.processor for node in six.itervalues(self.nodes))
        busy_ids = set(id(node) for node in self._busy)
        busy = sorted(set(label for node, label in zip(six.itervalues(self.nodes), labels)
                          if id(node) in busy_ids))
        self._abort(RunTimeoutError(
            "the run did not end within timeout=%s s; every processor was killed and the "
            "partial results are in .results; still busy: %s"
            % (self.timeout, ", ".join(busy) or "nothing")))

    def _abort(self, error):
        """Kill everything, collect what is ready and end the run with ``error``."""
        self._record_before_kill()
        self.kill_all()
        error.results = self.results
        self._close()
        if not self.future.done():
            self.future.set_exception(error)

    def kill_all(self):
        """Kill every processor and collect all their handles, without converting them."""
        for node in six.itervalues(self.nodes):
            node.processor.kill()
        for node in six.itervalues(self.nodes):
            self._collect(node)
        self._dirty.clear()
        self._busy.clear()
        self._sources.clear()

    def cancel(self):
        """End the run at once from outside (a stream closed early): kill every
        processor, release them all, and cancel ``future``."""
        if self.future.done():
            return
        self.kill_all()
        self._close()
        self.future.cancel()

    def _on_future_done(self, future):
        if future.cancelled():  # the caller cancelled the run
            self._record_before_kill()
            self.kill_all()
            self._close()

    def _close(self):
        if self.recorder is not None:
            self.recorder.close(write=False)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release()
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        if self.trace is not None:
            trace, self.trace = self.trace, None
            trace.close()


class _ConverterFailure(Exception):
    def __init__(self, error):
        Exception.__init__(self, error)
        self.error = error


def _check_timeout(timeout):
    return check_seconds(None, "timeout", timeout)


def _kept_ids(graph, keep_results):
    if keep_results is None:
        return None
    if isinstance(keep_results, AbstractBatchProcessor):
        keep_results = [keep_results]
    kept = set()
    for processor in keep_results:
        if processor not in graph:
            raise GraphError(
                "keep_results names %s, which is not in the graph; name processors of the "
                "graph (or None to keep every handle)" % describe(processor))
        kept.add(id(processor))
    return kept


def _check_max_in_flight(max_in_flight):
    if max_in_flight is not None and (
            not isinstance(max_in_flight, numbers.Integral) or isinstance(max_in_flight, bool)
            or max_in_flight < 1):
        raise ValueError(
            "max_in_flight=%s: give None (read the initial descriptors whole at the start) "
            "or an int >= 1 (jobs in flight at most while they are read)"
            % safe_repr(max_in_flight))
    return max_in_flight


def _lazy_iterator(descriptors, processor):
    """``iter(descriptors)``, with `as_descriptor_list`'s errors for what is not iterable."""
    if isinstance(descriptors, (six.string_types, bytes)):
        as_descriptor_list(descriptors, processor)  # raises its TypeError
    try:
        return iter(descriptors)
    except TypeError:
        return as_descriptor_list(descriptors, processor)  # raises its TypeError


def _initial_feeds(graph, initial_descriptors, nodes, lazy=False):
    if initial_descriptors is None:
        initial_descriptors = {}
    if not hasattr(initial_descriptors, "items"):
        raise TypeError(
            "initial_descriptors must map processors of the graph to iterables of "
            "descriptors, got %s" % safe_repr(initial_descriptors))
    feeds = []
    for processor, descriptors in initial_descriptors.items():
        if processor not in graph:
            raise GraphError(
                "initial_descriptors names %s, which is not in the graph; add it with "
                "graph.add_processor() first" % (
                    describe(processor) if isinstance(processor, AbstractBatchProcessor)
                    else safe_repr(processor),))
        if processor.state in _REFUSING:
            raise ProcessorStateError(
                "%s is %s and accepts no new jobs; give initial descriptors to processors "
                "that are neither stopped nor killed" % (describe(processor), processor.state.value))
        if lazy:
            feeds.append((nodes[id(processor)], _lazy_iterator(descriptors, processor), True, None))
        else:
            feeds.append((nodes[id(processor)], as_descriptor_list(descriptors, processor), True, None))
    return feeds


# -- helpers of the synchronous runners ----------------------------------------

class _RelaxedGC(object):
    """Raise the cyclic collector's first threshold while synchronous runs go on.

    A run moves jobs in waves: a stage's tasks are created in one burst while the
    previous stage's handles are alive, so with the default threshold (700) the
    collector runs full collections over a large heap again and again, and most of
    a big run's time goes there. The threshold, `GC_THRESHOLD` when the first
    concurrent run starts, is restored when the last one ends; a collector that is
    off (threshold 0) or already less eager is left alone.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None
        self._raised = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                from . import execution  # its GC_THRESHOLD, which users may set
                threshold = execution.GC_THRESHOLD
                self._saved = gc.get_threshold()
                self._raised = None
                if threshold and self._saved[0] and self._saved[0] < threshold:
                    gc.set_threshold(threshold, *self._saved[1:])
                    self._raised = threshold
            self._depth += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                if self._raised is not None and gc.get_threshold()[0] == self._raised:
                    gc.set_threshold(*self._saved)  # nobody else changed it meanwhile
                self._saved = self._raised = None


_relaxed_gc = _RelaxedGC()


def _check_no_running_loop(name):
    if compat.running_loop() is not None:
        raise RuntimeError(
            "%s() cannot run inside a running event loop; use %s_async() there "
            "(`await %s_async(...)`, or `yield From(%s_async(...))` with trollius)"
            % (name, name, name, name))


def _cancel_leftovers(loop):
    """Cancel the tasks a run leaves (jobs of killed processors) and let them end."""
    tasks = list(compat.all_tasks(loop))  # those not done
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    compat.run_until_complete(loop, asyncio.gather(*tasks, return_exceptions=True))

