"""``batch_processor.execution``: graphs of processors and the runners that drive them.

`BatchProcessorsGraph` records processors and the converters between them. A run
(`_Run`) is event-driven: each processor calls back when it has ready handles, the
run collects them, passes them through the converters of the processor's outgoing
edges and feeds the results on. Nothing polls and nothing sleeps, and the cost of a
step is that of the processors that had something to say: idle processors cost
nothing. The run ends when no processor has anything in flight.

The synchronous runners make a fresh event loop per run; the ``_async`` forms run
on the caller's loop.
"""
from __future__ import absolute_import, division, print_function

import collections
import gc
import logging
import numbers
import operator
import threading

import six

from . import compat
from ._interrupt import InterruptibleRun
from ._runtime import Observers, attach
from .compat import From, Return, asyncio, coroutine
from .interface import (
    AbstractBatchProcessor, BatchProcessorError, ConverterError, GraphError, Handle,
    BatchProcessorResultHandle, ProcessorState, ProcessorStateError, RunTimeoutError,
    SourceError, as_descriptor_list, check_seconds, describe, processor_labels, safe_repr, safe_str)

__all__ = [
    "GC_THRESHOLD",
    "BatchProcessorsGraph",
    "iter_batch_processor",
    "iter_batch_processors_graph",
    "run_batch_processor",
    "run_batch_processor_async",
    "run_batch_processor_single",
    "run_batch_processors_graph",
    "run_batch_processors_graph_async",
]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional  # noqa: F401

    Handles = List[BatchProcessorResultHandle]
    Results = Dict[AbstractBatchProcessor, Handles]
    Initial = Mapping[AbstractBatchProcessor, Iterable[Any]]
    Kept = Optional[Iterable[AbstractBatchProcessor]]

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


class BatchProcessorsGraph(object):
    """Processors connected by converters: fan-out, fan-in and cycles allowed."""

    def __init__(self):
        self._processors = []
        self._ids = set()
        self._edges = []

    def add_processor(self, processor):
        # type: (AbstractBatchProcessor) -> None
        """Add ``processor``; adding the same instance again changes nothing."""
        if not isinstance(processor, AbstractBatchProcessor):
            raise TypeError(
                "BatchProcessorsGraph.add_processor() takes a batch processor (an instance "
                "of an AbstractBatchProcessor subclass such as SeparateBatchProcessor), got %s"
                % safe_repr(processor))
        if id(processor) not in self._ids:
            self._ids.add(id(processor))
            self._processors.append(processor)

    def add_connected_processors(self, source, destination, converter):
        # type: (AbstractBatchProcessor, AbstractBatchProcessor, Callable[..., Iterable[Any]]) -> None
        """Add both processors and the edge ``source -> destination`` through ``converter``.

        ``converter(*handles)`` gets the handles of one ``get_ready()`` of ``source``
        and returns an iterable of descriptors for ``destination``. The same
        ``(source, destination, converter)`` added twice is one edge.
        """
        if not callable(converter):
            raise TypeError(
                "the converter from %s to %s must be callable as converter(*handles) and "
                "return descriptors, got %s"
                % (describe(source), describe(destination), safe_repr(converter)))
        self.add_processor(source)
        self.add_processor(destination)
        for src, dst, conv in self._edges:
            if src is source and dst is destination and (conv is converter or conv == converter):
                return
        self._edges.append((source, destination, converter))

    @property
    def processors(self):
        # type: () -> List[AbstractBatchProcessor]
        """The processors, in the order they were added."""
        return list(self._processors)

    @property
    def edges(self):
        """The edges, as ``(source, destination, converter)`` tuples in the order added."""
        return list(self._edges)

    def to_dot(self, results=None):
        # type: (Optional[Results]) -> str
        """The graph in Graphviz DOT: processors by class, edges by converter name.

        Args:
            results: a run's result dict; when given, each processor is labelled with
                its counts of ok, failed and cancelled handles.
        """
        from .dot import graph_to_dot
        return graph_to_dot(self, results)

    def __contains__(self, processor):
        return id(processor) in self._ids

    def __repr__(self):
        return "<BatchProcessorsGraph: %d processors, %d edges>" % (
            len(self._processors), len(self._edges))


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
                 checkpoint_interval=0.1, trace=None):
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
                feeds = self._open_checkpoint(checkpoint, checkpoint_interval, graph, ordered, feeds)
            except BaseException:
                self._close()
                raise
            if self.recorder.finished:
                self._close()
                self.future.set_result(self.results)
                return
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

    def _open_checkpoint(self, path, interval, graph, ordered, feeds):
        """Open the run's checkpoint, restore what an earlier run recorded in it and
        return the feeds of this run (`_resumed_feeds`)."""
        from .checkpoint import Recorder
        self.recorder = recorder = Recorder(path, graph, ordered, interval, self.loop)
        try:
            restored, pending = recorder.load()
            feeds = self._resumed_feeds(feeds, pending, ordered)
            recorder.restore()
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
        return feeds

    def _resumed_feeds(self, feeds, pending, ordered):
        """The feeds of a resumed run: its jobs in flight again, then untaken initial items
        (the recorder checks that the items taken are those the recorded run took)."""
        skip_taken = self.recorder.skip_taken
        again = collections.OrderedDict()
        for index, key, descriptor in pending:
            keys, descriptors = again.setdefault(index, ([], []))
            keys.append(key)
            descriptors.append(descriptor)
        resumed = [(ordered[index], descriptors, False, keys)
                   for index, (keys, descriptors) in again.items()]
        for node, descriptors, source, keys in feeds:
            resumed.append((node, skip_taken(ordered.index(node), descriptors), source, keys))
        for entry in self._sources:  # lazy sources: skip what the first run took
            entry[1] = skip_taken(ordered.index(entry[0]), entry[1])
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
            self.recorder.converted(node)  # refused handles go to no converter
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
                    if self.recorder is not None:  # recorded with what they were made into
                        self.recorder.converted(node)
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


