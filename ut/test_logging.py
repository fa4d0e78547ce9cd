"""Tests of what ``batch_processor`` logs, all through ``logging.getLogger("batch_processor")``.

Job and batch start and end are logged at DEBUG; kills, abandoned threads, job
timeouts and retries at WARNING; nothing else in a normal run.
"""
from __future__ import absolute_import, division, print_function

import ast
import glob
import logging
import os
import sys

import pytest

import batch_processor
from batch_processor import (
    BatchProcessorsGraph,
    ConverterError,
    RetryPolicy,
    SeparateBatchProcessor,
    SequentialBatchProcessorSynchronous,
    run_batch_processor,
    run_batch_processors_graph,
)
from batch_processor.compat import From, Return, asyncio, coroutine
from batch_processor.interface import describe
from helpers import TIMEOUT, BlockingEcho, run_script

PACKAGE = os.path.dirname(os.path.abspath(batch_processor.__file__))


# -- processors -------------------------------------------------------------------------

class Echo(BlockingEcho):
    """Named for the log lines the tests read."""


class AsyncEcho(SeparateBatchProcessor):
    """The coroutine form of `Echo`, without "block"."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        if job_descriptor < 0:
            raise ValueError("negative descriptor %r" % (job_descriptor,))
        raise Return(job_descriptor)


class Batches(SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return list(job_descriptors)


class Flaky(SeparateBatchProcessor):
    """Each descriptor's first attempt fails; the second returns the descriptor."""

    def __init__(self, **kwargs):
        super(Flaky, self).__init__(**kwargs)
        self.attempts = {}

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(asyncio.sleep(0))
        self.attempts[job_descriptor] = self.attempts.get(job_descriptor, 0) + 1
        if self.attempts[job_descriptor] == 1:
            raise IOError("first attempt of %r fails" % (job_descriptor,))
        raise Return(job_descriptor)


def successes(*handles):
    return [h.future.result() for h in handles
            if not h.future.cancelled() and h.future.exception() is None]


def records_at_least(caplog, level):
    return [r for r in caplog.records if r.levelno >= level]


def package_records(caplog, level=logging.DEBUG):
    return [r for r in caplog.records
            if r.levelno >= level and (r.name == "batch_processor" or r.name.startswith("batch_processor."))]


def naming(records, processor, *words):
    """The records whose message names ``processor`` and contains every one of ``words``."""
    name = describe(processor)
    found = []
    for record in records:
        message = record.getMessage()
        if name in message and all(word in message.lower() for word in words):
            found.append(record)
    return found


def run_then_break_the_converter(source):
    """Run ``source`` -> Echo on ["block", 1] with a converter that raises.

    1's handle reaches the converter while "block" still waits (in a thread, or for
    one), so the run kills ``source`` with one unfinished job.
    """
    graph = BatchProcessorsGraph()

    def broken(*handles):
        raise RuntimeError("broken converter")

    graph.add_connected_processors(source, Echo(), broken)
    try:
        with pytest.raises(ConverterError):
            run_batch_processors_graph(graph, {source: ["block", 1]})
    finally:
        source.release.set()


# -- what the core logs now ---------------------------------------------------------------

def test_kill_with_unfinished_jobs_warns_naming_the_processor(caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    source = Echo()
    run_then_break_the_converter(source)
    warnings = naming(package_records(caplog, logging.WARNING), source, "kill")
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].name == "batch_processor"
    assert "1 unfinished" in warnings[0].getMessage()


