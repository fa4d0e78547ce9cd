"""``batch_processor.watch``: read a checkpoint from outside its run, read-only.

`read_checkpoint` (also ``batch_processor.checkpoint.read_checkpoint``) opens the
SQLite file with ``mode=ro``: it never writes, and takes no lock that could stall
the run writing it (SQLite's WAL lets a reader see the last committed record while
the writer goes on). It returns a `CheckpointStatus`: the run's state, its start
and last-record times, per processor counts and the last failures, all read from
the small tables `_watch_record` keeps, so nothing is unpickled;
`CheckpointStatus.handles` unpickles the recorded handles on demand. A run whose
processors use shared resources (``uses=``) also records, with each record, each
resource's capacity, units in use and requests waiting (`ResourceUse`).

Whether the run is alive: a live run holds ``flock(LOCK_EX)`` on the sidecar file
``PATH + ".lock"`` (one line: ``"<pid> <hostname>"``). The run is ``"finished"`` if
the checkpoint says so; else ``"running"`` if that sidecar exists and a shared,
non-blocking lock on it fails; else ``"stopped"``.
"""
from __future__ import absolute_import, division, print_function

import io
import json
import os
import pickle
import sys
import time

import attr
import six

from . import compat
from .checkpoint import _FAILED, _OK, CheckpointError
from .interface import BatchProcessorResultHandle, safe_repr, safe_str

__all__ = ["CheckpointStatus", "FailureRecord", "ProcessorCounts", "ResourceUse",
           "read_checkpoint"]

#: How many of the last failures `read_checkpoint` gives.
FAILURES = 10
#: How long a read waits for a checkpoint that is busy or still being created.
PATIENCE = 2.0
_STEP = 0.05


class _Record(dict):
    """A dict of the JSON keys ``_fields`` whose values read as attributes too."""

    _fields = ()  # type: tuple

    def __init__(self, *values, **named):
        if len(values) > len(self._fields):
            raise TypeError("%s takes %d values" % (type(self).__name__, len(self._fields)))
        dict.__init__(self, zip(self._fields, values))
        self.update(named)
        missing = [name for name in self._fields if name not in self]
        if missing:
            raise TypeError("%s: missing %s" % (type(self).__name__, ", ".join(missing)))

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (name, self[name]) for name in self._fields))


class ProcessorCounts(_Record):
    """One processor's counts over the run's life; ``in_flight``: fed, not yet collected.

    A dict of the keys ``name``, ``fed``, ``in_flight``, ``succeeded``, ``failed`` and
    ``cancelled`` (as ``status --json`` prints it), also readable as attributes.
    """

    _fields = ("name", "fed", "in_flight", "succeeded", "failed", "cancelled")


class FailureRecord(_Record):
    """A failed job: a dict of ``processor`` (its name), ``descriptor`` (its shortened
    repr) and ``error`` (the message), also readable as attributes."""

    _fields = ("processor", "descriptor", "error")


class ResourceUse(_Record):
    """A shared resource (`batch_processor.Resource`) the run's processors use, as of
    the last record.

    A dict of the keys ``name``, ``capacity``, ``devices`` (its device ids, or
    ``None``), ``in_use`` (units held), ``waiting`` (jobs or batches waiting for it),
    ``devices_in_use`` (the ids held, or ``None``) and ``processors`` (a list of
    ``{"name": processor, "units": units one job or batch of it holds}``), also
    readable as attributes. ``in_use`` and ``waiting`` are the process's counts: other
    runs of the process that share the resource count too.
    """

    _fields = ("name", "capacity", "devices", "in_use", "waiting", "devices_in_use",
               "processors")


@attr.s(frozen=True)
class Sample(object):
    """Handles collected by ``processor`` by the time ``time`` (UNIX seconds)."""

    processor = attr.ib()
    time = attr.ib()
    collected = attr.ib()


_KEYS = ("state", "pid", "started", "updated", "processors", "failures")


