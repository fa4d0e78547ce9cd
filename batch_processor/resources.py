"""``batch_processor.resources``: units that processors share (GPUs, licences).

A `Resource` is a number of units, shared by every processor that names it in its
``uses={resource: units}``, in every run of the process, runs going on at the same
time in other threads or loops included. A job (Separate) or a batch (Sequential)
asks for its units when it is ready to start (after ``max_parallel_jobs`` let it);
it gets them at once if they are free and nobody asked earlier, else it waits.

Fairness: waiting requests are served in the order they were made, whatever their
processor. A request is granted when each resource it uses has its units free and
no earlier request waiting for that resource is still waiting: an earlier request
for a resource reserves it, so a processor whose jobs ask 1 unit cannot starve one
whose jobs ask 2. A request takes all its units at once, so two requests never
deadlock holding half of what each needs.

Threads: every count lives under one process-wide lock. A grant made for a request
waiting on another loop is handed to that loop with ``call_soon_threadsafe``; a
grant whose loop is closed (the run is over) is given back at once.

Device ids: a resource made with ``devices=["0", "1"]`` has one unit per id; a
grant holds particular ids, and `devices` returns those the calling job holds.
"""
from __future__ import absolute_import, division, print_function

import collections
import numbers
import threading
import weakref

import six

from .interface import describe, safe_repr

if False:  # type checkers only
    from typing import Any, Deque, Optional  # noqa: F401

__all__ = ["Resource", "devices"]

_lock = threading.Lock()
_waiting = collections.deque()  # type: Deque[Request]  # waiting, in the order they were made
_local = threading.local()  # .devices: those of the job the thread runs
_task_devices = weakref.WeakKeyDictionary()  # type: Any  # a job's asyncio task -> its devices
#: In a worker process of a processor that uses devices: the ids it serves.
worker_devices = ()


class Resource(object):
    """``capacity`` units shared by the processors that use it (``uses={resource: units}``).

    Args:
        name: what messages call it (a string).
        capacity: the number of units, an integer >= 1.
        devices: device ids as strings (``["0", "1"]``): one unit per id, and
            ``capacity`` is their number. A job holding units of it reads the ids it
            holds from `batch_processor.devices()`.

    A Resource is an identity: copies of it (``copy``, ``deepcopy``) are itself.
    Units are counted in the process that runs the graph, never in workers: a
    processor pickled (to a worker process, into a checkpoint) leaves its ``uses``
    behind, and a Resource pickled on its own unpickles as a new, unshared Resource
    of the same name, capacity and devices.
    """

    def __init__(self, name, capacity=None, devices=None):
        if not isinstance(name, six.string_types):
            raise TypeError("Resource(name=%s): give the resource a name (a string)"
                            % (safe_repr(name),))
        if devices is not None:
            if isinstance(devices, six.string_types + (bytes,)) or not _is_sequence(devices):
                raise TypeError("Resource(%r, devices=%s): give a list of device ids as "
                                "strings, e.g. [\"0\", \"1\"]" % (name, safe_repr(devices)))
            devices = tuple(devices)
            for device in devices:
                if not isinstance(device, six.string_types):
                    raise TypeError("Resource(%r, devices=%s): device ids are strings "
                                    "(e.g. [\"0\", \"1\"]); %s is not"
                                    % (name, safe_repr(devices), safe_repr(device)))
            if not devices or len(set(devices)) != len(devices):
                raise ValueError("Resource(%r, devices=%s): give at least one device id, "
                                 "each once" % (name, safe_repr(devices)))
            if capacity is not None and capacity != len(devices):
                raise ValueError("Resource(%r, capacity=%s, devices=%s): devices gives one "
                                 "unit per id; leave capacity out"
                                 % (name, safe_repr(capacity), safe_repr(devices)))
            capacity = len(devices)
        if (not isinstance(capacity, numbers.Integral) or isinstance(capacity, bool)
                or capacity < 1):
            raise ValueError("Resource(%r, capacity=%s): capacity is an integer >= 1 (or "
                             "give devices=)" % (name, safe_repr(capacity)))
        self.name = name
        self.capacity = int(capacity)
        self.devices = devices
        self.free = self.capacity
        self.free_devices = list(devices) if devices is not None else None
        self.waiting = 0  # requests waiting that use it

    @property
    def in_use(self):
        """Units held now."""
        return self.capacity - self.free

    def __repr__(self):
        if self.devices is not None:
            return "Resource(%r, devices=%r)" % (self.name, list(self.devices))
        return "Resource(%r, capacity=%d)" % (self.name, self.capacity)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        devices = list(self.devices) if self.devices is not None else None
        return (Resource, (self.name, None if devices else self.capacity, devices))


