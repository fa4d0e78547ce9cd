"""Tests of ``graph.to_dot()`` (``batch_processor.dot``): pictures of graphs in Graphviz DOT.

The DOT is read back with a small parser for exactly the subset ``to_dot`` writes,
so a line it cannot read fails the test; when Graphviz's ``dot`` program is
installed, it must also render the DOT and show the same labels.
"""
from __future__ import absolute_import, division, print_function

import functools
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from batch_processor import (
    BatchProcessorsGraph,
    SeparateBatchProcessorSynchronous,
    run_batch_processor,
    run_batch_processors_graph,
)
from batch_processor.dot import LEGEND, converter_name, dot_quote, graph_to_dot, processor_labels

if sys.version_info[0] == 2:
    from distutils.spawn import find_executable as which
else:
    from shutil import which

DOT = which("dot")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz's dot program is not installed")


# -- a parser for the DOT that to_dot writes -------------------------------------------

_ID = r"(p\d+)"
_NODE = re.compile(r"^  %s \[(.*)\];$" % _ID)
_EDGE = re.compile(r"^  %s -> %s \[(.*)\];$" % (_ID, _ID))
_ATTRIBUTE = re.compile(r'([A-Za-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.]+))(?:, |$)')
_ESCAPE = re.compile(r"\\(.)")


def _unquote(text):
    """The text Graphviz shows for a quoted DOT string (\\n is a line break)."""
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _attributes(text):
    attributes, position = {}, 0
    while position < len(text):
        match = _ATTRIBUTE.match(text, position)
        assert match, "cannot read the attributes %r at %d" % (text, position)
        name, quoted, bare = match.groups()
        assert name not in attributes, "attribute %s given twice in %r" % (name, text)
        attributes[name] = _unquote(quoted) if quoted is not None else bare
        position = match.end()
    return attributes


def parse_dot(text):
    """Return ``(nodes, edges)``: ``{id: attributes}`` and ``[(tail, head, attributes)]``."""
    lines = text.split("\n")
    assert lines[0] == "digraph batch_processors {"
    assert lines[-2:] == ["}", ""]
    lines = lines[1:-2]
    if lines[-len(LEGEND):] == LEGEND:
        lines = lines[:-len(LEGEND)]
    nodes, edges = {}, []
    for line in lines:
        edge = _EDGE.match(line)
        node = _NODE.match(line)
        if edge:
            tail, head, attributes = edge.groups()
            assert tail in nodes and head in nodes, "edge before its nodes: %r" % (line,)
            edges.append((tail, head, _attributes(attributes)))
        elif node:
            name, attributes = node.groups()
            assert name not in nodes and not edges, line
            nodes[name] = _attributes(attributes)
        else:
            assert line == "  node [shape=box, style=rounded];", "unexpected line %r" % (line,)
    return nodes, edges


# -- processors and converters --------------------------------------------------------

class Propose(SeparateBatchProcessorSynchronous):
    """Returns its descriptor; fails on negative ones."""

    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        return job_descriptor


class Train(Propose):
    pass


class Evaluate(Propose):
    pass


class Report(SeparateBatchProcessorSynchronous):
    """Fails on every job."""

    def _run_one_job_synchronous(self, job_descriptor):
        raise RuntimeError("cannot report %r" % (job_descriptor,))


class Archive(Propose):
    pass


def ok_results(handles):
    return [h.future.result() for h in handles
            if not h.future.cancelled() and h.future.exception() is None]


def to_train(*handles):
    return ok_results(handles)


def merge(*handles):
    return ok_results(handles)


def to_report(*handles):
    return [v for v in ok_results(handles) if v == 0]


def from_report(*handles):
    return ok_results(handles)  # Report always fails: nothing goes back


def to_archive(*handles):
    return [v for v in ok_results(handles) if v == 0]


