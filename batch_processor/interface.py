"""``batch_processor.interface`` defines what every batch processor is.

A *batch processor* takes job descriptors with `AbstractBatchProcessor.feed_new`,
runs the jobs on an event loop and gives each finished job back, exactly once, as a
`BatchProcessorResultHandle` from `AbstractBatchProcessor.get_ready`. The runners of
``batch_processor.execution`` move handles between processors; the concrete processors
live in ``batch_processor.separate`` and ``batch_processor.sequential``.

`BaseBatchProcessor` holds the bookkeeping that every concrete processor shares (the
state machine, the ready handles, stop and kill, the loop it is bound to, pickling
without runtime state); a subclass only starts jobs and reports them finished.
"""
from __future__ import absolute_import, division, print_function

import abc
import copy
import enum
import logging
import math
import numbers

import attr
import six

from . import compat

__all__ = [
    "AbstractBatchProcessor",
    "BaseBatchProcessor",
    "BatchProcessorError",
    "BatchProcessorResultHandle",
    "ConverterError",
    "Failure",
    "GraphError",
    "JobTimeoutError",
    "ProcessorState",
    "ProcessorStateError",
    "RunTimeoutError",
    "SourceError",
    "check_name",
    "check_seconds",
    "describe",
    "processor_labels",
    "processor_name",
    "safe_repr",
    "safe_str",
]

if False:  # type checkers only: typing is not in Python 2's standard library
    from typing import Any, Dict, Iterable, List, Set  # noqa: F401

logger = logging.getLogger("batch_processor")


def processor_name(processor):
    # type: (Any) -> str
    """``processor.name``, or its class name for an object that has no string name."""
    try:
        name = getattr(processor, "name", None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # a name property that raises: messages still get made
        name = None
    if not isinstance(name, six.string_types) or not name:
        name = type(processor).__name__
    return name


def describe(processor):
    # type: (Any) -> str
    """How messages call ``processor``: its name and a short identity.

    ``Trainer@9a79d0`` for a processor called by its class name, and
    ``'fast trainer' (Trainer@9a79d0)`` for one given another ``name``.
    """
    kind = type(processor).__name__
    ident = "%s@%x" % (kind, id(processor) & 0xFFFFFF)
    name = processor_name(processor)
    return ident if name == kind else "%r (%s)" % (str(name), ident)


def processor_labels(processors):
    # type: (Iterable[Any]) -> List[str]
    """Display names of ``processors``, in order: each one's `processor_name`, with a
    short identity (``Name@9a79d0``) for those whose name another one of the list shares.

    Progress lines and DOT pictures call processors by these labels.
    """
    processors = list(processors)
    names = [processor_name(processor) for processor in processors]
    counts = {}  # type: Dict[str, int]
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else "%s@%x" % (name, id(processor) & 0xFFFFFF)
            for name, processor in zip(names, processors)]


class BatchProcessorError(Exception):
    """Base class of the errors raised by ``batch_processor``."""


class ProcessorStateError(BatchProcessorError):
    """A processor was asked for something its state does not allow."""


class GraphError(BatchProcessorError):
    """A graph or a run's arguments do not fit together."""


class ConverterError(BatchProcessorError):
    """A converter raised or returned something that is not an iterable of descriptors.

    Attributes:
        converter: the converter that failed.
        source, destination: the processors of its edge.
        original: the exception it raised (also ``__cause__`` on Python 3).
        results: the partial result of the run, as the runner would have returned it.
    """

    def __init__(self, message, converter=None, source=None, destination=None,
                 original=None, results=None):
        super(ConverterError, self).__init__(message)
        self.converter = converter
        self.source = source
        self.destination = destination
        self.original = original
        self.results = results


class RunTimeoutError(BatchProcessorError):
    """A run took longer than its ``timeout``; ``results`` holds what it collected."""

    def __init__(self, message, results=None):
        super(RunTimeoutError, self).__init__(message)
        self.results = results


class CheckpointError(BatchProcessorError):
    """A checkpoint file does not fit the run that was given it (or cannot be read).

    Defined here (and exported by ``batch_processor.checkpoint`` too) so that
    importing the package loads no ``sqlite3``: that waits for a run with a checkpoint.
    """