@attr.s(frozen=True)
class CheckpointStatus(object):
    """What a checkpoint says of its run; `as_dict` is what ``status --json`` prints.

    ``state``: ``"running"``, ``"stopped"`` or ``"finished"``; ``pid``: the process
    id of the run holding it (or of the last one, if known; else ``None``);
    ``started`` and ``updated``: UNIX seconds (``None`` if not recorded);
    ``processors``: `ProcessorCounts` in the graph's order; ``failures``: the last
    `FailureRecord`\\ s, oldest first. ``results`` (the latest results, as
    ``(processor, descriptor repr, result repr)``) and ``history`` (`Sample`\\ s)
    are for the dashboard. ``resources``: a `ResourceUse` per shared resource the
    run's processors use (empty if they use none, or if an older version of the
    library wrote the checkpoint); `as_dict` has the key ``resources`` only if it is
    not empty.
    """

    path = attr.ib()
    state = attr.ib()
    pid = attr.ib()
    started = attr.ib()
    updated = attr.ib()
    processors = attr.ib()
    failures = attr.ib()
    results = attr.ib(default=(), repr=False)
    history = attr.ib(default=(), repr=False)
    resources = attr.ib(default=attr.Factory(list))  # type: list

    def as_dict(self):
        """The JSON object of ``status --json``."""
        printed = {
            "state": self.state,
            "pid": self.pid,
            "started": self.started,
            "updated": self.updated,
            "processors": [dict(p) for p in self.processors],
            "failures": [dict(f) for f in self.failures],
        }
        if self.resources:
            printed["resources"] = [_plain(r) for r in self.resources]
        return printed

    def __getitem__(self, key):
        """``status["state"]`` and the other keys of `as_dict`, as well as attributes."""
        if key not in self.keys():
            raise KeyError(key)
        return self.as_dict()[key]

    def keys(self):
        return list(_KEYS) + (["resources"] if self.resources else [])

    def handles(self):
        """Yield the recorded ``(processor_name, handle)`` pairs, in the order recorded.

        Each handle's future is done with its recorded outcome (a result, an exception,
        or cancelled). This unpickles the handles: the classes of the run's descriptors
        and results must be importable, and only checkpoints you wrote should be read.
        """
        for name, _, handle in self.recorded():
            yield name, handle

    def recorded(self, lenient=False):
        """Yield ``(processor_name, job key, handle)``: `handles` with the keys `durations` uses.

        ``lenient=True`` (for ``export``): an object whose class cannot be imported here
        comes back as a stand-in that shows its class name and attributes.
        """
        names = [p.name for p in self.processors]
        loads = _lenient_loads if lenient else None
        loop = compat.asyncio.new_event_loop()
        try:
            for node, rows in _recorded_rows(self.path, lenient):
                for row in rows:
                    yield _name(names, node), row[0], _handle(row, loop, loads)
        finally:
            loop.close()


def read_checkpoint(path, history=False):
    """Read the checkpoint ``path`` without changing or blocking it; a `CheckpointStatus`.

    Works while the run writes the file and after it ended. ``history=True`` also reads
    the `Sample`\\ s of handles collected over time (for charts).

    Raises:
        CheckpointError: ``path`` is missing, a directory, or not a checkpoint.
    """
    path = _checked_path(path)
    deadline = time.time() + PATIENCE
    while True:
        try:
            with _connection(path) as db:
                status = _read(db, path, history)
            break
        except _NotYet as exc:
            if time.time() > deadline:
                raise CheckpointError("%r is not a checkpoint of batch_processor (%s); give the "
                                      "path a run was given as checkpoint=" % (path, exc))
        except _Busy as exc:
            if time.time() > deadline:
                raise CheckpointError("%r stayed busy for %s s (%s); try again"
                                      % (path, PATIENCE, exc))
        time.sleep(_STEP)
    return status


# -- opening -------------------------------------------------------------------------


class _NotYet(Exception):
    """Not (or not yet: a run may be creating it) a checkpoint."""


class _Busy(Exception):
    """SQLite said the file is busy or locked: try again shortly."""


