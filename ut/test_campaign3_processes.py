"""Regression tests of the third reliability campaign (issue 22) on owned process pools:
what cannot come back from a worker, and jobs abandoned in a worker (items 5 to 8).
Python 2.7 imports this module: no ``async``/``await``."""
from __future__ import absolute_import, division, print_function

import multiprocessing
import os
import sys
import threading

import pytest

from batch_processor import (
    JobTimeoutError, SeparateBatchProcessorSynchronous, run_batch_processor)
from batch_processor.interface import describe

from helpers import REPO_ROOT, TIMEOUT


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: ``__init__`` wants two arguments, ``args`` has one."""

    def __init__(self, first, second):
        Exception.__init__(self, first)
        self.second = second


def _refuse():
    raise ValueError("this object cannot be unpickled")


class Unloadable(object):
    def __reduce__(self):
        return _refuse, ()


class Troubled(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, descriptor):
        if descriptor == "raise unloadable":
            raise NeedsTwoArguments("one", "two")
        if descriptor == "return unloadable":
            return Unloadable()
        if descriptor == "block":
            threading.Event().wait()
        return descriptor


class HoldsTheResultLock(SeparateBatchProcessorSynchronous):
    """Job ``("hold", go, held)`` waits for the FIFO ``go``, takes its worker's
    result-queue write lock, says so through the FIFO ``held``, and blocks: terminated,
    the worker never gives the lock back."""

    def _run_one_job_synchronous(self, descriptor):
        if isinstance(descriptor, tuple) and descriptor[0] == "hold":
            with open(descriptor[1]) as go:  # once the other job's result is back
                go.read()
            frame = sys._getframe()
            while frame is not None and "result_queue" not in frame.f_locals:
                frame = frame.f_back
            queue = frame.f_locals["result_queue"]
            lock = getattr(queue, "_wlock", None)
            if lock is not None:
                lock.acquire()
            with open(descriptor[2], "w") as fifo:
                fifo.write("held")
            threading.Event().wait()
        return descriptor


def by_descriptor(handles):
    return dict((h.descriptor, h.future) for h in handles)


@pytest.mark.parametrize("bad", ["raise unloadable", "return unloadable"])
def test_what_cannot_be_unpickled_fails_its_own_job_only(bad):
    processor = Troubled(max_parallel_jobs=1, executor="processes")
    try:
        handles = run_batch_processor(processor, [1, bad, 2, 3], timeout=TIMEOUT)
    finally:
        processor.stop()
    found = by_descriptor(handles)
    assert [found[d].result() for d in (1, 2, 3)] == [1, 2, 3]
    message = str(found[bad].exception())
    assert describe(processor) in message and repr(bad) in message
    assert multiprocessing.active_children() == []


def test_a_job_queued_behind_a_timed_out_one_runs():
    processor = Troubled(max_parallel_jobs=1, executor="processes", job_timeout=2)
    try:
        handles = run_batch_processor(processor, ["block", 2, 3], timeout=TIMEOUT)
    finally:
        processor.kill()
    found = by_descriptor(handles)
    assert isinstance(found["block"].exception(), JobTimeoutError)
    assert [found[2].result(), found[3].result()] == [2, 3]
    assert multiprocessing.active_children() == []


SCRIPT = """
import sys
sys.path.insert(0, %r)
from batch_processor import run_batch_processor
from test_campaign3_processes import Troubled
processor = Troubled(max_parallel_jobs=2, executor="processes", job_timeout=0.5)
handles = run_batch_processor(processor, ["block", 1])
print(sorted(type(h.future.exception()).__name__ for h in handles))
"""


def run_in_own_group(source, tmpdir):
    """``(returncode, stdout, stderr)`` of ``source`` run by this interpreter in a process
    group of its own, all of which is killed if it has not ended after TIMEOUT seconds
    (its worker processes too: they would hold the pipes open)."""
    import signal
    import subprocess
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    out, err = str(tmpdir.join("out")), str(tmpdir.join("err"))
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", source], env=env, stdout=stdout,
                                   stderr=stderr, preexec_fn=os.setsid)

    def kill_group():
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
    timer = threading.Timer(TIMEOUT, kill_group)
    timer.start()
    try:
        code = process.wait()
    finally:
        timer.cancel()
        kill_group()  # nothing of it is left behind
    with open(out) as stdout, open(err) as stderr:
        return code, stdout.read(), stderr.read()


@pytest.mark.skipif(not hasattr(os, "setsid"), reason="POSIX process groups")
def test_the_interpreter_exits_promptly_after_a_job_timeout(tmpdir):
    # Without the fix the child never exits, and is killed after TIMEOUT seconds.
    code, out, err = run_in_own_group(
        SCRIPT % (os.path.dirname(os.path.abspath(__file__)),), tmpdir)
    assert code == 0, err
    assert "JobTimeoutError" in out
    assert "Traceback" not in err


CLOSE_SCRIPT = """from __future__ import print_function
import os, sys
sys.path.insert(0, %r)
from batch_processor import iter_batch_processor
from test_campaign3_processes import HoldsTheResultLock
go, held = %r, %r
os.mkfifo(go)
os.mkfifo(held)
processor = HoldsTheResultLock(max_parallel_jobs=2, executor="processes")
stream = iter_batch_processor(processor, [("hold", go, held), 1])
first = next(stream)  # the run advances while the caller waits here
with open(go, "w"):
    pass  # the job goes on
with open(held) as fifo:  # until the job, in its worker, holds the lock
    assert fifo.read() == "held"
stream.close()  # kills the processor: its workers are terminated
print("closed after", first.descriptor)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(os, "setsid"),
                    reason="POSIX FIFOs and process groups")
def test_closing_a_stream_early_while_a_worker_holds_a_lock_exits_promptly(tmpdir):
    # 2.7: the pool's feeder thread waited forever for the lock of the terminated
    # worker, and multiprocessing joined it at exit.
    code, out, err = run_in_own_group(CLOSE_SCRIPT % (
        os.path.dirname(os.path.abspath(__file__)), str(tmpdir.join("go")),
        str(tmpdir.join("held"))), tmpdir)
    assert code == 0, err
    assert "closed after 1" in out
    assert "Traceback" not in err