def test_kill_without_unfinished_jobs_is_quiet(caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    processor = Echo()
    processor.kill()
    assert records_at_least(caplog, logging.WARNING) == []


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_descriptors_for_a_stopped_processor_come_back_cancelled_with_a_warning(how, caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    source, target = Batches(), Echo()  # one batch: one converter call, one feed

    def stop_then_feed(*handles):
        target.stop()  # idle: stopped at once, on the run's loop
        return successes(*handles)

    graph = BatchProcessorsGraph()
    if how == "stopped":
        graph.add_connected_processors(source, target, stop_then_feed)
    else:
        graph.add_connected_processors(source, target, successes)
        target.kill()  # idle: nothing to warn about yet
        assert records_at_least(caplog, logging.WARNING) == []
    results = run_batch_processors_graph(graph, {source: [1, 2, 3]})
    assert target.state.value == how
    assert len(results[target]) == 3
    assert all(h.future.cancelled() for h in results[target])
    warnings = naming(package_records(caplog, logging.WARNING), target, how, "cancelled")
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "3 descriptors" in warnings[0].getMessage()
    assert records_at_least(caplog, logging.WARNING) == warnings  # nothing else


@pytest.mark.parametrize("kind", [Echo, AsyncEcho, Batches])
def test_a_normal_run_logs_no_warning(kind, caplog):
    caplog.set_level(logging.DEBUG)
    first, second = kind(), kind()
    graph = BatchProcessorsGraph()
    graph.add_connected_processors(first, second, successes)
    results = run_batch_processors_graph(graph, {first: [1, 2, 3]})
    assert [len(results[p]) for p in graph.processors] == [3, 3]
    assert records_at_least(caplog, logging.WARNING) == []


def test_the_package_logger_has_a_null_handler():
    """An application that configures no logging sees nothing (and 2.7 no complaint)."""
    handlers = logging.getLogger("batch_processor").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_a_warning_without_logging_configured_prints_nothing():
    returncode, out, err = run_script("""
        import logging
        import batch_processor
        logging.getLogger("batch_processor").warning("nobody listens")
        print("ok")
    """)
    assert (returncode, out.strip(), err) == (0, "ok", "")


def test_failed_jobs_are_in_their_handles_not_in_warnings(caplog):
    caplog.set_level(logging.DEBUG)
    handles = run_batch_processor(Echo(), [1, -1, -2])
    assert sum(1 for h in handles if h.future.exception() is not None) == 2
    assert records_at_least(caplog, logging.WARNING) == []


def _library_modules():
    for path in sorted(glob.glob(os.path.join(PACKAGE, "*.py"))):
        name = os.path.basename(path)
        if name in ("demo.py", "__main__.py"):
            continue  # programs, which print what they are asked for
        if "py3" in name and sys.version_info[0] == 2:
            continue  # Python 3 syntax (modules named *py3*), checked on Python 3
        yield name, path


def _string_literal(node):
    """The value of a string literal node, or ``None``."""
    if sys.version_info < (3, 8):
        return node.s if isinstance(node, ast.Str) else None
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_library_code_never_prints_and_logs_under_batch_processor():
    problems = []
    modules = list(_library_modules())
    assert len(modules) >= 8
    for name, path in modules:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), path)
        for node in ast.walk(tree):
            if type(node).__name__ == "Print":  # the statement, on 2.7
                problems.append("%s:%d: print statement" % (name, node.lineno))
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name) and function.id == "print":
                problems.append("%s:%d: print()" % (name, node.lineno))
            if isinstance(function, ast.Attribute) and function.attr == "getLogger":
                value = _string_literal(node.args[0]) if len(node.args) == 1 else None
                if value is None or value.split(".")[0] != "batch_processor":
                    problems.append("%s:%d: a logger not under batch_processor" % (name, node.lineno))
    assert problems == []


# -- what the core should log, and does not yet -----------------------------------------

@pytest.mark.parametrize("kind", [Echo, AsyncEcho])
def test_job_start_and_end_at_debug(kind, caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    processor = kind()
    run_batch_processor(processor, [4242, -4343])
    debug = [r for r in package_records(caplog) if r.levelno == logging.DEBUG]
    for descriptor in ("4242", "-4343"):
        about = [r for r in naming(debug, processor) if descriptor in r.getMessage()]
        assert len(about) >= 2  # its start and its end
    assert records_at_least(caplog, logging.WARNING) == []


def test_batch_start_and_end_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    processor = Batches()
    run_batch_processor(processor, [1, 2, 3])
    debug = naming([r for r in package_records(caplog) if r.levelno == logging.DEBUG],
                   processor, "batch")
    assert len(debug) >= 2


def test_retries_warn_naming_the_processor(caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    processor = Flaky(retry=RetryPolicy(attempts=2, retry_on=(IOError,)))
    handles = run_batch_processor(processor, ["only"])
    assert handles[0].future.result() == "only"  # retried once, then it worked
    warnings = naming(package_records(caplog, logging.WARNING), processor, "attempt")
    assert len(warnings) == 1
    assert "'only'" in warnings[0].getMessage()


def test_abandoned_threads_warn_naming_the_processor(caplog):
    caplog.set_level(logging.DEBUG, logger="batch_processor")
    source = Echo()
    graph = BatchProcessorsGraph()

    def broken(*handles):
        assert source.started.wait(TIMEOUT)  # "block" runs in a thread: kill() abandons it
        raise RuntimeError("broken converter")

    graph.add_connected_processors(source, Echo(), broken)
    try:
        with pytest.raises(ConverterError):
            run_batch_processors_graph(graph, {source: ["block", 1]})
    finally:
        source.release.set()
    assert naming(package_records(caplog, logging.WARNING), source, "abandon")
