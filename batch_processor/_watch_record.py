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
  and failures as short reprs (JSON ``[[descriptor, text], ...]``);
* ``watch_resources`` (only in checkpoints of runs whose processors use shared
  resources, ``uses=``): one row per `Resource` they use, rewritten at each record:
  its name, capacity and device ids, the units in use and the requests waiting for it
  then (the process's counts: every run that shares it counts), the device ids in
  use, and which processors use it with how many units a job (or batch) asks (JSON
  ``[[node, units], ...]``).
"""
from __future__ import absolute_import, division, print_function

import collections
import itertools
import json
import time

from . import compat, resources
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
RESOURCES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS watch_resources (position INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, capacity INTEGER NOT NULL, devices TEXT, in_use INTEGER NOT NULL, "
    "waiting INTEGER NOT NULL, devices_in_use TEXT, users TEXT NOT NULL)")


class Progress(object):
    """Counts of one run of a checkpointed graph of ``count`` processors.

    ``processors`` (in the graph's order): the processors, whose ``uses`` each
    record reads, for the shared resources' table.
    """

    def __init__(self, count, processors=()):
        self.started = time.time()
        self.totals = [[0, 0, 0, 0] for _ in range(count)]  # fed, ok, failed, cancelled
        self.base = None  # the totals earlier launches recorded, read at the first write
        self.changed = set()
        self.fed_at = {}  # job key -> when it was fed (jobs in flight only)
        self.durations = {}  # node index -> [[key, seconds]] since the last record
        self.results = {}  # node index -> deque of (descriptor, result)
        self.failures = {}  # node index -> deque of (descriptor, exception)
        self.processors = list(processors)
        self.resource_table = None  # whether watch_resources exists (read at the first write)

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
            self.resource_table = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watch_resources'"
            ).fetchone() is not None
            if self.resource_table:
                db.execute("DELETE FROM watch_resources")  # an earlier launch's resources
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
        if self.processors:
            self._write_resources(db)

    def _write_resources(self, db):
        """The rows of ``watch_resources``: the resources the processors use, as of now."""
        users = collections.OrderedDict()  # resource -> [[node, units]], in order of first use
        for index, processor in enumerate(self.processors):
            uses = getattr(processor, "uses", None)
            if uses:
                for resource, units in sorted(uses.items(), key=lambda pair: pair[0].name):
                    users.setdefault(resource, []).append([index, units])
        if not users:
            return  # the table is made only for runs that use resources (older readers)
        if not self.resource_table:
            db.execute(RESOURCES_SCHEMA)
            self.resource_table = True
        rows = []
        for position, (resource, in_use, waiting, devices_in_use) in enumerate(
                resources.usage(list(users))):
            devices = resource.devices
            rows.append((position, resource.name, resource.capacity,
                         None if devices is None else json.dumps(list(devices)), in_use,
                         waiting, None if devices_in_use is None else json.dumps(devices_in_use),
                         json.dumps(users[resource])))
        db.execute("DELETE FROM watch_resources")
        db.executemany("INSERT INTO watch_resources VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _texts(pairs, text):
    return [[safe_repr(descriptor, TEXT_LIMIT), _shorten(text(value))] for descriptor, value in pairs]


def _shorten(text):
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 3] + "..."


def _json(value):
    return json.dumps(value) if value else None