# -- runners --------------------------------------------------------------------------

@coroutine
def _run_async(graph, initial_descriptors, holder=None, **options):
    run = _Run(graph, initial_descriptors, compat.current_loop(), **options)
    if holder is not None:  # the synchronous runner reads the partial result on Ctrl-C
        holder.append(run)
    try:
        results = yield From(run.future)
    except BaseException:
        if not run.future.done():
            run.future.cancel()
        raise
    raise Return(results)


def run_batch_processors_graph_async(graph, initial_descriptors, timeout=None,
                                     keep_results=None, progress=False, max_in_flight=None,
                                     checkpoint=None, checkpoint_interval=0.1, trace=None):
    # type: (BatchProcessorsGraph, Initial, Optional[float], Kept, bool, Optional[int], Optional[str], float, Optional[str]) -> Any
    """The awaitable form of `run_batch_processors_graph`, for a running loop."""
    return _run_async(graph, initial_descriptors, timeout=timeout, keep_results=keep_results,
                      progress=progress, max_in_flight=max_in_flight, checkpoint=checkpoint,
                      checkpoint_interval=checkpoint_interval, trace=trace)


def _single_graph(batch_processor):
    graph = BatchProcessorsGraph()
    graph.add_processor(batch_processor)
    return graph


@coroutine
def _run_one_async(batch_processor, descriptors, holder=None, **options):
    try:
        results = yield From(_run_async(_single_graph(batch_processor), {batch_processor: descriptors},
                                        holder, **options))
    except BatchProcessorError as exc:
        partial = getattr(exc, "results", None)
        if isinstance(partial, dict) and batch_processor in partial:
            exc.results = partial[batch_processor]
        raise
    raise Return(results[batch_processor])


def run_batch_processor_async(batch_processor, descriptors, timeout=None, keep_results=None,
                              progress=False, max_in_flight=None, checkpoint=None,
                              checkpoint_interval=0.1, trace=None):
    # type: (AbstractBatchProcessor, Iterable[Any], Optional[float], Kept, bool, Optional[int], Optional[str], float, Optional[str]) -> Any
    """The awaitable form of `run_batch_processor`, for a running loop."""
    return _run_one_async(batch_processor, descriptors, timeout=timeout,
                          keep_results=keep_results, progress=progress,
                          max_in_flight=max_in_flight, checkpoint=checkpoint,
                          checkpoint_interval=checkpoint_interval, trace=trace)


#: The cyclic collector's first threshold while synchronous runs go on (see
#: `_RelaxedGC`); set it to ``None`` to leave the interpreter's threshold alone.
GC_THRESHOLD = 50000


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
                threshold = GC_THRESHOLD
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


def _run_sync(name, loop_factory, shape, coroutine_function, *args, **options):
    """Run ``coroutine_function(*args)`` on a loop of its own; ``shape(run.results)`` is
    the partial result a `KeyboardInterrupt` carries in ``.results``."""
    _check_no_running_loop(name)
    loop = (loop_factory or asyncio.new_event_loop)()
    token = compat.enter_loop(loop)
    holder = []  # type: List[_Run]
    interrupted = None
    try:
        with _relaxed_gc:
            task = compat.as_future(coroutine_function(*args, holder=holder, **options), loop)
            with InterruptibleRun(loop, task) as interrupt:
                try:
                    result = compat.run_until_complete(loop, task)
                except KeyboardInterrupt as exc:
                    interrupted = exc
                except BaseException:
                    if not interrupt.requested:
                        raise
            if interrupt.requested:  # Ctrl-C: the run was cancelled, every processor killed
                interrupted = KeyboardInterrupt()
            if interrupted is None:
                return result
    finally:
        try:
            _cancel_leftovers(loop)
        finally:
            loop.close()
            compat.leave_loop(token)
    if holder:  # the lists are the run's own: complete now that every processor was killed
        interrupted.results = shape(holder[0].results)
    raise interrupted