def _is_sequence(value):
    return isinstance(value, (list, tuple)) or (
        hasattr(value, "__len__") and hasattr(value, "__getitem__")
        and not isinstance(value, dict))


def check_uses(owner, uses):
    """``uses`` checked for the processor ``owner`` (a class or instance); returns a dict or None."""
    if uses is None:
        return None
    name = owner.__name__ if isinstance(owner, type) else describe(owner)
    if not isinstance(uses, dict):
        raise TypeError("%s: uses=%s: give None or a dict {Resource(...): units}"
                        % (name, safe_repr(uses)))
    for resource, units in uses.items():
        if not isinstance(resource, Resource):
            raise TypeError("%s: uses=%s: %s is not a batch_processor.Resource; make one with "
                            "Resource(name, capacity) and use it as the key"
                            % (name, safe_repr(uses), safe_repr(resource)))
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units < 1:
            raise ValueError("%s: uses=%s: a job asks an integer >= 1 of units of %r, not %s"
                             % (name, safe_repr(uses), resource.name, safe_repr(units)))
        if units > resource.capacity:
            raise ValueError("%s: uses=%s: a job asks %d units of %r, whose capacity is %d; "
                             "it could never start: ask at most %d"
                             % (name, safe_repr(uses), units, resource.name, resource.capacity,
                                resource.capacity))
    return dict(uses) if uses else None


class Request(object):
    """Units of some resources asked by one job or batch: waiting, granted, then given back.

    ``callback(request)`` is called from ``loop`` when a request that had to wait is
    granted (never for one granted at once). ``devices`` are the ids it holds.
    """

    __slots__ = ("uses", "loop", "callback", "state", "devices", "held")

    def __init__(self, uses, loop, callback):
        self.uses = uses
        self.loop = loop
        self.callback = callback
        self.state = "new"
        self.devices = ()
        self.held = None

    @property
    def granted(self):
        return self.state == "granted"

    def release(self):
        """Give the units back (a no-op unless granted); stop waiting if it waits."""
        with _lock:
            state = self.state
            if state == "granted":
                _give_back(self)
            elif state == "waiting":
                _waiting.remove(self)
                for resource in self.uses:
                    resource.waiting -= 1
            else:
                self.state = "released"
                return
            self.state = "released"
            granted = _grant_waiting() if _waiting else None
        if granted:
            _deliver(granted)

    cancel = release

    def deliver(self):
        # From the request's loop: hand the grant over, unless given back meanwhile.
        if self.state == "granted":
            self.callback(self)


def acquire(uses, loop, callback):
    """A `Request` for ``uses``: granted now (``request.granted``), or waiting its turn."""
    request = Request(uses, loop, callback)
    with _lock:
        for resource, units in uses.items():
            if resource.waiting or resource.free < units:
                break
        else:
            _take(request)
            return request
        request.state = "waiting"
        _waiting.append(request)
        for resource in uses:
            resource.waiting += 1
    return request


