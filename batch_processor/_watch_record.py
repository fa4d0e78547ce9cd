"""What a checkpoint records for those who watch the run (``batch_processor.watch``).

The `checkpoint.Recorder` tells a `Progress` what it is told (descriptors fed,
handles collected) and has it write, in each record's transaction, a few counts,
times and short reprs, so that ``read_checkpoint`` and ``python -m batch_processor
status`` read a run's progress without unpickling anything (and without the run's
own classes being importable). Nothing here is read when a run resumes.

Tables (created at the first record, so older checkpoints simply lack them):

* ``watch_meta``: ``started`` (when the run first started, UNIX seconds) and
  ``updated`` (when it last recorded);
* ``watch_counts``: per processor (the graph's index), the totals over the run's
  whole life of descriptors fed and handles succeeded, failed and cancelled;
* ``watch_records``: one row per record and processor that changed: the time, those
  totals then, the durations of the jobs collected (JSON ``[[key, seconds], ...]``,
  seconds from feeding to collecting, for kept processors), and the last few results
  and failures as short reprs (JSON ``[[descriptor, text], ...]``).
"""
from __future__ import absolute_import, division, print_function

import collections
import itertools
import json
import time

from . import compat
from .interface import safe_repr, safe_str

__all__ = ["Progress", "SCHEMA"]

#: How many of the latest results and failures each record keeps per processor.
LATEST = 5
#: How long a repr or an error message kept for watchers may be (characters).
TEXT_LIMIT = 300

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS watch_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS watch_counts (node INTEGER PRIMARY KEY, "
    "fed INTEGER NOT NULL, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL, "
    "cancelled INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS watch_records (id INTEGER PRIMARY KEY, time REAL NOT NULL, "
    "node INTEGER NOT NULL, fed INTEGER NOT NULL, succeeded INTEGER NOT NULL, "
    "failed INTEGER NOT NULL, cancelled INTEGER NOT NULL, durations TEXT, results TEXT, "
    "failures TEXT)",
)


class Progress(object):
    """Counts of one run of a checkpointed graph of ``count`` processors."""

    def __init__(self, count):
        self.started = time.time()
        self.totals = [[0, 0, 0, 0] for _ in range(count)]  # fed, ok, failed, cancelled
        self.base = None  # the totals earlier launches recorded, read at the first write
        self.changed = set()
        self.fed_at = {}  # job key -> when it was fed (jobs in flight only)
        self.durations = {}  # node index -> [[key, seconds]] since the last record
        self.results = {}  # node index -> deque of (descriptor, result)
        self.failures = {}  # node index -> deque of (descriptor, exception)

    def fed(self, index, start, count):
        """``count`` new jobs, keyed from ``start``, were fed to processor ``index``."""
        self.totals[index][0] += count
        self.changed.add(index)
        self.fed_at.update(zip(range(start, start + count), itertools.repeat(time.time())))

    def collected(self, index, keys, handles, kept):
        """Processor ``index`` gave back ``handles`` (the jobs ``keys``)."""
        pop = self.fed_at.pop
        if kept:
            now = time.time()
            durations = self.durations.setdefault(index, [])
            append = durations.append
            for key in keys:
                at = pop(key, None)
                if at is not None:
                    append((key, now - at))
        else:
            for key in keys:
                pop(key, None)
        exception_of = compat.exception_of
        failed = cancelled = 0
        for handle in handles:
            future = handle.future
            if future.cancelled():
                cancelled += 1
            else:
                exc = exception_of(future)
                if exc is not None:
                    failed += 1
                    failures = self.failures.get(index)
                    if failures is None:
                        failures = self.failures[index] = collections.deque(maxlen=LATEST)
                    failures.append((handle.descriptor, exc))
        if failed + cancelled < len(handles):
            latest = self.results.get(index)
            if latest is None:
                latest = self.results[index] = collections.deque(maxlen=LATEST)
            latest.extend((h.descriptor, h.future.result()) for h in handles[-LATEST:]
                          if not h.future.cancelled() and exception_of(h.future) is None)
        totals = self.totals[index]
        totals[1] += len(handles) - failed - cancelled
        totals[2] += failed
        totals[3] += cancelled
        self.changed.add(index)

    def write(self, db):
        """Write what changed, inside the record's transaction on ``db``."""
        now = time.time()
        if self.base is None:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO watch_meta VALUES ('started', ?)", (self.started,))
            self.base = dict((row[0], row[1:]) for row in db.execute(
                "SELECT node, fed, succeeded, failed, cancelled FROM watch_counts"))
        db.execute("INSERT OR REPLACE INTO watch_meta VALUES ('updated', ?)", (now,))
        counts = []
        rows = []
        for index, totals in enumerate(self.totals):
            base = self.base.get(index, (0, 0, 0, 0))
            total = tuple(a + b for a, b in zip(base, totals))
            counts.append((index,) + total)
            if index in self.changed:
                durations = self.durations.pop(index, None)
                rows.append((now, index) + total + (
                    _json([[key, round(seconds, 6)] for key, seconds in durations or ()]),
                    _json(_texts(self.results.pop(index, ()), safe_repr)),
                    _json(_texts(self.failures.pop(index, ()), safe_str))))
        self.changed = set()
        db.executemany("INSERT OR REPLACE INTO watch_counts VALUES (?, ?, ?, ?, ?)", counts)
        if rows:
            db.executemany("INSERT INTO watch_records (time, node, fed, succeeded, failed, "
                           "cancelled, durations, results, failures) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _texts(pairs, text):
    return [[safe_repr(descriptor, TEXT_LIMIT), _shorten(text(value))] for descriptor, value in pairs]


def _shorten(text):
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 3] + "..."


def _json(value):
    return json.dumps(value) if value else None
