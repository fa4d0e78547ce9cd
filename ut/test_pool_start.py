"""How an owned process pool starts its workers (Python 3: from the fork server).

A worker started by the fork server runs the program's main script again, and so
imports what it imports, in every new pool; the library has the fork server import the
installed packages the script uses once, as its first pool starts it (see
``_processes._preload_main_imports``). Each test runs a program of its own: the fork
server is started once per program. Python 2.7 imports this module: no ``async``/``await``.
"""
from __future__ import absolute_import, division, print_function

import ast
import os
import subprocess
import sys

import pytest

from batch_processor.compat import PY2

from helpers import REPO_ROOT

pytestmark = pytest.mark.skipif(
    PY2 or sys.platform == "win32", reason="no fork server (2.7 forks its workers)")

PROGRAM = """from __future__ import print_function
import multiprocessing
import sys
from multiprocessing import forkserver

import six  # an installed package the program uses
from batch_processor import SeparateBatchProcessorSynchronous, run_batch_processor


def job(x):
    return x, sys.modules["six"].__name__


if __name__ == "__main__":
    if sys.argv[1:] == ["own preload"]:
        multiprocessing.set_forkserver_preload(["json"])
    for run in range(2):  # a new processor, a new pool, each time
        processor = SeparateBatchProcessorSynchronous.from_function(
            job, executor="processes", max_parallel_jobs=1)
        try:
            print(sorted(h.future.result() for h in run_batch_processor(processor, [run])))
        finally:
            processor.stop()
    print(forkserver._forkserver._preload_modules)
"""


def run_program(tmpdir, *arguments):
    path = str(tmpdir.join("program.py"))
    with open(path, "w") as stream:
        stream.write(PROGRAM)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    process = subprocess.Popen([sys.executable, path] + list(arguments), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return out.splitlines()


def test_the_fork_server_imports_the_installed_packages_the_main_script_uses(tmpdir):
    lines = run_program(tmpdir)
    assert lines[:2] == ["[(0, 'six')]", "[(1, 'six')]"]
    preload = ast.literal_eval(lines[2])  # its preload: __main__ (as the default), then the packages
    assert preload[0] == "__main__" and "six" in preload


def test_a_preload_the_program_set_is_left_alone(tmpdir):
    lines = run_program(tmpdir, "own preload")
    assert lines == ["[(0, 'six')]", "[(1, 'six')]", "['json']"]