def _cancel_leftovers(loop):
    """Cancel the tasks a run leaves (jobs of killed processors) and let them end."""
    tasks = list(compat.all_tasks(loop))  # those not done
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    compat.run_until_complete(loop, asyncio.gather(*tasks, return_exceptions=True))


def _whole(results):
    return results


def run_batch_processors_graph(graph, initial_descriptors, timeout=None, keep_results=None,
                               progress=False, loop_factory=None, max_in_flight=None,
                               checkpoint=None, checkpoint_interval=0.1, trace=None):
    # type: (BatchProcessorsGraph, Initial, Optional[float], Kept, bool, Optional[Callable[[], Any]], Optional[int], Optional[str], float, Optional[str]) -> Results
    """Run ``graph`` until nothing is left to do; return ``{processor: [handles]}``.

    Args:
        graph: a `BatchProcessorsGraph`.
        initial_descriptors: maps processors of the graph to iterables of descriptors.
        timeout: seconds for the whole run (``None``: no limit).
        keep_results: ``None`` keeps every handle; an iterable of processors keeps
            the handles of those only (the others get empty lists).
        progress: show live progress per processor on stderr.
        loop_factory: makes the run's event loop (default: ``asyncio.new_event_loop``);
            ``uvloop.new_event_loop`` runs the graph on uvloop.
        max_in_flight: ``None`` reads the initial iterables whole at the start; an int
            ``n >= 1`` reads them lazily, round-robin, while fewer than ``n`` jobs are
            in flight in the graph (converter output is always fed at once).
        checkpoint: the path of an SQLite file the run records its progress in; a
            run given the same file after a crash resumes where it was recorded
            (see ``batch_processor.checkpoint``).
        checkpoint_interval: seconds between two records (at least one per interval,
            and one when the run ends).

    Returns:
        A dict with a key for every processor of the graph, in the graph's order,
        and the list of its handles, in the order they were collected.

    Raises:
        GraphError: ``initial_descriptors`` or ``keep_results`` names a processor not
            in the graph (nothing has run).
        ConverterError: a converter failed; every processor was killed.
        SourceError: an initial iterable raised while read; every processor was killed.
        RunTimeoutError: the run took longer than ``timeout``.
        ProcessorStateError: a processor is in another running graph.
        CheckpointError: ``checkpoint`` was written by another graph (nothing has run).
        RuntimeError: called inside a running event loop.
    """
    return _run_sync("run_batch_processors_graph", loop_factory, _whole, _run_async, graph,
                     initial_descriptors, timeout=timeout, keep_results=keep_results,
                     progress=progress, max_in_flight=max_in_flight, checkpoint=checkpoint,
                     checkpoint_interval=checkpoint_interval, trace=trace)


def run_batch_processor(batch_processor, descriptors, timeout=None, keep_results=None,
                        progress=False, loop_factory=None, max_in_flight=None, checkpoint=None,
                        checkpoint_interval=0.1, trace=None):
    # type: (AbstractBatchProcessor, Iterable[Any], Optional[float], Kept, bool, Optional[Callable[[], Any]], Optional[int], Optional[str], float, Optional[str]) -> Handles
    """Run one processor over ``descriptors``; return a list with one handle per descriptor.

    The keyword arguments are those of `run_batch_processors_graph`.
    """
    return _run_sync("run_batch_processor", loop_factory, operator.itemgetter(batch_processor),
                     _run_one_async, batch_processor, descriptors, timeout=timeout,
                     keep_results=keep_results, progress=progress, max_in_flight=max_in_flight,
                     checkpoint=checkpoint, checkpoint_interval=checkpoint_interval, trace=trace)


def run_batch_processor_single(batch_processor, descriptor, timeout=None, keep_results=None,
                               progress=False, loop_factory=None, max_in_flight=None,
                               checkpoint=None, checkpoint_interval=0.1, trace=None):
    # type: (AbstractBatchProcessor, Any, Optional[float], Kept, bool, Optional[Callable[[], Any]], Optional[int], Optional[str], float, Optional[str]) -> Optional[BatchProcessorResultHandle]
    """Run one processor over one descriptor; return its handle (legacy convenience).

    With ``keep_results`` not naming the processor the handle is dropped, and the
    result is ``None``.
    """
    handles = run_batch_processor(batch_processor, [descriptor], timeout=timeout,
                                  keep_results=keep_results, progress=progress,
                                  loop_factory=loop_factory, max_in_flight=max_in_flight,
                                  checkpoint=checkpoint, checkpoint_interval=checkpoint_interval,
                                  trace=trace)
    return handles[0] if handles else None


from ._streaming import iter_batch_processor, iter_batch_processors_graph  # noqa: E402
