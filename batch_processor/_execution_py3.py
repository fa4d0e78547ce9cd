"""The streaming runners as async iterators (Python 3 only: ``async for``).

`iter_batch_processors_graph_async` runs on the caller's loop a run whose handles
go to a `_streaming._Channel`, and ``__anext__`` waits for the channel. Closing
the iterator (``aclose()``, or dropping it) kills every processor.
"""

from . import compat
from ._options import CHECKPOINT_INTERVAL, RunOptions
from ._streaming import start_stream, stream_error
from ._graph import _single_graph

__all__ = ["iter_batch_processor_async", "iter_batch_processors_graph_async"]


class _AsyncGraphIterator:
    """The async iterator `iter_batch_processors_graph_async` returns."""

    def __init__(self, graph, initial_descriptors, options, single):
        self._ended = True  # until the run is made: nothing for __del__ to end
        self._single = single
        self._processors = graph.processors
        self._loop = compat.current_loop()
        self._run, self._channel = start_stream(graph, initial_descriptors, self._loop, options,
                                                 single)
        self._ended = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        queue, run, channel = self._channel.queue, self._run, self._channel
        if not queue:
            if self._ended:
                raise StopAsyncIteration
            while not queue and not run.future.done():
                channel.waiter = waiter = self._loop.create_future()
                try:
                    await waiter
                except BaseException:  # the caller was cancelled: the run ends too
                    self._end()
                    raise
                finally:
                    channel.waiter = None
            if run.future.done() and not run.future.cancelled() \
                    and run.future.exception() is not None:
                error = stream_error(run, channel, self._processors, self._single)
                self._end()
                raise error
            if not queue:
                self._end()
                raise StopAsyncIteration
        processor, handle = queue.popleft()
        return handle if self._single else (processor, handle)

    def _end(self):
        if self._ended:
            return
        self._ended = True
        self._run.cancel()
        self._channel.queue.clear()

    async def aclose(self):
        """Stop the run now: every processor is killed, nothing is left running."""
        self._end()

    def close(self):
        """`aclose` without awaiting."""
        self._end()

    def __del__(self):
        try:
            self._end()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self._end()


def iter_batch_processors_graph_async(graph, initial_descriptors, timeout=None,
                                      keep_results=None, progress=False, max_in_flight=None,
                                      checkpoint=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                                      trace=None):
    """`iter_batch_processors_graph` as an async iterator, on the running loop."""
    options = RunOptions(timeout, keep_results, progress, None, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="iter_batch_processors_graph_async")
    return _AsyncGraphIterator(graph, initial_descriptors, options, single=False)


def iter_batch_processor_async(batch_processor, descriptors, timeout=None, keep_results=None,
                               progress=False, max_in_flight=None, checkpoint=None,
                               checkpoint_interval=CHECKPOINT_INTERVAL, trace=None):
    """`iter_batch_processor` as an async iterator, on the running loop."""
    options = RunOptions(timeout, keep_results, progress, None, max_in_flight, checkpoint,
                         checkpoint_interval, trace, runner="iter_batch_processor_async")
    return _AsyncGraphIterator(_single_graph(batch_processor), {batch_processor: descriptors},
                               options, single=True)
