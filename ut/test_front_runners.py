"""Every runner takes the same run options and honours each (issue 18, items 1 and 8).

One scaffold, `drive`, runs a processor through any runner (``run_*``, their
``_async`` forms, the streaming ``iter_*`` forms and, on Python 3, their async
iterators) on any loop factory, and returns the processor's handles; each option is
then tested through every runner, over the loop factories of ``conftest.py``.
"""
from __future__ import absolute_import, division, print_function

import inspect
import io
import json
import os

import pytest

import batch_processor
from batch_processor import (
    BatchProcessorsGraph, RunTimeoutError, SeparateBatchProcessor,
    SeparateBatchProcessorSynchronous, compat, execution)
from batch_processor.compat import From, Return, coroutine

from helpers import PY2, Separate, descriptors_of, outcome

SYNC = ["run_batch_processors_graph", "run_batch_processor", "run_batch_processor_single",
        "iter_batch_processors_graph", "iter_batch_processor"]
ASYNC = ["run_batch_processors_graph_async", "run_batch_processor_async"]
if not PY2:
    ASYNC += ["iter_batch_processors_graph_async", "iter_batch_processor_async"]
RUNNERS = SYNC + ASYNC
MANY = [name for name in RUNNERS if name != "run_batch_processor_single"]
OPTIONS = ["timeout", "keep_results", "progress", "loop_factory", "max_in_flight",
           "checkpoint", "checkpoint_interval", "trace"]


def _is_graph(name):
    return "graph" in name


def drive(name, processor, descriptors, loop_factory, stop_after=None, **options):
    """Run ``processor`` over ``descriptors`` with the runner ``name`` on a loop of
    ``loop_factory``; return the processor's handles (a list; ``[]`` for a
    ``run_batch_processor_single`` that dropped its handle).

    ``stop_after``: for a streaming runner, close the stream after that many handles.
    """
    runner = getattr(batch_processor, name)
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    first = (graph, {processor: descriptors}) if _is_graph(name) else (processor, descriptors)
    if name == "run_batch_processor_single":
        (descriptor,) = descriptors
        handle = runner(processor, descriptor, loop_factory=loop_factory, **options)
        return [] if handle is None else [handle]
    if name in SYNC:
        result = runner(*first, loop_factory=loop_factory, **options)
        if name.startswith("run_"):
            return result[processor] if _is_graph(name) else result
        handles = []
        for item in result:
            handles.append(item[1] if _is_graph(name) else item)
            if stop_after is not None and len(handles) == stop_after:
                result.close()
                break
        return handles
    loop = loop_factory()
    token = compat.enter_loop(loop)
    try:
        if name.startswith("run_"):
            result = loop.run_until_complete(compat.as_future(runner(*first, **options), loop))
            return result[processor] if _is_graph(name) else result
        from front_py3 import collect
        return loop.run_until_complete(collect(lambda: runner(*first, **options),
                                               not _is_graph(name), stop_after))
    finally:
        try:
            for task in compat.all_tasks(loop):
                task.cancel()
        finally:
            loop.close()
            compat.leave_loop(token)


def sizes(name, count):
    """``count`` descriptors, or one for ``run_batch_processor_single``."""
    return list(range(1 if name == "run_batch_processor_single" else count))


# -- the signatures ------------------------------------------------------------------

def _parameters(function):
    if PY2:
        spec = inspect.getargspec(function)
        return list(zip(spec.args, [None] * (len(spec.args) - len(spec.defaults)) + list(spec.defaults)))
    return [(p.name, p.default if p.default is not p.empty else None)
            for p in inspect.signature(function).parameters.values()]


