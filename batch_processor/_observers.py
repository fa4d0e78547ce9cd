"""``batch_processor._observers``: what watches a run, told by named events.

A run (``_run._Run``) does its own work (feeding, collecting, converting, ending)
and tells its observers what happened through the events of `RunObserver`. A run
feature (a checkpoint, the progress display, a trace) is one observer class and one
line of `FEATURES`: it is made for a run whose options ask for it, and hears only the
events its class defines. An event nobody defines costs the run nothing but one
``is None`` test: the run holds, per event, ``None`` or the one function to call
(`dispatcher`).

The observers shipped adapt the feature modules, imported only when a run asks for
them: `CheckpointObserver` (``checkpoint.Recorder``), `ProgressObserver`
(``progress.RunProgress``) and `TraceObserver` (``trace.TraceWriter``).
"""
from __future__ import absolute_import, division, print_function

import collections
import logging

from .interface import safe_str

__all__ = ["FEATURES", "RunObserver", "dispatcher", "observers_for"]

logger = logging.getLogger("batch_processor")


class RunObserver(object):
    """The events a run tells its observers: a documentation class, every method a no-op.

    An observer overrides the events it needs. Events come from the run's loop, in
    this order: `prepare`, then `attempt_observer` and `attached` for each processor,
    then `fed` for the initial descriptors, `started`; while the run goes on `fed`,
    `collected`, `converting`, `converter_called`, `converted`; at the end
    `finishing` (the run ended by itself) or `before_kill` (the run is stopped: an
    error, a timeout, a cancellation, Ctrl-C, a stream closed early), and `closed`
    last, always, once. ``node`` is the run's view of a processor: ``node.processor``,
    ``node.port`` (its `_runtime.Port`), ``node.kept`` (``None`` when its handles are
    not kept). An observer's exception propagates into the run, which treats it as a
    bug of the library (the run ends with an error, every processor killed), except
    where an event says otherwise.
    """

    def prepare(self, run, feeds):
        """Before anything is attached or fed, with the processors claimed.

        ``feeds`` is the list of the run's initial feeds, ``(node, descriptors, source,
        keys)``; return it, or the list to feed instead (a resumed checkpoint feeds
        its jobs in flight again and skips what was taken), or ``None`` when the run
        has nothing left to do (a finished checkpoint: its results are delivered
        already, `_run._Run.deliver`). What this raises ends the run before anything
        ran (the processors are released, `closed` follows).
        """
        return feeds

    def attempt_observer(self):
        """The object the processors' runtimes tell of each attempt (see
        ``_runtime.Port.observe``), or ``None``."""
        return None

    def attached(self, node, observing):
        """``node``'s port is attached; ``observing``: it tells the attempt observer."""

    def fed(self, node, descriptors, source, keys):
        """``descriptors`` (a list) are about to be fed to ``node``.

        ``source``: they come from an initial iterable; ``keys``: their checkpoint
        keys when a resumed run feeds them again, else ``None``. If the processor
        refuses them (stopped, killed), they come back at once, cancelled, through
        `collected` and `converted`.
        """

    def started(self):
        """The run is wired and its initial descriptors fed; it now runs."""

    def collected(self, node, handles):
        """The run took ``handles`` (a non-empty list) from ``node``, before converting them."""

    def converting(self, converter, source, destination, handles):
        """``converter`` (of the edge ``source -> destination``, processors) is about to
        be called with ``handles``."""

    def converter_called(self, converter, source, destination, handles, descriptors, error):
        """``converter`` returned ``descriptors`` (a list), or raised ``error`` (its own
        exception; ``descriptors`` is then ``None``, and the run ends with a
        ``ConverterError``)."""

    def converted(self, node, handles, outputs):
        """Every outgoing converter of ``node`` succeeded on ``handles`` (one collection),
        and their descriptors were fed: ``outputs`` is a list of ``(destination node,
        descriptors)``, one per edge, in the graph's order (empty without edges).

        Each converter's descriptors are fed as soon as it returns (`fed` comes before
        the next converter is called), so when a later converter fails, what the
        earlier ones returned was fed and comes back (cancelled by the kill) but the
        collection is never `converted`.

        Handles refused by a stopped processor are `converted` to nothing at once.
        Handles collected while the run kills every processor are `collected` and never
        `converted`. So a handle and what the converters made of it can be recorded
        together, here.
        """

    def finishing(self):
        """The run ended by itself (nothing in flight); `closed` follows.

        A `BatchProcessorError` raised here ends the run with that error (a
        checkpoint whose last record cannot be written) after `before_kill`.
        """

    def before_kill(self):
        """The run is stopped and is about to kill every processor (kills are not
        recorded): what has been done can be written now."""

    def closed(self):
        """The run is over (the processors are released): close what was opened. Once."""


def _overrides(observer, name):
    method = getattr(type(observer), name)
    base = getattr(RunObserver, name)
    return getattr(method, "__func__", method) is not getattr(base, "__func__", base)


def dispatcher(observers, name):
    """The function that tells ``observers`` the event ``name``: ``None`` when none of
    them defines it, its one observer's method, or a function calling each in turn."""
    methods = [getattr(observer, name) for observer in observers if _overrides(observer, name)]
    if not methods:
        return None
    if len(methods) == 1:
        return methods[0]

    def tell_all(*args):
        for method in methods:
            method(*args)
    return tell_all