def make_graph():
    """Fan-out, fan-in, a self-loop and a 2-cycle, plus an edge out of the cycle.

    propose -> train_a, train_b (fan-out, one converter); train_a, train_b -> evaluate
    (fan-in); evaluate -> evaluate (self-loop, counting down to 0); evaluate <-> report
    (2-cycle); evaluate -> archive, which is killed before the run.
    """
    propose, train_a, train_b, evaluate, report, archive = (
        Propose(), Train(), Train(), Evaluate(), Report(), Archive())
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(propose, train_a, to_train)
    graph.add_connected_processors(propose, train_b, to_train)
    graph.add_connected_processors(train_a, evaluate, merge)
    graph.add_connected_processors(train_b, evaluate, merge)
    graph.add_connected_processors(
        evaluate, evaluate, lambda *handles: [v - 1 for v in ok_results(handles) if v > 0])
    graph.add_connected_processors(evaluate, report, to_report)
    graph.add_connected_processors(report, evaluate, from_report)
    graph.add_connected_processors(evaluate, archive, to_archive)
    return graph, (propose, train_a, train_b, evaluate, report, archive)


def short(processor, name=None):
    """The label of a processor whose name another one of its graph shares."""
    return "%s@%x" % (name or type(processor).__name__, id(processor) & 0xFFFFFF)


def has_legend(text):
    return "\n".join(LEGEND) in text


# -- the tests --------------------------------------------------------------------------

def test_nodes_edges_and_cycles():
    graph, (propose, train_a, train_b, evaluate, report, archive) = make_graph()
    nodes, edges = parse_dot(graph.to_dot())
    assert sorted(nodes) == ["p%d" % i for i in range(6)]
    assert [nodes["p%d" % i]["label"] for i in range(6)] == [
        "Propose", short(train_a), short(train_b), "Evaluate", "Report", "Archive"]
    assert short(train_a) != short(train_b)
    assert [(tail, head, attributes["label"]) for tail, head, attributes in edges] == [
        ("p0", "p1", "to_train"),
        ("p0", "p2", "to_train"),
        ("p1", "p3", "merge"),
        ("p2", "p3", "merge"),
        ("p3", "p3", "<lambda>"),
        ("p3", "p4", "to_report"),
        ("p4", "p3", "from_report"),
        ("p3", "p5", "to_archive"),
    ]
    dashed = [(tail, head) for tail, head, attributes in edges
              if attributes.get("style") == "dashed"]
    assert dashed == [("p3", "p3"), ("p3", "p4"), ("p4", "p3")]  # the cycles, and only them
    free = [(tail, head) for tail, head, attributes in edges
            if attributes.get("constraint") == "false"]
    assert free == [("p3", "p3"), ("p4", "p3")]  # the edges that close a loop
    assert all("color" not in attributes for attributes in nodes.values())
    assert has_legend(graph.to_dot())  # what the dashed arrows mean


def test_processors_are_labelled_by_name_with_an_identity_for_shared_names():
    propose, train, evaluate, other = Propose(), Train(), Evaluate(), Archive()
    propose.name = "proposer"
    train.name = evaluate.name = "stage"  # two classes, one name
    other.name = None  # no name: the class's
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(propose, train, merge)
    graph.add_connected_processors(train, evaluate, merge)
    graph.add_connected_processors(evaluate, other, merge)
    nodes, _ = parse_dot(graph.to_dot())
    assert [nodes["p%d" % i]["label"] for i in range(4)] == [
        "proposer", short(train, "stage"), short(evaluate, "stage"), "Archive"]
    assert processor_labels(graph.processors) == [nodes["p%d" % i]["label"] for i in range(4)]


