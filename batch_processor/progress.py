"""``batch_processor.progress`` shows how a run is going, one line per processor.

A runner given ``progress=True`` makes a `RunProgress` for the graph's processors
and tells it when descriptors are fed to a processor (`RunProgress.fed`), when
handles come back (`RunProgress.done`) and when the run is over
(`RunProgress.close`); the processors' runtimes tell it (as their observer, see
`RunProgress.observer`) when each attempt of a job or batch starts and ends, which
gives the *running* count. It draws a live ``tqdm`` bar per processor on stderr
(done out of fed so far, with the counts of running, ok, failed and cancelled jobs),
or, when ``tqdm`` is not installed (``pip install ".[progress]"`` in a checkout),
writes a plain line per processor that changed, at most twice a second. At the end
it writes one summary line per processor::

    Trainer: fed 40, ok 37, failed 2, cancelled 1

No bar claims to be complete before the run ends: more may come to a processor
that has done all it was fed (from upstream, or around a cycle), so its bar then
shows ``n/?`` rather than ``n/n`` and 100%; the totals are final when the run
ends. While anything is in flight the bars are redrawn every
`BAR_INTERVAL` seconds even when no job ends, so their elapsed times and rates
stay live through long jobs.

Counting costs a few attribute reads per handle; the display is redrawn at most
ten times a second, whatever the number of jobs. The module imports ``tqdm`` only
when a run asks for progress.
"""
from __future__ import absolute_import, division, print_function

import logging
import sys
import time

from . import compat
from .interface import processor_labels

__all__ = ["RunProgress", "count_outcomes", "processor_labels"]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import IO, Any, Dict, Iterable, List, Optional, Set, Tuple  # noqa: F401

    from .interface import AbstractBatchProcessor, BatchProcessorResultHandle  # noqa: F401

logger = logging.getLogger("batch_processor")

#: Seconds between two redraws of the bars.
BAR_INTERVAL = 0.1
#: Seconds between two batches of plain lines (without tqdm).
LINE_INTERVAL = 0.5

_clock = getattr(time, "monotonic", time.time)
# tqdm's own layout, spelled out so that a bar without a total reads "n/?".
_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_bar_class = []  # type: List[Any]  # [the tqdm subclass], or [None] without tqdm


_BARS_ON = []  # type: List[Any]  # (stream, tqdm class) of the bars being drawn now


def write_line(text, stream=None):
    # type: (str, Optional[IO[str]]) -> None
    """Write the line ``text`` to ``stream`` (``None``: ``sys.stderr``), through
    ``tqdm.write`` while progress bars are drawn there, so that neither overwrites
    the other."""
    stream = sys.stderr if stream is None else stream
    for bar_stream, bar_class in list(_BARS_ON):
        if bar_stream is stream:
            bar_class.write(text, file=stream)
            return
    stream.write(text + "\n")
    stream.flush()


class _BarSafeStream(object):
    """A stream whose writes go through ``tqdm.write``: bars cleared, then redrawn."""

    def __init__(self, stream, bar_class):
        self._bp_stream = stream
        self._bp_bar_class = bar_class

    def write(self, text):
        if text:
            self._bp_bar_class.write(text, file=self._bp_stream, end="")

    def flush(self):
        self._bp_stream.flush()

    def __getattr__(self, name):
        return getattr(self._bp_stream, name)


class _LogRedirect(object):
    """While bars are drawn on ``stream``: the logging handlers that write there
    (``logging.lastResort`` included) write through ``tqdm.write`` instead."""

    def __init__(self, stream, bar_class):
        self.entry = (stream, bar_class)
        _BARS_ON.append(self.entry)
        self.safe = safe = _BarSafeStream(stream, bar_class)
        self.changed = []  # type: List[Any]
        loggers = [logging.root] + [
            value for value in list(logging.Logger.manager.loggerDict.values())
            if isinstance(value, logging.Logger)]
        for each in loggers:
            for handler in list(each.handlers):
                if (type(handler) is logging.StreamHandler
                        and getattr(handler, "stream", None) is stream):
                    handler.stream = safe
                    self.changed.append(handler)
        self.last_resort = getattr(logging, "lastResort", None)
        if self.last_resort is not None and stream is sys.stderr:
            replacement = logging.StreamHandler(safe)
            replacement.setLevel(self.last_resort.level)
            logging.lastResort = replacement

    def restore(self):
        for handler in self.changed:
            if handler.stream is self.safe:
                handler.stream = self.entry[0]
        if self.last_resort is not None and logging.lastResort is not self.last_resort \
                and getattr(logging.lastResort, "stream", None) is self.safe:
            logging.lastResort = self.last_resort
        try:
            _BARS_ON.remove(self.entry)
        except ValueError:
            pass


