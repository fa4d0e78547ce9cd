"""``batch_processor.dask`` runs the jobs of Synchronous processors on a Dask cluster.

Mix `DaskExecutorMixin` into ``SeparateBatchProcessorSynchronous`` or
``SequentialBatchProcessorSynchronous`` and give it a ``distributed.Client``::

    class Train(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
        def _run_one_job_synchronous(self, config):
            return fit_and_score(config)

    with distributed.Client("tcp://scheduler:8786") as client:
        handles = run_batch_processor(Train(client, max_parallel_jobs=64), configs)

The processor is sent to the cluster once per run, not with every job: at the run's
first job it is pickled once and registered as a Dask worker plugin, which the
scheduler gives to every worker (and to those that join later, such as the nanny's
replacement of a worker that died); each job carries only its descriptor. It
travels without its client and runtime state, and workers see it as it was when the
run's first job started; the workers drop it when the run is over. A worker that
dies loses no job: Dask reruns its tasks on the other workers, or fails them with its
own error (``KilledWorker``) when a task keeps killing its workers.

Jobs go through ``client.get_executor(pure=False)``, so two jobs with equal
descriptors are two tasks on the cluster. ``kill()`` (and a run's timeout) cancel
the cluster's futures of the unfinished jobs; a job already running on a worker is
abandoned there, as a thread job is. Needs the ``[dask]`` extra (Python 3).
"""
from __future__ import absolute_import, division, print_function

import functools
import threading
import uuid
from concurrent.futures import Executor, Future

from ._processes import ProcessorCopies
from .interface import describe, safe_str

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
        """The run's `ClusterCopy`: jobs on the cluster, the processor sent once per run."""
        executor = self._dask_executor
        if executor is None:
            executor = self._dask_executor = self.client.get_executor(pure=False)
        runtime = self._bp_runtime()
        copy = runtime.run_executor
        if not isinstance(copy, ClusterCopy) or copy.executor is not executor:
            copy = ClusterCopy(self, self.client, executor)
            runtime.end_run_executor(copy)
        return copy