class SourceError(BatchProcessorError):
    """An initial iterable of descriptors raised while the run read it.

    Attributes:
        processor: the processor the iterable was for.
        original: the exception it raised (also ``__cause__`` on Python 3).
        results: the partial result of the run, as the runner would have returned it.
    """

    def __init__(self, message, processor=None, original=None, results=None):
        super(SourceError, self).__init__(message)
        self.processor = processor
        self.original = original
        self.results = results


class JobTimeoutError(BatchProcessorError):
    """One attempt of a job took longer than its processor's ``job_timeout``."""


class ProcessorState(enum.Enum):
    """Where a processor is in its life. ``STOPPED`` and ``KILLED`` are final."""

    IDLE = "idle"          #: nothing in flight
    RUNNING = "running"    #: something in flight
    STOPPING = "stopping"  #: stop() called, fed jobs still running
    STOPPED = "stopped"    #: stop() called and every fed job ended
    KILLED = "killed"      #: kill() called


@attr.s(eq=False, slots=True, repr=False)
class BatchProcessorResultHandle(object):
    """A finished job: its ``descriptor`` as fed and its done ``future``.

    ``future.result()`` gives the job's result or raises its exception (or
    ``CancelledError`` for a cancelled job). Handles compare and hash by identity.
    """

    descriptor = attr.ib()
    future = attr.ib()

    def __repr__(self):
        fut = self.future
        if not fut.done():
            outcome = "pending"
        elif fut.cancelled():
            outcome = "cancelled"
        elif compat.exception_of(fut) is not None:
            outcome = "failed: %s" % (safe_repr(compat.exception_of(fut), _HANDLE_REPR_LIMIT),)
        else:
            outcome = "result: %s" % (safe_repr(fut.result(), _HANDLE_REPR_LIMIT),)
        return "BatchProcessorResultHandle(descriptor=%s, %s)" % (
            safe_repr(self.descriptor, _HANDLE_REPR_LIMIT), outcome)


Handle = BatchProcessorResultHandle
_HANDLE_REPR_LIMIT = 2000


def _check_failure(instance, attribute, value):
    if not isinstance(value, BaseException):
        raise TypeError("Failure(%s): a Failure holds the exception that fails its item; "
                        "give an exception instance" % (safe_repr(value),))


@attr.s(frozen=True, repr=False)
class Failure(object):
    """An item of a Sequential batch's result list that fails that descriptor's handle.

    ``Failure(ValueError("bad image"))`` in the list returned by ``_run_batch`` fails
    the handle of the descriptor at that position with ``exception``; the other
    items of the batch succeed.
    """

    exception = attr.ib(validator=_check_failure)

    def __repr__(self):
        return "Failure(%s)" % (safe_repr(self.exception),)


@six.add_metaclass(abc.ABCMeta)
class AbstractBatchProcessor(object):
    """The unit of execution of a graph: it runs one kind of job.

    Every fed descriptor comes back in exactly one handle over the processor's
    life: success, failure or cancellation, never lost, never twice.
    """

    _name = None

    @property
    def name(self):
        # type: () -> str
        """The processor's name: the ``name=`` it was made with, or its class name.

        Messages, log records, progress lines, DOT labels and traces call the
        processor by it.
        """
        return self._name or type(self).__name__

    @name.setter
    def name(self, value):
        self._name = value

    @abc.abstractmethod
    def feed_new(self, descriptors):
        # type: (Iterable[Any]) -> None
        """Ask to run one job per descriptor of the iterable ``descriptors``.

        Returns at once. Call it from the event loop's thread.

        Raises:
            ProcessorStateError: the processor was stopped or killed.
            TypeError: ``descriptors`` is not an iterable.
        """

    @abc.abstractmethod
    def get_ready(self):
        # type: () -> Set[BatchProcessorResultHandle]
        """Return the `set` of handles of the jobs finished since the last call.

        Never blocks; every handle's future is done.
        """

    @abc.abstractmethod
    def wait_ready(self):
        # type: () -> Any
        """Return an awaitable done when `get_ready` has something, or nothing is in flight."""

    @abc.abstractproperty
    def in_flight(self):
        # type: () -> int
        """The number of descriptors fed and not yet returned by `get_ready`."""

    @abc.abstractproperty
    def state(self):
        # type: () -> ProcessorState
        """The `ProcessorState` of the processor."""

    @abc.abstractmethod
    def stop(self):
        # type: () -> Any
        """Accept no new feeds; let the fed jobs end. Returns an awaitable done when they have."""

    @abc.abstractmethod
    def kill(self):
        # type: () -> None
        """End every unfinished job as cancelled, at once, and ask its work to stop."""


