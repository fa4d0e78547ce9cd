"""``batch_processor.checkpoint``: durable runs, recorded in an SQLite file.

A run given ``checkpoint=PATH`` records its progress in ``PATH`` as it goes, so that
the same run started again after a crash, a SIGKILL or a Ctrl-C continues where the
last record left it. A record is one SQLite transaction, written between two steps
of the run (so it is consistent) at least once per ``checkpoint_interval`` seconds,
and when the run ends. It holds what changed since the previous record:

* the descriptors fed since then and still in flight (``fed``), as one pickled list;
* the handles collected since then whose converters have all been called (a handle
  counts as recorded only together with what the converters made of it), of the
  processors whose handles are kept, with their outcomes (``handles``), as one pickled
  list per processor, in collection order, each outcome pickled on its own;
* the jobs recorded as in flight earlier that have ended since (``ended``);
* the state of each processor that produced handles since then (``processors``):
  its attributes, pickled as for a process pool, less those named in
  ``_bp_not_recorded``, and only if that pickle differs from the last one recorded.
  A Sequential processor's state is taken when a batch ends, before the next one
  starts, so it matches the handles recorded; a Separate processor's when the record
  is written;
* how many items of each initial iterable the run has taken (``sources``), and a
  digest of them (``fingerprints``).

So the cost of a record grows with what changed since the previous one, not with
the size of the run. Resuming reads the whole file: processors get their recorded
state back, recorded handles come back with their outcomes, jobs that were in
flight run again, and initial items already taken are skipped (after checking that
they are the ones the first run took).

The bookkeeping lives here (`Recorder`); the file is a store (``_sqlite_store``:
load, append a record, close) that only the loop's thread calls. One run at a time
writes a checkpoint: it holds an advisory lock (``fcntl.flock``) on ``PATH + ".lock"``
for the whole run, a file whose one line says ``"<pid> <host>"``. The lock dies with
the process; the file is left in place when the run ends.

A checkpoint is unpickled when resumed: load only checkpoints that you wrote.
"""
from __future__ import absolute_import, division, print_function

import errno
import functools
import hashlib
import json
import logging
import numbers
import os
import pickle
import socket
import threading
import time

import six

from . import compat
from ._watch_record import Progress  # what watchers read (issue 20)
from .interface import (  # noqa: F401 - CheckpointError is this module's too
    BatchProcessorError, BatchProcessorResultHandle, CheckpointError, describe, processor_name,
    safe_repr, safe_str)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["CheckpointError", "Recorder", "read_checkpoint"]

logger = logging.getLogger("batch_processor")

Handle = BatchProcessorResultHandle

_PROTOCOL = 2  # readable by every Python the library runs on
_OK, _FAILED, _CANCELLED = 0, 1, 2


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
    return pickle.dumps(value, _PROTOCOL)


def _loads(blob):
    return pickle.loads(bytes(blob))


