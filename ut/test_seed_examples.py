# -*- coding: utf-8 -*-
"""The two examples of the seed note, run as written and checked.

The note's imports ``ads.nirvana.automl.lib.batch_processor`` and
``ads.nirvana.automl.lib.util`` read ``batch_processor`` and ``batch_processor.util``
here; apart from that the code is the note's, character for character. The first
example uses a ``Processor`` class that the note leaves undefined: the tests give it
one.
"""
from __future__ import absolute_import, division, print_function

import io
import threading

from batch_processor import (
    BatchProcessorResultHandle,
    ProcessorState,
    SeparateBatchProcessorSynchronous,
    run_batch_processor,
    run_batch_processors_graph,
)
from batch_processor.util import UnsafeThreadPoolExecutor

from helpers import run_script

GRAPH_EXAMPLE = '''\
from batch_processor import BatchProcessorsGraph, BatchProcessorResultHandle
graph = BatchProcessorsGraph()
my_processor = Processor()

# instance of my_processor will be added only once
for _ in range(3):
    graph.add_processor(my_processor)
    
def my_converter(*handles):
    # type: (*BatchProcessorResultHandle) -> Any
    return [h.future.result() for h in handles]

# Добавит вилку - результаты процессора поедут на вход каждому из дочерних процессоров
destination_processors = [Processor() for _ in range(3)]
for dst in destination_processors:
    graph.add_connected_processors(my_processor, dst, my_converter)
'''

SYNCHRONOUS_EXAMPLE = '''\
from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor_single
from batch_processor.util import UnsafeThreadPoolExecutor

class SomeSeparateProcessor(SeparateBatchProcessorSynchronous):
    @property
    def _executor(self):
        # We create a new separate thread for each job
        return UnsafeThreadPoolExecutor(1)
        
    def _run_one_job_synchronous(self, job_descriptor):
        # type: (int) -> int
        return job_descriptor + 1

if __name__ == '__main__':
    res = run_batch_processor_single(
        batch_processor=SomeSeparateProcessor(),
        descriptor=25
    )
    print(res.descriptor)
    print(res.future.result())
'''


class Processor(SeparateBatchProcessorSynchronous):
    """The processor of the first example (the note leaves it undefined): it doubles."""

    def _run_one_job_synchronous(self, job_descriptor):
        return job_descriptor * 2


def run_example(source, name, **names):
    """Execute an example's source in a fresh namespace (with ``names``); return it."""
    namespace = dict(names, __name__=name)
    exec(compile(source, "<seed example %s>" % name, "exec"), namespace)
    return namespace


def test_graph_example_builds_a_fan_out():
    example = run_example(GRAPH_EXAMPLE, "graph_example", Processor=Processor)
    graph = example["graph"]
    my_processor = example["my_processor"]
    my_converter = example["my_converter"]
    destinations = example["destination_processors"]

    assert graph.processors == [my_processor] + destinations  # my_processor only once
    assert graph.edges == [(my_processor, dst, my_converter) for dst in destinations]


def test_graph_example_runs_and_every_destination_gets_the_results():
    example = run_example(GRAPH_EXAMPLE, "graph_example", Processor=Processor)
    graph, my_processor = example["graph"], example["my_processor"]
    destinations = example["destination_processors"]

    results = run_batch_processors_graph(graph, {my_processor: [1, 2, 3]})

    assert list(results) == [my_processor] + destinations
    for handle in results[my_processor]:
        assert isinstance(handle, BatchProcessorResultHandle)
    assert sorted((h.descriptor, h.future.result()) for h in results[my_processor]) == [
        (1, 2), (2, 4), (3, 6)]
    for dst in destinations:  # the fork: each destination got all of the results
        assert sorted((h.descriptor, h.future.result()) for h in results[dst]) == [
            (2, 4), (4, 8), (6, 12)]
    assert all(p.state is ProcessorState.IDLE for p in graph.processors)


def test_synchronous_example_gives_25_and_26():
    example = run_example(SYNCHRONOUS_EXAMPLE, "synchronous_example")
    processor_class = example["SomeSeparateProcessor"]
    run_batch_processor_single = example["run_batch_processor_single"]

    res = run_batch_processor_single(batch_processor=processor_class(), descriptor=25)

    assert res.descriptor == 25
    assert res.future.result() == 26


def test_synchronous_example_runs_each_job_in_its_own_thread():
    example = run_example(SYNCHRONOUS_EXAMPLE, "synchronous_example")
    base = example["SomeSeparateProcessor"]
    lock = threading.Lock()
    threads, executors = [], []

    class Recording(base):
        @property
        def _executor(self):
            executor = base._executor.fget(self)
            with lock:
                executors.append(executor)
            return executor

        def _run_one_job_synchronous(self, job_descriptor):
            with lock:
                threads.append(threading.current_thread())
            return base._run_one_job_synchronous(self, job_descriptor)

    handles = run_batch_processor(Recording(), range(5))

    assert sorted((h.descriptor, h.future.result()) for h in handles) == [
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert len(executors) == 5 and len(set(map(id, executors))) == 5
    assert all(isinstance(executor, UnsafeThreadPoolExecutor) for executor in executors)
    assert len(threads) == 5 and len(set(threads)) == 5  # a new thread per job
    assert all(thread.daemon for thread in threads)


def test_synchronous_example_as_a_script_prints_25_and_26(tmpdir):
    script = tmpdir.join("some_separate_processor.py")
    with io.open(str(script), "w", encoding="utf-8") as stream:
        stream.write(u"# -*- coding: utf-8 -*-\n" + SYNCHRONOUS_EXAMPLE)

    returncode, stdout, stderr = run_script(path=str(script))

    assert (returncode, stdout, stderr) == (0, "25\n26\n", "")
