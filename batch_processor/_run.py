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
import functools
import gc
import logging
import threading

import six

from . import compat
from ._graph import BatchProcessorsGraph
from ._observers import dispatcher, observers_for
from ._options import RunOptions
from ._runtime import Observers, attach
from .compat import asyncio
from .interface import (
    AbstractBatchProcessor, BatchProcessorError, ConverterError, GraphError, Handle,
    ProcessorState, ProcessorStateError, RunTimeoutError,
    SourceError, as_descriptor_list, describe, processor_labels, safe_repr, safe_str)

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

    ``options`` is the run's `RunOptions`. The run does its own work (feed,
    collect, convert, end) and tells its observers (``_observers``: a checkpoint,
    the progress display, a trace) what happened; each event is held as ``None``
    (nobody listens: it costs nothing) or the one function to call. Extension points:

    * ``sink``: ``None`` keeps the handles of the kept processors in the result
      lists. A callable ``sink(processor, handles)`` gets them instead, as soon as
      they are collected (the result lists then stay empty): the streaming runners
      consume handles this way.
    * ``options.max_in_flight``: ``None`` reads the initial iterables whole at the
      start. An integer ``n`` keeps them as iterators (``_sources``) and reads them
      lazily, round-robin, while fewer than ``n`` jobs are in flight (``in_flight``:
      fed and not yet collected); see `_refill`.
    """

    def __init__(self, graph, initial_descriptors, loop, options=None, sink=None):
        if not isinstance(graph, BatchProcessorsGraph):
            raise TypeError("expected a BatchProcessorsGraph, got %s" % safe_repr(graph))
        if options is None:
            options = RunOptions()
        self.loop = loop
        self.graph = graph
        self.options = options
        self.timeout = options.timeout
        self.max_in_flight = options.max_in_flight
        self.sink = sink
        self.in_flight = 0  # jobs fed by this run and not yet collected
        self.processors = processors = graph.processors
        kept_ids = _kept_ids(graph, options.keep_results)
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
        self.ordered = [nodes[id(processor)] for processor in processors]
        self._unreadable = None  # (node, exception) of an initial iterable that raised
        feeds = self._initial_feeds(graph, initial_descriptors)
        self._sources = collections.deque()  # [node, iterator] still to read, lazily
        if self.max_in_flight is not None:
            order = dict((id(processor), i) for i, processor in enumerate(processors))
            feeds.sort(key=lambda feed: order[id(feed[0].processor)])  # the graph's order
            self._sources.extend([node, iterator] for node, iterator, _, _ in feeds)
            feeds = []
        self.future = compat.new_future(loop)
        self._dirty = collections.deque()
        self._busy = set()
        self._scheduled = False
        self._timer = None
        self._closed = False
        self._listen(observers_for(options))
        try:
            self._claim()
            if self._unreadable is not None:  # an initial iterable read whole raised
                for node in self.ordered:
                    node.processor.kill()
                raise self._source_error(*self._unreadable)
            for observer in self.observers:
                feeds = observer.prepare(self, feeds)
                if feeds is None:  # nothing left to do: the result is delivered already
                    self._close()
                    self.future.set_result(self.results)
                    return
        except BaseException:
            self._close()
            raise
        attempts = [observer.attempt_observer() for observer in self.observers]
        attempts = [observer for observer in attempts if observer is not None]
        attempt_observer = attempts[0] if len(attempts) == 1 else (
            Observers(attempts) if attempts else None)
        attached = self._on_attached
        try:
            for node in self.ordered:
                node.port = port = attach(node.processor, loop)
                observing = attempt_observer is not None and port.observe(attempt_observer)
                if attached is not None:
                    attached(node, observing)
                node.mark = self._marker(node)
                port.listen(node.mark, functools.partial(self._busy.add, node))
                port.watch_faults(self.library_bug)
                if port.in_flight:
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
        if self._on_started is not None:
            self._on_started()
        if self.timeout is not None:
            self._timer = loop.call_later(self.timeout, self._on_timeout)
        self.future.add_done_callback(self._on_future_done)
        self._schedule()

    # -- observers ------------------------------------------------------------------

    _EVENTS = ("attached", "fed", "started", "collected", "converting", "converter_called",
               "converted", "finishing", "before_kill", "closed")

    def _listen(self, observers):
        """Hold, for each event, ``None`` or the function that tells ``observers``."""
        self.observers = observers
        for event in self._EVENTS:
            setattr(self, "_on_" + event, dispatcher(observers, event))
        self._observes_converters = (
            self._on_converting is not None or self._on_converter_called is not None)

    def deliver(self, node, handles):
        """Hand ``handles`` of ``node`` (kept) to the result, as if collected now (a
        checkpoint's recorded handles)."""
        if node.kept is not None and handles:
            self._deliver(node, handles)

    def lazy_sources(self):
        """The lazy initial iterables still to read: ``[node, iterator]`` entries, in
        reading order (an observer may replace the iterator)."""
        return list(self._sources)

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
                port = node.port
                if port is not None:
                    port.release(node.mark)
                    port.observe(None)
                    port.watch_faults(None)

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

    def _initial_feeds(self, graph, initial_descriptors):
        """``(node, descriptors, True, None)`` per initial iterable: a list read whole, or
        (``max_in_flight``) an iterator read later. If reading one whole raises, it is
        kept in ``_unreadable`` (the run raises `SourceError` once it has claimed the
        processors, so that it kills only its own)."""
        if initial_descriptors is None:
            initial_descriptors = {}
        if not hasattr(initial_descriptors, "items"):
            raise TypeError(
                "initial_descriptors must map processors of the graph to iterables of "
                "descriptors, got %s" % safe_repr(initial_descriptors))
        lazy = self.max_in_flight is not None
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
                    "that are neither stopped nor killed"
                    % (describe(processor), processor.state.value))
            node = self.nodes[id(processor)]
            if isinstance(descriptors, list):
                descriptors = list(descriptors)  # a copy: the caller may change theirs
                feeds.append((node, iter(descriptors) if lazy else descriptors, True, None))
                continue
            try:
                iterator = _lazy_iterator(descriptors, processor)
                if not lazy:
                    iterator = list(iterator)
            except TypeError as exc:
                if getattr(exc, "_bp_not_iterable", False):
                    raise
                self._unreadable = (node, exc)
                return []
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the user's iterable raised: nothing has run
                self._unreadable = (node, exc)
                return []
            feeds.append((node, iterator, True, None))
        return feeds

    def _feed(self, node, descriptors, source=False, keys=None):
        if not descriptors:
            return
        if self._on_fed is not None:
            self._on_fed(node, descriptors, source, keys)
        try:
            node.port.feed(descriptors)
        except ProcessorStateError:
            self._refuse(node, descriptors)
            return
        self.in_flight += len(descriptors)
        self._busy.add(node)

    def _refuse(self, node, descriptors):
        """Descriptors for a stopped or killed processor come back cancelled."""
        logger.warning("%s is %s: %d descriptors for it are returned cancelled",
                       describe(node.processor), node.port.state.value, len(descriptors))
        handles = []
        for descriptor in descriptors:
            future = compat.new_future(self.loop)
            future.cancel()
            handles.append(Handle(descriptor, future))
        if self._on_collected is not None:
            self._on_collected(node, handles)
        if node.kept is not None:
            self._deliver(node, handles)
        if self._on_converted is not None:
            self._on_converted(node, handles, [])

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
                except (KeyboardInterrupt, SystemExit):  # raised while reading
                    sources.clear()
                    self.kill_all()
                    self._close()
                    raise
                except BaseException as exc:  # the user's iterable (GeneratorExit too): the run stops
                    sources.clear()
                    failure = (entry[0], exc)
                    break
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
            processor=node.processor, original=exc, results=self.results)
        error.__cause__ = exc
        return error

    def _step(self):
        self._scheduled = False
        if self.future.done():
            return
        dirty, busy = self._dirty, self._busy
        convert = self._convert_observed if self._observes_converters else self._convert
        converted = self._on_converted
        try:
            while dirty:
                node = dirty.popleft()
                handles = self._collect(node)
                if handles:
                    if converted is None:
                        for destination, converter in node.out:
                            descriptors = convert(converter, handles, node, destination)
                            if descriptors:
                                self._feed(destination, descriptors)
                    else:
                        outputs = []
                        for destination, converter in node.out:
                            descriptors = convert(converter, handles, node, destination)
                            if descriptors:
                                self._feed(destination, descriptors)
                            outputs.append((destination, descriptors))
                        converted(node, handles, outputs)
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
            if self._on_collected is not None:
                self._on_collected(node, handles)
            self.in_flight -= len(handles)
            if self.in_flight < 0:  # jobs fed by hand before the run started
                self.in_flight = 0
            if node.kept is not None:
                self._deliver(node, handles)
        return handles

    def _convert_observed(self, converter, handles, source, destination):
        if self._on_converting is not None:
            self._on_converting(converter, source.processor, destination.processor, handles)
        try:
            descriptors = self._convert(converter, handles, source, destination)
        except _ConverterFailure as failure:
            if self._on_converter_called is not None:
                self._on_converter_called(converter, source.processor, destination.processor,
                                          handles, None, failure.error.original)
            raise
        if self._on_converter_called is not None:
            self._on_converter_called(converter, source.processor, destination.processor,
                                      handles, descriptors, None)
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
        if self._on_finishing is not None:
            try:
                self._on_finishing()
            except BatchProcessorError as error:  # the checkpoint's last record failed
                self._abort(error)
                return
        self._close()
        self.future.set_result(self.results)

    def _before_kill(self):
        """Tell the observers the run is stopped, before it kills every processor."""
        if self._on_before_kill is not None and not self._closed:
            self._on_before_kill()

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
        self._before_kill()
        self.kill_all()
        error.results = self.results
        self._close()
        if not self.future.done():
            self.future.set_exception(error)

    def kill_all(self):
        """Kill every processor and collect all their handles, without converting them."""
        for node in six.itervalues(self.nodes):
            if node.port is not None:
                node.port.kill()
            else:  # pragma: no cover - killed before it was attached
                node.processor.kill()
        for node in six.itervalues(self.nodes):
            if node.port is not None:
                self._collect(node)
        self._dirty.clear()
        self._busy.clear()
        self._sources.clear()

    def cancel(self):
        """End the run at once from outside (a stream closed early): kill every
        processor, release them all, and cancel ``future``."""
        if self.future.done():
            return
        self._before_kill()
        self.kill_all()
        self._close()
        self.future.cancel()

    def _on_future_done(self, future):
        if future.cancelled():  # the caller cancelled the run
            self._before_kill()
            self.kill_all()
            self._close()

    def _close(self):
        """Release the processors and tell the observers the run is over (once)."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._release()
        finally:
            closed = self._on_closed
            self._listen([])  # nothing is told after `closed`
            if closed is not None:
                closed()



class _ConverterFailure(Exception):
    def __init__(self, error):
        Exception.__init__(self, error)
        self.error = error


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


def _lazy_iterator(descriptors, processor):
    """``iter(descriptors)``, with `as_descriptor_list`'s errors for what is not iterable
    (marked ``_bp_not_iterable``: a mistake of the caller, not of the iterable)."""
    if not isinstance(descriptors, (six.string_types, bytes)):
        try:
            return iter(descriptors)
        except TypeError:
            pass
    try:
        as_descriptor_list(descriptors, processor)
    except TypeError as exc:
        exc._bp_not_iterable = True
        raise
    raise TypeError("%s is not an iterable of descriptors" % safe_repr(descriptors))  # pragma: no cover

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
        form = "run_batch_processor" if name == "run_batch_processor_single" else name
        raise RuntimeError(
            "%s() cannot run inside a running event loop; use %s_async() there "
            "(`await %s_async(...)`, or `yield From(%s_async(...))` with trollius)"
            % (name, form, form, form))


def _cancel_leftovers(loop):
    """Cancel the tasks a run leaves (jobs of killed processors) and let them end."""
    tasks = list(compat.all_tasks(loop))  # those not done
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    compat.run_until_complete(loop, asyncio.gather(*tasks, return_exceptions=True))

