"""Python 3 only: native ``async def`` jobs and the peers (pypeln, aiostream).

``run.py`` imports this module on Python 3 alone (it uses ``async``/``await``).
pypeln and aiostream are the optional extra ``bench``; each is imported when its
benchmark runs, and `peer_missing` says why one cannot run.
"""
from __future__ import absolute_import, division, print_function

import asyncio

from batch_processor import SeparateBatchProcessor

__all__ = ["NativeIncrement", "native_increment", "peer_missing", "run_aiostream", "run_pypeln"]


class NativeIncrement(SeparateBatchProcessor):
    """The trivial job of workload 1 as a native coroutine."""

    async def _run_one_job(self, job_descriptor):
        return job_descriptor + 1


async def native_increment(value):
    """The same job as a coroutine function, for the peers."""
    return value + 1


def peer_missing(name):
    """``None`` if the peer ``name`` can be imported, else the reason it cannot."""
    try:
        __import__(name)
    except Exception as exc:  # ImportError, or a peer that breaks on this Python
        return "%s is not installed (%s: %s); `pip install \".[bench]\"` or " \
               "`pip install pypeln aiostream` to compare with it" % (name, type(exc).__name__, exc)
    return None


def _run(main):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def run_pypeln(descriptors, stages=3):
    """``stages`` chained ``pypeln.task.map`` stages, unbounded concurrency (like our processors)."""
    import pypeln

    async def main():
        stage = descriptors
        for _ in range(stages):
            stage = pypeln.task.map(native_increment, stage, workers=0)
        return await stage
    return _run(main)


def run_aiostream(descriptors, stages=3):
    """``stages`` chained ``aiostream.pipe.map`` stages, unordered, no task limit."""
    from aiostream import pipe, stream

    async def main():
        xs = stream.iterate(descriptors)
        for _ in range(stages):
            xs = xs | pipe.map(native_increment, ordered=False, task_limit=None)
        return await (xs | pipe.list())
    return _run(main)
