"""``batch_processor.compat`` is the one place that knows which Python runs.

It gives the rest of the package (and its users) one vocabulary for coroutines on
every interpreter:

* ``asyncio`` is ``trollius`` on Python 2 and the standard ``asyncio`` on Python 3;
* ``CancelledError`` is that library's cancellation error;
* ``coroutine``, ``From`` and ``Return`` write trollius-style coroutines that run
  unchanged on 2.7 and 3.x::

      @coroutine
      def add_later(x):
          yield From(asyncio.sleep(0.01))
          raise Return(x + 1)

On Python 2 they are trollius's own. On Python 3 they come from ``_compat_py3``, the
only module with Python 3 syntax, which this module imports on Python 3 alone.

The private helpers below (``running_loop``, ``current_loop``, ``new_future``,
``as_future``...) hide the remaining differences between trollius and the asyncio of 3.6
to 3.15.
"""
from __future__ import absolute_import, division, print_function

import operator
import sys
import types

PY2 = sys.version_info[0] == 2

if PY2:  # pragma: no cover - exercised by the py27 environment
    import trollius as asyncio
    from trollius import From, Return, coroutine
    from trollius.coroutines import iscoroutine as _iscoroutine

    def new_future(loop):
        """Return a new pending future of ``loop``."""
        return asyncio.Future(loop=loop)

    #: An awaitable done at once and tied to no loop: trollius has none.
    DONE = None

    def done_outside_loop():
        """A done future, for code that runs outside any event loop.

        trollius has no awaitable tied to no loop: the future belongs to the thread's
        current loop, or, in a thread without one, to a loop made for it and closed.
        """
        try:
            loop, owned = asyncio.get_event_loop(), False
        except RuntimeError:  # a thread without an event loop
            loop, owned = asyncio.new_event_loop(), True
        future = asyncio.Future(loop=loop)
        future.set_result(None)
        if owned:
            loop.close()
        return future

    def running_loop():
        """Return the event loop running in this thread, or ``None``."""
        loop = asyncio.get_event_loop_policy()._local._loop
        if loop is not None and loop.is_running():
            return loop
        return None

    def enter_loop(loop):
        """Make ``loop`` the thread's current loop; return a token for `leave_loop`.

        trollius looks the loop up with ``get_event_loop()`` (``trollius.sleep()``
        without ``loop=``, for one), so it must be the current one while it runs.
        """
        local = asyncio.get_event_loop_policy()._local
        token = (local._loop, local._set_called)
        local._loop, local._set_called = loop, True
        return token

    def leave_loop(token):
        """Restore the thread's current loop as `enter_loop` found it."""
        local = asyncio.get_event_loop_policy()._local
        local._loop, local._set_called = token

    def as_future(obj, loop):
        """Wrap a coroutine, generator or future into a future of ``loop``."""
        if isinstance(obj, asyncio.Future):
            return obj
        if _iscoroutine(obj):
            return loop.create_task(obj)
        raise TypeError("expected a coroutine or a future, got %r" % (obj,))

    def exception_of(future):
        """``future.exception()``, keeping the traceback for the caller of ``result()``.

        trollius forgets a future's traceback once ``exception()`` is called, and the
        package calls it to mark a failure as seen: the job's frames would be gone
        from the traceback the user gets from ``handle.future.result()``.
        """
        tb = getattr(future, "_exception_tb", None)
        exc = future.exception()
        if tb is not None:
            future._exception_tb = tb
        return exc

    def fail(future, exc, source=None):
        """``future.set_exception(exc)``, with the traceback of the failed ``source``.

        ``source`` is the future ``exc`` comes from: a loop's future, or a
        ``concurrent.futures`` one. Without it, trollius takes the traceback of the
        exception being handled, if any.
        """
        tb = None
        if source is not None:
            info = getattr(source, "exception_info", None)
            tb = info()[1] if info is not None else getattr(source, "_exception_tb", None)
        future._set_exception_with_tb(exc, tb)

    class ContainedTask(asyncio.Task):
        """A task that fails alone on any ``BaseException`` but ``KeyboardInterrupt``/``SystemExit``.

        trollius re-raises every ``BaseException`` of a task out of the loop (a custom
        subclass, ``GeneratorExit``...), which aborts the whole run; asyncio 3.8+
        re-raises only ``KeyboardInterrupt`` and ``SystemExit``. The exception is
        already the task's when trollius re-raises it.
        """

        def _step(self, value=None, exc=None, exc_tb=None):
            try:
                super(ContainedTask, self)._step(value, exc, exc_tb)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                if not self.done():  # pragma: no cover - trollius always set it
                    raise

    def contained_task_factory(loop, coro):
        """A task factory for ``loop.set_task_factory``: `ContainedTask` for every coroutine."""
        return ContainedTask(coro, loop=loop)

    def contain_base_exceptions(loop):
        """Make ``loop``'s tasks fail alone on a non-exiting ``BaseException``, as on 3.x."""
        if loop.get_task_factory() is None:
            loop.set_task_factory(contained_task_factory)

    def run_until_complete(loop, awaitable):
        """``loop.run_until_complete(awaitable)``, leaving no stop callback behind.

        trollius, unlike asyncio 3.x, leaves its stop callback on the future when
        ``run_forever()`` is interrupted (by ``KeyboardInterrupt``): the loop would
        then stop in the middle of the next run, the one that cleans up.
        """
        from trollius.base_events import _run_until_complete_cb
        future = asyncio.ensure_future(awaitable, loop=loop)
        try:
            return loop.run_until_complete(future)
        finally:
            future.remove_done_callback(_run_until_complete_cb)

    class Stopper(object):
        """``loop.stop()`` that can be withdrawn: `request` asks ``loop`` (running) to
        stop once the callbacks already scheduled have run; `withdraw`, after
        ``run_forever()`` returned, removes the request if it was not carried out.

        trollius stops a loop by a callback that raises, and a ``run_forever()``
        interrupted before that callback ran (``KeyboardInterrupt``) would leave it
        for the next run, which would stop at once.
        """

        __slots__ = ("_loop", "_handle")

        def __init__(self, loop):
            self._loop = loop
            self._handle = None

        def request(self):
            if self._handle is None:
                from trollius.base_events import _raise_stop_error
                self._handle = self._loop.call_soon(_raise_stop_error)

        def withdraw(self):
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None

