"""The package's imports (issue 18, item 7): no cycle, nothing heavy until it is used."""
from __future__ import absolute_import, division, print_function

import glob
import os
import sys

import pytest

import batch_processor
from batch_processor import checkpoint

from helpers import REPO_ROOT, run_script

MODULES = sorted(
    os.path.splitext(os.path.basename(path))[0]
    for path in glob.glob(os.path.join(REPO_ROOT, "batch_processor", "*.py"))
    if not path.endswith("__init__.py"))
PY3_ONLY = ("_compat_py3", "_execution_py3", "dask", "_dask_worker")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    if sys.version_info[0] == 2 and module in PY3_ONLY:
        pytest.skip("a Python 3 module")
    if module in ("dask", "_dask_worker"):
        pytest.importorskip("distributed")
    code, out, err = run_script("import batch_processor.%s" % module)
    assert code == 0, err


def test_importing_the_package_loads_neither_sqlite3_nor_multiprocessing():
    code, out, err = run_script("""
        import sys
        import batch_processor
        print(sorted(m for m in ("sqlite3", "multiprocessing", "batch_processor.checkpoint",
                                 "batch_processor._processes") if m in sys.modules))
    """)
    assert code == 0, err
    loaded = eval(out)
    if sys.version_info < (3, 7):  # there `import concurrent.futures` loads multiprocessing
        loaded = [m for m in loaded if m != "multiprocessing"]
    assert loaded == []


def test_checkpoint_error_is_one_class():
    assert batch_processor.CheckpointError is checkpoint.CheckpointError
