"""Programs that the checkpoint tests run in child processes, and kill.

``python checkpoint_programs.py hang FIFO N`` runs N jobs in a process pool of N workers; each
job writes its worker's pid to the FIFO and then blocks forever. The test kills this
program with SIGKILL once it has read N pids: the workers (and on 3.x the forkserver
and the resource tracker) must then end by themselves.

``python checkpoint_programs.py hold PATH`` runs two `Wait` jobs with
``checkpoint=PATH``; the first writes "started" to stdout and waits for a line on stdin
(which never comes: the test kills the program). `Wait` run by the test itself (without
``HOLD`` in the environment) returns at once.
"""
import os
import sys
import threading

from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor


class Hang(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, fifo):
        with open(fifo, "w") as stream:
            stream.write("%d\n" % os.getpid())
        threading.Event().wait()  # a job that never ends: only its worker's death frees it


class Wait(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, descriptor):
        if os.environ.get("HOLD"):
            sys.stdout.write("started\n")
            sys.stdout.flush()
            sys.stdin.readline()
        return descriptor


def main():
    if sys.argv[1] == "hang":
        fifo, count = sys.argv[2], int(sys.argv[3])
        run_batch_processor(Hang(executor="processes", max_parallel_jobs=count), [fifo] * count)
    else:
        os.environ["HOLD"] = "1"
        run_batch_processor(Wait(max_parallel_jobs=1), [1, 2], checkpoint=sys.argv[2])


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from checkpoint_programs import main as main_  # its classes, not __main__'s, are recorded
    main_()
