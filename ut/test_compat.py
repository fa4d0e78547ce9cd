"""Tests of ``batch_processor.compat``: trollius-style coroutines on every interpreter.

Everything here is written in trollius style (``yield From(...)``, ``raise
Return(...)``), so the same file runs on Python 2.7 (trollius) and on 3.6 to 3.15
(asyncio): what passes on 2.7 is trollius's own behaviour, and the shim must match it.
Native ``async def`` is tested in ``test_py3_compat.py``.
"""
from __future__ import absolute_import, division, print_function

import gc
import threading
import weakref

import pytest

from batch_processor import compat
from batch_processor.compat import From, Return, asyncio, coroutine

from helpers import PY2, TIMEOUT, new_future, run, run_script


# -- the names -------------------------------------------------------------------------

def test_asyncio_is_trollius_on_python2_and_asyncio_on_python3():
    if PY2:
        import trollius
        assert compat.asyncio is trollius
    else:
        import asyncio as stdlib_asyncio
        assert compat.asyncio is stdlib_asyncio
    assert asyncio is compat.asyncio


def test_cancelled_error_is_the_loop_library_one():
    assert compat.CancelledError is compat.asyncio.CancelledError


def test_cancelled_future_raises_compat_cancelled_error(loop):
    future = new_future(loop)
    future.cancel()
    with pytest.raises(compat.CancelledError):
        future.result()


@pytest.mark.skipif(PY2, reason="on Python 2, From is trollius's own")
def test_from_returns_its_argument_on_python3():
    marker = object()
    assert From(marker) is marker
    assert From(None) is None


@pytest.mark.skipif(PY2, reason="on Python 2, Return is trollius's own")
def test_return_carries_its_value_and_is_no_stop_iteration_on_python3():
    ret = Return(42)
    assert ret.value == 42
    assert isinstance(ret, Exception)
    assert not isinstance(ret, StopIteration)
    assert Return().value is None


def test_return_carries_its_value_to_the_caller(loop):
    @coroutine
    def give(value):
        yield From(asyncio.sleep(0))
        raise Return(value)

    marker = object()
    assert run(loop, give(marker)) is marker
    assert run(loop, give(("a", 1))) == ("a", 1)


# -- the SPEC's example ------------------------------------------------------------------

@coroutine
def add_later(x):
    yield From(asyncio.sleep(0.01))
    raise Return(x + 1)


def test_spec_example_runs_unchanged(loop):
    assert run(loop, add_later(1)) == 2


def test_spec_example_as_a_task(loop):
    task = loop.create_task(add_later(41))
    assert run(loop, task) == 42
    assert task.done() and task.result() == 42


# -- nesting, exceptions, cancellation -------------------------------------------------

@coroutine
def _leaf(x):
    yield From(asyncio.sleep(0))
    raise Return(x * 2)


@coroutine
def _middle(x):
    a = yield From(_leaf(x))
    b = yield From(_leaf(a))
    raise Return([a, b])


@coroutine
def _top(x):
    values = yield From(_middle(x))
    future = asyncio.ensure_future(_leaf(values[-1]))
    last = yield From(future)
    raise Return(values + [last])


def test_nested_coroutines_pass_values_up(loop):
    assert run(loop, _top(1)) == [2, 4, 8]


@coroutine
def _no_return():
    yield From(asyncio.sleep(0))


def test_coroutine_without_return_gives_none(loop):
    assert run(loop, _no_return()) is None


class Boom(Exception):
    pass


@coroutine
def _raise_after_yield(message):
    yield From(asyncio.sleep(0))
    raise Boom(message)


@coroutine
def _propagate(message):
    value = yield From(_raise_after_yield(message))
    raise Return(("not reached", value))


def test_exception_propagates_through_yield_from(loop):
    with pytest.raises(Boom) as info:
        run(loop, _propagate("deep"))
    assert info.value.args == ("deep",)


@coroutine
def _catch(message):
    try:
        yield From(_propagate(message))
    except Boom as exc:
        raise Return(("caught", exc.args[0]))
    raise Return("not reached")


def test_exception_is_catchable_inside_the_generator(loop):
    assert run(loop, _catch("inner")) == ("caught", "inner")


def test_failed_future_exception_is_catchable(loop):
    future = new_future(loop)

    @coroutine
    def waiter():
        try:
            yield From(future)
        except KeyError as exc:
            raise Return(exc.args)

    task = loop.create_task(waiter())
    future.set_exception(KeyError("k"))
    assert run(loop, task) == ("k",)


