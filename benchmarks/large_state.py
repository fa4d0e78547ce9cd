"""A processor holding 40 MB, with a checkpoint: run time and file size (issue 19).

``python benchmarks/large_state.py KIND COUNTER`` runs 40 jobs of 0.05 s, one at a time,
of a processor holding 40 MB of data; KIND is ``none`` (no checkpoint), ``plain`` (the
data recorded) or ``excluded`` (the data in ``_bp_not_recorded``); COUNTER is
``counter`` (the state changes at every job) or ``nocounter``. Prints one line: the
run's seconds and the size of the checkpoint's files.
"""
from __future__ import print_function

import os
import shutil
import sys
import tempfile
import time

from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor


class Model(SeparateBatchProcessorSynchronous):
    def __init__(self, counter, **kwargs):
        super(Model, self).__init__(max_parallel_jobs=1, **kwargs)
        self.data = os.urandom(40 * 2 ** 20)  # a data set, read only
        self.counter = counter
        self.seen = 0

    def _run_one_job_synchronous(self, descriptor):
        time.sleep(0.05)  # the job's work
        if self.counter:
            self.seen += 1
        return descriptor


class Excluded(Model):
    _bp_not_recorded = ("data",)


def main():
    kind, counter = sys.argv[1], sys.argv[2] == "counter"
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "run.sqlite")
    processor = (Excluded if kind == "excluded" else Model)(counter)
    began = time.time()
    run_batch_processor(processor, list(range(40)), checkpoint=None if kind == "none" else path)
    seconds = time.time() - began
    size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    shutil.rmtree(folder)
    print("%-9s %-10s %5.2f s  %6.1f MB" % (kind, sys.argv[2], seconds, size / 2.0 ** 20))


if __name__ == "__main__":
    main()
