"""Shared pytest configuration of the ``batch_processor`` tests.

* On Python 2 the Python-3-only test modules (``test_py3_*.py``) are not collected.
* ``loop_factory``: each kind of event loop the suite runs on in turn - ``default``,
  ``uvloop`` (where it is installed, Python 3 only) and ``eager`` (the default loop with
  ``asyncio.eager_task_factory``, Python 3.12+); a kind that is not available is skipped.
  Tests of the synchronous runners pass it as ``loop_factory=``.
* ``loop``: a fresh event loop made by ``loop_factory``, in debug mode and current, for
  tests that drive processors by hand; a task of it left pending fails the test.
* ``gates`` (a `helpers.Gates` on ``loop``), ``process_pool``, ``restore_current_loop``
  and ``default_sigint``. The fixtures live here only; test modules parametrize their
  processor kinds with plain ``pytest.mark.parametrize`` marks.
* Every test fails if asyncio (trollius on 2.7) logged an error while it ran, such
  as "Task was destroyed but it is pending" or "exception was never retrieved";
  mark a test ``allow_asyncio_errors`` when it means to provoke one.
* Every `helpers.Blocker` is released after each test, so no job thread stays blocked.
"""
from __future__ import absolute_import, division, print_function

import gc
import glob
import logging
import os
import signal
import sys

import pytest

import helpers
from batch_processor import compat

HERE = os.path.dirname(os.path.abspath(__file__))

collect_ignore = []
if sys.version_info[0] == 2:
    collect_ignore = sorted(os.path.basename(path)
                            for path in glob.glob(os.path.join(HERE, "test_py3_*.py")))


def pytest_collection_finish(session):
    """What the modules imported stays alive to the end: the collector skips it from now.

    Each test collects garbage twice (`no_asyncio_errors`); without this, each such
    full collection walks every object of every module imported (hypothesis, Dask,
    scikit-learn...), and the suite spends most of its time there.
    """
    gc.collect()
    if hasattr(gc, "freeze"):  # Python 3.7+
        gc.freeze()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_asyncio_errors: the test may make asyncio log ERROR records")


_ERRORS = helpers.ErrorRecords()  # the ERROR (and worse) records of the event-loop library
for _name in ("asyncio", "trollius"):
    logging.getLogger(_name).addHandler(_ERRORS)


@pytest.fixture(autouse=True)
def no_asyncio_errors(request):
    """Fail the test if asyncio or trollius logged an ERROR record while it ran."""
    gc.collect()  # leftovers of earlier tests report now, not during this one
    del _ERRORS.records[:]
    yield
    gc.collect()  # "Task was destroyed but it is pending" is logged on collection
    records, _ERRORS.records[:] = list(_ERRORS.records), []
    if records and request.node.get_closest_marker("allow_asyncio_errors") is None:
        pytest.fail("the event-loop library logged errors during the test:\n" + "\n".join(
            "%s: %s" % (record.name, record.getMessage()) for record in records))


@pytest.fixture(autouse=True)
def release_blockers():
    """Release the jobs of every `helpers.Blocker` the test made."""
    yield
    helpers.release_all_blockers()


# -- event loops -----------------------------------------------------------------------

try:
    import uvloop
except ImportError:  # Python 2.7, or not installed (tox installs it on py311)
    uvloop = None

EAGER_TASK_FACTORY = getattr(compat.asyncio, "eager_task_factory", None)  # Python 3.12+


def _new_uvloop():
    return uvloop.new_event_loop()


def _new_eager_loop():
    """A default event loop whose tasks start running in ``create_task`` itself."""
    event_loop = compat.asyncio.new_event_loop()
    event_loop.set_task_factory(EAGER_TASK_FACTORY)
    return event_loop


LOOP_FACTORIES = [
    pytest.param(compat.asyncio.new_event_loop, id="default"),
    pytest.param(_new_uvloop, id="uvloop", marks=pytest.mark.skipif(
        uvloop is None, reason="uvloop is not installed (or this is Python 2)")),
    pytest.param(_new_eager_loop, id="eager", marks=pytest.mark.skipif(
        EAGER_TASK_FACTORY is None, reason="asyncio.eager_task_factory needs Python 3.12+")),
]


@pytest.fixture(params=LOOP_FACTORIES)
def loop_factory(request):
    """A function that makes a new event loop of one kind: the default loop, uvloop, or
    the default loop with the eager task factory. For the runners' ``loop_factory=``."""
    return request.param


def _pending_tasks(event_loop):
    return [task for task in compat.all_tasks(event_loop) if not task.done()]


@pytest.fixture
def loop(loop_factory):
    """A new event loop made by ``loop_factory``, with debug on, current while the test
    runs (trollius needs it; feeding a processor outside a run binds it to this loop).

    At the end a task of the loop still pending fails the test; the loop is closed (a
    test may close it itself, as a killed run does).
    """
    event_loop = loop_factory()
    event_loop.set_debug(True)
    token = compat.enter_loop(event_loop)  # trollius: current until leave_loop restores
    if not compat.PY2:
        compat.asyncio.set_event_loop(event_loop)
    pending = []
    try:
        yield event_loop
        pending = _pending_tasks(event_loop)
    finally:
        try:
            if not event_loop.is_closed():
                leftovers = _pending_tasks(event_loop)
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    event_loop.run_until_complete(
                        compat.asyncio.gather(*leftovers, return_exceptions=True))
                event_loop.close()
        finally:
            if not compat.PY2:
                compat.asyncio.set_event_loop(None)
            compat.leave_loop(token)
    if pending:
        pytest.fail("the test left %d pending tasks on its loop: %r" % (len(pending), pending))


# -- fixtures of the tests that drive processors by hand --------------------------------

@pytest.fixture
def gates(loop):
    """A `helpers.Gates` on ``loop``; every gate is opened at the end."""
    gates = helpers.Gates(loop)
    try:
        yield gates
    finally:
        gates.open_all()  # no job thread stays blocked after the test
        del helpers.GATES[gates.key]


@pytest.fixture
def process_pool():
    """A process pool of two workers, also `helpers.PROCESS_POOLS[-1]` while the test runs
    (a processor that is pickled into the workers cannot hold it)."""
    pool = helpers.make_process_pool(2)
    helpers.PROCESS_POOLS.append(pool)
    try:
        yield pool
    finally:
        helpers.PROCESS_POOLS.remove(pool)
        pool.shutdown(wait=True)


@pytest.fixture
def restore_current_loop():
    """Put the thread's current event loop back as it was (the test changes it)."""
    saved = compat.thread_loop()  # without the policy API or asyncio's private attributes
    yield
    compat.asyncio.set_event_loop(saved)


@pytest.fixture
def default_sigint():
    """SIGINT raises ``KeyboardInterrupt`` while the test runs, whatever pytest set."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