def test_every_runner_takes_the_same_options_with_the_same_defaults():
    expected = [("timeout", None), ("keep_results", None), ("progress", False),
                ("loop_factory", None), ("max_in_flight", None), ("checkpoint", None),
                ("checkpoint_interval", 0.1), ("trace", None)]
    for name in RUNNERS:
        parameters = _parameters(getattr(batch_processor, name))
        options = parameters[2:]
        wanted = [(option, default) for option, default in expected
                  if name in SYNC or option != "loop_factory"]
        assert options == wanted, name
    assert sorted(RUNNERS) == sorted(
        name for name in batch_processor.__all__ if name.startswith(("run_", "iter_")))


# -- bad options fail at once, before anything runs ----------------------------------

BAD = [("timeout", "1"), ("timeout", -1), ("keep_results", 3), ("progress", "yes"),
       ("max_in_flight", 0), ("checkpoint", 3), ("checkpoint_interval", "1"),
       ("checkpoint_interval", 0), ("checkpoint_interval", None), ("trace", 3),
       ("loop_factory", 3)]


@pytest.mark.parametrize("option, value", BAD, ids=["%s=%r" % bad for bad in BAD])
@pytest.mark.parametrize("name", RUNNERS)
def test_a_bad_option_fails_at_the_call_naming_runner_and_option(name, option, value, tmpdir):
    if option == "loop_factory" and name in ASYNC:
        pytest.skip("the async runners run on the caller's loop")
    processor = Separate()
    graph = BatchProcessorsGraph()
    graph.add_processor(processor)
    first = (graph, {processor: [1]}) if _is_graph(name) else (
        processor, 1 if name.endswith("single") else [1])
    options = {option: value}
    if option == "checkpoint_interval":
        options["checkpoint"] = str(tmpdir.join("c.sqlite"))
    with pytest.raises((ValueError, TypeError)) as info:
        getattr(batch_processor, name)(*first, **options)  # no loop runs: never awaited
    assert "%s(%s=" % (name, option) in str(info.value)
    assert processor.seen == []
    assert id(processor) not in execution._claimed
    assert not tmpdir.join("c.sqlite").check()


# -- each option through each runner ---------------------------------------------------

class Forever(SeparateBatchProcessor):
    """Jobs that never end by themselves (the run's timeout ends them)."""

    @coroutine
    def _run_one_job(self, job_descriptor):
        yield From(compat.new_future(compat.current_loop()))
        raise Return(job_descriptor)  # pragma: no cover


@pytest.mark.parametrize("name", RUNNERS)
def test_timeout(name, loop_factory):
    with pytest.raises(RunTimeoutError) as info:
        drive(name, Forever(), sizes(name, 2), loop_factory, timeout=0.01)
    assert "timeout=0.01" in str(info.value)


@pytest.mark.parametrize("name", RUNNERS)
def test_keep_results(name, loop_factory):
    kept = Separate()
    assert drive(name, kept, sizes(name, 3), loop_factory, keep_results=[kept]) != []
    dropped = Separate()
    assert drive(name, dropped, sizes(name, 3), loop_factory, keep_results=()) == []
    assert dropped.seen == sizes(name, 3)


@pytest.mark.parametrize("name", RUNNERS)
def test_progress(name, loop_factory, capfd):
    processor = Separate(name="progress_shown")
    handles = drive(name, processor, sizes(name, 3), loop_factory, progress=True)
    assert descriptors_of(handles) == sizes(name, 3)
    assert "progress_shown" in capfd.readouterr().err


@pytest.mark.parametrize("name", SYNC)
def test_loop_factory(name, loop_factory):
    made = []

    def factory():
        made.append(loop_factory())
        return made[-1]
    drive(name, Separate(), sizes(name, 2), factory)
    assert len(made) == 1 and made[0].is_closed()


class Logged(Separate):
    """Logs ``("run", descriptor)`` as each job starts, in ``log`` (which a checkpoint
    neither records nor restores)."""

    _bp_not_recorded = ("log",)

    def __init__(self, log, **kwargs):
        super(Logged, self).__init__(**kwargs)
        self.log = log

    @coroutine
    def _run_one_job(self, job_descriptor):
        self.log.append(("run", job_descriptor))
        raise Return(job_descriptor)


