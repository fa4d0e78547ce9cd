"""A program whose ``executor="processes"`` workers are left behind: run by the tests.

``python orphan_program.py FIFO N`` runs N jobs in a process pool of N workers; each
job writes its worker's pid to the FIFO and then blocks forever. The test kills this
program with SIGKILL once it has read N pids: the workers (and on 3.x the forkserver
and the resource tracker) must then end by themselves.
"""
import os
import sys
import time

from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor


class Hang(SeparateBatchProcessorSynchronous):
    def _run_one_job_synchronous(self, fifo):
        with open(fifo, "w") as stream:
            stream.write("%d\n" % os.getpid())
        while True:  # a job that never ends: only its worker's death frees it
            time.sleep(3600)


def main():
    fifo, count = sys.argv[1], int(sys.argv[2])
    run_batch_processor(Hang(executor="processes", max_parallel_jobs=count), [fifo] * count)


if __name__ == "__main__":
    main()
