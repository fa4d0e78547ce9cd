"""The worker side of `batch_processor.dask`: the processor's copy on each Dask worker.

Imported where ``distributed`` is installed only (`batch_processor.dask` imports it at a
run's first job), so that ``batch_processor.dask`` imports everywhere.
"""
from __future__ import absolute_import, division, print_function

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.pickle import dumps, loads

from ._synchronous import _call_method

__all__ = ["ProcessorPlugin", "dumps", "run_on_copy"]


class ProcessorPlugin(WorkerPlugin):
    """Carries a pickled processor to every worker, those that join later included.

    Each worker unpickles it once, when the plugin is set up there, and keeps it
    (as ``worker.plugins[name].processor``) until the plugin is unregistered. It is
    pickled as Dask pickles a task (cloudpickle where pickle cannot: classes of a
    script's ``__main__``, lambdas). The threads of a worker share its copy, as the
    threads of a thread pool share the processor.
    """

    def __init__(self, processor_bytes):
        self.processor_bytes = processor_bytes
        self.processor = None

    def __getstate__(self):
        return {"processor_bytes": self.processor_bytes}

    def __setstate__(self, state):
        self.processor_bytes = state["processor_bytes"]
        self.processor = None

    def setup(self, worker):
        self.processor = loads(self.processor_bytes)

    def teardown(self, worker):
        self.processor = None


def run_on_copy(name, method_name, argument):
    """``copy.method_name(argument)`` on a worker, with the copy the plugin ``name`` set up."""
    plugin = get_worker().plugins.get(name)
    if plugin is None or plugin.processor is None:
        raise RuntimeError("this Dask worker has no copy of the processor (plugin %r): its "
                           "run ended, or the plugin was removed" % name)
    return _call_method(plugin.processor, method_name, argument)
