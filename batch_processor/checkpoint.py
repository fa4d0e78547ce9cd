"""``batch_processor.checkpoint``: durable runs, recorded in an SQLite file.

A run given ``checkpoint=PATH`` records its progress in ``PATH`` as it goes, so that
the same run started again after a crash, a SIGKILL or a Ctrl-C continues where the
last record left it. A record is one SQLite transaction, written between two steps
of the run (so it is consistent) at least once per ``checkpoint_interval`` seconds,
and when the run ends. It holds what changed since the previous record:

* the descriptors fed since then and still in flight (``fed``), as one pickled list;
* the handles collected since then, of the processors whose handles are kept, with
  their outcomes (``handles``), as one pickled list per processor, in collection
  order;
* the jobs recorded as in flight earlier that have ended since (``ended``);
* the state of each processor that produced handles since then (``processors``):
  its attributes, pickled as for a process pool. A Sequential processor's state is
  taken when a batch ends, before the next one starts, so it matches the handles
  recorded; a Separate processor's when the record is written;
* how many items of each initial iterable the run has taken (``sources``).

So the cost of a record grows with what changed since the previous one, not with
the size of the run. Resuming reads the whole file: processors get their recorded
state back, recorded handles come back with their outcomes, jobs that were in
flight run again, and initial items already taken are skipped.

A checkpoint is unpickled when resumed: load only checkpoints that you wrote.
"""
from __future__ import absolute_import, division, print_function

import functools
import json
import logging
import pickle
import sqlite3

import six

from . import compat
from .interface import (  # noqa: F401 - CheckpointError is this module's too
    BatchProcessorError, BatchProcessorResultHandle, CheckpointError, describe, processor_name,
    safe_repr, safe_str)

__all__ = ["CheckpointError", "Recorder"]

logger = logging.getLogger("batch_processor")

Handle = BatchProcessorResultHandle