def count_outcomes(handles):
    # type: (Iterable[BatchProcessorResultHandle]) -> Tuple[int, int, int]
    """Return ``(ok, failed, cancelled)``: how the jobs of ``handles`` ended.

    Every handle's future must be done, as the handles a processor gives back are.
    """
    failed = cancelled = 0
    total = 0
    for handle in handles:
        total += 1
        future = handle.future
        if future.cancelled():
            cancelled += 1
        elif compat.exception_of(future) is not None:
            failed += 1
    return total - failed - cancelled, failed, cancelled


def _tqdm_class():
    """A ``tqdm`` subclass without the monitor thread, or ``None`` without tqdm."""
    if not _bar_class:
        try:
            from tqdm import tqdm
        except ImportError:
            _bar_class.append(None)
        else:
            class _Bar(tqdm):
                # Redraws are throttled by RunProgress itself: tqdm's monitor thread,
                # which corrects a too-large miniters, has nothing to do here.
                monitor_interval = 0
            _bar_class.append(_Bar)
    return _bar_class[0]


class RunProgress(object):
    """Live progress of one run, per processor, on a stream (stderr by default).

    Args:
        processors: the processors of the run's graph, in the graph's order.
        stream: where to write (``None``: ``sys.stderr`` as it is when created).
        bars: ``None`` draws ``tqdm`` bars when tqdm can be imported and plain lines
            otherwise; ``True`` requires tqdm; ``False`` writes plain lines.
        interval: least seconds between two redraws (default `BAR_INTERVAL` for
            bars, `LINE_INTERVAL` for plain lines).

    Raises:
        ImportError: ``bars=True`` and tqdm is not installed.
    """

    def __init__(self, processors, stream=None, bars=None, interval=None):
        # type: (Iterable[AbstractBatchProcessor], Optional[IO[str]], Optional[bool], Optional[float]) -> None
        processors = list(processors)
        self._stream = sys.stderr if stream is None else stream
        self._labels = processor_labels(processors)
        self._index = dict((id(p), i) for i, p in enumerate(processors))
        # fed, ok, failed, cancelled per processor
        self._stats = [[0, 0, 0, 0] for _ in processors]
        self._in_flight = 0  # fed and not done, in the whole run
        self._started = [0 for _ in processors]  # attempts started and not ended, in jobs
        self._observed = set()  # type: Set[int]  # processors whose attempts are reported
        self._attempts = {}  # type: Dict[Any, Tuple[int, int]]  # key -> (index, jobs)
        self._show_running = False
        self._changed = set()  # type: Set[int]
        self._timer = None
        self._heartbeat = None
        self._closed = False
        self._broken = False
        bar_class = None if bars is False else _tqdm_class()
        if bars and bar_class is None:
            raise ImportError("progress bars need tqdm: pip install tqdm "
                              "(or pip install \".[progress]\" in a checkout of this project)")
        if interval is None:
            interval = BAR_INTERVAL if bar_class is not None else LINE_INTERVAL
        self._interval = interval
        self._last = None  # when the display was last redrawn
        self._bars = None
        self._redirect = None  # the log handlers sent through tqdm while bars are drawn
        if bar_class is not None:
            self._guard(self._open_bars, bar_class)

    # -- what the runner calls --------------------------------------------------------

    def fed(self, processor, count):
        # type: (AbstractBatchProcessor, int) -> None
        """``count`` descriptors were fed to ``processor``."""
        index = self._index.get(id(processor))
        if index is None or not count:
            return
        self._stats[index][0] += count
        self._in_flight += count
        self._touch(index)

    def done(self, processor, handles):
        # type: (AbstractBatchProcessor, List[BatchProcessorResultHandle]) -> None
        """``processor`` gave back ``handles`` (a list of finished handles)."""
        index = self._index.get(id(processor))
        if index is None or not handles:
            return
        ok, failed, cancelled = count_outcomes(handles)
        stats = self._stats[index]
        stats[1] += ok
        stats[2] += failed
        stats[3] += cancelled
        self._in_flight -= len(handles)
        self._touch(index)

    def observer(self):
        """Show running counts; return the observer to set on the processors' runtimes.

        It is told ``job_started``, ``batch_started`` and ``ended`` (see
        ``Runtime.observer``); call `observed` for each processor that reports to it.
        """
        self._show_running = True
        return self

    def observed(self, processor):
        # type: (AbstractBatchProcessor) -> None
        """``processor`` reports its attempts; the others count fed - done as running."""
        index = self._index.get(id(processor))
        if index is not None:
            self._observed.add(index)

    def job_started(self, processor, key, descriptor, attempt=1):
        self._attempt_started(processor, key, 1)

    def batch_started(self, processor, key, batch):
        self._attempt_started(processor, key, len(batch))

    def ended(self, key, outcome=None):
        entry = self._attempts.pop(key, None)
        if entry is not None:
            index, jobs = entry
            self._started[index] -= jobs
            self._touch(index, at_once=False)

    def _attempt_started(self, processor, key, jobs):
        index = self._index.get(id(processor))
        if index is None or self._closed:
            return
        self._attempts[key] = (index, jobs)
        self._started[index] += jobs
        self._touch(index, at_once=False)

    def close(self):
        # type: () -> None
        """Show the final state, end the bars and write a summary line per processor."""
        if self._closed:
            return
        self._closed = True
        self._attempts.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        try:
            self._guard(self._finish)
        finally:
            redirect, self._redirect = self._redirect, None
            if redirect is not None:  # the log handlers as they were, whatever happened
                redirect.restore()

    # -- reading the counts -------------------------------------------------------

    def counts(self, processor):
        # type: (AbstractBatchProcessor) -> Tuple[int, ...]
        """``(fed, ok, failed, cancelled)`` of ``processor`` so far."""
        return tuple(self._stats[self._index[id(processor)]])

    def running(self, processor):
        # type: (AbstractBatchProcessor) -> int
        """How many jobs of ``processor`` run now (see `observed`)."""
        return self._running(self._index[id(processor)])

    def _running(self, index):
        fed, ok, failed, cancelled = self._stats[index]
        waiting = fed - ok - failed - cancelled  # fed and not yet done
        if index not in self._observed:
            return max(0, waiting)
        return max(0, min(self._started[index], waiting))

    def summary_lines(self):
        # type: () -> List[str]
        """One ``"Name: fed N, ok N, failed N, cancelled N"`` line per processor."""
        return ["%s: fed %d, ok %d, failed %d, cancelled %d"
                % (label, stats[0], stats[1], stats[2], stats[3])
                for label, stats in zip(self._labels, self._stats)]

    # -- drawing --------------------------------------------------------------------

    def _touch(self, index, at_once=True):
        """``index`` changed: redraw now (``at_once``, unless throttled) or soon."""
        self._changed.add(index)
        if self._closed or self._broken:
            return
        now = _clock()
        if self._bars is not None and self._heartbeat is None and self._in_flight:
            self._beat()
        if at_once and (self._last is None or now - self._last >= self._interval):
            self._guard(self._redraw, now)
        elif self._timer is None:
            # Draw the latest counts even if nothing else happens for a while.
            loop = compat.running_loop()
            if loop is not None:
                delay = self._interval - (now - self._last) if self._last is not None else 0
                self._timer = loop.call_later(max(delay, 0), self._on_timer)

    def _beat(self):
        """Arm the redraw of every bar in `interval` seconds (elapsed and rate move on)."""
        loop = compat.running_loop()
        if loop is not None:
            self._heartbeat = loop.call_later(self._interval, self._on_heartbeat)

    def _on_heartbeat(self):
        self._heartbeat = None
        if self._closed or self._broken or self._bars is None:
            return
        self._changed.update(range(len(self._bars)))
        self._guard(self._redraw, _clock())
        if self._in_flight:
            self._beat()

    def _on_timer(self):
        self._timer = None
        if not self._closed and not self._broken and self._changed:
            self._guard(self._redraw, _clock())

    def _guard(self, method, *args):
        """Run a drawing method; a display that fails never fails the run."""
        if self._broken:
            return
        try:
            method(*args)
        except Exception:
            self._broken = True
            logger.warning("progress display failed; the run goes on without it", exc_info=True)

    def _open_bars(self, bar_class):
        self._bars = [
            bar_class(total=0, desc=label, unit="job", file=self._stream, leave=True,
                      mininterval=0, miniters=1, smoothing=0.1, bar_format=_BAR_FORMAT)
            for label in self._labels]
        self._last = _clock()
        self._redirect = _LogRedirect(self._stream, bar_class)

    def _redraw(self, now):
        self._last = now
        changed, self._changed = sorted(self._changed), set()
        if self._bars is not None:
            for index in changed:
                self._draw_bar(index)
        else:
            lines = []
            for index in changed:
                fed, ok, failed, cancelled = self._stats[index]
                running = ""
                if self._show_running:
                    running = " running %d," % self._running(index)
                lines.append(
                    "[batch_processor] %s: fed %d,%s done %d (ok %d, failed %d, cancelled %d)\n"
                    % (self._labels[index], fed, running, ok + failed + cancelled, ok, failed,
                       cancelled))
            self._stream.write("".join(lines))
            self._stream.flush()

    def _draw_bar(self, index):
        bar = self._bars[index]
        fed, ok, failed, cancelled = self._stats[index]
        done = ok + failed + cancelled
        # All it was fed is done, but more may come until the run ends.
        bar.total = None if done == fed and not self._closed else fed
        bar.set_postfix_str("running %d, ok %d, failed %d, cancelled %d"
                            % (self._running(index), ok, failed, cancelled), refresh=False)
        delta = done - bar.n
        if delta:
            bar.update(delta)  # draws at once (mininterval=0) and keeps the rate right
        else:
            bar.refresh()

    def _finish(self):
        if self._bars is not None:
            self._changed.update(range(len(self._bars)))  # the final totals, on every bar
            self._redraw(_clock())
            bars, self._bars = self._bars, None
            for bar in bars:
                bar.close()
        self._stream.write("".join(line + "\n" for line in self.summary_lines()))
        self._stream.flush()
