"""The checkpoint's store: an SQLite file, the one store the library ships.

`checkpoint.Recorder` keeps the bookkeeping of a run (job keys, jobs in flight,
duplicates, processors' states) and hands this store finished records; the store only
reads and writes bytes. Its interface is small:

* ``SqliteStore(path)`` opens ``path`` (a new file, or a checkpoint this library wrote)
  and raises `StoreRefused` for anything else, leaving that file unchanged;
* ``load()`` returns what the file holds, a `Stored`;
* ``start(meta)`` writes the meta of a new checkpoint, or updates the run's holder;
* ``append(record)`` writes one `Record` as one transaction (all of it or none of it);
* ``close()``.

Which thread calls it: the thread that runs the run's event loop, and only it (every
call comes from the run's own callbacks: its steps, its record timer, its end). The
connection is opened with ``check_same_thread=False`` only because a streaming run may
be closed from the thread that consumes it after the loop has stopped.

``sqlite3`` is imported here, so only when a checkpoint is used.
"""
from __future__ import absolute_import, division, print_function

import os
import sqlite3

__all__ = ["Record", "SqliteStore", "Stored", "StoreRefused", "StoreError"]

#: Incompatible changes of the layout bump FORMAT. A new table is not one: every table
#: is created ``IF NOT EXISTS`` on open, so an older checkpoint simply gains it.
FORMAT = 1
APPLICATION = "batch_processor checkpoint"
_HEADER = b"SQLite format 3\x00"