class ClusterCopy(ProcessorCopies, Executor):
    """The copy of a processor on a Dask cluster that the jobs of one run use.

    At the first job, the processor is pickled once and registered as a worker plugin
    (`ProcessorPlugin`) under a name of this run's: the scheduler hands it to every
    worker, and to the workers that join later (a nanny's replacement of a dead one).
    Registering asks the scheduler, so it runs in a thread of its own and the loop
    never waits on the cluster; jobs submitted meanwhile go to the cluster when it is
    done. Each job is then a task of ``executor`` (the client's ``ClientExecutor``)
    that carries the plugin's name, the method's name and the descriptor. When the run
    has released the copy and its last job ended, the plugin is unregistered (the
    workers drop their copies). ``submit`` is the executor's, for code that reads
    ``processor._executor`` itself.
    """

    def __init__(self, processor, client, executor):
        self.processor = processor
        self.client = client
        self.executor = executor
        self.name = "batch_processor-%s" % uuid.uuid4().hex
        self.lock = threading.Lock()
        self.registered = None  # a Future of the registration, made at the first job
        self.in_flight = 0
        self.released = False
        self.unregistered = False
        #: Set once the workers were told to drop their copies (or had none).
        self.dropped = threading.Event()

    def submit_job(self, method_name, argument, started=None):
        with self.lock:
            if self.registered is None:
                self.registered = self.register()
            registered = self.registered
            self.in_flight += 1
        try:
            if registered.done():
                future = self.submit_registered(registered, method_name, argument, started)
            else:
                future = _Chained()
                registered.add_done_callback(functools.partial(
                    self.chain, future, method_name, argument, started))
        except BaseException:
            self.job_ended(None)
            raise
        future.add_done_callback(self.job_ended)
        return future

    def register(self):
        """Pickle the processor here, register it in a thread; a Future of that.

        The Future's result is ``None``, or the ``(type, message)`` of the error each
        job then fails with (a fresh exception per job).
        """
        registered = Future()
        from ._dask_worker import ProcessorPlugin, dumps
        try:
            processor_bytes = dumps(self.processor)
        except Exception as exc:
            registered.set_result((TypeError, (
                "%s cannot be pickled to the cluster's workers (%s); keep unpicklable "
                "attributes (locks, open files) out of it, or list them in the class "
                "attribute _bp_not_pickled" % (describe(self.processor), safe_str(exc)))))
            return registered

        def register():
            failure = None
            try:
                plugin = ProcessorPlugin(processor_bytes)
                register_plugin = getattr(self.client, "register_plugin", None)
                if register_plugin is None:  # distributed before 2023.9 (Python 3.8)
                    self.client.register_worker_plugin(plugin, name=self.name)
                else:
                    register_plugin(plugin, name=self.name)
            except BaseException as exc:
                failure = (RuntimeError, "%s: its copy could not be sent to the cluster's "
                           "workers: %s" % (describe(self.processor), safe_str(exc)))
            registered.set_result(failure)
        _start_daemon(register, "batch_processor: register %s" % self.name)
        return registered

    def submit_registered(self, registered, method_name, argument, started):
        failure = registered.result()
        if failure is not None:
            raise failure[0](failure[1])  # this job fails with it (its handle does)
        from ._dask_worker import run_on_copy
        future = self.executor.submit(run_on_copy, self.name, method_name, argument)
        if started is not None:
            started()  # the cluster queues jobs its own way: running, as far as we know
        return future

    def chain(self, future, method_name, argument, started, registered):
        # In the registering thread: the job goes to the cluster now, unless cancelled.
        if future.cancelled():
            return
        try:
            inner = self.submit_registered(registered, method_name, argument, started)
        except BaseException as exc:
            future.fail(exc)
            return
        future.follow(inner)

    def job_ended(self, _):
        with self.lock:
            self.in_flight -= 1
        self.maybe_unregister()

    def release(self):
        """The run is over: the workers drop their copies once its last job ended.

        When no job is left, this waits (10 s at most) for the scheduler to hear it,
        so that a client closed right after the run leaves no copy behind.
        """
        self.released = True
        thread = self.maybe_unregister()
        if thread is not None:
            thread.join(10)

    def maybe_unregister(self):
        """Unregister the plugin in a thread if the run is over; return that thread."""
        with self.lock:
            if not self.released or self.in_flight or self.unregistered \
                    or self.registered is None:
                return None
            self.unregistered = True
        registered = self.registered

        def unregister():
            try:
                if registered.result() is None:
                    self.client.unregister_worker_plugin(self.name)
            except Exception:  # the client or the cluster is gone: so are the copies
                pass
            finally:
                self.dropped.set()
        return _start_daemon(unregister, "batch_processor: unregister %s" % self.name)

    def submit(self, fn, *args, **kwargs):
        return self.executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, **kwargs):
        """The client's executor is the client's: it is left running."""


class _Chained(Future):
    """A job's future while the registration is under way, then the cluster's job's.

    Never marked running: it can be cancelled until the cluster's job is, as the
    client's own futures can.
    """

    def __init__(self):
        Future.__init__(self)
        self.inner = None
        self.chain_lock = threading.Lock()

    def follow(self, inner):
        with self.chain_lock:
            cancelled = self.cancelled()
            if not cancelled:
                self.inner = inner
        if cancelled:
            inner.cancel()
        else:
            inner.add_done_callback(self.settle)

    def settle(self, inner):
        if inner.cancelled():
            Future.cancel(self)
        elif not self.done():
            exc = inner.exception()
            if exc is None:
                self.set_result(inner.result())
            else:
                self.set_exception(exc)

    def cancel(self):
        with self.chain_lock:
            inner = self.inner
            if inner is None:
                return Future.cancel(self)
        return inner.cancel() and self.cancelled()

    def fail(self, exc):
        """Fail it, unless it was cancelled meanwhile."""
        with self.chain_lock:
            if not self.done():
                self.set_exception(exc)


def _start_daemon(target, name):
    thread = threading.Thread(target=target, name=name)
    thread.daemon = True
    thread.start()
    return thread


def local_client(n_workers=2, threads_per_worker=1, **kwargs):
    """A ``distributed.Client`` of a new ``LocalCluster`` of worker processes.

    Close the client, then its ``cluster``, when done (or use both as context managers).
    """
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=":0", **kwargs)
    return Client(cluster)
