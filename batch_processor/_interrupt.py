"""Ctrl-C during a synchronous run.

By default Python raises ``KeyboardInterrupt`` wherever the main thread happens to
be when SIGINT arrives: in the middle of the event loop's bookkeeping, of a
``with lock:`` block of ``threading`` or ``queue``, of a processor's. A run
interrupted there may be unable to end (a lock held for good, a callback lost), and
the exception may even be replaced by another one on its way out.

So while a synchronous runner drives its loop in the main thread, and SIGINT has
Python's default handler, the first SIGINT only asks the loop to cancel the run,
between two callbacks: the run kills every processor and the runner raises
``KeyboardInterrupt``. A second SIGINT raises at once, as by default.
``asyncio.run()`` does the same from Python 3.11 on.

The kernel may hand the signal to any thread. A wakeup fd, watched by the loop,
makes sure the loop wakes up to see it even then.
"""
from __future__ import absolute_import, division, print_function

import signal
import socket

__all__ = ["InterruptibleRun"]


class InterruptibleRun(object):
    """Context manager: SIGINT cancels ``task``, which ``loop`` is about to run.

    ``requested`` tells whether SIGINT arrived; the runner then raises
    ``KeyboardInterrupt`` itself. Nothing is changed when not in the main thread, or
    when the program installed its own SIGINT handler (or ignores SIGINT).
    """

    def __init__(self, loop, task):
        self.requested = False
        self._loop = loop
        self._task = task
        self._installed = False
        self._wakeup = None  # (reader, writer) sockets, when the loop watches them

    def __enter__(self):
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            return self
        self._installed = True
        self._wakeup = _watch_wakeup_fd(self._loop)
        return self

    def __exit__(self, *exc_info):
        if not self._installed:
            return
        self._installed = False
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self._wakeup is not None:
            _unwatch_wakeup_fd(self._loop, self._wakeup)
            self._wakeup = None

    def _on_sigint(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        self.requested = True
        self._loop.call_soon_threadsafe(self._task.cancel)


def _watch_wakeup_fd(loop):
    """Make signals write to a socket the loop reads; return the sockets, or ``None``.

    ``None`` when another wakeup fd is set already (its owner wakes the loop up) or
    when the loop cannot watch a socket.
    """
    try:
        reader, writer = socket.socketpair()
    except (AttributeError, socket.error):
        return None
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        loop.add_reader(reader.fileno(), _drain, reader)
    except NotImplementedError:  # e.g. the proactor loops of Windows
        reader.close()
        writer.close()
        return None
    previous = signal.set_wakeup_fd(writer.fileno())
    if previous != -1:
        signal.set_wakeup_fd(previous)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()
        return None
    return reader, writer


def _unwatch_wakeup_fd(loop, sockets):
    reader, writer = sockets
    signal.set_wakeup_fd(-1)
    loop.remove_reader(reader.fileno())
    reader.close()
    writer.close()


def _drain(reader):
    try:
        while reader.recv(4096):
            pass
    except socket.error:  # nothing more to read for now
        pass
