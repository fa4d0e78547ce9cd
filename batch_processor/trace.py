"""``batch_processor.trace`` writes a run's timeline as Chrome Trace Event Format JSON.

A runner given ``trace=PATH`` makes a `TraceWriter` and sets it as the observer of
its processors' runtimes (``Runtime.observer``). The runtimes tell it when an
attempt of a job (Separate) or of a batch (Sequential) starts and ends; the runner
times each converter call. Each becomes one complete event (``"ph": "X"``, ``ts``
and ``dur`` in microseconds since the run started) in a JSON array, the format that
Perfetto (https://ui.perfetto.dev) and ``chrome://tracing`` open::

    [
    {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "..."}},
    {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "Trainer"}},
    {"ph": "X", "name": "Trainer", "cat": "job", "pid": 1, "tid": 2, "ts": 12.0,
     "dur": 5031.5, "args": {"processor": "Trainer", "descriptor": "...",
                             "attempt": 1, "outcome": "ok"}},
    ...
    ]

Tracks: the attempts of one processor that overlap in time (parallel jobs) go on
separate tracks ("lanes") that all carry the processor's name, so no two events of
a track overlap; converter calls go on one track named ``converters``. An attempt
run in an executor is timed from its submission to its completion: time spent in
the executor's queue counts. Outcomes are ``ok``, ``failed``, ``timeout`` (the
attempt ran past ``job_timeout``) and ``cancelled`` (an attempt still running when
the run ended - killed, timed out, interrupted - is written then, as cancelled).

Events are written to the file as they end; `TraceWriter.close`, called when the
run ends in any way, writes the open attempts and the closing bracket, so the file
is valid JSON then. (Should the process die before, the format tolerates the missing
bracket.) Nothing of this runs when ``trace`` is ``None``.
"""
from __future__ import absolute_import, division, print_function

import io
import json
import logging
import os
import time

from .compat import exception_of
from .dot import converter_name
from .interface import JobTimeoutError, safe_repr, safe_str
from .progress import processor_labels

__all__ = ["TraceWriter", "outcome_of"]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, Dict, List, Optional  # noqa: F401

logger = logging.getLogger("batch_processor")

_clock = getattr(time, "perf_counter", time.time)

#: How many characters of a descriptor's ``repr`` an event keeps.
REPR_LIMIT = 120
#: How many descriptors of a batch an event shows.
BATCH_SHOWN = 3

_PID = 1
_CONVERTERS_TID = 1


def outcome_of(future):
    # type: (Any) -> str
    """``ok``, ``failed``, ``timeout`` or ``cancelled``: how the attempt of ``future`` ended.

    A future not done (an attempt stopped by a kill) counts as cancelled.
    """
    if not future.done() or future.cancelled():
        return "cancelled"
    exc = exception_of(future)
    if exc is None:
        return "ok"
    if isinstance(exc, JobTimeoutError):
        return "timeout"
    return "failed"