class BaseBatchProcessor(AbstractBatchProcessor):
    """The processors of this package: configuration and hooks here, the engine in a runtime.

    A processor object holds what its user gave it (options, models, attributes its
    jobs read) and the hooks its subclasses override. Everything it has while it
    runs jobs (the loop it is bound to, queues, ready handles, jobs in flight,
    waiters, owned executors) lives in one runtime object of the class
    ``_runtime_class`` (see ``batch_processor._runtime``), made when it is first
    needed and never pickled or copied: a pickle or a copy of a processor is a
    processor that has run nothing.

    The runner drives a processor through ``_bp_attach(loop)``, which returns its
    runtime bound to ``loop``; the runtime is the runner's port (``feed``,
    ``take_ready``, ``in_flight``, ``listen``, ``release``). Hand-written
    `AbstractBatchProcessor` subclasses are driven through their public methods.
    """

    #: The engine of this kind of processor: a ``batch_processor._runtime.Runtime`` subclass.
    _runtime_class = None  # type: Any
    #: Attributes that stay with the processor object: not pickled (to a worker
    #: process, into a checkpoint), and shared, not copied, by ``copy.deepcopy``.
    _bp_not_pickled = ()  # type: tuple
    _bp_rt = None  # the runtime, once made

    def __new__(cls, *args, **kwargs):
        missing = getattr(cls, "__abstractmethods__", None)
        if missing:
            raise TypeError(
                "%s cannot be created: it does not implement %s; define %s in the subclass"
                % (cls.__name__, ", ".join(sorted(missing)),
                   " and ".join("%s()" % name for name in sorted(missing))))
        return super(BaseBatchProcessor, cls).__new__(cls)

    # -- pickling and copying: never the runtime ---------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_bp_rt", None)
        # Units are counted where the graph runs: a copy in a worker process needs no
        # ``uses``, and a checkpoint restored keeps the processor's own (its Resources
        # are shared with other processors; a pickled one would share nothing).
        state.pop("_bp_uses", None)
        for name in self._bp_not_pickled:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __copy__(self):
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.pop("_bp_rt", None)
        return clone

    def __deepcopy__(self, memo):
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        state = self.__dict__.copy()
        state.pop("_bp_rt", None)
        shared = dict((name, state.pop(name)) for name in self._bp_not_pickled if name in state)
        clone.__dict__.update(copy.deepcopy(state, memo))
        clone.__dict__.update(shared)
        return clone

    # -- options --------------------------------------------------------------------

    @property
    def uses(self):
        """``{Resource: units}`` a job (or batch) holds while its attempt runs, or ``None``."""
        return self.__dict__.get("_bp_uses")

    @uses.setter
    def uses(self, value):
        from .resources import check_uses
        self.__dict__["_bp_uses"] = check_uses(self, value)

    # -- the runtime ----------------------------------------------------------------

    def _bp_runtime(self):
        """The processor's runtime, made on first use."""
        runtime = self.__dict__.get("_bp_rt")
        if runtime is None:
            runtime = self._bp_rt = self._runtime_class(self)
        return runtime

    def _bp_attach(self, loop):
        """The runner's port to this processor: its runtime, bound to ``loop``."""
        runtime = self._bp_runtime()
        runtime.bind(loop)
        return runtime

    # -- the public contract --------------------------------------------------------

    @property
    def in_flight(self):
        runtime = self.__dict__.get("_bp_rt")
        return 0 if runtime is None else runtime.in_flight

    @property
    def state(self):
        runtime = self.__dict__.get("_bp_rt")
        return ProcessorState.IDLE if runtime is None else runtime.state

    def feed_new(self, descriptors):
        runtime = self._bp_runtime()
        runtime.check_feedable()
        descriptors = as_descriptor_list(descriptors, self)
        if descriptors:
            runtime.ensure_loop()
            runtime.feed(descriptors)

    def get_ready(self):
        return set(self._bp_runtime().take_ready())

    def wait_ready(self):
        return self._bp_runtime().wait_ready()

    def stop(self):
        return self._bp_runtime().stop()

    def kill(self):
        self._bp_runtime().kill()


