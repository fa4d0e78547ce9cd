"""``batch_processor.dask`` runs the jobs of Synchronous processors on a Dask cluster.

Mix `DaskExecutorMixin` into ``SeparateBatchProcessorSynchronous`` or
``SequentialBatchProcessorSynchronous`` and give it a ``distributed.Client``::

    class Train(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, config):
            return fit_and_score(config)

    with distributed.Client("tcp://scheduler:8786") as client:
        handles = run_batch_processor(Train(client, max_parallel_jobs=64), configs)

Jobs go through ``client.get_executor(pure=False)``, so two jobs with equal
descriptors are two tasks on the cluster. ``kill()`` (and a run's timeout) cancel
the cluster's futures of the unfinished jobs; a job already running on a worker is
abandoned there, as a thread job is. The processor travels to the workers without
its client and runtime state. Needs the ``[dask]`` extra (Python 3).
"""
from __future__ import absolute_import, division, print_function

__all__ = ["DaskExecutorMixin", "local_client"]


class DaskExecutorMixin(object):
    """Runs a Synchronous processor's jobs on the cluster of a ``distributed.Client``.

    Args:
        client: a connected ``distributed.Client``.
        *args, **kwargs: passed on to the processor class (``max_parallel_jobs``...).
    """

    #: The client and its executor stay with this process: they are not pickled to
    #: the workers, and a copy of the processor shares them.
    _bp_not_pickled = ("_dask_client", "_dask_executor", "_bp_executor_instance")
    _dask_client = None
    _dask_executor = None

    def __init__(self, client, *args, **kwargs):
        super(DaskExecutorMixin, self).__init__(*args, **kwargs)
        self._dask_client = client
        self._dask_executor = client.get_executor(pure=False)

    @property
    def client(self):
        """The ``distributed.Client`` the jobs run through.

        A processor unpickled in another process (or from a checkpoint) has none of
        its own: it takes that process's current client (``distributed.get_client()``).
        """
        client = self._dask_client
        if client is None:
            from distributed import get_client
            client = self._dask_client = get_client()
        return client

    @property
    def _executor(self):
        executor = self._dask_executor
        if executor is None:
            executor = self._dask_executor = self.client.get_executor(pure=False)
        return executor


def local_client(n_workers=2, threads_per_worker=1, **kwargs):
    """A ``distributed.Client`` of a new ``LocalCluster`` of worker processes.

    Close the client, then its ``cluster``, when done (or use both as context managers).
    """
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=":0", **kwargs)
    return Client(cluster)