_TABLES = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fed (record INTEGER PRIMARY KEY, items BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ended (record INTEGER PRIMARY KEY, keys BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS handles (record INTEGER NOT NULL, node INTEGER NOT NULL, "
    "items BLOB NOT NULL, PRIMARY KEY (record, node))",
    "CREATE TABLE IF NOT EXISTS processors (node INTEGER PRIMARY KEY, state BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sources (node INTEGER PRIMARY KEY, taken INTEGER NOT NULL)",
    # added after format 1 was released: the initial descriptors' fingerprint per source
    "CREATE TABLE IF NOT EXISTS fingerprints (node INTEGER PRIMARY KEY, "
    "taken INTEGER NOT NULL, digest TEXT NOT NULL)",
]
#: The tables of a checkpoint: a file with any other table is another application's.
#: A new table goes in _TABLES and here.
_OURS = frozenset(["meta", "fed", "ended", "handles", "processors", "sources", "fingerprints",
                   # what watchers read (batch_processor._watch_record), made at the first record
                   "watch_meta", "watch_counts", "watch_records", "watch_resources"])

StoreError = sqlite3.Error  # what a failed write raises (with OSError)


class StoreRefused(Exception):
    """The file is not a checkpoint of this library; ``str()`` says why."""


class Record(object):
    """One record: what changed since the previous one (see ``checkpoint``)."""

    __slots__ = ("number", "fed", "ended", "handles", "states", "sources", "fingerprints",
                 "finished", "extra")

    def __init__(self, number):
        self.number = number
        self.fed = None  # bytes: the pickled list of (key, node, descriptor) still in flight
        self.ended = None  # bytes: the pickled list of keys of jobs ended since
        self.handles = []  # [(node, bytes)]
        self.states = []  # [(node, bytes)]
        self.sources = []  # [(node, taken)]
        self.fingerprints = []  # [(node, taken, digest)]
        self.finished = False
        self.extra = None  # write(db): more rows in the same transaction (the watchers' counts)


class Stored(object):
    """What a checkpoint holds, as the store read it."""

    def __init__(self):
        self.meta = {}
        self.fed = []  # bytes, in record order
        self.ended = []  # bytes
        self.handles = []  # (node, bytes) in record order, then node order
        self.states = {}  # node -> bytes
        self.sources = {}  # node -> taken
        self.fingerprints = {}  # node -> (taken, digest)
        self.last_record = None


class SqliteStore(object):
    """A checkpoint file. See the module's docstring for who calls it and when."""

    def __init__(self, path):
        self.path = path
        self.db = None
        self.new = _is_new(path)
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if not self.new:
                self._check(db)  # reads only: a foreign file stays as it was
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in _TABLES:
                db.execute(statement)
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise StoreRefused("it is not an SQLite database, or a damaged one (%s)" % exc)
        except BaseException:
            if db is not None:
                db.close()
            raise
        self.db = db
        self.identity = _identity(path)

    def _check(self, db):
        names = set(name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        if not names:
            self.new = True  # an empty database: ours to fill
            return
        if "meta" not in names:
            raise StoreRefused("it is an SQLite database of another application (its tables: %s)"
                               % ", ".join(sorted(names)))
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise StoreRefused("its meta table is not this library's (%s)" % exc)
        if not meta and names <= _OURS:
            self.new = True  # ours, killed before its first record: nothing in it yet
            return
        if "format" not in meta or "signature" not in meta or not names <= _OURS:
            raise StoreRefused("it is an SQLite database of another application (its tables: %s)"
                               % ", ".join(sorted(names)))
        if meta["format"] != str(FORMAT):
            raise StoreRefused("it was written in another format (%s)" % meta["format"])
        db.execute("PRAGMA quick_check(1)").fetchall()  # a damaged page raises here

    def load(self):
        db = self.db
        stored = Stored()
        stored.meta = dict(db.execute("SELECT key, value FROM meta"))
        stored.fed = [bytes(blob) for (blob,) in db.execute("SELECT items FROM fed ORDER BY record")]
        stored.ended = [bytes(blob) for (blob,) in db.execute("SELECT keys FROM ended ORDER BY record")]
        stored.handles = [(node, bytes(blob)) for node, blob in db.execute(
            "SELECT node, items FROM handles ORDER BY record, node")]
        stored.states = dict((node, bytes(blob)) for node, blob in db.execute(
            "SELECT node, state FROM processors"))
        stored.sources = dict(db.execute("SELECT node, taken FROM sources"))
        stored.fingerprints = dict((node, (taken, digest)) for node, taken, digest in db.execute(
            "SELECT node, taken, digest FROM fingerprints"))
        stored.last_record = db.execute(
            "SELECT MAX(record) FROM (SELECT record FROM fed UNION ALL SELECT record FROM ended "
            "UNION ALL SELECT record FROM handles)").fetchone()[0]
        return stored

    def start(self, meta):
        """Write (insert or replace) the ``meta`` items, a dict of strings."""
        with _Transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(meta.items()))

    def append(self, record):
        """Write ``record`` as one transaction; raises `StoreError` (or OSError) if it fails."""
        if _identity(self.path) != self.identity:
            raise sqlite3.OperationalError("the file %r was removed or replaced" % (self.path,))
        with _Transaction(self.db):
            db = self.db
            number = record.number
            if record.fed is not None:
                db.execute("INSERT INTO fed VALUES (?, ?)", (number, sqlite3.Binary(record.fed)))
            if record.ended is not None:
                db.execute("INSERT INTO ended VALUES (?, ?)", (number, sqlite3.Binary(record.ended)))
            if record.handles:
                db.executemany("INSERT INTO handles VALUES (?, ?, ?)",
                               [(number, node, sqlite3.Binary(blob)) for node, blob in record.handles])
            if record.states:
                db.executemany("INSERT OR REPLACE INTO processors VALUES (?, ?)",
                               [(node, sqlite3.Binary(blob)) for node, blob in record.states])
            if record.sources:
                db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?)", record.sources)
            if record.fingerprints:
                db.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                               record.fingerprints)
            if record.finished:
                db.execute("UPDATE meta SET value = '1' WHERE key = 'finished'")
            if record.extra is not None:
                record.extra(db)

    def close(self):
        if self.db is not None:
            db, self.db = self.db, None
            db.close()


def _identity(path):
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _is_new(path):
    """True for a missing or empty file; raises `StoreRefused` for one that is not SQLite."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(len(_HEADER))
    except (IOError, OSError):
        return not os.path.exists(path)
    if not header:
        return True
    if header != _HEADER:
        raise StoreRefused("it is not an SQLite database")
    return False


class _Transaction(object):
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb):
        if kind is None:
            try:
                self.db.execute("COMMIT")
            except BaseException:
                _rollback(self.db)
                raise
        else:
            _rollback(self.db)


def _rollback(db):
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:  # no transaction left (SQLite rolled it back itself)
        pass
