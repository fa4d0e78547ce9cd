"""batch_processor runs asynchronous dataflow graphs of batch processors.

Architecture, bottom up: ``compat`` hides trollius (Python 2) versus asyncio
(Python 3) and gives trollius-style coroutines on both; ``interface`` defines the
processor contract, result handles, states and errors, and the bookkeeping base
class; ``_runtime`` holds what a processor has while it runs jobs (a `Runtime`) and
the port a run drives it through (``_runtime.Port``); ``separate`` (one job per
descriptor) and ``sequential`` (batches, one at a time) are the concrete processors,
each in a coroutine form and a ``Synchronous`` form that runs plain functions in a
``concurrent.futures`` executor (``_synchronous``; process pools in ``_processes``).
A run of a graph (``_graph``) is a ``_run._Run``: it takes its options as one checked
record (``_options.RunOptions``) and tells its observers (``_observers``: the
checkpoint, the progress display, the trace) what happens; ``execution`` holds the
batch runners, ``_streaming`` (and ``_execution_py3``) the streaming ones. ``util``
holds `UnsafeThreadPoolExecutor`. Optional pieces (``checkpoint`` and its
``sqlite3``, process pools and ``multiprocessing``, progress bars, traces, Dask) are
imported only when a run or a processor asks for them.
"""
from __future__ import absolute_import, division, print_function

import logging
import sys

from .compat import CancelledError
from .execution import (
    BatchProcessorsGraph,
    iter_batch_processor,
    iter_batch_processors_graph,
    run_batch_processor,
    run_batch_processor_async,
    run_batch_processor_single,
    run_batch_processors_graph,
    run_batch_processors_graph_async,
)
from .interface import (
    AbstractBatchProcessor,
    BatchProcessorError,
    BatchProcessorResultHandle,
    CheckpointError,
    ConverterError,
    Failure,
    GraphError,
    JobTimeoutError,
    ProcessorState,
    ProcessorStateError,
    RunTimeoutError,
    SourceError,
)
from .resources import Resource, devices
from .separate import RetryPolicy, SeparateBatchProcessor, SeparateBatchProcessorSynchronous
from .sequential import SequentialBatchProcessor, SequentialBatchProcessorSynchronous
from .util import UnsafeThreadPoolExecutor

__version__ = "0.1.0"

logging.getLogger("batch_processor").addHandler(logging.NullHandler())

__all__ = [
    "AbstractBatchProcessor",
    "BatchProcessorError",
    "BatchProcessorResultHandle",
    "BatchProcessorsGraph",
    "CancelledError",
    "CheckpointError",
    "ConverterError",
    "Failure",
    "GraphError",
    "JobTimeoutError",
    "ProcessorState",
    "ProcessorStateError",
    "Resource",
    "RetryPolicy",
    "RunTimeoutError",
    "SeparateBatchProcessor",
    "SeparateBatchProcessorSynchronous",
    "SequentialBatchProcessor",
    "SequentialBatchProcessorSynchronous",
    "SourceError",
    "UnsafeThreadPoolExecutor",
    "devices",
    "iter_batch_processor",
    "iter_batch_processors_graph",
    "run_batch_processor",
    "run_batch_processor_async",
    "run_batch_processor_single",
    "run_batch_processors_graph",
    "run_batch_processors_graph_async",
]

if sys.version_info[0] >= 3:
    from ._execution_py3 import iter_batch_processor_async, iter_batch_processors_graph_async

    __all__ += ["iter_batch_processor_async", "iter_batch_processors_graph_async"]