_FORMAT = 1
_PROTOCOL = 2  # readable by every Python the library runs on
_OK, _FAILED, _CANCELLED = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fed (record INTEGER PRIMARY KEY, items BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ended (record INTEGER PRIMARY KEY, keys BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS handles (
    record INTEGER NOT NULL, node INTEGER NOT NULL, items BLOB NOT NULL,
    PRIMARY KEY (record, node));
CREATE TABLE IF NOT EXISTS processors (node INTEGER PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sources (node INTEGER PRIMARY KEY, taken INTEGER NOT NULL);
"""


class UnrecordedOutcome(BatchProcessorError):
    """The failure a handle comes back with when its real outcome could not be recorded."""


def graph_signature(graph):
    """What must be the same for a checkpoint to resume: processors and edges."""
    processors = graph.processors
    index = dict((id(p), i) for i, p in enumerate(processors))
    return {
        "processors": [[_class_path(p), processor_name(p)] for p in processors],
        "edges": [[index[id(src)], index[id(dst)], _converter_label(conv)]
                  for src, dst, conv in graph.edges],
    }


def _class_path(obj):
    cls = type(obj)
    return "%s.%s" % (cls.__module__, getattr(cls, "__qualname__", cls.__name__))


def _converter_label(converter):
    func = getattr(converter, "func", converter)  # functools.partial
    return getattr(func, "__name__", None) or type(func).__name__


def _differences(recorded, current):
    """Human-readable differences between two signatures."""
    lines = []
    old, new = recorded["processors"], current["processors"]
    if len(old) != len(new):
        lines.append("the checkpoint has %d processors, this graph %d" % (len(old), len(new)))
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            lines.append("processor %d was %s named %r, is %s named %r" % (i, a[0], a[1], b[0], b[1]))
    if recorded["edges"] != current["edges"]:
        lines.append("the edges differ: %s in the checkpoint, %s now"
                     % (recorded["edges"], current["edges"]))
    return "; ".join(lines)


def _dumps(value):
    return sqlite3.Binary(pickle.dumps(value, _PROTOCOL))


def _loads(blob):
    return pickle.loads(bytes(blob))


class Recorder(object):
    """Records one run in a checkpoint file, and gives back what an earlier run recorded.

    The run calls `fed` when it feeds descriptors to a processor (``source=True``
    for an initial iterable's), `collected` when it takes handles, `record` between
    steps, and `close` when the run ends (``finished=True`` when it ended by itself).
    Job keys are assigned per fed descriptor; a handle finds its key through its
    descriptor (the object fed), so in-flight bookkeeping is bounded by the jobs in
    flight.
    """

    def __init__(self, path, graph, nodes, interval, loop):
        if not isinstance(path, six.string_types):
            fspath = getattr(path, "__fspath__", None)
            path = fspath() if fspath is not None else path
            if not isinstance(path, six.string_types):
                raise TypeError("checkpoint=%s: give the path of a file (a string)" % safe_repr(path))
        if interval is None or isinstance(interval, bool) or not _finite_positive(interval):
            raise ValueError("checkpoint_interval=%s: give a finite number of seconds > 0"
                             % safe_repr(interval))
        self.path = path
        self.interval = interval
        self.nodes = nodes  # in the graph's order
        self.index = dict((id(node), i) for i, node in enumerate(nodes))
        self.db = None
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            if self.db is not None:
                self.db.close()
            raise CheckpointError("checkpoint=%r cannot be opened as an SQLite database (%s); "
                                  "give the path of a checkpoint this library wrote, or of a "
                                  "new file" % (path, safe_str(exc)))
        self.signature = graph_signature(graph)
        self.finished = False
        self.resumed = False
        self.next_key = 0
        self.next_record = 0
        self.taken = [0] * len(nodes)
        self.new_fed = []  # (first key, node index, descriptors) fed since the last record
        # Per node, id(descriptor) -> key of the jobs in flight: a fed descriptor is
        # alive (its processor or its handle holds it) until the run collects it.
        self.in_flight = [{} for _ in nodes]
        self.duplicates = {}  # (node index, id) -> [keys] of an object fed more than once
        self.ended_keys = []  # keys of jobs collected since the last record (not kept)
        self.new_handles = {}  # node index -> [(key, handle)]
        self.dirty = set()  # node indexes whose state is to be recorded
        self.latest = {}  # node index -> state pickled when its last batch ended
        self.states = {}  # node index -> that state, once the batch's handles are collected
        self.timer = None
        self.loop = loop
        self.closed = False
        self.warned_state = set()

    # -- opening and resuming ----------------------------------------------------------

    def load(self):
        """Read an earlier run's record; return ``(handles, pending)`` to resume from.

        ``handles`` maps node index to recorded handles (only for the processors the
        run keeps, in the order collected); ``pending`` lists ``(node index, key,
        descriptor)`` of jobs to run again. Restores processors' states and the
        counts of initial items taken. Raises `CheckpointError` for another graph.
        """
        db = self.db
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if not meta:
            with self.transaction():
                db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("format", str(_FORMAT)),
                    ("signature", json.dumps(self.signature, sort_keys=True)),
                    ("finished", "0")])
            return {}, []
        self.resumed = True
        if meta.get("format") != str(_FORMAT):
            raise CheckpointError("checkpoint=%r was written in another format (%s); delete the "
                                  "file or use another path" % (self.path, meta.get("format")))
        recorded = json.loads(meta["signature"])
        current = json.loads(json.dumps(self.signature))
        if recorded != current:
            raise CheckpointError(
                "checkpoint=%r was written by a different graph: %s. Delete the file (or use "
                "another path) to start this run anew, or run the graph that wrote it"
                % (self.path, _differences(recorded, current)))
        self.finished = meta.get("finished") == "1"
        try:
            return self._read()
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError,
                ValueError) as exc:
            raise CheckpointError("checkpoint=%r cannot be read back (%s); delete the file or use "
                                  "another path" % (self.path, safe_str(exc)))

    def _read(self):
        db = self.db
        ended = set()
        for (blob,) in db.execute("SELECT keys FROM ended"):
            ended.update(_loads(blob))
        handles = {}
        for node, blob in db.execute("SELECT node, items FROM handles ORDER BY record, node"):
            restored = handles.setdefault(node, [])
            for key, descriptor, kind, value in _loads(blob):
                if key is not None:
                    ended.add(key)
                restored.append(Handle(descriptor, self._outcome(kind, value)))
        pending = []
        top_key = -1
        for (blob,) in db.execute("SELECT items FROM fed ORDER BY record"):
            for key, node, descriptor in _loads(blob):
                top_key = max(top_key, key)
                if key not in ended:
                    pending.append((node, key, descriptor))
        self.next_key = max([top_key] + list(ended)) + 1
        top = db.execute("SELECT MAX(record) FROM (SELECT record FROM fed UNION ALL "
                         "SELECT record FROM ended UNION ALL SELECT record FROM handles)")
        last = top.fetchone()[0]
        self.next_record = 0 if last is None else last + 1
        for node, taken in db.execute("SELECT node, taken FROM sources"):
            if node < len(self.taken):
                self.taken[node] = taken
        for node, blob in db.execute("SELECT node, state FROM processors"):
            if node < len(self.nodes):
                processor = self.nodes[node].processor
                state = _loads(blob)
                setstate = getattr(processor, "__setstate__", None)
                if setstate is not None:
                    setstate(state)
                else:
                    processor.__dict__.update(state)
        kept = dict((i, restored) for i, restored in handles.items()
                    if i < len(self.nodes) and self.nodes[i].kept is not None)
        return kept, pending

    def _outcome(self, kind, value):
        future = compat.new_future(self.loop)
        if kind == _OK:
            future.set_result(value)
        elif kind == _FAILED:
            compat.fail(future, value)
            compat.exception_of(future)
        else:
            future.cancel()
        return future

    # -- what the run tells --------------------------------------------------------------

    def start(self):
        """Record every ``interval`` seconds from now on; hear of Sequential batches' ends."""
        for node in self.nodes:
            if getattr(node.port, "settles_at_end", False):
                node.port.on_end = functools.partial(self.batch_ended, node)
        self.timer = self.loop.call_later(self.interval, self._on_timer)

    def fed(self, node, descriptors, source=False, keys=None):
        """``descriptors`` (a list) were fed to ``node``; ``keys``: their keys, if resumed."""
        index = self.index[id(node)]
        if source:
            self.taken[index] += len(descriptors)
        if keys is None:
            start = self.next_key
            self.next_key += len(descriptors)
            keys = range(start, start + len(descriptors))
            self.new_fed.append((start, index, descriptors))
        in_flight = self.in_flight[index]
        ids = list(map(id, descriptors))
        duplicates = self.duplicates
        distinct = set(ids)
        if not duplicates and len(distinct) == len(ids) and not six.viewkeys(in_flight) & distinct:
            in_flight.update(zip(ids, keys))
            return
        for ident, key in zip(ids, keys):  # an object fed more than once: a list of keys
            slot = (index, ident)
            held = duplicates.get(slot)
            if held is not None:
                held.append(key)
            elif ident in in_flight:
                duplicates[slot] = [in_flight.pop(ident), key]
            else:
                in_flight[ident] = key

    def collected(self, node, handles):
        """``node``'s processor gave back ``handles``."""
        index = self.index[id(node)]
        in_flight = self.in_flight[index]
        pop = in_flight.pop
        keys = [pop(id(handle.descriptor), None) for handle in handles]
        if self.duplicates:
            keys = self._deduplicated(index, handles, keys)
        if node.kept is not None:
            self.new_handles.setdefault(index, []).extend(zip(keys, handles))
        else:
            self.ended_keys.extend(keys)
        self.dirty.add(index)
        state = self.latest.get(index)
        if state is not None:  # the state after the last batch whose handles these are
            self.states[index] = state

    def _deduplicated(self, index, handles, keys):
        duplicates = self.duplicates
        for position, handle in enumerate(handles):
            if keys[position] is None:
                slot = (index, id(handle.descriptor))
                held = duplicates.get(slot)
                if held:
                    keys[position] = held.pop(0)
                    if not held:
                        del duplicates[slot]
        return keys

    def batch_ended(self, node):
        """A Sequential processor's batch ended: its state now matches its handles."""
        index = self.index[id(node)]
        blob = self._state_of(node)
        if blob is not None:
            self.latest[index] = blob

    # -- writing -----------------------------------------------------------------------

    def _on_timer(self):
        self.timer = None
        if self.closed:
            return
        self.record()
        self.timer = self.loop.call_later(self.interval, self._on_timer)

    def transaction(self):
        return _Transaction(self.db)

    def record(self, finished=False):
        """Write one record: what changed since the previous one."""
        record = self.next_record
        self.next_record += 1
        new_fed, self.new_fed = self.new_fed, []
        ended, self.ended_keys = self.ended_keys, []
        new_handles, self.new_handles = self.new_handles, {}
        dirty, self.dirty = self.dirty, set()
        rows_handles = [(record, index, self._handles_blob(index, items))
                        for index, items in sorted(new_handles.items()) if items]
        rows_states = []
        for index in sorted(dirty):
            blob = self.states.pop(index, None)
            if blob is None:
                blob = self._state_of(self.nodes[index])
            if blob is not None:
                rows_states.append((index, blob))
        if new_fed:
            # Jobs fed and ended within this record are never written.
            first = new_fed[0][0]
            done = set(key for key in ended if key is not None and key >= first)
            for items in new_handles.values():
                done.update(key for key, _ in items if key is not None and key >= first)
            ended = [key for key in ended if key is not None and key < first]
            fed = [(start + offset, index, descriptor)
                   for start, index, descriptors in new_fed
                   for offset, descriptor in enumerate(descriptors)
                   if start + offset not in done]
        else:
            fed = []
            ended = [key for key in ended if key is not None]
        fed_blob = self._fed_blob(fed) if fed else None
        with self.transaction():
            db = self.db
            if fed_blob is not None:
                db.execute("INSERT INTO fed VALUES (?, ?)", (record, fed_blob))
            if ended:
                db.execute("INSERT INTO ended VALUES (?, ?)", (record, _dumps(ended)))
            if rows_handles:
                db.executemany("INSERT INTO handles VALUES (?, ?, ?)", rows_handles)
            if rows_states:
                db.executemany("INSERT OR REPLACE INTO processors VALUES (?, ?)", rows_states)
            db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?)",
                           [(i, n) for i, n in enumerate(self.taken) if n])
            if finished:
                db.execute("UPDATE meta SET value = '1' WHERE key = 'finished'")

    def close(self, finished=False, write=True):
        """Write the last record (a finished run's, or an interrupted one's) and close.

        With ``write=False`` nothing more is written: the file keeps the last record.
        """
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for node in self.nodes:
            if getattr(node.port, "on_end", None) is not None:
                node.port.on_end = None
        try:
            if write:
                self.record(finished=finished)
        finally:
            self.db.close()

    # -- pickling ------------------------------------------------------------------------

    def _fed_blob(self, fed):
        try:
            return _dumps(fed)
        except Exception:
            items = []
            for key, index, descriptor in fed:
                try:
                    pickle.dumps(descriptor, _PROTOCOL)
                except Exception as exc:
                    logger.warning(
                        "%s: the descriptor %s cannot be pickled (%s), so the checkpoint cannot "
                        "run its job again; if the run is resumed, its handle fails",
                        describe(self.nodes[index].processor), safe_repr(descriptor),
                        safe_str(exc))
                    descriptor = _Unrecorded(safe_repr(descriptor))
                items.append((key, index, descriptor))
            return _dumps(items)

    def _handles_blob(self, index, items):
        rows = []
        for key, handle in items:
            row = (key, handle.descriptor) + _outcome_of(handle)
            if row[2] == _FAILED:  # exceptions may pickle and then fail to unpickle
                try:
                    pickle.loads(pickle.dumps(row, _PROTOCOL))
                except Exception as exc:
                    row = self._unpicklable(index, key, handle, exc)
            rows.append(row)
        try:
            return _dumps(rows)
        except Exception:
            safe_rows = []
            for key, handle in items:
                row = (key, handle.descriptor) + _outcome_of(handle)
                try:
                    pickle.loads(pickle.dumps(row, _PROTOCOL))
                except Exception as exc:
                    row = self._unpicklable(index, key, handle, exc)
                safe_rows.append(row)
            return _dumps(safe_rows)

    def _unpicklable(self, index, key, handle, exc):
        processor = self.nodes[index].processor
        descriptor = handle.descriptor
        try:
            pickle.dumps(descriptor, _PROTOCOL)
        except Exception:
            descriptor = _Unrecorded(safe_repr(descriptor))
        logger.warning("%s: the outcome of the job %s cannot be pickled (%s); the checkpoint "
                       "records it as a failure", describe(processor), safe_repr(handle.descriptor),
                       safe_str(exc))
        error = UnrecordedOutcome(
            "%s: the outcome of the job %s could not be recorded in the checkpoint (%s); the "
            "run that recorded it had it" % (describe(processor), safe_repr(handle.descriptor),
                                            safe_str(exc)))
        return (key, descriptor, _FAILED, error)

    def _state_of(self, node):
        processor = node.processor
        getstate = getattr(processor, "__getstate__", None)
        if getstate is None or not hasattr(processor, "_bp_attach"):
            return None  # a hand-written processor: its state is its own business
        try:
            return _dumps(getstate())
        except Exception as exc:
            index = self.index[id(node)]
            if index not in self.warned_state:
                self.warned_state.add(index)
                logger.warning("%s: its state cannot be pickled (%s), so the checkpoint does not "
                               "record it; list attributes that need not be recorded in "
                               "_bp_not_pickled", describe(processor), safe_str(exc))
            return None


class _Unrecorded(object):
    """Stands for a descriptor that could not be pickled: its ``repr`` only."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "<unrecorded descriptor %s>" % self.text


def _outcome_of(handle):
    future = handle.future
    if future.cancelled():
        return (_CANCELLED, None)
    exc = compat.exception_of(future)
    if exc is not None:
        return (_FAILED, exc)
    return (_OK, future.result())


def _finite_positive(value):
    try:
        return value > 0 and value == value and value != float("inf")
    except TypeError:
        return False


class _Transaction(object):
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
