"""Hand-written baselines: the cheapest code a user could write instead of the library.

Every baseline runs the same job functions as the library workloads (the bound
methods of the very processor classes in ``workloads``), on a fresh event loop,
written in trollius style through ``batch_processor.compat`` so that it runs on
Python 2.7 and 3.x alike:

* (a) `chain_tasks`: each job of each stage is its own task; a done-callback on a
  stage's task starts the next stage's task (`cycle_tasks` is the same for the
  2-node cycle, `sequential_batches` is a plain loop over batches);
* (b) `chain_futures`: no coroutine at all, each stage is a future resolved by
  ``loop.call_soon`` and chained by done-callbacks: the event loop's floor;
* (c) `chain_executor`: each job of each stage is ``loop.run_in_executor`` on a
  shared thread pool, chained by done-callbacks.

Each function takes the loop and returns a future (or coroutine) whose result is the
list of final results, in completion order; `run_on_new_loop` drives it.
"""
from __future__ import absolute_import, division, print_function

from batch_processor.compat import From, Return, asyncio, coroutine

__all__ = [
    "chain_executor",
    "chain_futures",
    "chain_tasks",
    "cycle_tasks",
    "run_on_new_loop",
    "sequential_batches",
]


def _future_factory(loop):
    create = getattr(loop, "create_future", None)  # trollius has none
    if create is not None:
        return create
    return lambda: asyncio.Future(loop=loop)


def run_on_new_loop(start):
    """Run ``start(loop)`` (a future or a coroutine) on a new event loop; return its result."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(start(loop))
    finally:
        loop.close()


def _collector(done, expected):
    results = []

    def finish(future):
        results.append(future.result())
        if len(results) == expected:
            done.set_result(results)
    return finish


def chain_tasks(loop, jobs, descriptors):
    """Baseline (a): one task per job and stage, stages chained by done-callbacks.

    Args:
        jobs: one coroutine function per stage; stage k+1 gets stage k's result.
    """
    done = _future_factory(loop)()
    if not descriptors:
        done.set_result([])
        return done
    create_task = loop.create_task
    callback = _collector(done, len(descriptors))
    for job in reversed(jobs[1:]):
        callback = _start_task(create_task, job, callback)
    first = jobs[0]
    for descriptor in descriptors:
        create_task(first(descriptor)).add_done_callback(callback)
    return done


def _start_task(create_task, job, callback):
    def start(task):
        create_task(job(task.result())).add_done_callback(callback)
    return start


def chain_futures(loop, functions, descriptors):
    """Baseline (b): per job and stage a future resolved by ``call_soon``; no coroutine.

    Args:
        functions: one plain function per stage.
    """
    new_future = _future_factory(loop)
    done = new_future()
    if not descriptors:
        done.set_result([])
        return done
    call_soon = loop.call_soon
    callback = _collector(done, len(descriptors))
    for function in reversed(functions[1:]):
        callback = _start_future(new_future, call_soon, function, callback)
    first = functions[0]
    for descriptor in descriptors:
        future = new_future()
        call_soon(future.set_result, first(descriptor))
        future.add_done_callback(callback)
    return done


def _start_future(new_future, call_soon, function, callback):
    def start(previous):
        future = new_future()
        call_soon(future.set_result, function(previous.result()))
        future.add_done_callback(callback)
    return start


def chain_executor(loop, executor, functions, descriptors):
    """Baseline (c): per job and stage ``loop.run_in_executor(executor, ...)``, chained by done-callbacks."""
    done = _future_factory(loop)()
    if not descriptors:
        done.set_result([])
        return done
    run_in_executor = loop.run_in_executor
    callback = _collector(done, len(descriptors))
    for function in reversed(functions[1:]):
        callback = _start_in_executor(run_in_executor, executor, function, callback)
    first = functions[0]
    for descriptor in descriptors:
        run_in_executor(executor, first, descriptor).add_done_callback(callback)
    return done


def _start_in_executor(run_in_executor, executor, function, callback):
    def start(previous):
        run_in_executor(executor, function, previous.result()).add_done_callback(callback)
    return start


def cycle_tasks(loop, job_a, job_b, descriptors):
    """Baseline (a) for a 2-node cycle: A, then B, then A again while the count is above 0.

    Descriptors are ``(key, count)``; each job returns ``(key, count - 1)``. The
    result is the list of the descriptors that reached 0.
    """
    done = _future_factory(loop)()
    if not descriptors:
        done.set_result([])
        return done
    create_task = loop.create_task
    results = []
    expected = len(descriptors)

    def after_b(task):
        value = task.result()
        if value[1] > 0:
            create_task(job_a(value)).add_done_callback(after_a)
        else:
            results.append(value)
            if len(results) == expected:
                done.set_result(results)

    def after_a(task):
        create_task(job_b(task.result())).add_done_callback(after_b)

    for descriptor in descriptors:
        create_task(job_a(descriptor)).add_done_callback(after_a)
    return done


def sequential_batches(loop, batch_job, descriptors, batch_size):
    """Baseline for Sequential: await ``batch_job(chunk)`` as a task per chunk, one after another."""
    return _sequential_batches(loop, batch_job, descriptors, batch_size)


@coroutine
def _sequential_batches(loop, batch_job, descriptors, batch_size):
    results = []
    for start in range(0, len(descriptors), batch_size):
        batch_results = yield From(loop.create_task(batch_job(descriptors[start:start + batch_size])))
        results.extend(batch_results)
    raise Return(results)
