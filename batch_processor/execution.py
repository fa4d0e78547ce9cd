"""``batch_processor.execution``: graphs of processors and the runners that drive them.

`BatchProcessorsGraph` (``_graph``) records processors and the converters between
them; a run of a graph is a ``_run._Run``; this module holds the batch runners
(``run_*`` and their ``_async`` forms) and re-exports the streaming ones
(``_streaming``).

The synchronous runners make a fresh event loop per run; the ``_async`` forms run
on the caller's loop.
"""
from __future__ import absolute_import, division, print_function

import operator

from . import compat
from ._graph import BatchProcessorsGraph, _single_graph
from ._interrupt import InterruptibleRun
from ._options import CHECKPOINT_INTERVAL, RunOptions
from ._run import (  # noqa: F401 - _Run, _claimed: tests and tools reach them here
    _Run, _cancel_leftovers, _check_no_running_loop, _claimed, _relaxed_gc)
from ._streaming import iter_batch_processor, iter_batch_processors_graph
from .compat import From, Return, asyncio, coroutine
from .interface import AbstractBatchProcessor, BatchProcessorError, BatchProcessorResultHandle

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


# -- runners --------------------------------------------------------------------------
#
# Every runner takes the same keywords (`_options.RUN_OPTIONS`; ``loop_factory`` only
# where the runner makes the loop) and checks them all at once, when called, through
# `RunOptions`, before anything runs.

@coroutine
def _run_async(graph, initial_descriptors, options, holder=None):
    run = _Run(graph, initial_descriptors, compat.current_loop(), options)
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
                                     checkpoint=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                                     trace=None):
    # type: (BatchProcessorsGraph, Initial, Optional[float], Kept, bool, Optional[int], Optional[str], float, Optional[str]) -> Any
    """The awaitable form of `run_batch_processors_graph`, for a running loop."""
    options = RunOptions(timeout, keep_results, progress, None, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="run_batch_processors_graph_async")
    return _run_async(graph, initial_descriptors, options)


@coroutine
def _run_one_async(batch_processor, descriptors, options, holder=None):
    try:
        results = yield From(_run_async(_single_graph(batch_processor), {batch_processor: descriptors},
                                        options, holder))
    except BatchProcessorError as exc:
        partial = getattr(exc, "results", None)
        if isinstance(partial, dict) and batch_processor in partial:
            exc.results = partial[batch_processor]
        raise
    raise Return(results[batch_processor])


def run_batch_processor_async(batch_processor, descriptors, timeout=None, keep_results=None,
                              progress=False, max_in_flight=None, checkpoint=None,
                              checkpoint_interval=CHECKPOINT_INTERVAL, trace=None):
    # type: (AbstractBatchProcessor, Iterable[Any], Optional[float], Kept, bool, Optional[int], Optional[str], float, Optional[str]) -> Any
    """The awaitable form of `run_batch_processor`, for a running loop."""
    options = RunOptions(timeout, keep_results, progress, None, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="run_batch_processor_async")
    return _run_one_async(batch_processor, descriptors, options)


#: The cyclic collector's first threshold while synchronous runs go on (see
#: `_RelaxedGC`); set it to ``None`` to leave the interpreter's threshold alone.
GC_THRESHOLD = 50000


def _run_sync(options, shape, coroutine_function, *args):
    """Run ``coroutine_function(*args, options)`` on a loop of its own; ``shape(run.results)``
    is the partial result a `KeyboardInterrupt` carries in ``.results``."""
    _check_no_running_loop(options.runner)
    loop = (options.loop_factory or asyncio.new_event_loop)()
    token = compat.enter_loop(loop)
    holder = []  # type: List[_Run]
    interrupted = None
    try:
        with _relaxed_gc:
            task = compat.as_future(coroutine_function(*(args + (options, holder))), loop)
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


def _whole(results):
    return results


def run_batch_processors_graph(graph, initial_descriptors, timeout=None, keep_results=None,
                               progress=False, loop_factory=None, max_in_flight=None,
                               checkpoint=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                               trace=None):
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
        trace: the path of a Chrome Trace Event Format JSON file the run writes its
            attempts and converter calls to (see ``batch_processor.trace``).

    Every runner takes these keywords (``loop_factory`` where it makes the loop),
    checked when it is called, before anything runs (``ValueError`` or
    ``TypeError`` naming the runner and the option).

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
    options = RunOptions(timeout, keep_results, progress, loop_factory, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="run_batch_processors_graph")
    return _run_sync(options, _whole, _run_async, graph, initial_descriptors)


def run_batch_processor(batch_processor, descriptors, timeout=None, keep_results=None,
                        progress=False, loop_factory=None, max_in_flight=None, checkpoint=None,
                        checkpoint_interval=CHECKPOINT_INTERVAL, trace=None):
    # type: (AbstractBatchProcessor, Iterable[Any], Optional[float], Kept, bool, Optional[Callable[[], Any]], Optional[int], Optional[str], float, Optional[str]) -> Handles
    """Run one processor over ``descriptors``; return a list with one handle per descriptor.

    The keyword arguments are those of `run_batch_processors_graph`.
    """
    options = RunOptions(timeout, keep_results, progress, loop_factory, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="run_batch_processor")
    return _run_sync(options, operator.itemgetter(batch_processor), _run_one_async,
                     batch_processor, descriptors)


def run_batch_processor_single(batch_processor, descriptor, timeout=None, keep_results=None,
                               progress=False, loop_factory=None, max_in_flight=None,
                               checkpoint=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                               trace=None):
    # type: (AbstractBatchProcessor, Any, Optional[float], Kept, bool, Optional[Callable[[], Any]], Optional[int], Optional[str], float, Optional[str]) -> Optional[BatchProcessorResultHandle]
    """Run one processor over one descriptor; return its handle (legacy convenience).

    The keyword arguments are those of `run_batch_processors_graph`. With
    ``keep_results`` not naming the processor the handle is dropped, and the result
    is ``None``.
    """
    options = RunOptions(timeout, keep_results, progress, loop_factory, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="run_batch_processor_single")
    handles = _run_sync(options, operator.itemgetter(batch_processor), _run_one_async,
                        batch_processor, [descriptor])
    return handles[0] if handles else None