def take(uses, count):
    """Take the units of up to ``count`` jobs at once, if they are free and nobody
    waits for these resources; return how many jobs got theirs (0: ask with `acquire`).

    The fast path, for resources without device ids: what is taken is given back
    with `give_back(uses)`, once per job.
    """
    with _lock:
        for resource, units in uses.items():
            if resource.waiting or resource.free_devices is not None:
                return 0
            free = resource.free // units
            if free < count:
                count = free
        if count > 0:
            for resource, units in uses.items():
                resource.free -= units * count
            return count
    return 0


def give_back(uses):
    """Give back the units of one job that got them from `take`."""
    with _lock:
        for resource, units in uses.items():
            resource.free += units
        granted = _grant_waiting() if _waiting else None
    if granted:
        _deliver(granted)


def _take(request):
    held = []
    for resource, units in request.uses.items():
        resource.free -= units
        if resource.free_devices is not None:
            taken = resource.free_devices[:units]
            del resource.free_devices[:units]
            held.append((resource, taken))
    if held:
        held.sort(key=lambda pair: pair[0].name)
        request.held = held
        request.devices = tuple(device for _, taken in held for device in taken)
    request.state = "granted"


def _give_back(request):
    for resource, units in request.uses.items():
        resource.free += units
    for resource, taken in request.held or ():
        order = resource.devices.index
        resource.free_devices = sorted(resource.free_devices + taken, key=order)
    request.held = None


def _grant_waiting():
    """Grant the waiting requests that may go now, in order; return them (under the lock)."""
    granted = []
    blocked = set()
    for request in list(_waiting):
        uses = request.uses
        if blocked and any(resource in blocked for resource in uses):
            blocked.update(uses)
            continue
        if all(resource.free >= units for resource, units in uses.items()):
            _waiting.remove(request)
            for resource in uses:
                resource.waiting -= 1
            _take(request)
            granted.append(request)
        else:
            blocked.update(uses)
    return granted


def _deliver(granted):
    for request in granted:
        try:
            request.loop.call_soon_threadsafe(request.deliver)
        except (RuntimeError, AttributeError):  # its loop is closed: its run is over
            request.release()


# -- what watchers read ------------------------------------------------------------------

def usage(resources):
    """``[(resource, units in use, requests waiting, device ids in use or None)]`` for
    each of ``resources``, read together under the lock that guards the counts.

    The counts are the process's: every run and thread that uses a resource counts.
    """
    with _lock:
        return [(resource, resource.capacity - resource.free, resource.waiting,
                 None if resource.devices is None else
                 [device for device in resource.devices if device not in resource.free_devices])
                for resource in resources]


# -- the ids the calling job holds ------------------------------------------------------

def devices():
    """The device ids (a tuple of strings) of the resources the calling job holds.

    In a job's thread, its coroutine (an asyncio task) or the worker process that
    runs it; an empty tuple outside a job, or for a job that holds no device.
    """
    held = getattr(_local, "devices", None)
    if held is not None:
        return held
    task = current_task()
    if task is not None:
        return _task_devices.get(task, ())
    return ()


def current_task():
    """The asyncio task running in this thread, or ``None``."""
    from .compat import asyncio
    try:
        current = getattr(asyncio, "current_task", None)
        if current is not None:
            return current()
        task = asyncio.Task.current_task()
        python_task = getattr(asyncio.tasks, "_PyTask", None)  # 3.6: its own registry
        if task is None and python_task is not None:
            task = python_task.current_task()
        return task
    except RuntimeError:  # no running loop in this thread
        return None


def set_task_devices(future, held):
    """The job whose task is ``future`` holds ``held``."""
    try:
        _task_devices[future] = held
    except TypeError:  # pragma: no cover - not weakly referenceable: a plain future
        pass


def call_with_devices(held, function, *args):
    """``function(*args)`` in this thread, `devices` returning ``held`` meanwhile."""
    previous = getattr(_local, "devices", None)
    _local.devices = held
    try:
        return function(*args)
    finally:
        _local.devices = previous
