"""Worker processes of ``executor="processes"`` end by themselves when their program is
killed with SIGKILL (SPEC.md "Processors for real workloads"): on 2.7 the forked
workers, on 3.x the workers, the forkserver and the resource tracker.
"""
from __future__ import absolute_import, division, print_function

import os
import signal
import subprocess
import sys
import time

import pytest

import helpers

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_programs.py")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process tree in /proc")


def _parents():
    """pid -> (parent pid, state) of every process, from /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except (IOError, OSError):
            continue
        table[int(name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid):
    table = _parents()
    found, frontier = set(), set([pid])
    while frontier:
        children = set(p for p, (parent, _) in table.items() if parent in frontier)
        frontier = children - found
        found |= children
    return found


def read_pids(fd, count):
    data = b""
    while data.count(b"\n") < count:
        chunk = os.read(fd, 4096)
        assert chunk, "the program ended before its jobs started"
        data += chunk
    return [int(line) for line in data.split()]


def kill_and_watch(tmpdir, count):
    """Start the program, SIGKILL it while its jobs run; return (processes left behind,
    seconds until the last ended)."""
    fifo = str(tmpdir.join("fifo"))
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDWR)  # never an EOF between two writers
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([helpers.REPO_ROOT,
                                                       os.environ.get("PYTHONPATH", "")]))
    # stderr: the 3.x resource tracker says it cleans up the semaphores of the killed pool
    errors = open(str(tmpdir.join("stderr")), "w")
    child = subprocess.Popen([sys.executable, PROGRAM, "hang", fifo, str(count)], env=env, stderr=errors)
    try:
        workers = read_pids(reader, count)
        family = descendants(child.pid)
        assert set(workers) <= family
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed = time.time()
        left = helpers.wait_until_ended(family)
        return left, time.time() - killed, family
    finally:
        errors.close()
        os.close(reader)
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("count", [1, 2])
def test_workers_end_when_their_program_is_killed(tmpdir, count):
    left, seconds, family = kill_and_watch(tmpdir, count)
    for pid in left:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not left, "still alive after the program's SIGKILL: %s" % sorted(left)
    print("%d processes ended %.1f s after the program's SIGKILL" % (len(family), seconds))