def test_counts_after_a_run():
    graph, processors = make_graph()
    propose, train_a, train_b, evaluate, report, archive = processors
    archive.kill()  # idle: what it is fed comes back cancelled
    results = run_batch_processors_graph(graph, {propose: [2, -1]})
    nodes, _ = parse_dot(graph.to_dot(results))
    # propose: 2 ok, -1 failed; each Train gets [2]; evaluate gets 2 twice and counts
    # down 2, 1, 0 on each path; report fails both 0s; archive cancels both 0s.
    expected = [
        ("Propose", 1, 1, 0),
        (short(train_a), 1, 0, 0),
        (short(train_b), 1, 0, 0),
        ("Evaluate", 6, 0, 0),
        ("Report", 0, 2, 0),
        ("Archive", 0, 0, 2),
    ]
    for i, (name, ok, failed, cancelled) in enumerate(expected):
        assert nodes["p%d" % i]["label"] == "%s\nok %d / failed %d / cancelled %d" % (
            name, ok, failed, cancelled)
    assert [nodes["p%d" % i].get("color") for i in range(6)] == [
        "red", None, None, None, "red", "orange"]
    assert graph_to_dot(graph, results) == graph.to_dot(results)


def test_edges_count_the_handles_their_converter_was_given():
    graph, processors = make_graph()
    propose, train_a, train_b, evaluate, report, archive = processors
    archive.kill()
    results = run_batch_processors_graph(graph, {propose: [2, -1]})
    _, edges = parse_dot(graph.to_dot(results))
    # Every handle of a source goes to each of its converters: propose 2, each train 1,
    # evaluate 6, report 2.
    assert [(tail, head, attributes["label"]) for tail, head, attributes in edges] == [
        ("p0", "p1", "to_train\n2 handles in"),
        ("p0", "p2", "to_train\n2 handles in"),
        ("p1", "p3", "merge\n1 handle in"),
        ("p2", "p3", "merge\n1 handle in"),
        ("p3", "p3", "<lambda>\n6 handles in"),
        ("p3", "p4", "to_report\n6 handles in"),
        ("p4", "p3", "from_report\n2 handles in"),
        ("p3", "p5", "to_archive\n6 handles in"),
    ]
    _, edges = parse_dot(graph.to_dot({train_a: results[train_a]}))  # the others unknown
    assert [attributes["label"] for _, _, attributes in edges][:3] == [
        "to_train", "to_train", "merge\n1 handle in"]


def test_results_of_a_processor_missing_from_the_dict_show_no_counts():
    graph, (propose, train_a, _, _, _, _) = make_graph()
    handles = run_batch_processor(Propose(), [1, -1])
    nodes, _ = parse_dot(graph.to_dot({train_a: handles}))
    assert nodes["p0"]["label"] == "Propose"
    assert nodes["p1"]["label"] == "%s\nok 1 / failed 1 / cancelled 0" % short(train_a)


def test_results_must_be_a_dict():
    graph, (propose, _, _, _, _, _) = make_graph()
    handles = run_batch_processor(Propose(), [1])
    with pytest.raises(TypeError, match="dict a graph run returned"):
        graph.to_dot(handles)


class Callable(object):
    def __call__(self, *handles):
        return []


def weird(*handles):
    return []


weird.__name__ = 'say "hi" \\ back\nslash'
if hasattr(weird, "__qualname__"):
    weird.__qualname__ = weird.__name__


def test_converter_names_are_escaped():
    one, two = Propose(), Train()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(one, two, weird)
    graph.add_connected_processors(one, two, functools.partial(merge, 1))
    graph.add_connected_processors(one, two, Callable())
    graph.add_connected_processors(two, one, lambda *handles: [])
    nodes, edges = parse_dot(graph.to_dot())
    assert [attributes["label"] for _, _, attributes in edges] == [
        'say "hi" \\ back\nslash', "merge", "Callable", "<lambda>"]
    assert [attributes.get("style") for _, _, attributes in edges] == ["dashed"] * 4
    assert [attributes.get("constraint") for _, _, attributes in edges] == [
        None, None, None, "false"]


def test_converter_name():
    def tagged():
        def convert(*handles):
            return []
        return convert
    assert converter_name(merge) == "merge"
    assert converter_name(tagged()) == "convert"  # not tagged.<locals>.convert
    assert converter_name(functools.partial(functools.partial(merge, 1), 2)) == "merge"
    assert converter_name(Callable()) == "Callable"
    assert converter_name(Callable().__call__) == "__call__"
    assert converter_name(len) == "len"


