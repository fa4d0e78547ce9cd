"""The Dask integration against a real LocalCluster with worker processes (no mocks)."""
import pytest

distributed = pytest.importorskip("distributed")

from batch_processor import (  # noqa: E402
    RunTimeoutError, SeparateBatchProcessorSynchronous, SequentialBatchProcessorSynchronous,
    run_batch_processor)
from batch_processor.dask import DaskExecutorMixin, local_client  # noqa: E402


class Square(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        if job_descriptor < 0:
            raise ValueError("negative: %r" % job_descriptor)
        import os
        return job_descriptor * job_descriptor, os.getpid()


class Sums(DaskExecutorMixin, SequentialBatchProcessorSynchronous):
    def _run_batch_synchronous(self, job_descriptors):
        return [sum(job_descriptors)] * len(job_descriptors)


class WaitsForRelease(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        distributed.Event("release-jobs").wait()
        return job_descriptor


@pytest.fixture(scope="module")
def client():
    with local_client(n_workers=2) as client:
        yield client
        client.cluster.close()


def test_jobs_run_on_the_cluster_workers(client):
    import os
    handles = run_batch_processor(Square(client, max_parallel_jobs=4), [3, 3, -1, 5])
    assert len(handles) == 4
    outcomes = sorted(repr(h.future.exception()) if h.future.exception() else str(h.future.result()[0])
                      for h in handles)
    assert outcomes == ["25", "9", "9", "ValueError('negative: -1')"]
    pids = set(h.future.result()[1] for h in handles if h.future.exception() is None)
    assert os.getpid() not in pids  # ran in the worker processes


def test_sequential_batches_run_on_the_cluster(client):
    handles = run_batch_processor(Sums(client), [1, 2, 3])
    assert sorted(h.future.result() for h in handles) == [6, 6, 6]


def test_kill_cancels_the_cluster_futures(client):
    processor = WaitsForRelease(client)
    release = distributed.Event("release-jobs", client=client)
    try:
        with pytest.raises(RunTimeoutError) as raised:
            run_batch_processor(processor, range(4), timeout=2)
        handles = raised.value.results
        assert len(handles) == 4
        assert all(h.future.cancelled() for h in handles)

        # kill() cancelled the cluster's futures: the client no longer tracks them
        # as wanted (the scheduler is told to forget them).
        assert [state.status for state in client.futures.values()
                if state.status == "pending"] == []
    finally:
        release.set()


def test_the_demo_trains_on_a_local_dask_cluster(capsys, tmpdir):
    pytest.importorskip("sklearn")
    from batch_processor import demo
    picture = str(tmpdir.join("pipeline.dot"))
    assert demo.main(["--budget", "6", "--dask", "--workers", "2", "--dot", picture]) == 0
    out, _ = capsys.readouterr()
    assert "Evaluated 6 of 6 configurations (0 failed)." in out
    with open(picture) as f:
        assert "DaskTrainer" in f.read()


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_copies_and_pickles_run_on_the_cluster(client, how):
    import copy
    import pickle
    original = Square(client, max_parallel_jobs=2, name="squares")
    assert sorted(h.future.result()[0] for h in run_batch_processor(original, [2])) == [4]
    if how == "pickle":
        clone = pickle.loads(pickle.dumps(original))  # without the client: takes the current one
    else:
        clone = getattr(copy, how)(original)
        assert clone.client is client  # shared, not copied
    assert clone.name == "squares"
    assert sorted(h.future.result()[0] for h in run_batch_processor(clone, [3, 4])) == [9, 16]


class CountsItsPickles(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
    pickled = 0  # in this process: how often the processor was pickled

    def __getstate__(self):
        type(self).pickled += 1
        return super(CountsItsPickles, self).__getstate__()

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor + len(self.model)


def test_the_processor_goes_to_the_cluster_once_per_run_not_with_every_job(client, monkeypatch):
    from batch_processor import dask
    released = []
    release = dask.ClusterCopy.release
    monkeypatch.setattr(dask.ClusterCopy, "release", lambda copy: (released.append(copy),
                                                                   release(copy)))
    processor = CountsItsPickles(client, max_parallel_jobs=4)
    processor.model = list(range(1000))
    for run in (1, 2):
        handles = run_batch_processor(processor, range(30))
        assert sorted(h.future.result() for h in handles) == list(range(1000, 1030))
        assert CountsItsPickles.pickled == run
    # After each run the workers drop that run's copy: nothing is left on the cluster.
    assert len(released) == 2
    for copy in released:
        assert copy.dropped.is_set()  # before the run returned
    left = client.run(lambda dask_worker: [name for name in dask_worker.plugins
                                           if name.startswith("batch_processor-")])
    assert left and all(names == [] for names in left.values())


def test_an_unpicklable_processor_fails_its_jobs_with_a_message_naming_it(client):
    import threading
    processor = Square(client, name="locked")
    processor.lock = threading.Lock()
    handles = run_batch_processor(processor, [1, 2])
    assert len(handles) == 2
    for handle in handles:
        message = str(handle.future.exception())
        assert "locked" in message and "cannot be pickled to the cluster" in message


class KillsAWorker(DaskExecutorMixin, SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, job_descriptor):
        import os
        if job_descriptor == "die":
            os._exit(1)
        return job_descriptor


def test_a_worker_that_dies_mid_run_loses_no_handle(client):
    # The cluster's nanny starts a new worker process in place of the dead one.
    processor = KillsAWorker(client, max_parallel_jobs=4)
    descriptors = list(range(10)) + ["die"] + list(range(10, 20))
    handles = run_batch_processor(processor, descriptors, timeout=120)
    assert sorted(map(repr, (h.descriptor for h in handles))) == sorted(map(repr, descriptors))
    for handle in handles:
        if handle.descriptor != "die":
            assert handle.future.result() == handle.descriptor
        else:
            assert handle.future.exception() is not None  # the cluster's error
