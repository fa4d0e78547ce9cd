"""Trollius-style coroutines on Python 3: ``coroutine``, ``From`` and ``Return``.

Only ``batch_processor.compat`` imports this module, and only on Python 3. A
generator function written for trollius (``x = yield From(f)``, ``raise Return(x)``)
becomes, through `coroutine`, a function that returns a native coroutine, so asyncio
runs it on every Python 3 version, 3.11+ included where ``asyncio.coroutine`` is gone.
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

    def __init__(self, value=None):
        super().__init__(value)
        self.value = value


def From(obj):
    """``yield From(x)`` is trollius's spelling of ``yield from x``: it returns ``x``."""
    return obj


def _awaitable(yielded):
    """What a trollius-style coroutine yielded, as something to await."""
    if yielded is None:
        return asyncio.sleep(0)
    if inspect.isawaitable(yielded):
        return yielded
    if inspect.isgenerator(yielded):
        return _drive(yielded)
    raise TypeError(
        "a trollius-style coroutine yielded %r; yield From() a coroutine or a future" % (yielded,))


async def _drive(gen):
    """Run the generator ``gen`` as a trollius coroutine; return its value."""
    value = error = None
    try:
        while True:
            try:
                if error is None:
                    yielded = gen.send(value)
                else:
                    yielded, error = gen.throw(error), None
            except StopIteration as stop:
                return stop.value
            except Return as ret:
                return ret.value
            try:
                value = await _awaitable(yielded)
            except BaseException as exc:  # the generator decides, as with ``yield from``
                value, error = None, exc
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
        if inspect.isgenerator(result):
            return await _drive(result)
        if inspect.isawaitable(result):
            return await result
        return result
    return plain_coroutine


async def _await(awaitable):
    return await awaitable


def as_future(obj, loop):
    """Wrap a coroutine, trollius-style generator, future or awaitable into a future of ``loop``."""
    if type(obj) is types.CoroutineType:
        return loop.create_task(obj)
    if asyncio.isfuture(obj):
        return obj
    if inspect.isgenerator(obj):  # trollius style: it yields futures, not ``yield from``
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
