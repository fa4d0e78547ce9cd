"""The public names: every one importable from ``batch_processor``, each exported once."""
from __future__ import absolute_import, division, print_function

import importlib

import pytest

import batch_processor

#: SPEC.md, "The top-level package", and "Time limits, retries and run options".
SPEC_NAMES = [
    "AbstractBatchProcessor",
    "BatchProcessorResultHandle",
    "ProcessorState",
    "BatchProcessorsGraph",
    "run_batch_processors_graph",
    "run_batch_processor",
    "run_batch_processor_single",
    "run_batch_processors_graph_async",
    "run_batch_processor_async",
    "SeparateBatchProcessor",
    "SeparateBatchProcessorSynchronous",
    "SequentialBatchProcessor",
    "SequentialBatchProcessorSynchronous",
    "UnsafeThreadPoolExecutor",
    "CancelledError",
    "BatchProcessorError",
    "ProcessorStateError",
    "GraphError",
    "ConverterError",
    "RetryPolicy",
    "RunTimeoutError",
    "JobTimeoutError",
]

#: Where SPEC.md puts each name.
HOMES = {
    "AbstractBatchProcessor": "interface",
    "BatchProcessorResultHandle": "interface",
    "ProcessorState": "interface",
    "BatchProcessorError": "interface",
    "ProcessorStateError": "interface",
    "GraphError": "interface",
    "ConverterError": "interface",
    "RunTimeoutError": "interface",
    "JobTimeoutError": "interface",
    "BatchProcessorsGraph": "execution",
    "run_batch_processors_graph": "execution",
    "run_batch_processor": "execution",
    "run_batch_processor_single": "execution",
    "run_batch_processors_graph_async": "execution",
    "run_batch_processor_async": "execution",
    "SeparateBatchProcessor": "separate",
    "SeparateBatchProcessorSynchronous": "separate",
    "RetryPolicy": "separate",
    "SequentialBatchProcessor": "sequential",
    "SequentialBatchProcessorSynchronous": "sequential",
    "UnsafeThreadPoolExecutor": "util",
    "CancelledError": "compat",
}

MODULES = ["compat", "interface", "separate", "sequential", "execution", "util"]


def test_every_spec_name_is_importable_from_the_package():
    missing = []
    for name in SPEC_NAMES:
        namespace = {}
        try:
            exec("from batch_processor import %s" % name, namespace)
        except ImportError:
            missing.append(name)
        else:
            assert namespace[name] is getattr(batch_processor, name)
    assert missing == []


def test_every_spec_name_is_listed_exactly_once_in_all():
    counts = dict((name, batch_processor.__all__.count(name)) for name in SPEC_NAMES)
    assert dict((name, count) for name, count in counts.items() if count != 1) == {}


def test_every_spec_name_is_the_object_of_its_module():
    assert sorted(HOMES) == sorted(SPEC_NAMES)
    different = []
    for name in SPEC_NAMES:
        module = importlib.import_module("batch_processor." + HOMES[name])
        if getattr(batch_processor, name) is not getattr(module, name, None):
            different.append(name)
    assert different == []


def test_all_has_no_duplicates():
    assert len(batch_processor.__all__) == len(set(batch_processor.__all__))


def test_star_import_gives_exactly_all():
    namespace = {}
    exec("from batch_processor import *", namespace)
    names = set(name for name in namespace if name != "__builtins__")
    assert names == set(batch_processor.__all__)


def test_cancelled_error_is_the_event_loop_one():
    from batch_processor.compat import asyncio
    assert batch_processor.CancelledError is asyncio.CancelledError


@pytest.mark.parametrize("module_name", [""] + MODULES)
def test_every_name_in_all_exists(module_name):
    module = importlib.import_module(
        "batch_processor" + ("." + module_name if module_name else ""))
    names = module.__all__  # every module says what it exports
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing
    assert len(names) == len(set(names))


@pytest.mark.parametrize("module_name", MODULES)
def test_module_imports_and_has_a_docstring(module_name):
    module = importlib.import_module("batch_processor." + module_name)
    assert module.__doc__ and module.__doc__.strip()