def test_cancellation_is_thrown_into_the_coroutine_which_cleans_up(loop):
    events = []
    blocker = new_future(loop)
    started = new_future(loop)

    @coroutine
    def job():
        try:
            started.set_result(None)
            yield From(blocker)
            events.append("not reached")
        except compat.CancelledError:
            events.append("caught")
            raise
        finally:
            events.append("cleanup")

    task = loop.create_task(job())
    run(loop, started)
    assert events == []
    task.cancel()
    with pytest.raises(compat.CancelledError):
        run(loop, task)
    assert task.cancelled()
    assert events == ["caught", "cleanup"]
    assert blocker.cancelled()  # the cancellation reached what the coroutine waited for


def test_cancellation_thrown_into_a_nested_coroutine(loop):
    events = []
    started = new_future(loop)

    @coroutine
    def inner():
        try:
            started.set_result(None)
            yield From(asyncio.sleep(TIMEOUT * 10))
        finally:
            events.append("inner cleanup")

    @coroutine
    def outer():
        try:
            yield From(inner())
        except compat.CancelledError:
            events.append("outer caught")
            raise Return("swallowed")

    task = loop.create_task(outer())
    run(loop, started)
    task.cancel()
    assert run(loop, task) == "swallowed"
    assert events == ["inner cleanup", "outer caught"]


def test_bare_yield_gives_control_back_to_the_loop(loop):
    order = []

    @coroutine
    def first():
        order.append("first: before")
        yield
        order.append("first: after")

    @coroutine
    def second():
        order.append("second")
        yield From(asyncio.sleep(0))

    @coroutine
    def both():
        tasks = [loop.create_task(first()), loop.create_task(second())]
        yield From(asyncio.wait(tasks))

    run(loop, both())
    assert order == ["first: before", "second", "first: after"]


def test_return_of_several_values_gives_a_tuple(loop):
    @coroutine
    def pair():
        yield From(asyncio.sleep(0))
        raise Return("a", 1)

    @coroutine
    def nothing():
        yield From(asyncio.sleep(0))
        raise Return()

    assert run(loop, pair()) == ("a", 1)
    assert run(loop, nothing()) is None


def test_yielding_a_future_without_from_waits_for_it(loop):
    future = new_future(loop)

    @coroutine
    def waiter():
        value = yield future
        raise Return(value)

    task = loop.create_task(waiter())
    loop.call_soon(future.set_result, "done")
    assert run(loop, task) == "done"


def test_bare_yield_of_a_value_throws_runtime_error_into_the_coroutine(loop):
    @coroutine
    def bad():
        try:
            yield 5
        except RuntimeError as exc:
            raise Return(("caught", "5" in str(exc)))
        raise Return("not reached")

    @coroutine
    def uncaught():
        yield "not a future"

    assert run(loop, bad()) == ("caught", True)
    with pytest.raises(RuntimeError):
        run(loop, uncaught())


def _lock_kinds():
    return [asyncio.Lock, asyncio.Semaphore, asyncio.BoundedSemaphore, asyncio.Condition]


@pytest.mark.parametrize("kind", _lock_kinds(), ids=lambda kind: kind.__name__)
def test_with_yield_from_a_lock_holds_it_for_the_block(loop, kind):
    seen = []

    @coroutine
    def main():
        lock = kind()
        with (yield From(lock)):
            seen.append(lock.locked())
        seen.append(lock.locked())
        try:
            with (yield From(lock)):
                seen.append(lock.locked())
                raise KeyError("in the block")
        except KeyError:
            pass
        seen.append(lock.locked())

    run(loop, main())
    assert seen == [True, False, True, False]


@pytest.mark.parametrize("kind", _lock_kinds(), ids=lambda kind: kind.__name__)
def test_with_yield_from_a_lock_excludes_other_coroutines(loop, kind):
    order = []

    @coroutine
    def worker(lock, name):
        with (yield From(lock)):
            order.append(name + " in")
            yield From(asyncio.sleep(0))
            yield From(asyncio.sleep(0))
            order.append(name + " out")

    @coroutine
    def main():
        lock = kind()
        tasks = [loop.create_task(worker(lock, name)) for name in "ab"]
        yield From(asyncio.wait(tasks))

    run(loop, main())
    assert order == ["a in", "a out", "b in", "b out"]


class _Tracked(object):
    """A local whose death a weak reference tells."""