def _checked_path(path):
    fspath = getattr(path, "__fspath__", None)
    if fspath is not None:
        path = fspath()
    if not isinstance(path, six.string_types):
        raise TypeError("read_checkpoint(%s): give the path of a checkpoint file (a string)"
                        % safe_repr(path))
    if os.path.isdir(path):
        raise CheckpointError("%r is a directory, not a checkpoint: give the path of the file a "
                              "run was given as checkpoint=" % (path,))
    if not os.path.exists(path):
        raise CheckpointError("%r does not exist: give the path of the file a run was given as "
                              "checkpoint=" % (path,))
    return path


_URI_SUPPORT = []  # type: list


def _uri_supported():
    """Whether this Python's SQLite opens ``file:`` URIs (Python 2.7 cannot ask for it)."""
    if not _URI_SUPPORT:
        import sqlite3
        db = sqlite3.connect(":memory:")
        try:
            options = [row[0] for row in db.execute("PRAGMA compile_options")]
        finally:
            db.close()
        _URI_SUPPORT.append("USE_URI" in options or "USE_URI=1" in options)
    return _URI_SUPPORT[0]


class _connection(object):
    """A read-only connection to ``path`` (``mode=ro``), closed on exit."""

    def __init__(self, path):
        import sqlite3
        from six.moves.urllib.request import pathname2url
        uri = "file:%s?mode=ro" % pathname2url(os.path.abspath(path))
        try:
            if sys.version_info[0] >= 3:
                self.db = sqlite3.connect(uri, uri=True, timeout=PATIENCE, isolation_level=None,
                                          check_same_thread=False)
            elif _uri_supported():
                # Python 2.7's sqlite3 has no uri=; an SQLite built with SQLITE_USE_URI
                # (Debian's, and most) reads the file: URI anyway.
                self.db = sqlite3.connect(uri, timeout=PATIENCE, isolation_level=None,
                                          check_same_thread=False)
            else:
                raise CheckpointError(
                    "this Python's SQLite %s cannot open %r read-only (it was built without "
                    "URI filenames); read the checkpoint with Python 3" % (sqlite3.sqlite_version, path))
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise _Busy(safe_str(exc))
            raise CheckpointError("%r cannot be opened read-only (%s)" % (path, safe_str(exc)))

    def __enter__(self):
        return self.db

    def __exit__(self, kind, exc, tb):
        self.db.close()


def _busy(exc):
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# -- reading -------------------------------------------------------------------------


def _read(db, path, history):
    import sqlite3
    try:
        db.execute("BEGIN")  # one snapshot: counts, meta and failures of the same record
        try:
            return _read_snapshot(db, path, history)
        finally:
            db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise _Busy(safe_str(exc))
        raise CheckpointError("%r cannot be read (%s)" % (path, safe_str(exc)))
    except sqlite3.DatabaseError as exc:
        raise CheckpointError("%r is not a checkpoint of batch_processor: it is not an SQLite "
                              "database (%s)" % (path, safe_str(exc)))