class CheckpointObserver(RunObserver):
    """``checkpoint=PATH``: the run recorded by a ``checkpoint.Recorder``."""

    def __init__(self, path, interval):
        self.path = path
        self.interval = interval
        self.recorder = None

    def prepare(self, run, feeds):
        from .checkpoint import Recorder
        ordered = run.ordered
        self.recorder = recorder = Recorder(self.path, run.graph, ordered, self.interval, run.loop)
        try:
            restored, pending = recorder.load()
            feeds = self._resumed_feeds(run, feeds, pending, ordered)  # checks the inputs
            recorder.restore()
        except BaseException:
            self.recorder = None
            recorder.close(write=False)
            raise
        for index, handles in sorted(restored.items()):
            run.deliver(ordered[index], handles)
        if recorder.finished:
            logger.warning("checkpoint=%r is of a finished run: its recorded result is returned "
                           "and nothing runs; delete the file (or use another path) to run "
                           "the graph again", recorder.path)
            return None
        if recorder.resumed:
            recorded = sum(len(h) for h in restored.values())
            logger.warning("checkpoint=%r: resuming a run that stopped; %s recorded, %s to run "
                           "again", recorder.path, _counted(recorded, "handle"),
                           _counted(len(pending), "job"))
        return feeds

    def _resumed_feeds(self, run, feeds, pending, ordered):
        """The feeds of a resumed run: its jobs in flight again, then untaken initial items
        (the recorder checks that the items taken are those the recorded run took)."""
        skip_taken = self.recorder.skip_taken
        index = dict((id(node), i) for i, node in enumerate(ordered))
        again = collections.OrderedDict()
        for node_index, key, descriptor in pending:
            keys, descriptors = again.setdefault(node_index, ([], []))
            keys.append(key)
            descriptors.append(descriptor)
        resumed = [(ordered[node_index], descriptors, False, keys)
                   for node_index, (keys, descriptors) in again.items()]
        for node, descriptors, source, keys in feeds:
            resumed.append((node, skip_taken(index[id(node)], descriptors), source, keys))
        for entry in run.lazy_sources():  # [node, iterator]: skip what the first run took
            entry[1] = skip_taken(index[id(entry[0])], entry[1])
        return resumed

    def fed(self, node, descriptors, source, keys):
        self.recorder.fed(node, descriptors, source, keys)

    def started(self):
        self.recorder.start()

    def collected(self, node, handles):
        self.recorder.collected(node, handles)

    def converted(self, node, handles, outputs):
        self.recorder.converted(node)  # recorded with what the converters made of them

    def finishing(self):
        recorder = self.recorder
        try:
            recorder.close(finished=True)
        except Exception as exc:
            from .checkpoint import CheckpointError
            error = CheckpointError(
                "the run ended but its last record could not be written to checkpoint=%r "
                "(%s); the results are in .results, and running again resumes from the "
                "record before" % (recorder.path, safe_str(exc)))
            error.__cause__ = exc
            raise error

    def before_kill(self):
        recorder = self.recorder
        if recorder is None:
            return
        try:
            recorder.close(finished=False)
        except Exception:
            logger.warning("the last record of checkpoint=%r could not be written; running "
                           "again resumes from the record before", recorder.path,
                           exc_info=True)

    def closed(self):
        if self.recorder is not None:
            self.recorder.close(write=False)


class ProgressObserver(RunObserver):
    """``progress=True``: live progress per processor (``progress.RunProgress``)."""

    def __init__(self):
        self.progress = None

    def prepare(self, run, feeds):
        from .progress import RunProgress
        self.progress = RunProgress(run.processors)
        return feeds

    def attempt_observer(self):
        return self.progress.observer()

    def attached(self, node, observing):
        if observing:
            self.progress.observed(node.processor)

    def fed(self, node, descriptors, source, keys):
        self.progress.fed(node.processor, len(descriptors))

    def collected(self, node, handles):
        self.progress.done(node.processor, handles)

    def closed(self):
        if self.progress is not None:
            self.progress.close()


class TraceObserver(RunObserver):
    """``trace=PATH``: a Chrome trace of the run's attempts and converter calls."""

    def __init__(self, path):
        self.path = path
        self.trace = None
        self._started = None

    def prepare(self, run, feeds):
        from .trace import TraceWriter
        self.trace = TraceWriter(self.path, run.processors)
        return feeds

    def attempt_observer(self):
        return self.trace

    def converting(self, converter, source, destination, handles):
        self._started = self.trace.now()

    def converter_called(self, converter, source, destination, handles, descriptors, error):
        self.trace.converter_call(converter, self._started, source, destination, len(handles),
                                  0 if descriptors is None else len(descriptors), error)

    def closed(self):
        if self.trace is not None:
            self.trace.close()


def _trace(options):
    return None if options.trace is None else TraceObserver(options.trace)


def _checkpoint(options):
    if options.checkpoint is None:
        return None
    return CheckpointObserver(options.checkpoint, options.checkpoint_interval)


def _progress(options):
    return ProgressObserver() if options.progress else None


#: The run features: each a function of the run's `RunOptions` that returns its
#: observer, or ``None`` when the options do not ask for it. The order is that of
#: `RunObserver.prepare` (a checkpoint may restore processors' state before the
#: progress display reads them) and of the attempt observers.
FEATURES = [_trace, _checkpoint, _progress]


def observers_for(options):
    """The observers of a run with ``options``, in `FEATURES` order."""
    observers = []
    for feature in FEATURES:
        observer = feature(options)
        if observer is not None:
            observers.append(observer)
    return observers


def _counted(number, noun):
    """``"1 job"``, ``"2 jobs"``."""
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")