def check_options(checkpoint, interval):
    """Validate the run options ``checkpoint`` and ``checkpoint_interval``; return the path.

    Raises before anything runs: `TypeError`/`ValueError` for a bad value,
    `CheckpointError` for a path in a missing or read-only directory.
    """
    path = checkpoint
    if not isinstance(path, six.string_types):
        fspath = getattr(path, "__fspath__", None)
        path = fspath() if fspath is not None else path
        if not isinstance(path, six.string_types):
            raise TypeError("checkpoint=%s: give the path of a file (a string)" % safe_repr(path))
    if (isinstance(interval, bool) or not isinstance(interval, numbers.Real)
            or not _finite_positive(interval)):
        raise ValueError("checkpoint_interval=%s: give a finite number of seconds > 0"
                         % safe_repr(interval))
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CheckpointError("checkpoint=%r is a directory; give the path of a file in it"
                              % (path,))
    if not os.path.isdir(directory):
        raise CheckpointError("checkpoint=%r: the directory %r does not exist; create it, or "
                              "give a path in an existing directory" % (path, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CheckpointError("checkpoint=%r: the directory %r cannot be written to (the "
                              "checkpoint needs its lock and journal files there); give a path "
                              "in a directory you may write to" % (path, directory))
    return path


# -- one writer at a time ---------------------------------------------------------------

_held = {}  # type: dict  # real path of a checkpoint -> its lock, for the runs of this process
_held_lock = threading.Lock()


def _holder_text(path):
    try:
        with open(path, "rb") as stream:
            line = stream.read(300).decode("utf-8", "replace").strip()
    except (IOError, OSError):
        return "another process"
    parts = line.split(None, 1)
    if len(parts) == 2:
        return "process %s on host %s" % (parts[0], parts[1])
    return "another process"


class CheckpointLock(object):
    """The writer's lock of a checkpoint, held for a whole run.

    The holder takes ``fcntl.flock(fd, LOCK_EX | LOCK_NB)`` on ``PATH + ".lock"`` and
    writes one line, ``"<pid> <hostname>\\n"``, into it; the OS drops the lock when the
    process dies, so a holder killed with SIGKILL never blocks the next run. A reader
    tells a running checkpoint by failing to take ``LOCK_SH | LOCK_NB`` on that file
    opened read-only. `release` unlocks and leaves the file in place (removing it would
    let two runs lock two different files). Runs of one process are told apart by a
    registry of held paths, since flock locks belong to open files, not processes.
    Without ``fcntl`` (Windows) ``msvcrt.locking`` locks the file's first byte, which
    the OS releases with the process too.
    """

    def __init__(self, path):
        self.path = path + ".lock"
        self.key = os.path.realpath(path)
        self.fd = None
        with _held_lock:
            other = _held.get(self.key)
            if other is not None:
                raise CheckpointError(
                    "checkpoint=%r is in use by another run of this process (process %d on "
                    "host %s); wait for it to end, or use another path"
                    % (path, os.getpid(), socket.gethostname()))
            _held[self.key] = self
        try:
            self._lock(path)
        except BaseException:
            self._forget()
            raise

    def _lock(self, path):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except (IOError, OSError) as exc:
            raise CheckpointError("checkpoint=%r: its lock file %r cannot be opened (%s); give a "
                                  "path in a directory you may write to"
                                  % (path, self.path, safe_str(exc)))
        try:
            if not _try_lock_a_moment(fd):
                raise CheckpointError(
                    "checkpoint=%r is in use by another run (%s holds %r); wait for it to end, "
                    "or use another path" % (path, _holder_text(self.path), self.path))
            os.ftruncate(fd, 0)
            os.write(fd, ("%d %s\n" % (os.getpid(), socket.gethostname())).encode("utf-8"))
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)
        self._forget()

    def _forget(self):
        with _held_lock:
            if _held.get(self.key) is self:
                del _held[self.key]


def _try_lock_a_moment(fd, tries=50, pause=0.002):
    """`_try_lock`, tried again for a moment: a watcher (``status``, the dashboard) holds
    a shared lock for the instant it takes to look, and a run that starts then must not
    mistake it for another run."""
    for _ in range(tries - 1):
        if _try_lock(fd):
            return True
        _pause(pause)
    return _try_lock(fd)


_pause = time.sleep


def _try_lock(fd):
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True
    import msvcrt  # pragma: no cover - Windows
    try:  # pragma: no cover
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (IOError, OSError):  # pragma: no cover
        return False
    return True  # pragma: no cover


def _unlock(fd):
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


# -- the fingerprint of initial descriptors ----------------------------------------------

def _item_bytes(descriptor):
    try:
        return pickle.dumps(descriptor, _PROTOCOL)
    except Exception:
        return ("repr:" + safe_repr(descriptor)).encode("utf-8", "replace")


def open_store(path):
    """The store of a checkpoint at ``path`` (tests replace this to make writes fail)."""
    from ._sqlite_store import SqliteStore
    return SqliteStore(path)


class Recorder(object):
    """Records one run in a checkpoint file, and gives back what an earlier run recorded.

    The run calls `fed` when it feeds descriptors to a processor (``source=True``
    for an initial iterable's), `collected` when it takes handles and `converted`
    once the converters have made descriptors of them (and these were fed), `record`
    between steps, and `close` when the run ends (``finished=True`` when it ended by
    itself). Job keys are assigned per fed descriptor; a handle finds its key through
    its descriptor (the object fed), so in-flight bookkeeping is bounded by the jobs in
    flight. Every call comes from the thread of the run's loop.
    """

    def __init__(self, path, graph, nodes, interval, loop):
        path = check_options(path, interval)
        self.path = path
        self.interval = interval
        self.nodes = nodes  # in the graph's order
        self.index = dict((id(node), i) for i, node in enumerate(nodes))
        self.lock = CheckpointLock(path)
        try:
            self.store = open_store(path)
        except Exception as exc:
            self.lock.release()
            from ._sqlite_store import StoreRefused
            if isinstance(exc, StoreRefused):
                raise CheckpointError(
                    "checkpoint=%r is not a checkpoint of batch_processor: %s. It was left "
                    "unchanged; give the path of a checkpoint this library wrote, or of a new "
                    "file" % (path, exc.args[0]))
            raise CheckpointError("checkpoint=%r cannot be opened (%s); give the path of a "
                                  "checkpoint this library wrote, or of a new file in a "
                                  "directory you may write to" % (path, safe_str(exc)))
        self.signature = graph_signature(graph)
        self.finished = False
        self.resumed = False
        self.next_key = 0
        self.next_record = 0
        self.taken = [0] * len(nodes)
        self.digests = [None] * len(nodes)  # hash objects of the initial items taken
        self.recorded_fingerprints = {}  # node index -> (taken, hex digest), as loaded
        self.new_fed = []  # (first key, node index, descriptors) fed since the last record
        # Per node, id(descriptor) -> key of the jobs in flight: a fed descriptor is
        # alive (its processor or its handle holds it) until the run collects it.
        self.in_flight = [{} for _ in nodes]
        self.duplicates = {}  # (node index, id) -> [keys] of an object fed more than once
        self.unconverted = {}  # node index -> [(key, handle)] collected, not yet converted
        self.converting = None  # while handles are unconverted: len(new_fed) before them
        self.ended_keys = []  # keys of jobs collected since the last record (not kept)
        self.new_handles = {}  # node index -> [(key, handle)]
        self.dirty = set()  # node indexes whose state is to be recorded
        self.latest = {}  # node index -> state pickled when its last batch ended
        self.states = {}  # node index -> that state, once the batch's handles are collected
        self.state_digests = {}  # node index -> digest of the state last recorded
        self.restoring = {}  # node index -> state loaded, to restore (`restore`)
        self.unwritten = []  # records that could not be written yet, oldest first
        self.warned_write = False
        self.write_error = None
        self.timer = None
        self.loop = loop
        self.closed = False
        self.warned_state = set()
        self.warned_large = set()
        self.watch = Progress(len(nodes), [node.processor for node in nodes])  # for watchers

    # -- opening and resuming ----------------------------------------------------------

    def load(self):
        """Read an earlier run's record; return ``(handles, pending)`` to resume from.

        ``handles`` maps node index to recorded handles (only for the processors the
        run keeps, in the order collected); ``pending`` lists ``(node index, key,
        descriptor)`` of jobs to run again. Restores processors' states and the
        counts of initial items taken. Raises `CheckpointError` for another graph.
        """
        from ._sqlite_store import APPLICATION, FORMAT, StoreError
        holder = {"pid": str(os.getpid()), "host": socket.gethostname(),
                  "started": repr(time.time())}
        try:
            stored = self.store.load()
            if not stored.meta:
                meta = {"format": str(FORMAT), "application": APPLICATION,
                        "signature": json.dumps(self.signature, sort_keys=True), "finished": "0"}
                meta.update(holder)
                self.store.start(meta)
                return {}, []
        except StoreError as exc:
            raise CheckpointError("checkpoint=%r cannot be read (%s); delete the file or use "
                                  "another path" % (self.path, safe_str(exc)))
        meta = stored.meta
        self.resumed = True
        recorded = json.loads(meta["signature"])
        current = json.loads(json.dumps(self.signature))
        if recorded != current:
            raise CheckpointError(
                "checkpoint=%r was written by a different graph: %s. Delete the file (or use "
                "another path) to start this run anew, or run the graph that wrote it"
                % (self.path, _differences(recorded, current)))
        self.finished = meta.get("finished") == "1"
        try:
            restored = self._read(stored)
        except Exception as exc:  # a damaged blob can raise about anything
            raise CheckpointError("checkpoint=%r cannot be read back (%s); delete the file or use "
                                  "another path" % (self.path, safe_str(exc)))
        if not self.finished:
            try:
                self.store.start(holder)
            except StoreError as exc:
                raise CheckpointError("checkpoint=%r cannot be written (%s); give a path you may "
                                      "write to" % (self.path, safe_str(exc)))
        return restored

    def _read(self, stored):
        ended = set()
        for blob in stored.ended:
            ended.update(_loads(blob))
        handles = {}
        for node, blob in stored.handles:
            restored = handles.setdefault(node, [])
            for row in _loads(blob):
                key, descriptor, kind = row[:3]
                if key is not None:
                    ended.add(key)
                value = row[3] if len(row) == 4 else self._value(node, descriptor, kind, row[4])
                restored.append(Handle(descriptor, self._outcome(kind, value)))
        pending = []
        top_key = -1
        for blob in stored.fed:
            for key, node, descriptor in _loads(blob):
                top_key = max(top_key, key)
                if key not in ended:
                    pending.append((node, key, descriptor))
        self.next_key = max([top_key] + list(ended)) + 1
        last = stored.last_record
        self.next_record = 0 if last is None else last + 1
        for node, taken in stored.sources.items():
            if node < len(self.taken):
                self.taken[node] = taken
        self.recorded_fingerprints = dict(stored.fingerprints)
        for node, blob in stored.states.items():
            if node < len(self.nodes):
                self.restoring[node] = _loads(blob)
                self.state_digests[node] = hashlib.sha1(blob).digest()
        kept = dict((i, restored) for i, restored in handles.items()
                    if i < len(self.nodes) and self.nodes[i].kept is not None)
        return kept, pending

    def restore(self):
        """Give the processors their recorded states (once the run is known to resume)."""
        restoring, self.restoring = self.restoring, {}
        for node, state in sorted(restoring.items()):
            processor = self.nodes[node].processor
            setstate = getattr(processor, "__setstate__", None)
            if setstate is not None:
                setstate(state)
            else:
                processor.__dict__.update(state)

    def _value(self, node, descriptor, kind, blob):
        if blob is None:
            return None
        try:
            return _loads(blob)
        except Exception as exc:
            processor = self.nodes[node].processor if node < len(self.nodes) else None
            name = describe(processor) if processor is not None else "processor %d" % node
            error = UnrecordedOutcome(
                "%s: the outcome of the job %s was recorded in checkpoint=%r but cannot be read "
                "back (%s: %s); the run that recorded it had it"
                % (name, safe_repr(descriptor), self.path, type(exc).__name__, safe_str(exc)))
            if kind == _OK or kind == _FAILED:
                return _Unreadable(error)
            return None

    def _outcome(self, kind, value):
        future = compat.new_future(self.loop)
        if isinstance(value, _Unreadable):
            compat.fail(future, value.error)
            compat.exception_of(future)
        elif kind == _OK:
            future.set_result(value)
        elif kind == _FAILED:
            compat.fail(future, value)
            compat.exception_of(future)
        else:
            future.cancel()
        return future

    def skip_taken(self, index, descriptors):
        """The initial ``descriptors`` (a list or an iterator) of node ``index``, less
        those the recorded run took; raises `CheckpointError` if the ones taken differ.

        For a finished checkpoint, the descriptors must be exactly those recorded.
        """
        taken = self.taken[index]
        recorded = self.recorded_fingerprints.get(index)
        digest = hashlib.sha1()
        if isinstance(descriptors, list):
            head, rest = descriptors[:taken], descriptors[taken:]
            more = bool(rest)
        else:
            head = list(six.moves.zip(range(taken), descriptors))
            head = [item for _, item in head]
            rest = descriptors
            more = None
        for item in head:
            digest.update(_item_bytes(item))
        self.digests[index] = digest
        if recorded is None:
            return rest  # a checkpoint written before fingerprints were
        differs = len(head) != taken or recorded != (taken, digest.hexdigest())
        if not differs and self.finished:
            if more is None:
                more = next(iter(rest), _NOTHING) is not _NOTHING
            differs = more
        if differs:
            raise CheckpointError(
                "checkpoint=%r: the initial descriptors given to %s differ from those the "
                "recorded run took (%d of them: other values, another order, or fewer); give "
                "the same initial descriptors to resume it, or delete the file (or use another "
                "path) to start anew" % (self.path, describe(self.nodes[index].processor), taken))
        return rest

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
            digest = self.digests[index]
            if digest is None:
                digest = self.digests[index] = hashlib.sha1()
            for descriptor in descriptors:
                digest.update(_item_bytes(descriptor))
        if keys is None:
            start = self.next_key
            self.next_key += len(descriptors)
            keys = range(start, start + len(descriptors))
            self.new_fed.append((start, index, descriptors))
            self.watch.fed(index, start, len(descriptors))
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
        """``node``'s processor gave back ``handles``; they count once `converted`."""
        index = self.index[id(node)]
        in_flight = self.in_flight[index]
        pop = in_flight.pop
        keys = [pop(id(handle.descriptor), None) for handle in handles]
        if self.duplicates:
            keys = self._deduplicated(index, handles, keys)
        self.unconverted.setdefault(index, []).extend(zip(keys, handles))
        if self.converting is None:  # what is fed from now on comes from these handles
            self.converting = len(self.new_fed)

    def converted(self, node):
        """The converters of ``node``'s collected handles were called, their descriptors
        fed: those handles, and the processor's state that made them, may be recorded."""
        index = self.index[id(node)]
        items = self.unconverted.pop(index, None)
        if not self.unconverted:
            self.converting = None
        if not items:
            return
        # Watchers count a handle when it counts as recorded: a conversion that failed
        # runs its jobs again after a resume, and they are counted then, once.
        self.watch.collected(index, [key for key, _ in items], [handle for _, handle in items],
                             node.kept is not None)
        if node.kept is not None:
            self.new_handles.setdefault(index, []).extend(items)
        else:
            self.ended_keys.extend(key for key, _ in items)
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
        began = _clock()
        self.record()
        self.timer = self.loop.call_later(
            record_spacing(self.interval, _clock() - began), self._on_timer)

    def record(self, finished=False):
        """Write one record: what changed since the previous one.

        A record that cannot be written is kept, and written before the next one; the
        first such failure logs a WARNING. Returns False while records are unwritten.
        """
        self.unwritten.append(self._next_record(finished))
        from ._sqlite_store import StoreError
        while self.unwritten:
            try:
                self.store.append(self.unwritten[0])
            except (StoreError, IOError, OSError) as exc:
                self.write_error = exc
                if not self.warned_write:
                    self.warned_write = True
                    logger.warning(
                        "checkpoint=%r: a record could not be written (%s); the run goes on, "
                        "and what was not written is written with the next record",
                        self.path, safe_str(exc))
                return False
            del self.unwritten[0]
        return True

    def _next_record(self, finished):
        from ._sqlite_store import Record
        record = Record(self.next_record)
        self.next_record += 1
        new_fed, self.new_fed = self.new_fed, []
        ended, self.ended_keys = self.ended_keys, []
        new_handles, self.new_handles = self.new_handles, {}
        dirty, self.dirty = self.dirty, set()
        record.handles = [(index, self._handles_blob(index, items))
                          for index, items in sorted(new_handles.items()) if items]
        for index in sorted(dirty):
            blob = self.states.pop(index, None)
            if blob is None:
                blob = self._state_of(self.nodes[index])
            if blob is not None:
                digest = hashlib.sha1(blob).digest()
                if self.state_digests.get(index) != digest:
                    self.state_digests[index] = digest
                    record.states.append((index, blob))
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
        if fed:
            record.fed = self._fed_blob(fed)
        if ended:
            record.ended = _dumps(ended)
        record.sources = [(i, n) for i, n in enumerate(self.taken) if n]
        record.fingerprints = [(i, self.taken[i], digest.hexdigest())
                               for i, digest in enumerate(self.digests) if digest is not None]
        record.finished = finished
        record.extra = self.watch.write  # counts for watchers, in the same transaction
        return record

    def close(self, finished=False, write=True):
        """Write the last record (a finished run's, or an interrupted one's) and close.

        With ``write=False`` nothing more is written: the file keeps the last record.
        Raises `CheckpointError` if the last record (or one before) could not be written.
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
        if self.converting is not None:
            # The run ended inside a conversion (a converter raised): what the other
            # converters of those handles made is not recorded either; on resume the
            # handles' jobs run again, and every converter is called again.
            del self.new_fed[self.converting:]
            self.converting = None
        try:
            if write and not self.record(finished=finished):
                raise CheckpointError(
                    "the last record of checkpoint=%r could not be written (%s); running again "
                    "resumes from the last record written" % (self.path, safe_str(self.write_error)))
        finally:
            try:
                self.store.close()
            finally:
                self.lock.release()

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
        """One pickle of the rows ``(key, descriptor, kind, value)``; a value whose type
        is not a plain one (numbers, strings, None) is pickled on its own, as
        ``(key, descriptor, kind, None, bytes)``, so that one value that does not
        unpickle leaves the others readable."""
        rows = []
        append = rows.append
        plain = _PLAIN
        for key, handle in items:
            kind, value = _outcome_of(handle)
            if kind == _OK and type(value) in plain:
                append((key, handle.descriptor, kind, value))
                continue
            try:
                blob = None if kind == _CANCELLED else _dumps(value)
                if kind == _FAILED:  # exceptions may pickle and then fail to unpickle
                    pickle.loads(blob)
            except Exception as exc:
                kind, blob = _FAILED, _dumps(self._unpicklable(index, handle, exc))
            append((key, handle.descriptor, kind, None, blob))
        try:
            return _dumps(rows)
        except Exception:  # a descriptor that cannot be pickled
            safe_rows = []
            for row in rows:
                try:
                    pickle.dumps(row[1], _PROTOCOL)
                except Exception:
                    row = (row[0], _Unrecorded(safe_repr(row[1]))) + row[2:]
                safe_rows.append(row)
            return _dumps(safe_rows)

    def _unpicklable(self, index, handle, exc):
        processor = self.nodes[index].processor
        logger.warning("%s: the outcome of the job %s cannot be pickled (%s); the checkpoint "
                       "records it as a failure", describe(processor), safe_repr(handle.descriptor),
                       safe_str(exc))
        return UnrecordedOutcome(
            "%s: the outcome of the job %s could not be recorded in the checkpoint (%s); the "
            "run that recorded it had it" % (describe(processor), safe_repr(handle.descriptor),
                                            safe_str(exc)))

    def _state_of(self, node):
        processor = node.processor
        getstate = getattr(processor, "__getstate__", None)
        if getstate is None or not hasattr(processor, "_bp_attach"):
            return None  # a hand-written processor: its state is its own business
        try:
            state = getstate()
            names = not_recorded(type(processor))
            if names and isinstance(state, dict):
                state = dict((k, v) for k, v in state.items() if k not in names)
            blob = _dumps(state)
        except Exception as exc:
            index = self.index[id(node)]
            if index not in self.warned_state:
                self.warned_state.add(index)
                logger.warning("%s: its state cannot be pickled (%s), so the checkpoint does not "
                               "record it; list attributes that need not be recorded in "
                               "_bp_not_recorded", describe(processor), safe_str(exc))
            return None
        if len(blob) > _LARGE_STATE and id(node) not in self.warned_large:
            self.warned_large.add(id(node))
            logger.warning(
                "%s: its state pickles to %.0f MB, pickled again at every record in which it "
                "produced handles (checkpoint_interval=%s s); list large read-only attributes "
                "(%s) in the class attribute _bp_not_recorded: they still go to worker "
                "processes but are not recorded", describe(processor), len(blob) / 2.0 ** 20,
                self.interval, ", ".join(_largest(state)) or "?")
        return blob


#: A record that took ``t`` seconds, longer than ``checkpoint_interval`` itself (a large
#: state to pickle, a slow disk), is followed by the next one ``RECORD_SPACING * t``
#: seconds later, so that recording takes at most a tenth of the loop's time. A record
#: quicker than the interval keeps the interval: the run records at least once per
#: ``checkpoint_interval`` whenever records can be that frequent.
RECORD_SPACING = 9
_clock = time.time


def record_spacing(interval, spent):
    """Seconds from the end of a record that took ``spent`` seconds to the next one."""
    if spent <= interval:
        return interval
    return RECORD_SPACING * spent


def not_recorded(cls):
    """The names in ``_bp_not_recorded`` of ``cls`` and its bases."""
    names = set()
    for klass in getattr(cls, "__mro__", ()):
        names.update(vars(klass).get("_bp_not_recorded", ()))
    return names


_NOTHING = object()
_LARGE_STATE = 10 * 2 ** 20  # bytes of a pickled state that make a WARNING


def _largest(state, count=3):
    """The names of the largest attributes of ``state`` (a dict), largest first."""
    if not isinstance(state, dict):
        return []
    sizes = []
    for name, value in state.items():
        try:
            sizes.append((len(pickle.dumps(value, _PROTOCOL)), name))
        except Exception:
            continue
    return [str(name) for _, name in sorted(sizes, reverse=True)[:count]]
_PLAIN = frozenset([int, float, bool, type(None), bytes, six.text_type, str, complex]
                   + list(six.integer_types))


class _Unreadable(object):
    def __init__(self, error):
        self.error = error


def read_checkpoint(path):
    """What the checkpoint ``path`` says of its run: see `batch_processor.watch`."""
    from .watch import read_checkpoint as read  # imported late: watchers only
    return read(path)


class _Unrecorded(object):
    """Stands for a descriptor that could not be pickled: its ``repr`` only."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "<unrecorded descriptor %s>" % self.text


def _outcome_of(handle):
    future = handle.future
    if future.cancelled():
        return _CANCELLED, None
    exc = compat.exception_of(future)
    if exc is not None:
        return _FAILED, exc
    return _OK, future.result()


def _finite_positive(value):
    try:
        return value > 0 and value == value and value != float("inf")
    except TypeError:
        return False