def test_dot_quote():
    assert dot_quote("plain") == '"plain"'
    assert dot_quote('a "b"') == '"a \\"b\\""'
    assert dot_quote("back\\slash") == '"back\\\\slash"'
    assert dot_quote("two\nlines") == '"two\\nlines"'
    assert dot_quote("<lambda>") == '"<lambda>"'
    for text in ['a "b"', "back\\slash", "two\nlines", "\\n", '\\"', "<lambda>", "{x}; y=z"]:
        assert _unquote(dot_quote(text)[1:-1]) == text


def test_a_longer_cycle_and_the_edges_around_it():
    a, b, c, d, e = Propose(), Train(), Evaluate(), Report(), Archive()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(a, b, merge)  # into the cycle
    graph.add_connected_processors(b, c, merge)
    graph.add_connected_processors(c, d, merge)
    graph.add_connected_processors(d, b, merge)  # closes b -> c -> d -> b
    graph.add_connected_processors(c, e, merge)  # out of the cycle
    _, edges = parse_dot(graph.to_dot())
    assert [(t, h, attributes.get("style"), attributes.get("constraint"))
            for t, h, attributes in edges] == [
        ("p0", "p1", None, None),
        ("p1", "p2", "dashed", None),
        ("p2", "p3", "dashed", None),
        ("p3", "p1", "dashed", "false"),
        ("p2", "p4", None, None),
    ]


def test_graphs_without_edges():
    assert parse_dot(BatchProcessorsGraph().to_dot()) == ({}, [])
    graph = BatchProcessorsGraph()
    graph.add_processor(Propose())
    graph.add_processor(Propose())
    nodes, edges = parse_dot(graph.to_dot())
    assert [nodes[name]["label"] for name in ("p0", "p1")] == [
        short(p) for p in graph.processors]
    assert edges == []
    assert not has_legend(graph.to_dot())  # no dashed arrow to explain


def test_a_long_chain():
    processors = [Propose() for _ in range(1500)]  # deeper than the recursion limit
    graph = BatchProcessorsGraph()
    for source, destination in zip(processors, processors[1:]):
        graph.add_connected_processors(source, destination, merge)
    graph.add_connected_processors(processors[-1], processors[0], to_train)
    _, edges = parse_dot(graph.to_dot())
    assert len(edges) == 1500
    assert all(attributes.get("style") == "dashed" for _, _, attributes in edges)
    assert [(t, h) for t, h, attributes in edges if attributes.get("constraint")] == [
        ("p1499", "p0")]


def svg_texts(dot_text):
    process = subprocess.Popen([DOT, "-Tsvg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    svg, errors = process.communicate(dot_text.encode("utf-8"))
    assert process.returncode == 0, errors
    assert b"Warning" not in errors and b"Error" not in errors, errors
    root = ElementTree.fromstring(svg)
    return [element.text for element in root.iter() if element.tag.endswith("}text")]


@needs_dot
def test_graphviz_renders_the_picture_with_its_labels():
    graph, processors = make_graph()
    propose, train_a, train_b, evaluate, report, archive = processors
    archive.kill()
    results = run_batch_processors_graph(graph, {propose: [2, -1]})
    texts = svg_texts(graph.to_dot(results))
    for expected in ["Propose", short(train_a), short(train_b), "Evaluate", "Report",
                     "Archive", "to_train", "merge", "<lambda>", "to_report",
                     "from_report", "to_archive", "ok 6 / failed 0 / cancelled 0",
                     "ok 0 / failed 0 / cancelled 2", "6 handles in", "legend",
                     "on a cycle: output fed back upstream"]:
        assert expected in texts


@needs_dot
def test_graphviz_shows_escaped_names_as_they_are():
    one, two = Propose(), Train()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(one, two, weird)
    graph.add_connected_processors(two, one, lambda *handles: [])
    texts = svg_texts(graph.to_dot())
    assert 'say "hi" \\ back' in texts and "slash" in texts  # two lines
    assert "<lambda>" in texts