else:
    import asyncio
    from ._compat_py3 import DONE, From, Return, as_future, coroutine  # noqa: F401

    class Stopper(object):
        """``loop.stop()`` that can be withdrawn (see the Python 2 form): asyncio's
        ``run_forever()`` forgets a stop request when it returns, however it returns."""

        __slots__ = ("_loop",)

        def __init__(self, loop):
            self._loop = loop

        def request(self):
            self._loop.stop()

        def withdraw(self):
            pass

    def new_future(loop):
        """Return a new pending future of ``loop``."""
        return loop.create_future()

    running_loop = asyncio._get_running_loop

    def enter_loop(loop):
        """Nothing to do on Python 3: asyncio finds the running loop by itself."""
        return None

    def leave_loop(token):
        """Nothing to do on Python 3 (see `enter_loop`)."""

    def run_until_complete(loop, awaitable):
        """``loop.run_until_complete(awaitable)``."""
        return loop.run_until_complete(awaitable)

    def done_outside_loop():
        """`DONE`, the awaitable done at once and tied to no loop."""
        return DONE

    if sys.version_info >= (3, 8):
        def contained_task_factory(loop, coro):
            """asyncio already lets a task fail alone on a non-exiting ``BaseException``."""
            return asyncio.Task(coro, loop=loop)

        def contain_base_exceptions(loop):
            """Nothing to do on 3.8+: tasks re-raise only KeyboardInterrupt, SystemExit."""

    else:
        # 3.6 and 3.7 re-raise every BaseException of a task out of the loop, as
        # trollius does: the pure-Python task's step is wrapped to contain it.
        _STEP = "_step" if sys.version_info < (3, 7) else "_Task__step"

        class ContainedTask(asyncio.tasks._PyTask):
            """A task that fails alone on any ``BaseException`` but KeyboardInterrupt/SystemExit."""

        def _contained_step(self, *args, **kwargs):
            try:
                return getattr(asyncio.tasks._PyTask, _STEP)(self, *args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                if not self.done():  # pragma: no cover - the step always set it
                    raise

        setattr(ContainedTask, _STEP, _contained_step)

        def contained_task_factory(loop, coro):
            """A task factory for ``loop.set_task_factory``: `ContainedTask` for every coroutine."""
            return ContainedTask(coro, loop=loop)

        def contain_base_exceptions(loop):
            """Make ``loop``'s tasks fail alone on a non-exiting ``BaseException``, as on 3.8+."""
            if loop.get_task_factory() is None:
                loop.set_task_factory(contained_task_factory)

    #: ``future.exception()``: on Python 3 the traceback lives on the exception.
    exception_of = operator.methodcaller("exception")

    def fail(future, exc, source=None):
        """``future.set_exception(exc)``; the traceback is ``exc.__traceback__``."""
        future.set_exception(exc)


#: What a called coroutine function returns in the common case: a native coroutine
#: on Python 3, a generator (trollius style) on Python 2.
CoroutineType = types.GeneratorType if PY2 else types.CoroutineType
CancelledError = asyncio.CancelledError
TimeoutError = asyncio.TimeoutError


def thread_loop():
    """The thread's current (set) event loop, or ``None``; never makes one.

    ``get_event_loop()`` would make a loop in the main thread where none is set (with a
    ``DeprecationWarning`` on 3.10 to 3.13), a hidden loop that nothing runs. Up to 3.13
    the default policies keep the set loop in ``_local._loop``, read here; from 3.14
    ``get_event_loop()`` makes none, and the policy API is deprecated.
    """
    if sys.version_info < (3, 14):
        local = getattr(asyncio.get_event_loop_policy(), "_local", None)
        if local is not None and hasattr(local, "_loop"):
            return local._loop
    try:  # a policy of another kind, or Python 3.14+
        return asyncio.get_event_loop()
    except RuntimeError:
        return None


def current_loop():
    """The loop running in this thread, or else the thread's current (set) event loop.

    Raises:
        RuntimeError: with neither (or only a closed one), changing nothing: no loop
            is made.
    """
    loop = running_loop() or thread_loop()
    if loop is None or loop.is_closed():
        raise RuntimeError(
            "no event loop is running in this thread and none is set: feed the processor "
            "inside a run (run_batch_processor(), run_batch_processors_graph()) or from a "
            "coroutine on a running event loop")
    return loop


def all_tasks(loop):
    """The tasks of ``loop`` that are not done."""
    if hasattr(asyncio, "all_tasks") and sys.version_info >= (3, 7):
        return asyncio.all_tasks(loop)
    if not PY2:  # 3.6: the C tasks and the pure-Python ones (ContainedTask) apart
        tasks = asyncio.Task.all_tasks(loop) | asyncio.tasks._PyTask.all_tasks(loop)
        return set(task for task in tasks if not task.done())
    # trollius keeps every task of the process in one WeakSet, which other threads'
    # loops change while we look: iterating it raises "Set changed size during
    # iteration". Copying its set of references is one step under the GIL.
    refs = list(asyncio.Task._all_tasks.data)
    tasks = (ref() for ref in refs)
    return set(task for task in tasks
               if task is not None and task._loop is loop and not task.done())


__all__ = ["CancelledError", "From", "PY2", "Return", "TimeoutError", "asyncio", "coroutine"]