def test_a_failing_coroutine_frees_its_frames_and_locals_at_once(loop):
    refs = []

    @coroutine
    def fail_later():
        yield From(asyncio.sleep(0))
        raise KeyError("awaited")

    @coroutine
    def failing():
        local = _Tracked()
        refs.append(weakref.ref(local))
        try:
            yield From(fail_later())
        except KeyError:
            pass
        raise ValueError("after catching")

    @coroutine
    def main():
        try:
            yield From(failing())
        except ValueError:
            pass

    enabled = gc.isenabled()
    gc.disable()  # nothing may be left for the cyclic collector to free
    try:
        run(loop, main())
        assert refs[0]() is None, gc.get_referrers(refs[0]())
    finally:
        if enabled:
            gc.enable()


# -- @coroutine on a plain function --------------------------------------------------------

@coroutine
def _plain_double(x):
    return x * 2


@coroutine
def _plain_raises():
    raise Boom("plain")


@coroutine
def _use_plain(x):
    value = yield From(_plain_double(x))
    raise Return(value + 1)


def test_coroutine_on_a_plain_function_returns_its_value(loop):
    assert run(loop, _plain_double(21)) == 42
    assert run(loop, _use_plain(5)) == 11


def test_coroutine_on_a_plain_function_propagates_its_exception(loop):
    with pytest.raises(Boom):
        run(loop, _plain_raises())


def test_coroutine_on_a_plain_function_returning_a_coroutine_runs_it(loop):
    @coroutine
    def delegate(x):
        return add_later(x)

    assert run(loop, delegate(9)) == 10


def test_coroutine_keeps_the_function_name():
    assert add_later.__name__ == "add_later"
    assert _plain_double.__name__ == "_plain_double"


@pytest.mark.skipif(not PY2, reason="Python 2 only")
def test_coroutine_from_and_return_are_trollius_own_on_python2():
    import trollius
    assert compat.coroutine is trollius.coroutine
    assert compat.From is trollius.From
    assert compat.Return is trollius.Return


# -- the loop a processor binds to ----------------------------------------------------------

def _doubler():
    from batch_processor import SeparateBatchProcessorSynchronous

    class Double(SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, job_descriptor):
            return 2 * job_descriptor

    return Double()


_FEED_OUTSIDE_ANY_LOOP = """
    import warnings
    warnings.simplefilter("error")  # a hidden loop comes with a DeprecationWarning on 3.10-3.13
    warnings.filterwarnings("ignore", "Running attrs on Python 3.6", DeprecationWarning)

    from batch_processor import ProcessorState, SeparateBatchProcessorSynchronous
    from batch_processor import run_batch_processor

    class Abs(SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, job_descriptor):
            return abs(job_descriptor)

    processor = Abs()
    try:
        processor.feed_new([-1, -2])
    except RuntimeError as exc:
        print("RuntimeError: %s" % exc)
    assert processor.in_flight == 0 and processor.state is ProcessorState.IDLE
    [handle] = run_batch_processor(processor, [-3])  # not bound to any loop by the failed feed
    print(handle.future.result())
"""


def test_feed_new_outside_any_loop_in_the_main_thread_raises_and_makes_no_loop():
    returncode, stdout, stderr = run_script(_FEED_OUTSIDE_ANY_LOOP)
    assert (returncode, stderr) == (0, "")
    error, result = stdout.strip().splitlines()
    assert result == "3"
    assert error.startswith("RuntimeError: ")
    assert "inside a run" in error and "running event loop" in error


def test_feed_new_outside_any_loop_in_a_thread_raises_and_changes_nothing():
    from batch_processor import ProcessorState, run_batch_processor

    processor = _doubler()
    errors = []

    def feed():
        try:
            processor.feed_new(iter([1, 2]))
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=feed)
    thread.start()
    thread.join(TIMEOUT)
    [error] = errors
    assert "inside a run" in str(error)
    assert processor.in_flight == 0 and processor.state is ProcessorState.IDLE
    [handle] = run_batch_processor(processor, [21])
    assert handle.future.result() == 42


def test_feed_new_on_a_set_loop_that_does_not_run_binds_to_it(loop):
    processor = _doubler()
    processor.feed_new([4])  # the fixture's loop is the thread's current one
    assert processor.in_flight == 1
    [[handle]] = run(loop, _collect(processor))
    assert handle.future.result() == 8


@coroutine
def _collect(processor):
    rounds = []
    while processor.in_flight:
        yield From(processor.wait_ready())
        rounds.append(list(processor.get_ready()))
    raise Return([r for r in rounds if r])