def _tables(db):
    return set(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'"))


def _read_snapshot(db, path, history):
    tables = _tables(db)
    if "meta" not in tables:
        if tables:
            raise CheckpointError("%r is an SQLite database of something else, not a checkpoint "
                                  "of batch_processor (it has no table meta)" % (path,))
        raise _NotYet("an empty file")
    meta = dict(db.execute("SELECT key, value FROM meta"))
    if "signature" not in meta:
        if meta or not tables >= set(["fed", "handles", "processors"]):
            raise CheckpointError("%r is an SQLite database of something else, not a checkpoint "
                                  "of batch_processor" % (path,))
        raise _NotYet("a run is creating it")
    try:
        names = [name for _, name in json.loads(meta["signature"])["processors"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("%r is not a checkpoint of batch_processor (its signature cannot be "
                              "read: %s)" % (path, safe_str(exc)))
    watched = "watch_counts" in tables
    times = dict(db.execute("SELECT key, value FROM watch_meta")) if watched else {}
    started = times.get("started", _number(meta.get("started")))
    updated = times.get("updated")
    counts = {}
    if watched:
        for row in db.execute("SELECT node, fed, succeeded, failed, cancelled FROM watch_counts"):
            counts[row[0]] = row[1:]
    processors = []
    for index, name in enumerate(names):
        fed, ok, failed, cancelled = counts.get(index, (0, 0, 0, 0))
        processors.append(ProcessorCounts(name, fed, max(0, fed - ok - failed - cancelled), ok,
                                          failed, cancelled))
    failures, results, samples = [], [], []
    if watched:
        failures = _latest(db, "failures", names, FAILURES)
        results = [(p, d, r) for p, d, r in _latest(db, "results", names, FAILURES, tuple)]
        if history:
            samples = _history(db, names)
    used = _resources(db, names) if "watch_resources" in tables else []
    state, pid = _state(path, meta)
    return CheckpointStatus(path, state, pid, started, updated, processors, failures, results,
                            samples, used)


def _resources(db, names):
    """The `ResourceUse`\\ s of the last record, in the order the graph first uses them."""
    used = []
    for row in db.execute("SELECT name, capacity, devices, in_use, waiting, devices_in_use, "
                          "users FROM watch_resources ORDER BY position"):
        name, capacity, devices, in_use, waiting, devices_in_use, users = row
        used.append(ResourceUse(
            name, capacity, json.loads(devices) if devices is not None else None, in_use,
            waiting, json.loads(devices_in_use) if devices_in_use is not None else None,
            [{"name": _name(names, node), "units": units} for node, units in json.loads(users)]))
    return used


def _plain(record):
    """A `_Record` as plain dicts and lists (for JSON)."""
    return dict((key, [dict(item) for item in value] if key == "processors" else value)
                for key, value in record.items())


def _number(value):
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _name(names, node):
    return names[node] if 0 <= node < len(names) else str(node)


def _latest(db, column, names, count, make=None):
    """The last ``count`` (processor, descriptor, text) of ``column``, oldest first."""
    found = []
    rows = db.execute("SELECT node, %s FROM watch_records WHERE %s IS NOT NULL ORDER BY id DESC"
                      % (column, column))
    for node, text in rows:
        for descriptor, message in reversed(json.loads(text)):
            found.append((_name(names, node), descriptor, message))
            if len(found) >= count:
                break
        if len(found) >= count:
            break
    found.reverse()
    if make is None:
        return [FailureRecord(*item) for item in found]
    return [make(item) for item in found]


def _history(db, names, points=300):
    """`Sample`\\ s of handles collected, per processor, at most ``points`` per processor."""
    first, last = db.execute("SELECT MIN(time), MAX(time) FROM watch_records").fetchone()
    if first is None:
        return []
    bucket = max((last - first) / points, 1e-6)
    rows = db.execute(
        "SELECT node, MAX(time), MAX(succeeded + failed + cancelled) FROM watch_records "
        "GROUP BY node, CAST((time - ?) / ? AS INTEGER) ORDER BY node, MAX(time)",
        (first, bucket))
    return [Sample(_name(names, node), at, collected) for node, at, collected in rows]


def _state(path, meta):
    """``(state, pid)`` from the meta and the sidecar lock ``path + ".lock"``."""
    pid = _int(meta.get("pid"))
    if meta.get("finished") == "1":
        return "finished", pid
    holder = _lock_holder(path + ".lock")
    if holder is not None:
        return "running", holder if holder > 0 else pid
    return "stopped", pid


def _int(value):
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _lock_holder(sidecar):
    """The pid in ``sidecar`` (0 if unreadable) if a live run holds its lock, else None."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the run reads as stopped
        return None
    try:
        fd = os.open(sidecar, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (IOError, OSError):
            held = True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
        if not held:
            return None
        line = os.read(fd, 200).decode("utf-8", "replace").split()
        return _int(line[0]) or 0 if line else 0
    finally:
        os.close(fd)


# -- handles -------------------------------------------------------------------------


def _recorded_rows(path, lenient=False):
    """Yield ``(node, rows)`` of the recorded handles, in the order recorded."""
    from .checkpoint import _loads
    loads = _lenient_loads if lenient else _loads
    with _connection(path) as db:
        if "handles" not in _tables(db):
            return
        for node, blob in db.execute("SELECT node, items FROM handles ORDER BY record, node"):
            try:
                rows = loads(blob)
            except Exception as exc:
                raise CheckpointError(
                    "%r: recorded handles cannot be unpickled (%s); read them where the run's "
                    "modules can be imported (its directory, or its PYTHONPATH)"
                    % (path, safe_str(exc)))
            yield node, rows


def _handle(row, loop, loads=None):
    """A handle of a recorded row: ``(key, descriptor, kind, value)``, or
    ``(key, descriptor, kind, None, blob)`` for a value pickled on its own."""
    key, descriptor, kind, value = row[:4]
    if len(row) > 4 and row[4] is not None:
        try:
            value = (loads or _checkpoint_loads)(row[4])
        except Exception as exc:  # that one value does not unpickle here: say so
            kind, value = _FAILED, _Unreadable(
                "the outcome of the job %s was recorded but cannot be read back (%s: %s)"
                % (safe_repr(descriptor), type(exc).__name__, safe_str(exc)))
    future = compat.new_future(loop)
    if kind == _OK:
        future.set_result(value)
    elif kind == _FAILED:
        if not isinstance(value, BaseException):  # a stand-in for an exception class
            value = _StandIn.error(value)
        compat.fail(future, value)
        compat.exception_of(future)
    else:
        future.cancel()
    return BatchProcessorResultHandle(descriptor, future)


class _StandIn(object):
    """An object whose class could not be imported: its class name and attributes."""

    _bp_class = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.__dict__["_bp_args"] = args
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = dict(state[0] or {}, **(state[1] or {}))
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_bp_state"] = state

    def __repr__(self):
        fields = [safe_repr(a) for a in self.__dict__.get("_bp_args", ())]
        fields += ["%s=%s" % (k, safe_repr(v)) for k, v in sorted(self.__dict__.items())
                   if not k.startswith("_bp_")]
        if "_bp_state" in self.__dict__:
            fields.append(safe_repr(self.__dict__["_bp_state"]))
        return "%s(%s)" % (self._bp_class, ", ".join(fields))

    @staticmethod
    def error(value):
        """An exception that reads as ``value`` (a stand-in for a recorded exception) did."""
        kind = type(str(type(value).__name__), (_StandInError,), {})
        args = value.__dict__.get("_bp_args", ())
        return kind(", ".join(safe_str_arg(a) for a in args) if args else repr(value))


def safe_str_arg(value):
    return value if isinstance(value, six.string_types) else safe_repr(value)


class _StandInError(Exception):
    """A recorded exception whose class could not be imported here."""

    def __str__(self):
        return self.args[0] if self.args else ""


_STAND_INS = {}  # type: dict


def _stand_in(module, name):
    key = (module, name)
    if key not in _STAND_INS:
        _STAND_INS[key] = type(str(name), (_StandIn,), {"_bp_class": "%s.%s" % (module, name)})
    return _STAND_INS[key]


class _LenientUnpickler(pickle.Unpickler, object):
    def find_class(self, module, name):
        try:
            return super(_LenientUnpickler, self).find_class(module, name)
        except (ImportError, AttributeError):
            return _stand_in(module, name)


class _Unreadable(Exception):
    """The failure shown for a recorded outcome that does not unpickle."""


def _checkpoint_loads(blob):
    from .checkpoint import _loads
    return _loads(blob)


def _lenient_loads(blob):
    return _LenientUnpickler(io.BytesIO(bytes(blob))).load()


def durations(path):
    """``{job key: seconds from feeding to collecting}`` as recorded (kept processors)."""
    found = {}
    with _connection(path) as db:
        if "watch_records" not in _tables(db):
            return found
        for (text,) in db.execute("SELECT durations FROM watch_records WHERE durations IS NOT NULL"):
            found.update((key, seconds) for key, seconds in json.loads(text))
    return found