def _plain(value):
    """``value`` (an event) with every string made text that JSON can encode."""
    if isinstance(value, dict):
        return dict((_plain(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (int, float)) or value is None:
        return value
    return u"%s" % (safe_repr(value, REPR_LIMIT),) if not isinstance(value, type(u"")) \
        else value


class TraceWriter(object):
    """The trace of one run, written to ``path``; the observer of its processors' runtimes.

    Args:
        path: the file to write (made anew).
        processors: the processors of the run, in the graph's order; their tracks
            are named as progress lines name them (`progress.processor_labels`).

    Raises:
        ValueError: no file can be written at ``path`` (nothing has run).
    """

    def __init__(self, path, processors):
        # type: (str, List[Any]) -> None
        processors = list(processors)
        try:
            self._file = io.open(path, "w", encoding="utf-8")
        except (IOError, OSError) as error:
            raise ValueError(
                "trace=%s: cannot write the trace there (%s); give the path of a file in a "
                "writable directory, or trace=None" % (safe_repr(path),
                                                        getattr(error, "strerror", None) or error))
        self.path = path
        labels = processor_labels(processors)
        self._labels = dict((id(p), label) for p, label in zip(processors, labels))
        self._order = dict((id(p), i) for i, p in enumerate(processors))
        self._start = _clock()
        self._open = {}  # type: Dict[Any, List[Any]]  # key -> [ts, tid, label, lane, args]
        self._lanes = {}  # type: Dict[int, List[int]]  # id(processor) -> busy flags per lane
        self._tids = {}  # type: Dict[tuple, int]  # (id(processor), lane) -> tid
        self._first = True
        self._closed = False
        self._broken = False
        self._write({"ph": "M", "name": "process_name", "pid": _PID, "tid": 0,
                     "args": {"name": "batch_processor run (pid %d)" % os.getpid()}})
        self._name_track(_CONVERTERS_TID, "converters", 1000 * (len(processors) + 1))

    # -- the observer's side (called by runtimes) ---------------------------------------

    def job_started(self, processor, key, descriptor, attempt=1):
        """An attempt of a job of ``processor`` started; ``key`` (its future) will end it."""
        if self._closed:
            return
        self._begin(processor, key, "job", {
            "descriptor": safe_repr(descriptor, REPR_LIMIT), "attempt": attempt})

    def batch_started(self, processor, key, batch):
        """A batch (a list of descriptors) of ``processor`` started."""
        if self._closed:
            return
        shown = [safe_repr(d, REPR_LIMIT // BATCH_SHOWN) for d in batch[:BATCH_SHOWN]]
        if len(batch) > BATCH_SHOWN:
            shown.append("... %d more" % (len(batch) - BATCH_SHOWN))
        self._begin(processor, key, "batch", {"size": len(batch), "descriptors": shown})

    def ended(self, key, outcome=None):
        """The attempt of ``key`` ended; ``outcome`` is read from the future ``key`` if ``None``."""
        if self._closed:
            return
        record = self._open.pop(key, None)
        if record is None:
            return
        if outcome is None:
            outcome = outcome_of(key)
        self._end(record, outcome, key)

    # -- the runner's side ----------------------------------------------------------

    def now(self):
        # type: () -> float
        """The trace's clock (seconds); give its readings back to `converter_call`."""
        return _clock()

    def converter_call(self, converter, started, source, destination, handles, descriptors,
                       error=None):
        """A call of ``converter`` from ``started`` (a `now` reading) to now."""
        if self._closed:
            return
        name = converter_name(converter)
        args = {"from": self._labels.get(id(source), "?"),
                "to": self._labels.get(id(destination), "?"),
                "handles": handles, "outcome": "ok" if error is None else "failed"}
        if error is None:
            args["descriptors"] = descriptors
        else:
            args["error"] = safe_repr(safe_str(error), REPR_LIMIT)
        self._write(self._complete(name, "converter", _CONVERTERS_TID, started, _clock(), args))

    def close(self):
        """Write the attempts still open, as cancelled, and end the file: valid JSON from now."""
        if self._closed:
            return
        self._closed = True
        try:
            open_records, self._open = list(self._open.items()), {}
            open_records.sort(key=lambda item: item[1][0])
            for _key, record in open_records:
                self._end(record, "cancelled", None)
            if not self._broken:
                self._file.write(u"\n]\n" if not self._first else u"[]\n")
        except (IOError, OSError, ValueError):
            logger.warning("the trace %s could not be completed", safe_repr(self.path),
                           exc_info=True)
        finally:
            try:
                self._file.close()
            except (IOError, OSError, ValueError):
                pass

    # -- inside ---------------------------------------------------------------------

    def _begin(self, processor, key, kind, args):
        label = self._labels.get(id(processor))
        if label is None:
            return  # not a processor of this run
        lanes = self._lanes.setdefault(id(processor), [])
        try:
            lane = lanes.index(0)
        except ValueError:
            lane = len(lanes)
            lanes.append(0)
        lanes[lane] = 1
        args["processor"] = label
        self._open[key] = [_clock(), self._tid(processor, label, lane), kind, lane, args,
                           processor]

    def _end(self, record, outcome, future):
        started, tid, kind, lane, args, processor = record
        self._lanes[id(processor)][lane] = 0
        args["outcome"] = outcome
        exc = None
        if outcome in ("failed", "timeout") and future is not None and future.done():
            exc = None if future.cancelled() else exception_of(future)
        if exc is not None:
            args["error"] = safe_repr(safe_str(exc), REPR_LIMIT)
        self._write(self._complete(args["processor"], kind, tid, started, _clock(), args))

    def _tid(self, processor, label, lane):
        tid = self._tids.get((id(processor), lane))
        if tid is None:
            tid = self._tids[(id(processor), lane)] = len(self._tids) + _CONVERTERS_TID + 1
            self._name_track(tid, label, 1 + self._order[id(processor)] * 1000 + lane)
        return tid

    def _name_track(self, tid, label, order):
        self._write({"ph": "M", "name": "thread_name", "pid": _PID, "tid": tid,
                     "args": {"name": label}})
        self._write({"ph": "M", "name": "thread_sort_index", "pid": _PID, "tid": tid,
                     "args": {"sort_index": order}})

    def _complete(self, name, category, tid, started, ended, args):
        return {"ph": "X", "name": name, "cat": category, "pid": _PID, "tid": tid,
                "ts": round((started - self._start) * 1e6, 3),
                "dur": round(max(ended - started, 0.0) * 1e6, 3), "args": args}

    def _write(self, event):
        """Append ``event``; a file that fails (a full disk) never fails the run."""
        if self._broken:
            return
        try:
            text = json.dumps(event, sort_keys=True, ensure_ascii=True)
        except (TypeError, ValueError):  # 2.7: a byte string of a user's that is not UTF-8
            text = json.dumps(_plain(event), sort_keys=True, ensure_ascii=True)
        try:
            if self._first:
                self._first = False
                self._file.write(u"[\n" + text)
            else:
                self._file.write(u",\n" + text)
        except (IOError, OSError, ValueError):
            self._broken = True
            logger.warning("writing the trace %s failed; the run goes on without it",
                           safe_repr(self.path), exc_info=True)