def check_name(cls, name):
    """Refuse a ``name=`` that is not a string (or ``None``)."""
    if name is not None and not isinstance(name, six.string_types):
        raise TypeError("%s(name=%s): a processor's name is a string, or None for the "
                        "class name" % (cls.__name__, safe_repr(name)))


def check_seconds(owner, option, value, allow_zero=False):
    """Refuse a number of seconds that is not a finite real number (booleans refused).

    ``owner`` names what takes the option in the message (a class name, or
    ``None`` for a run's option); ``None`` is always accepted (no limit).
    """
    if value is None:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            ok = not math.isnan(value) and not math.isinf(value) and (
                value >= 0 if allow_zero else value > 0)
        except (TypeError, ValueError, OverflowError):
            ok = False
    if not ok:
        given = "%s=%s" % (option, safe_repr(value))
        raise ValueError("%s: give None (no limit) or a finite number of seconds %s"
                         % ("%s(%s)" % (owner, given) if owner else given,
                            ">= 0" if allow_zero else "> 0"))
    return value


def safe_repr(obj, limit=200):
    # type: (Any, int) -> str
    """``repr(obj)`` for messages: never raises, and at most about ``limit`` characters.

    User objects (descriptors, results, exceptions, converters) may have a ``repr``
    that raises or that is huge; a message about them must still be made.
    """
    try:
        text = repr(obj)
        if not isinstance(text, str):
            text = str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # GeneratorExit and custom BaseException too
        try:
            kind = type(obj).__name__
        except Exception:  # pragma: no cover - a type without a name
            kind = "object"
        text = "<%s object (its repr raised %s)>" % (kind, type(exc).__name__)
    text = _ascii_on_py2(text)
    if len(text) > limit:
        text = text[:limit - 15] + "...(%d chars)" % len(text)
    return text


def _ascii_on_py2(text):
    # type: (str) -> str
    """Python 2: a byte string with non-ASCII bytes (a ``repr`` may return one) escaped.

    Mixed with unicode text (a log line, a JSON trace), such bytes raise
    ``UnicodeDecodeError``; escaped, they read the same everywhere.
    """
    if six.PY2 and isinstance(text, bytes):
        try:
            text.decode("ascii")
        except UnicodeDecodeError:
            return text.decode("latin-1").encode("ascii", "backslashreplace")
    return text


def safe_str(exc):
    # type: (BaseException) -> str
    """``"Type: message"`` of an exception, for messages: never raises."""
    try:
        text = str(exc)
        if not isinstance(text, str):
            text = str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        text = "(its str() raised)"
    text = _ascii_on_py2(text)
    try:
        kind = type(exc).__name__
    except Exception:  # pragma: no cover
        kind = "exception"
    return "%s: %s" % (kind, text) if text else kind


def as_descriptor_list(descriptors, processor):
    """``descriptors`` as a new list; a clear `TypeError` if it is not an iterable."""
    if isinstance(descriptors, list):
        return list(descriptors)
    if isinstance(descriptors, (six.string_types, bytes)):
        raise TypeError(
            "%s.feed_new() takes an iterable of descriptors, got the string %s; "
            "wrap a single descriptor in a list: [%s]"
            % (describe(processor), safe_repr(descriptors), safe_repr(descriptors)))
    try:
        iterator = iter(descriptors)
    except TypeError:
        raise TypeError(
            "%s.feed_new() takes an iterable of descriptors (list, tuple, generator), "
            "got %s; wrap a single descriptor in a list" % (describe(processor), safe_repr(descriptors)))
    return list(iterator)


def function_processor(cls, function_class, fn, options):
    """``function_class(fn, **options)`` for ``cls.from_function``: checked, named after ``fn``."""
    if not callable(fn):
        raise TypeError("%s.from_function(%s): give a function (a coroutine function for the "
                        "asynchronous classes)" % (cls.__name__, safe_repr(fn)))
    if options.get("name") is None:
        options["name"] = getattr(fn, "__name__", None) or None
        if not isinstance(options["name"], six.string_types):
            options["name"] = None
    if options.get("executor") == "processes":
        import pickle
        try:
            pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                "%s.from_function(%s, executor=\"processes\"): the function cannot be pickled "
                "to the worker processes (%s); define it at module level (not a lambda, "
                "a closure or a nested function)" % (cls.__name__, safe_repr(fn), safe_str(exc)))
    return function_class(fn, **options)
