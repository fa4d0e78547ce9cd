"""The seam between a run and a processor: a processor's runtime, and the runner's port.

A processor object (``interface.BaseBatchProcessor``) holds its configuration and
the hooks a user overrides. What it has while it runs jobs is one `Runtime` object,
made on first use and never pickled or copied. The runner (``_run._Run``) talks to
a processor only through a *port*, ``port = attach(processor, loop)``: a library
processor's runtime, or a `PublicPort` around a hand-written
`AbstractBatchProcessor`. `Port` lists every method a runner may call on it.

A `Runtime` subclass per kind of processor (``separate``, ``sequential``) starts and
cancels jobs; this class keeps the bookkeeping they share, and the one place where
a job ends: `Runtime.end`.
"""
from __future__ import absolute_import, division, print_function

import functools
import logging

from . import compat, resources
from .compat import CancelledError, From, Return, asyncio, coroutine, exception_of
from .interface import (
    BatchProcessorResultHandle, JobTimeoutError, ProcessorState, ProcessorStateError, describe,
    safe_repr, safe_str)

if False:  # type checkers only
    from typing import Optional  # noqa: F401

__all__ = ["Observers", "Port", "PublicPort", "Runtime", "attach", "library_callback"]

logger = logging.getLogger("batch_processor")

Handle = BatchProcessorResultHandle
_CoroutineType = compat.CoroutineType


def attach(processor, loop):
    """The runner's port to ``processor`` for a run on ``loop``."""
    attach_method = getattr(processor, "_bp_attach", None)
    if attach_method is not None:
        port = attach_method(loop)
        port.configure()
        return port
    return PublicPort(processor, loop)


def _future_factory(loop):
    """A function of no argument that returns a new pending future of ``loop``."""
    create = getattr(loop, "create_future", None)
    if create is not None:
        return create
    return lambda: compat.new_future(loop)


