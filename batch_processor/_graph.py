"""``batch_processor._graph``: `BatchProcessorsGraph`, processors and the converters
between them (re-exported by ``execution``)."""
from __future__ import absolute_import, division, print_function

from .interface import AbstractBatchProcessor, describe, safe_repr

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, Callable, Dict, Iterable, List, Optional  # noqa: F401

    from .interface import BatchProcessorResultHandle  # noqa: F401

    Results = Dict[AbstractBatchProcessor, List[BatchProcessorResultHandle]]

__all__ = ["BatchProcessorsGraph"]


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


def _single_graph(batch_processor):
    graph = BatchProcessorsGraph()
    graph.add_processor(batch_processor)
    return graph