def _logged_source(log, count):
    for i in range(count):
        log.append(("read", i))
        yield i


@pytest.mark.parametrize("name", MANY)
def test_max_in_flight(name, loop_factory):
    log = []
    handles = drive(name, Logged(log), _logged_source(log, 3), loop_factory, max_in_flight=1)
    assert descriptors_of(handles) == [0, 1, 2]
    assert log == [("read", 0), ("run", 0), ("read", 1), ("run", 1), ("read", 2), ("run", 2)]


@pytest.mark.parametrize("name", RUNNERS)
def test_checkpoint_of_a_finished_run_returns_its_result(name, loop_factory, tmpdir):
    path = str(tmpdir.join("run.sqlite"))
    first = drive(name, Logged([]), sizes(name, 3), loop_factory, checkpoint=path,
                  checkpoint_interval=5)
    assert tmpdir.join("run.sqlite").check()
    log = []
    handles = drive(name, Logged(log), sizes(name, 3), loop_factory, checkpoint=path)
    assert log == []
    assert sorted(outcome(h) for h in handles) == sorted(outcome(h) for h in first)


STREAMS = [name for name in RUNNERS if name.startswith("iter_")]


@pytest.mark.parametrize("name", STREAMS)
def test_a_checkpointed_stream_closed_early_resumes(name, loop_factory, tmpdir):
    path = str(tmpdir.join("stream.sqlite"))
    yielded = drive(name, Logged([]), range(6), loop_factory, stop_after=2, checkpoint=path,
                    max_in_flight=1)
    assert descriptors_of(yielded) == [0, 1]
    log = []
    handles = drive(name, Logged(log), range(6), loop_factory, checkpoint=path, max_in_flight=1)
    assert descriptors_of(handles) == list(range(6))  # once each, over the run's life
    assert [outcome(h) for h in sorted(handles, key=lambda h: h.descriptor)] == [
        ("ok", i) for i in range(6)]
    ran = [descriptor for _, descriptor in log]
    assert not set(ran) & set([0, 1])  # what the first run recorded is not run again


@pytest.mark.parametrize("name", RUNNERS)
def test_trace(name, loop_factory, tmpdir):
    path = str(tmpdir.join("run.trace.json"))
    drive(name, Separate(name="traced"), sizes(name, 2), loop_factory, trace=path)
    with io.open(path, encoding="utf-8") as trace:
        events = json.load(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    jobs = [e for e in events if e.get("ph") == "X"]
    assert len(jobs) == len(sizes(name, 2))
    assert all(e["args"]["outcome"] == "ok" for e in jobs)


@pytest.mark.parametrize("name", STREAMS)
def test_a_traced_stream_closed_early_leaves_valid_json(name, loop_factory, tmpdir):
    path = str(tmpdir.join("run.trace.json"))
    drive(name, Separate(), range(5), loop_factory, stop_after=1, trace=path, max_in_flight=1)
    with io.open(path, encoding="utf-8") as trace:
        json.load(trace)


def test_the_default_checkpoint_interval_is_a_tenth_of_a_second():
    assert _parameters(batch_processor.run_batch_processor)[-2] == ("checkpoint_interval", 0.1)



class InProcesses(SeparateBatchProcessorSynchronous):
    """Jobs in the processor's own process pool: each returns the worker's process id."""

    def _run_one_job_synchronous(self, job_descriptor):
        return os.getpid()


@pytest.mark.parametrize("name", RUNNERS)
def test_a_process_pool_through_every_runner(name, loop_factory):
    processor = InProcesses(executor="processes", max_parallel_jobs=1)
    try:
        handles = drive(name, processor, sizes(name, 2), loop_factory, timeout=60)
    finally:
        processor.kill()  # ends the pool's worker
    assert [outcome(h)[0] for h in handles] == ["ok"] * len(sizes(name, 2))
    assert all(outcome(h)[1] != os.getpid() for h in handles)
