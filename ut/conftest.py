"""Shared pytest configuration of the ``batch_processor`` tests.

* On Python 2 the Python-3-only test modules (``test_py3_*.py``) are not collected.
* ``loop``: a fresh event loop in debug mode for tests that drive processors by
  hand; it fails the test if one of its tasks is left pending.
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
import sys

import pytest

import helpers
from batch_processor import compat

HERE = os.path.dirname(os.path.abspath(__file__))

collect_ignore = []
if sys.version_info[0] == 2:
    collect_ignore = sorted(os.path.basename(path)
                            for path in glob.glob(os.path.join(HERE, "test_py3_*.py")))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_asyncio_errors: the test may make asyncio log ERROR records")


class _ErrorRecords(logging.Handler):
    """Keeps the ERROR (and worse) records of the event-loop library."""

    def __init__(self):
        logging.Handler.__init__(self, logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


_ERRORS = _ErrorRecords()
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


@pytest.fixture
def loop():
    """A new event loop with debug on, current while the test runs (trollius needs it).

    At the end the loop is closed; a task of it left pending fails the test.
    """
    event_loop = compat.asyncio.new_event_loop()
    event_loop.set_debug(True)
    token = compat.enter_loop(event_loop)
    try:
        yield event_loop
        pending = [task for task in compat.all_tasks(event_loop) if not task.done()]
    finally:
        try:
            leftovers = [task for task in compat.all_tasks(event_loop) if not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers and not event_loop.is_closed():
                event_loop.run_until_complete(
                    compat.asyncio.gather(*leftovers, return_exceptions=True))
        finally:
            event_loop.close()
            compat.leave_loop(token)
    if pending:
        pytest.fail("the test left %d pending tasks on its loop: %r" % (len(pending), pending))