def library_callback(method):
    """Guard a runtime's method that runs as a loop callback (a job's completion...).

    Should it raise anyway (a bug of the library), asyncio would log the error and
    drop it, and the run would wait for good. Instead the runtime reports the fault:
    the run it is part of ends with an error that says so (`Runtime.fault`).
    """
    @functools.wraps(method)
    def guarded(self, *args):
        try:
            return method(self, *args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.fault(exc, method.__name__)
    return guarded


def _guarded_call(function, argument, fail):
    """``function(argument)``; what it raises (but KeyboardInterrupt, SystemExit) goes to ``fail``."""
    try:
        return function(argument)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return fail(exc)


class Port(object):
    """What a runner may call on a processor while a run drives it: a documentation class.

    `Runtime` (library processors) and `PublicPort` (hand-written ones) derive from it;
    the runner calls nothing else. The methods here are those every port has, with
    the behaviour of a port that can do nothing more.
    """

    #: The processor this port drives.
    processor = None

    @property
    def in_flight(self):
        """Jobs fed and not yet taken by `take_ready`."""
        raise NotImplementedError

    @property
    def state(self):
        """The processor's `ProcessorState`."""
        raise NotImplementedError

    def feed(self, descriptors):
        """Start jobs for ``descriptors``, a non-empty list the caller gives up.

        ``ProcessorStateError`` when the processor takes no more (stopped, killed).
        """
        raise NotImplementedError

    def take_ready(self):
        """The handles of the jobs that ended since the last call, as a list (maybe
        empty), in the order they ended."""
        raise NotImplementedError

    def listen(self, callback, busy=None):
        """From now on call ``callback()``, from the loop, whenever ready handles appear
        (at once if some are there already), and only then; ``busy()``, if given,
        whenever the processor goes from idle to busy (fed by anyone: the runner, a
        job, a converter), so the runner knows it is not done. One listener at a time."""
        raise NotImplementedError

    def release(self, callback):
        """Stop calling ``callback`` (and its ``busy``) if it is the listener."""
        raise NotImplementedError

    def observe(self, observer):
        """From now on tell ``observer`` (``None``: nobody) when each attempt of a job or
        of a batch starts and ends (see `Runtime`); return whether the port can."""
        return False

    def watch_faults(self, callback):
        """``callback(exc, where)`` is called (``None``: nobody) if a loop callback of the
        port raises, a bug of the library: the runner ends the run with an error."""

    def kill(self):
        """Kill the processor: every unfinished job ends at once, cancelled, its handle
        ready."""
        raise NotImplementedError

    def configure(self):
        """Read the processor's options, as a run starts (SPEC "Options between runs"):
        a change made between runs takes effect now; an invalid value raises the
        constructor's error, before anything runs. With jobs of the processor still
        in flight, the change waits for the next run."""

    #: True for kinds whose jobs do not overlap (one batch at a time): when a job
    #: ends, no job of the processor is running, so its state matches its handles.
    settles_at_end = False
    #: ``None``, or a function of no argument called each time jobs end, before their
    #: handles are ready (where ``settles_at_end``: a checkpoint takes the state then).
    on_end = None


class Runtime(Port):
    """Everything a processor has while it runs jobs, and the bookkeeping of its jobs.

    Invariants:

    * ``unfinished`` counts the jobs fed and not yet ended; ``in_flight`` is
      ``unfinished + len(ready)``: fed and not yet taken by ``take_ready()``.
    * A job ends exactly once, through `end` (its handle is appended to ``ready``
      and it leaves ``unfinished``). The kind's bookkeeping forgets a job when it
      hands it to `end`, so a second report of the same job finds nothing.
    * ``kill()`` makes ``final`` KILLED, takes every unfinished job from the kind
      (`cancel_all`, which forgets them and asks their work to stop) and ends each
      as cancelled at once; late completions of that work find nothing and are
      dropped.
    * ``listener`` (the runner's) is called when ``ready`` goes from empty to
      non-empty, and only then; ``busy_listener`` when the processor goes from
      idle to busy (fed by anyone); ``waiters`` (of ``wait_ready()``) are woken when
      ``ready`` becomes non-empty, and when nothing is in flight any more.
    * ``final`` is ``None``, STOPPED or KILLED, and never changes once set;
      ``stopping`` is true from ``stop()`` on, and STOPPED follows when
      ``unfinished`` reaches 0.
    * ``observer`` is ``None`` (the default: nothing is observed, and the kinds pay
      one ``is not None`` test per attempt) or an object told, by the kinds,
      ``job_started(processor, future, descriptor, attempt)`` and
      ``batch_started(processor, future, batch)`` when an attempt starts, and
      ``ended(future, outcome=None)`` when it ends (``outcome`` ``None``: read it
      from the future). The run sets it (``observe``) to trace or count attempts.
    * Every future belongs to ``loop``. Binding to another loop needs
      ``unfinished == 0``, and resets the loop-bound state (waiters, and the kind's
      queues through `reset`); ready handles and owned executors are kept.
    """

    observer = None

    def __init__(self, processor):
        self.processor = processor
        self.loop = None
        self.new_future = None
        self.ready = []
        self.unfinished = 0
        self.final = None
        self.stopping = False
        self.waiters = []
        self.stop_waiters = []
        self.listener = None
        self.busy_listener = None
        self.on_end = None
        self.fault_listener = None

    # -- binding --------------------------------------------------------------------

    def bind(self, loop):
        """Bind to ``loop``, the loop of the run (or caller) about to drive the processor."""
        if self.loop is loop:
            return
        if self.unfinished and self.loop is not None and self.loop.is_closed():
            raise ProcessorStateError(
                "%s has %d jobs in flight on an event loop that was closed: they cannot "
                "come back; kill() it (they come back as cancelled handles from "
                "get_ready()) and run the work with a new processor"
                % (describe(self.processor), self.unfinished))
        if self.unfinished:
            raise ProcessorStateError(
                "%s still has %d jobs running on another event loop; let them finish "
                "(or kill() it) before running it on a new loop"
                % (describe(self.processor), self.unfinished))
        compat.contain_base_exceptions(loop)
        self.loop = loop
        self.new_future = _future_factory(loop)
        self.waiters = []
        self.stop_waiters = []
        self.reset()

    def ensure_loop(self):
        """The bound loop; bind to the thread's loop first if there is none (or it closed)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            try:
                loop = compat.current_loop()
            except RuntimeError as exc:
                raise RuntimeError("%s: %s" % (describe(self.processor), exc))
            self.bind(loop)
        return loop

    # -- the runner's port ----------------------------------------------------------

    @property
    def in_flight(self):
        return self.unfinished + len(self.ready)

    @property
    def state(self):
        if self.final is not None:
            return self.final
        if self.stopping:
            return ProcessorState.STOPPING
        if self.unfinished or self.ready:
            return ProcessorState.RUNNING
        return ProcessorState.IDLE

    def check_feedable(self):
        if self.final is not None or self.stopping:
            raise ProcessorStateError(
                "%s is %s and accepts no new jobs; feed a processor that is neither "
                "stopped nor killed" % (describe(self.processor), self.state.value))

    def feed(self, descriptors):
        """Start jobs for ``descriptors``, a non-empty list the caller owns no longer."""
        self.check_feedable()
        was_idle = not self.unfinished and not self.ready
        self.unfinished += len(descriptors)
        self.start(descriptors)
        if was_idle:
            busy = self.busy_listener
            if busy is not None:
                busy()  # the run learns the processor is busy, whoever fed it

    def take_ready(self):
        ready = self.ready
        if ready:
            self.ready = []
        return ready

    def listen(self, callback, busy=None):
        self.listener = callback
        self.busy_listener = busy
        if self.ready:
            callback()

    def release(self, callback):
        if self.listener is callback:
            self.listener = self.busy_listener = None

    def observe(self, observer):
        self.observer = observer
        return True

    def watch_faults(self, callback):
        """``callback(exc, where)`` is called if a callback of this runtime raises (a bug)."""
        self.fault_listener = callback

    def fault(self, exc, where):
        """A loop callback of the runtime raised ``exc``: a bug of the library.

        The run that drives the processor is told (it kills everything and ends with
        an error); a processor driven by hand is killed, so nothing waits for good.
        """
        where = "%s: %s()" % (describe(self.processor), where)
        listener = self.fault_listener
        if listener is not None:
            listener(exc, where)
            return
        logger.error("batch_processor: %s raised %s; this is a bug of batch_processor "
                     "(please report it); the processor is killed", where, safe_str(exc))
        self.kill()

    # -- the public contract's other half ------------------------------------------

    def wait_ready(self):
        if self.ready or not self.unfinished:
            return self.done_future()
        waiter = self.new_future()
        self.waiters.append(waiter)
        return waiter

    def stop(self):
        if self.final is not None:
            return self.done_future()
        self.stopping = True
        if not self.unfinished:
            self.final = ProcessorState.STOPPED
            self.stopped()
            return self.done_future()
        self.ensure_loop()
        waiter = self.new_future()
        self.stop_waiters.append(waiter)
        return waiter

    def kill(self):
        if self.final is not None:
            return
        self.final = ProcessorState.KILLED
        loop = self.loop
        if loop is not None and loop.is_closed():
            # Its loop was closed with jobs in flight: their futures can no longer
            # be cancelled (that schedules callbacks on the dead loop); forget them.
            descriptors = self.orphan_all()
        else:
            descriptors = self.cancel_all()
        if self.unfinished != len(descriptors):  # pragma: no cover - a bug if it fires
            logger.error("%s: kill() found %d unfinished jobs, expected %d",
                         describe(self.processor), len(descriptors), self.unfinished)
        self.unfinished = 0
        if descriptors:
            logger.warning("%s killed: %d unfinished jobs cancelled",
                           describe(self.processor), len(descriptors))
            cancelled = self.cancelled_future
            self.hand_back([Handle(d, cancelled()) for d in descriptors])
        self.stopped()
        self.wake_stop_waiters()

    # -- where a job ends -----------------------------------------------------------

    def end(self, handles):
        """The jobs of ``handles`` ended: the one place where a job leaves ``unfinished``.

        The kind has already forgotten them (so they cannot end twice).
        """
        self.unfinished -= len(handles)
        if self.on_end is not None:  # a checkpoint takes the processor's state now
            self.on_end()
        self.hand_back(handles)
        if self.stopping and not self.unfinished and self.final is None:
            self.final = ProcessorState.STOPPED
            self.stopped()
            self.wake_stop_waiters()

    def hand_back(self, handles):
        ready = self.ready
        was_empty = not ready
        ready.extend(handles)
        if was_empty and ready:
            listener = self.listener
            if listener is not None:
                listener()
            if self.waiters:
                self.wake_waiters()

    def wake_waiters(self):
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def wake_stop_waiters(self):
        waiters, self.stop_waiters = self.stop_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.waiters and not self.unfinished:
            self.wake_waiters()  # nothing in flight any more

    # -- futures --------------------------------------------------------------------

    def done_future(self):
        loop = self.loop
        if (loop is None or loop.is_closed()) and compat.running_loop() is None:
            return compat.done_outside_loop()  # nothing to bind to
        self.ensure_loop()
        future = self.new_future()
        future.set_result(None)
        return future

    def cancelled_future(self):
        future = self.new_future()
        future.cancel()
        return future

    def failed_future(self, exc, source=None):
        """A future failed with ``exc`` (and the traceback of the future ``source``).

        A future refuses ``StopIteration`` (asyncio up to 3.11 raises its own
        ``TypeError``): it becomes a ``RuntimeError`` naming the processor, whose
        ``__cause__`` it is, as for a job run in a thread.
        """
        if isinstance(exc, StopIteration):
            exc = _from_stop_iteration(self.processor, exc)
        future = self.new_future()
        compat.fail(future, exc, source)
        compat.exception_of(future)  # the handle reports it; asyncio must not log it as lost
        return future

    def result_future(self, result):
        future = self.new_future()
        future.set_result(result)
        return future

    def guarded(self, function, argument):
        """``function(argument)``, a future; what it raises gives a failed future instead."""
        return _guarded_call(function, argument, self.failed_future)

    def run_coroutine(self, method, argument):
        """Start the coroutine ``method(argument)``; return its future.

        A method that raises, or returns no coroutine, gives a failed future: the
        job's handle reports it and the run goes on.
        """
        try:
            job = method(argument)
            if type(job) is _CoroutineType:
                return self.loop.create_task(job)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # CancelledError too: that job fails, alone
            return self.failed_future(exc)
        try:
            return compat.as_future(job, self.loop)
        except TypeError:
            return self.failed_future(TypeError(
                "%s.%s() returned %s; it must return a coroutine (write it as `async def`, "
                "or decorate it with batch_processor.compat.coroutine)"
                % (describe(self.processor), method.__name__, safe_repr(job))))

    # -- admission: may a job (Separate) or a batch (Sequential) start now? ----------
    #
    # One place answers it for every kind: `admits`, asked before a job or batch is
    # started; when something that held a slot ends, the kind's `slot_freed` starts
    # what may start now. The rules, each with its own name:

    #: ``max_parallel_jobs``: at most this many started and not ended (``None``: no cap).
    cap = None  # type: Optional[int]
    #: The process-pool queue-depth rule: this many more may be handed to an executor
    #: that queues them itself (an owned process pool, so that a worker never idles
    #: while the loop hears of an end); they count as running only once a worker
    #: takes them.
    queue_ahead = 0

    def admits(self, started, holding_units=False):
        """Whether one more job or batch may start now, ``started`` being under way.

        A job that will hold units (``holding_units``) never waits in an executor's
        queue: it would keep them from the jobs that could run.
        """
        cap = self.cap
        return cap is None or started < cap + (0 if holding_units else self.queue_ahead)

    def room(self, started, holding_units=False):
        """How many more may start now (``None``: no limit); see `admits`."""
        cap = self.cap
        if cap is None:
            return None
        return cap + (0 if holding_units else self.queue_ahead) - started

    def slot_freed(self):
        """A job or batch that held a slot ended: start what may start now."""

    # The shared-resources rule (``uses=``, see ``batch_processor.resources``): a job
    # or batch that may start asks for its units, and starts when they are granted
    # (at once, or later from the loop through a callback). An attempt holds them
    # while it runs; `launch_devices` are the device ids of the attempt being
    # launched, read by the executor bridge and by `devices_launched`.

    #: The device ids of the attempt being launched now (only while it is launched).
    launch_devices = ()

    def acquire(self, callback):
        """A ``resources.Request`` for the processor's ``uses``, or ``None`` if it uses none.

        ``callback(request)`` is called from the loop if the units are granted later.
        """
        uses = self.processor.uses
        if uses is None:
            return None
        return resources.acquire(uses, self.loop, callback)

    def launch_holding(self, request, launch, argument):
        """``launch(argument)`` for an attempt that holds the units of ``request``."""
        held = request.devices
        if not held:
            return launch(argument)
        self.launch_devices = held
        try:
            # (a task that runs its first step at once, eagerly, reads them here)
            future = resources.call_with_devices(held, launch, argument)
        finally:
            self.launch_devices = ()
        resources.set_task_devices(future, held)  # a coroutine's task: devices() reads it
        return future

    # -- attempts: job_timeout and retry ----------------------------------------------

    def attempt(self, argument, on_start=None):  # pragma: no cover - each kind implements it
        """Start one attempt of ``argument``; return its future (done if it could not start)."""
        raise NotImplementedError

    def cancel_attempt(self, future):
        future.cancel()

    def describe_attempt(self, argument):
        """How messages call what ``argument`` is: ``the job 3``, ``a batch of 8 ...``."""
        return safe_repr(argument)

    #: Whether `attempt` calls ``on_start`` (from the loop) when the work really
    #: starts: an executor may queue it first, and ``job_timeout`` counts running time.
    signals_start = False
    #: Whether each attempt is shown to the observer (a Sequential batch is shown whole).
    observes_attempts = True

    def arm_timer(self, attempt, expired):
        """The attempt ``attempt = [future]`` started running: its ``job_timeout`` starts now."""
        if attempt and not attempt[0].done() and len(attempt) == 1:
            attempt.append(self.loop.call_later(
                self.processor.job_timeout, self.expire, attempt[0], expired))

    @coroutine
    def attempts(self, argument, units=None):
        """Run attempts of ``argument`` (a job's descriptor, a batch) until one succeeds
        or the retry policy gives up.

        Each attempt asks for the processor's units (``units``: a request already
        granted for the first one) and gives them back when it ends.
        Returns the last attempt's (done) future, so the handle carries its outcome
        exactly; its exception is never raised here, so a ``SystemExit`` from a
        worker thread cannot stop the loop.
        """
        processor = self.processor
        policy, timeout = processor.retry, processor.job_timeout
        attempt = 0
        while True:
            attempt += 1
            current, expired, on_start = [], [], None
            observer = self.observer if self.observes_attempts else None
            announce = None  # [observer, argument, attempt] until a worker takes it
            if observer is not None and self.signals_start:
                announce = [observer, argument, attempt]
                on_start = functools.partial(self.attempt_started, current, expired, announce,
                                             timeout is not None)
            elif timeout is not None:
                on_start = functools.partial(self.arm_timer, current, expired)
            launch = functools.partial(self.attempt, on_start=on_start)
            request, units = units, None  # a first attempt may come with its units
            if request is None:
                waiter = self.new_future()
                request = self.acquire(functools.partial(_granted, waiter))
                if request is not None and not request.granted:
                    try:
                        yield From(waiter)  # no units held meanwhile
                    except CancelledError:
                        request.release()
                        raise
            try:
                if request is None:
                    future = self.guarded(launch, argument)
                else:
                    future = self.guarded(
                        functools.partial(self.launch_holding, request, launch), argument)
            except (KeyboardInterrupt, SystemExit):  # see `start_task`
                self.interrupted_task = resources.current_task()
                raise
            current.append(future)
            if observer is not None and announce is None:
                self.show_attempt(observer, future, argument, attempt)
            if on_start is not None and not self.signals_start:
                on_start()
            try:
                yield From(_settled(future, self.new_future()))
            except CancelledError:
                if not future.done():
                    self.cancel_attempt(future)
                elif not future.cancelled():
                    exception_of(future)  # ended as we were killed: nobody else will look
                if observer is not None:
                    self.report_end(observer, future, "cancelled", announce)
                raise
            finally:
                for timer in current[1:]:
                    timer.cancel()
                if request is not None:
                    request.release()  # however the attempt ended; the back-off holds none
            if observer is not None:
                self.report_end(observer, future, "timeout" if expired
                                else self.attempt_outcome(argument, future), announce)
            if future.cancelled():
                if not expired:
                    raise Return(future)  # cancelled by someone else: not retried
                future = self.failed_future(JobTimeoutError(
                    "%s: attempt %d of %s ran longer than job_timeout=%s s"
                    % (describe(processor), attempt, self.describe_attempt(argument), timeout)))
            exc = exception_of(future)
            if (exc is None or policy is None or attempt >= policy.attempts
                    or not isinstance(exc, policy.retry_on)):
                raise Return(future)
            delay = policy.delay(attempt)
            logger.warning("%s: attempt %d of %d of %s failed (%s); retrying in %s s",
                           describe(processor), attempt, policy.attempts,
                           self.describe_attempt(argument), safe_repr(exc), delay)
            if delay > 0:
                yield From(asyncio.sleep(delay))

    interrupted_task = None

    def start_task(self, coro):
        """``loop.create_task(coro)`` for `attempts`. An eager task (3.12+'s eager task
        factory) runs its first step here: interrupted there (KeyboardInterrupt,
        SystemExit), it is done with that exception before anything could look at it,
        and asyncio would log it as never retrieved. It is marked seen; the interrupt
        goes on."""
        try:
            return self.loop.create_task(coro)
        except (KeyboardInterrupt, SystemExit):
            task, self.interrupted_task = self.interrupted_task, None
            if task is not None and task.done() and not task.cancelled():
                exception_of(task)
            raise

    def attempt_started(self, current, expired, announce, timed):
        """A worker took the attempt ``current[0]``: it runs from now (see `attempts`)."""
        if announce and current:
            observer, argument, attempt = announce
            del announce[:]
            self.show_attempt(observer, current[0], argument, attempt)
        if timed:
            self.arm_timer(current, expired)

    def report_end(self, observer, future, outcome, announce=None):
        """Tell ``observer`` that the attempt of ``future`` ended.

        An attempt never announced (``announce`` still set) waited in an executor's
        queue: if it was cancelled there it never ran, and is not shown at all; if it
        ran (its start was heard too late), it is shown as it ended.
        """
        if announce:
            if future.cancelled() and not outcome == "timeout":
                return
            self.show_attempt(observer, future, announce[1], announce[2])
        observer.ended(future, outcome)

    def show_attempt(self, observer, future, argument, attempt):
        """Tell ``observer`` that the attempt ``attempt`` of ``argument`` (``future``) started."""
        observer.job_started(self.processor, future, argument, attempt)

    def attempt_outcome(self, argument, future):
        """How the done attempt ``future`` ended, for an observer (``None``: read the future)."""
        return None

    def expire(self, future, expired):
        logger.warning("%s: an attempt ran longer than job_timeout=%s s and is cancelled",
                       describe(self.processor), self.processor.job_timeout)
        expired.append(True)
        self.cancel_attempt(future)

    # -- what each kind implements --------------------------------------------------

    def reset(self):
        """(Re)make the kind's loop-bound state: queues, jobs in flight."""

    def start(self, descriptors):  # pragma: no cover - every kind implements it
        """Start or queue one job per descriptor of the list ``descriptors``."""
        raise NotImplementedError

    def cancel_all(self):  # pragma: no cover - every kind implements it
        """Stop all unfinished work, forget it; return its descriptors in feed order."""
        raise NotImplementedError

    def orphan_all(self):
        """As `cancel_all`, for a closed loop: forget the unfinished work, touch no future."""
        return self.cancel_all()

    def stopped(self):
        """The processor became STOPPED or KILLED: release what it owns."""


def _from_stop_iteration(processor, exc):
    error = RuntimeError("%s: a job or a batch raised StopIteration (a next() on an exhausted "
                         "iterator?); raise another exception" % describe(processor))
    error.__cause__ = exc
    return error


def _granted(waiter, request):
    if waiter.done():
        request.release()  # pragma: no cover - cancelled as the grant came
    else:
        waiter.set_result(None)


def _settled(future, waiter):
    """``waiter``, resolved with ``None`` when ``future`` is done, whatever its outcome."""
    def settle(_):
        if not waiter.done():
            waiter.set_result(None)
    future.add_done_callback(settle)
    return waiter


class PublicPort(Port):
    """The runner's port to a hand-written `AbstractBatchProcessor`: its public methods.

    It waits for readiness with ``wait_ready()``, armed whenever something is in
    flight and no wait is pending. It hears of a feed only through itself: ``busy``
    is called when it feeds an idle processor.
    """

    def __init__(self, processor, loop):
        self.processor = processor
        self.loop = loop
        self.listener = None
        self.watching = False

        self.busy_listener = None

    @property
    def in_flight(self):
        return self.processor.in_flight

    @property
    def state(self):
        return self.processor.state

    def feed(self, descriptors):
        was_idle = not self.processor.in_flight
        self.processor.feed_new(descriptors)
        if was_idle and self.busy_listener is not None:
            self.busy_listener()
        self._watch()

    def take_ready(self):
        handles = list(self.processor.get_ready())
        self._watch()
        return handles

    def listen(self, callback, busy=None):
        self.listener = callback
        self.busy_listener = busy
        self._watch()

    def release(self, callback):
        if self.listener is callback:
            self.listener = self.busy_listener = None

    def observe(self, observer):
        return False  # its jobs are its own business

    def kill(self):
        self.processor.kill()

    def _watch(self):
        if self.watching or self.listener is None or not self.processor.in_flight:
            return
        self.watching = True
        waiter = compat.as_future(self.processor.wait_ready(), self.loop)
        waiter.add_done_callback(self._ready)

    def _ready(self, _):
        self.watching = False
        listener = self.listener
        if listener is not None:
            listener()


class Observers(object):
    """Several observers (see `Runtime.observer`) as one."""

    def __init__(self, observers):
        self.observers = list(observers)

    def job_started(self, processor, key, descriptor, attempt=1):
        for observer in self.observers:
            observer.job_started(processor, key, descriptor, attempt)

    def batch_started(self, processor, key, batch):
        for observer in self.observers:
            observer.batch_started(processor, key, batch)

    def ended(self, key, outcome=None):
        for observer in self.observers:
            observer.ended(key, outcome)
