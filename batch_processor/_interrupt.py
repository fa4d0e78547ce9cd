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

try:  # Python 3: the C functions, without the enum conversions of ``signal``'s wrappers
    from _signal import getsignal as _getsignal, signal as _set_handler
except ImportError:  # Python 2: ``signal`` is the C module
    from signal import getsignal as _getsignal, signal as _set_handler

__all__ = ["InterruptibleRun", "WakeupSockets"]


class InterruptibleRun(object):
    """Context manager: SIGINT cancels ``task``, which ``loop`` is about to run.

    ``requested`` tells whether SIGINT arrived; the runner then raises
    ``KeyboardInterrupt`` itself. Nothing is changed when not in the main thread, or
    when the program installed its own SIGINT handler (or ignores SIGINT).
    """

    def __init__(self, loop, task, wakeup=None):
        self.requested = False
        self._loop = loop
        self._task = task
        self._installed = False
        # ``wakeup``: the caller's `WakeupSockets` of ``loop``, kept across the runs of
        # a stream (each ``next()`` is a run); by default, sockets of this run only.
        self._shared = wakeup
        self._wakeup = None  # the `WakeupSockets` signals write to, while they do

    def __enter__(self):
        if _getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self
        try:
            _set_handler(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            return self
        self._installed = True
        wakeup = self._shared or WakeupSockets(self._loop)
        if wakeup.arm():
            self._wakeup = wakeup
        elif wakeup is not self._shared:
            wakeup.close()
        return self

    def __exit__(self, *exc_info):
        if not self._installed:
            return
        self._installed = False
        _set_handler(signal.SIGINT, signal.default_int_handler)
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.disarm()
            if wakeup is not self._shared:
                wakeup.close()

    def _on_sigint(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        self.requested = True
        self._loop.call_soon_threadsafe(self._task.cancel)


class WakeupSockets(object):
    """A socket pair that ``loop`` watches, for signals to write to while a run goes on.

    Made when first armed and kept until `close`, so that a stream, whose every
    ``next()`` drives the loop anew, does not make and register sockets each time.
    """

    def __init__(self, loop):
        self._loop = loop
        self._sockets = None  # (reader, writer) the loop watches; False: it cannot

    def arm(self):
        """Make signals write to the socket; False (nothing changed) when another wakeup
        fd is set already (its owner wakes the loop up) or the loop cannot watch one."""
        if self._sockets is None:
            self._sockets = _watch_socket(self._loop) or False
        if not self._sockets:
            return False
        previous = signal.set_wakeup_fd(self._sockets[1].fileno())
        if previous != -1:
            signal.set_wakeup_fd(previous)
            return False
        return True

    def disarm(self):
        """Signals write nowhere any more (as `arm` found it)."""
        signal.set_wakeup_fd(-1)

    def close(self):
        """Stop watching the socket and close both ends (before the loop is closed)."""
        sockets, self._sockets = self._sockets, False
        if sockets:
            reader, writer = sockets
            if not self._loop.is_closed():
                self._loop.remove_reader(reader.fileno())
            reader.close()
            writer.close()


def _watch_socket(loop):
    """A socket pair whose reading end ``loop`` watches (and drains), or ``None``."""
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
    return reader, writer


def _drain(reader):
    try:
        while reader.recv(4096):
            pass
    except socket.error:  # nothing more to read for now
        pass
