"""Trollius-style coroutines on Python 3: ``coroutine``, ``From`` and ``Return``.

Only ``batch_processor.compat`` imports this module, and only on Python 3. A
generator function written for trollius (``x = yield From(f)``, ``raise Return(x)``)
becomes, through `coroutine`, a function that returns a native coroutine, so asyncio
runs it on every Python 3 version, 3.11+ included where ``asyncio.coroutine`` is gone.

The driver, `_drive`, does what trollius's ``Task._step`` does with what the generator
yields: a future or awaitable is awaited, a generator is driven in turn, ``None`` gives
the loop one turn, an asyncio ``Lock``, ``Semaphore`` or ``Condition`` is acquired and
comes back as a context manager that releases it (``with (yield From(lock)):``), and
anything else is thrown back into the generator as a `RuntimeError`.
"""
import asyncio
import functools
import inspect
import types

__all__ = ["DONE", "From", "Return", "as_future", "coroutine"]


class Return(Exception):
    """Raised by a trollius-style coroutine to return ``value``.

    It derives from `Exception`, not `StopIteration`: PEP 479 turns a
    `StopIteration` escaping a generator into a `RuntimeError`.
    """

    def __init__(self, *args):
        """``Return()`` returns ``None``, ``Return(x)`` returns ``x``, ``Return(a, b)`` ``(a, b)``."""
        super().__init__(*args)
        self.value = args[0] if len(args) == 1 else (args or None)


def From(obj):
    """``yield From(x)`` is trollius's spelling of ``yield from x``: it returns ``x``."""
    return obj


class _Releasing(object):
    """What ``yield From(lock)`` gives: ``with`` it releases the lock at the end of the block."""

    __slots__ = ("_lock",)

    def __init__(self, lock):
        self._lock = lock

    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        lock, self._lock = self._lock, None
        lock.release()


_LOCKS = (asyncio.Lock, asyncio.Semaphore, asyncio.Condition)


async def _acquire(lock):
    await lock.acquire()
    return _Releasing(lock)


def _awaitable(yielded):
    """What a trollius-style coroutine yielded, as something to await.

    Raises:
        RuntimeError: for something that is neither a future, an awaitable, a
            generator, a lock nor ``None``; the driver throws it into the generator,
            as trollius does ("Task got bad yield").
    """
    if yielded is None:
        return asyncio.sleep(0)
    if isinstance(yielded, _LOCKS):  # before isawaitable: 3.6-3.8 locks are awaitable
        return _acquire(yielded)
    if inspect.isawaitable(yielded):
        return yielded
    if inspect.isgenerator(yielded):
        return _drive(yielded)
    raise RuntimeError(
        "a trollius-style coroutine yielded %r: yield From() a coroutine, a future or a lock"
        % (yielded,))


async def _drive(gen):
    """Run the generator ``gen`` as a trollius coroutine; return its value.

    The exception to throw into ``gen`` is dropped before the throw: kept in this frame
    while it propagates, it would refer to the frame through its own traceback, and that
    cycle would keep the generator's frames and locals alive until the cyclic collector
    runs.
    """
    value = error = None
    try:
        while True:
            try:
                if error is None:
                    yielded = gen.send(value)
                else:
                    try:
                        yielded = gen.throw(error)
                    finally:
                        error = None
            except StopIteration as stop:
                return stop.value
            except Return as ret:
                return ret.value
            try:
                value = await _awaitable(yielded)
            except BaseException as exc:  # the generator decides, as with ``yield from``
                value, error = None, exc
            finally:
                yielded = None  # a failed future: its exception's traceback holds this frame
    finally:
        gen.close()


def coroutine(func):
    """Decorator: make ``func`` (trollius style, or plain, or ``async def``) a coroutine function.

    The decorated function returns a native coroutine object, which asyncio can
    schedule, ``await`` and wrap in tasks like any other.
    """
    if inspect.iscoroutinefunction(func):
        return func

    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        async def generator_coroutine(*args, **kwargs):
            return await _drive(func(*args, **kwargs))
        return generator_coroutine

    @functools.wraps(func)
    async def plain_coroutine(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except Return as ret:
            return ret.value
        if _trollius_style(result):
            return await _drive(result)
        if inspect.isawaitable(result):
            return await result
        return result
    return plain_coroutine


def _trollius_style(obj):
    """A generator to drive as a trollius coroutine: not one of asyncio's own
    generator-based coroutines (3.6's ``asyncio.sleep``, ``@asyncio.coroutine``), which
    are awaited as they are (their ``yield from future`` needs asyncio's protocol)."""
    return inspect.isgenerator(obj) and not obj.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE


async def _await(awaitable):
    return await awaitable


def as_future(obj, loop):
    """Wrap a coroutine, trollius-style generator, future or awaitable into a future of ``loop``."""
    if type(obj) is types.CoroutineType:
        return loop.create_task(obj)
    if asyncio.isfuture(obj):
        return obj
    if _trollius_style(obj):  # it yields futures, not ``yield from``
        return loop.create_task(_drive(obj))
    if asyncio.iscoroutine(obj):  # e.g. the debug-mode CoroWrapper of Python 3.6
        return loop.create_task(obj)
    if inspect.isawaitable(obj):
        return loop.create_task(_await(obj))
    raise TypeError("expected a coroutine or a future, got %r" % (obj,))


class _Done(object):
    """An awaitable that is done at once and belongs to no event loop."""

    __slots__ = ()

    def __await__(self):
        return iter(())

    def done(self):
        return True

    def result(self):
        return None

    def __repr__(self):
        return "<done>"


DONE = _Done()
