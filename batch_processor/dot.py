"""``batch_processor.dot`` draws a `BatchProcessorsGraph` as Graphviz DOT.

`graph_to_dot` (behind ``graph.to_dot()``) writes one box per processor, named by
its ``name`` (its class name by default; with a short identity added when two
processors of the graph share a name), and one arrow per edge, labelled with its
converter's short name (``__name__``; a ``functools.partial`` by its function's). The
edges that lie on a cycle (a self-loop, or both ways between two processors, or a
longer loop) are dashed, so a feedback loop stands out, and a legend says so; the back
edges of a depth-first walk in the graph's order do not constrain the layout, so the
graph reads in the order it was built. Given a run's result dict, each box also shows
how the processor's jobs ended, and each arrow how many handles its source gave the
converter.

Render it with ``dot -Tpng pipeline.dot -o pipeline.png`` or the ``graphviz`` Python
package; nothing here needs either.
"""
from __future__ import absolute_import, division, print_function

import functools

import six

from .interface import processor_labels, processor_name
from .progress import count_outcomes

__all__ = ["LEGEND", "converter_name", "dot_quote", "graph_to_dot", "processor_labels",
           "processor_name"]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, List, Mapping, Optional, Set, Tuple  # noqa: F401


def converter_name(converter):
    # type: (Any) -> str
    """A short name for ``converter``: its ``__name__`` (a method's or a nested function's
    own name, not its qualified one), its function's for a ``functools.partial``, else
    its type's."""
    while isinstance(converter, functools.partial):
        converter = converter.func
    name = getattr(converter, "__name__", None)
    if isinstance(name, six.string_types) and name:
        return name
    return type(converter).__name__


#: The lines that explain the dashed arrows, added to a picture that has any.
LEGEND = [
    "  subgraph cluster_legend {",
    '    label="legend"; fontsize=10; style=dotted;',
    "    legend_from [shape=point, width=0.05];",
    "    legend_to [shape=point, width=0.05];",
    '    legend_from -> legend_to [style=dashed, fontsize=10, '
    'label="on a cycle: output fed back upstream"];',
    "  }",
]


def dot_quote(text):
    # type: (Any) -> str
    """``text`` as a double-quoted DOT string that Graphviz shows as it is."""
    text = "%s" % (text,)
    return '"%s"' % (text.replace("\\", "\\\\").replace('"', '\\"')
                     .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _walk(count, successors):
    # type: (int, List[List[int]]) -> Tuple[Set[Tuple[int, int]], List[int]]
    """Classify edges with one depth-first walk from the nodes ``0 .. count - 1``.

    Returns:
        ``(back, component)``: the set of back edges ``(u, v)`` of the walk (self-loops
        included), and the strongly connected component of each node, as a list.
    """
    # Tarjan's algorithm, iterative so that a long chain cannot hit the recursion limit.
    index, low, component = [-1] * count, [0] * count, [-1] * count  # -1: not yet
    on_stack, on_path = [False] * count, [False] * count
    stack = []  # type: List[int]
    back = set()  # type: Set[Tuple[int, int]]
    counter = [0, 0]  # next index, next component
    for root in range(count):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack[root] = on_path[root] = True
        path = [(root, iter(successors[root]))]
        while path:
            node, children = path[-1]
            descended = False
            for child in children:
                if index[child] < 0:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack[child] = on_path[child] = True
                    path.append((child, iter(successors[child])))
                    descended = True
                    break
                if on_stack[child]:
                    if on_path[child]:
                        back.add((node, child))  # to an ancestor: closes a loop
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            path.pop()
            on_path[node] = False
            if path:
                parent = path[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component[member] = counter[1]
                    if member == node:
                        break
                counter[1] += 1
    return back, component


def graph_to_dot(graph, results=None):
    # type: (Any, Optional[Mapping[Any, Any]]) -> str
    """Return ``graph`` as a Graphviz DOT ``digraph``.

    Args:
        graph: a `BatchProcessorsGraph`.
        results: the dict a run of the graph returned (``{processor: [handles]}``);
            when given, each processor's box also shows
            ``ok N / failed N / cancelled N``, and each arrow ``N handles in``: how
            many handles its source gave back, all of which its converter was called
            with. (How many descriptors a converter returned is not in the results,
            so the picture does not guess it; a processor left out of
            ``keep_results`` shows 0.)

    Returns:
        The DOT text. Processors are the nodes ``p0``, ``p1``... in the graph's order.

    Raises:
        TypeError: ``results`` is not such a dict.
    """
    if results is not None and not hasattr(results, "get"):
        raise TypeError(
            "to_dot(results=...) takes the dict a graph run returned ({processor: [handles]}), "
            "got %r; for run_batch_processor()'s list, pass {processor: handles}" % (results,))
    processors = graph.processors
    edges = graph.edges
    number = dict((id(processor), i) for i, processor in enumerate(processors))
    successors = [[] for _ in processors]  # type: List[List[int]]
    for source, destination, _ in edges:
        successors[number[id(source)]].append(number[id(destination)])
    back, component = _walk(len(processors), successors)

    lines = ["digraph batch_processors {", "  node [shape=box, style=rounded];"]
    for i, (processor, label) in enumerate(zip(processors, processor_labels(processors))):
        attributes = []
        handles = results.get(processor) if results is not None else None
        if handles is not None:
            ok, failed, cancelled = count_outcomes(handles)
            label = "%s\nok %d / failed %d / cancelled %d" % (label, ok, failed, cancelled)
            if failed or cancelled:
                attributes.append("color=red" if failed else "color=orange")
        lines.append("  p%d [%s];" % (i, ", ".join(["label=%s" % dot_quote(label)] + attributes)))
    cyclic = False
    for source, destination, converter in edges:
        u, v = number[id(source)], number[id(destination)]
        label = converter_name(converter)
        handles = results.get(source) if results is not None else None
        if handles is not None:
            count = len(handles)
            label = "%s\n%d handle%s in" % (label, count, "" if count == 1 else "s")
        attributes = ["label=%s" % dot_quote(label)]
        if component[u] == component[v]:
            attributes.append("style=dashed")  # on a cycle
            cyclic = True
        if (u, v) in back:
            attributes.append("constraint=false")
        lines.append("  p%d -> p%d [%s];" % (u, v, ", ".join(attributes)))
    if cyclic:
        lines.extend(LEGEND)
    lines.append("}")
    return "\n".join(lines) + "\n"
