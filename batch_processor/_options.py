"""``batch_processor._options``: the options of a run, as one checked record.

Every runner (``run_*``, ``iter_*`` and their ``_async`` forms) takes the same
keywords and hands them to `RunOptions`, which checks them all, in one place and
with one error style (``runner(option=value): give ...``), before anything runs:
no processor is claimed, no file is opened, no loop is made for a run whose
options are wrong. What depends on the graph (``keep_results`` naming processors
of another graph) is checked by the run, as it is made (``GraphError``).
"""
from __future__ import absolute_import, division, print_function

import numbers

import attr
import six

from .interface import AbstractBatchProcessor, check_seconds, safe_repr

__all__ = ["RUN_OPTIONS", "RunOptions"]

#: The options of a run, in the order the runners take them (``loop_factory``
#: only in the synchronous runners, which make the run's loop).
RUN_OPTIONS = ("timeout", "keep_results", "progress", "loop_factory", "max_in_flight",
               "checkpoint", "checkpoint_interval", "trace")

#: ``checkpoint_interval``'s default: seconds between two records of a checkpoint.
CHECKPOINT_INTERVAL = 0.1


def _path(option, value, runner):
    """A path option (``checkpoint``, ``trace``): a string, or an ``os.PathLike``."""
    if value is None or isinstance(value, six.string_types):
        return value
    fspath = getattr(type(value), "__fspath__", None)
    if fspath is not None:
        path = fspath(value)
        if isinstance(path, six.string_types):
            return path
    raise TypeError("%s(%s=%s): give the path of a file (a string or an os.PathLike), or None"
                    % (runner, option, safe_repr(value)))


@attr.s(frozen=True, slots=True)
class RunOptions(object):
    """The options of one run, checked when made (see the runners for what each does).

    ``runner`` names the runner in error messages. ``keep_results`` is kept as a
    tuple of processors (or ``None``: keep every handle); paths as strings.
    """

    timeout = attr.ib(default=None)
    keep_results = attr.ib(default=None)
    progress = attr.ib(default=False)
    loop_factory = attr.ib(default=None)
    max_in_flight = attr.ib(default=None)
    checkpoint = attr.ib(default=None)
    checkpoint_interval = attr.ib(default=CHECKPOINT_INTERVAL)
    trace = attr.ib(default=None)
    runner = attr.ib(default="the runner", repr=False, eq=False)

    def __attrs_post_init__(self):
        runner = self.runner
        check_seconds(runner, "timeout", self.timeout)
        keep = self.keep_results
        if keep is not None:
            if isinstance(keep, AbstractBatchProcessor):
                keep = (keep,)
            else:
                try:
                    keep = tuple(keep)
                except TypeError:
                    keep = None
                if keep is None or not all(isinstance(p, AbstractBatchProcessor) for p in keep):
                    raise TypeError(
                        "%s(keep_results=%s): give None (keep every handle), a processor, or "
                        "an iterable of processors of the graph"
                        % (runner, safe_repr(self.keep_results)))
            object.__setattr__(self, "keep_results", keep)
        if not isinstance(self.progress, (bool, numbers.Integral)) or self.progress not in (0, 1):
            raise TypeError("%s(progress=%s): give True (show live progress on stderr) or False"
                            % (runner, safe_repr(self.progress)))
        object.__setattr__(self, "progress", bool(self.progress))
        if self.loop_factory is not None and not callable(self.loop_factory):
            raise TypeError("%s(loop_factory=%s): give None (asyncio.new_event_loop) or a "
                            "function of no argument that returns a new event loop"
                            % (runner, safe_repr(self.loop_factory)))
        mif = self.max_in_flight
        if mif is not None and (not isinstance(mif, numbers.Integral) or isinstance(mif, bool)
                                or mif < 1):
            raise ValueError(
                "%s(max_in_flight=%s): give None (read the initial descriptors whole at the "
                "start) or an int >= 1 (jobs in flight at most while they are read)"
                % (runner, safe_repr(mif)))
        object.__setattr__(self, "checkpoint", _path("checkpoint", self.checkpoint, runner))
        interval = self.checkpoint_interval
        try:
            check_seconds(runner, "checkpoint_interval", interval)
        except ValueError:
            interval = None
        if interval is None:
            raise ValueError("%s(checkpoint_interval=%s): give a finite number of seconds > 0 "
                             "(default %s)" % (runner, safe_repr(self.checkpoint_interval),
                                               CHECKPOINT_INTERVAL))
        object.__setattr__(self, "trace", _path("trace", self.trace, runner))
