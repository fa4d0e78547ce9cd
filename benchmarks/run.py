"""The benchmark suite of ``batch_processor``: the runner against hand-written code.

Usage (from the repository root, on Python 2.7 or 3.x)::

    python benchmarks/run.py                  # full run (minutes)
    python benchmarks/run.py --quick          # CI: small sizes, well under a minute
    python benchmarks/run.py --json out.json  # also write the rows as JSON
    python benchmarks/run.py --only 1,2       # some workloads only
    python benchmarks/run.py --profile        # cProfile of workloads 1 and 2

Every library figure is compared with a baseline measured in the same process, the
two run alternately and the best of a few repeats kept (``baselines`` says what each
baseline is). Each benchmark checks that every descriptor came back exactly once
with the right result and fails loudly otherwise: the exit status is non-zero only
for such errors, never because of a speed number (machines are noisy). The targets
of the performance issue are printed beside the ratios.

Workloads: (1) a 3-stage chain of async Separate processors, trivial jobs; (2) the
same with Synchronous processors on a shared 4-thread pool; (3) a chain of 1,000
processors, and a fan-out tree of 1,000 leaves; (4) a 2-node cycle counting each
descriptor down from 10; (5) a Sequential processor with ``max_batch_size=1000``;
(6) workload 1 at 20k, 200k and 1M jobs; (7) peak memory of workload 1 at 100k and
1M jobs when only the last processor's handles are kept (one child process per
size); (12) a checkpointed run watched by ``status`` and the dashboard against the
same run unwatched; (13) workload 1 with a shared Resource that never runs short;
(14) the first handle of a new process-pool processor against a bare pool's first
result, in a program that imports scikit-learn.
On Python 3, pypeln and aiostream (the optional extra ``bench``) run workload 1 too when they are installed.
"""
from __future__ import absolute_import, division, print_function

import argparse
import collections
import gc
import json
import os
import platform
import subprocess
import sys
import traceback

try:
    from time import perf_counter as clock
except ImportError:  # Python 2.7
    from time import time as clock
try:
    from time import process_time as cpu_clock
except ImportError:  # Python 2.7: user + system time of the process, all threads
    def cpu_clock():
        times = os.times()
        return times[0] + times[1]

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
try:
    import batch_processor  # noqa: F401 - installed, or on PYTHONPATH
except ImportError:  # run from a checkout
    sys.path.insert(1, os.path.dirname(HERE))

import baselines  # noqa: E402
import real  # noqa: E402
import workloads  # noqa: E402
from batch_processor import BatchProcessorsGraph, UnsafeThreadPoolExecutor  # noqa: E402
from batch_processor import iter_batch_processors_graph, run_batch_processors_graph  # noqa: E402
from batch_processor.compat import PY2  # noqa: E402
from six.moves import range as six_range  # noqa: E402
from workloads import CheckError  # noqa: E402

PYTHON = "%d.%d" % sys.version_info[:2]


# -- sizes ----------------------------------------------------------------------------

class Sizes(object):
    """How big each workload is, and how many repeats (the best one counts)."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.chain_n, self.chain_repeats = 5000, 3
            self.sync_n, self.sync_repeats = 1000, 2
            self.long_chain, self.long_chain_n = 100, 500
            self.tree_fanout, self.tree_depth, self.tree_n = 10, 2, 1000
            self.cycle_n, self.cycle_repeats = 1000, 2
            self.seq_n, self.seq_repeats = 50000, 2
            self.scale = (2000, 10000, 40000)
            self.memory = (10000, 50000)
            self.stream_memory = (10000, 50000)
            self.peer_n = 2000
            self.process_n, self.process_repeats, self.batching_n = 200, 1, 500
        else:
            self.chain_n, self.chain_repeats = 50000, 5
            self.sync_n, self.sync_repeats = 50000, 3
            self.long_chain, self.long_chain_n = 1000, 10000
            self.tree_fanout, self.tree_depth, self.tree_n = 10, 3, 10000
            self.cycle_n, self.cycle_repeats = 10000, 3
            self.seq_n, self.seq_repeats = 1000000, 2
            self.scale = (20000, 200000, 1000000)
            self.memory = (100000, 1000000)
            self.stream_memory = (100000, 10000000)
            self.peer_n = 50000
            self.process_n, self.process_repeats, self.batching_n = 2000, 2, 3000

    def scale_repeats(self, n):
        if self.quick:
            return 2 if n < self.scale[-1] else 1
        return 3 if n <= 20000 else 2 if n <= 200000 else 1


# -- rows -----------------------------------------------------------------------------

class Target(object):
    """``ratio <= limit`` (or ``< limit`` when ``strict``)."""

    def __init__(self, limit, strict=False):
        self.limit = limit
        self.strict = strict

    def met(self, ratio):
        return ratio < self.limit if self.strict else ratio <= self.limit

    def __str__(self):
        return "%s %s" % ("<" if self.strict else "<=", self.limit)


class Suite(object):
    """Collects rows and errors and prints them as they come."""

    def __init__(self, sizes):
        self.sizes = sizes
        self.rows = []
        self.errors = []
        self.notes = []

    def row(self, workload, impl, n, seconds=None, job_stages=1, ref=None, ratio=None,
            target=None, unit="us", value=None, note=""):
        """Record and print one row.

        Args:
            seconds: the best time of a run over ``n`` descriptors (a speed row); or
            value: a figure in ``unit`` (a memory row).
            ref: the name of what ``ratio`` compares with.
        """
        row = {"workload": workload, "impl": impl, "python": PYTHON, "n": n, "note": note}
        if seconds is not None:
            if getattr(seconds, "cpu", None) is not None:
                row["cpu_seconds"] = seconds.cpu
            row.update(seconds=seconds, us_per_job=seconds * 1e6 / n,
                       us_per_job_stage=seconds * 1e6 / (n * job_stages), job_stages=job_stages)
        if value is not None:
            row.update(value=value, unit=unit)
        if ratio is not None:
            row.update(ref=ref, ratio=ratio)
            if target is not None:
                row.update(target=str(target), met=target.met(ratio))
        self.rows.append(row)
        print(format_row(row))
        sys.stdout.flush()
        return row

    def error(self, workload, exc):
        text = "".join(traceback.format_exception(type(exc), exc, sys.exc_info()[2]))
        self.errors.append({"workload": workload, "error": "%s: %s" % (type(exc).__name__, exc),
                            "traceback": text})
        print("!! workload %s FAILED: %s: %s" % (workload, type(exc).__name__, exc))
        print(text)
        sys.stdout.flush()

    def note(self, text):
        self.notes.append(text)
        print("   note: %s" % text)
        sys.stdout.flush()


HEADER = "%-32s %-26s %-6s %8s %10s %10s  %-22s %7s %-7s %s" % (
    "workload", "implementation", "python", "N", "us/job", "us/job*stg", "compared with",
    "ratio", "target", "")


def format_row(row):
    if "seconds" in row:
        speed = "%10.2f %10.3f" % (row["us_per_job"], row["us_per_job_stage"])
    elif "value" in row:
        speed = "%21s" % ("%.1f %s" % (row["value"], row["unit"]))
    else:
        speed = " " * 21
    ratio = "%7.2f" % row["ratio"] if "ratio" in row else " " * 7
    status = ""
    if "met" in row:
        status = "met" if row["met"] else "MISSED"
    return "%-32s %-26s %-6s %8d %s  %-22s %s %-7s %s %s" % (
        row["workload"][:32], row["impl"][:26], row["python"], row["n"], speed,
        row.get("ref", "")[:22], ratio, row.get("target", ""), status, row["note"])


# -- timing ---------------------------------------------------------------------------

class Seconds(float):
    """Wall-clock seconds (``perf_counter``), with the process's CPU seconds of the same run."""

    cpu = None


def measure(alternatives, repeats):
    """Run the alternatives in turn, ``repeats`` rounds; return ``{name: best Seconds}``.

    Args:
        alternatives: ``(name, run)`` pairs, or ``(name, run, max_repeats)``; ``run()``
            does one timed run, checks it, and returns the seconds it took. The
            order is reversed every other round so that no alternative always
            runs first.
    """
    best = {}
    global _last_cpu
    for round_index in range(repeats):
        ordered = alternatives if round_index % 2 == 0 else list(reversed(alternatives))
        for alternative in ordered:
            name, run = alternative[0], alternative[1]
            if len(alternative) > 2 and round_index >= alternative[2]:
                continue
            gc.collect()
            _last_cpu = None
            seconds = Seconds(run())
            seconds.cpu = _last_cpu
            if name not in best or seconds < best[name]:
                best[name] = seconds
    return best


_last_cpu = None  # the CPU seconds of the latest `timed` call


def timed(function, *args):
    """``(seconds, result)`` of ``function(*args)``: wall-clock seconds by ``perf_counter``."""
    global _last_cpu
    cpu_start = cpu_clock()
    start = clock()
    result = function(*args)
    elapsed = clock() - start
    _last_cpu = cpu_clock() - cpu_start
    return elapsed, result


# -- the alternatives of the 3-stage chain -----------------------------------------------

def library_chain(processor_class, n, stages=3, keep_last_only=False, first_result=None,
                  loop_factory=None):
    """A timed run of the library on a chain of ``stages`` processors (checked)."""
    descriptors = list(range(n))

    def run():
        processors = [processor_class() for _ in range(stages)]
        seconds, results = timed(workloads.run_chain, processors, descriptors, keep_last_only,
                                 loop_factory)
        kept = processors if not keep_last_only else processors[-1:]
        for index, processor in enumerate(processors):
            if processor in kept:
                workloads.check_handles(results[processor], index + 1, n,
                                        "library, processor %d of %d" % (index + 1, stages))
            elif results[processor]:
                raise CheckError("keep_results=[last] kept handles of processor %d" % (index + 1))
        return seconds
    return run


def streamed_chain(processor_class, n, stages=3, max_in_flight=None):
    """A timed run of the chain as a user consumes `iter_batch_processors_graph` (checked):
    ``for processor, handle in ...`` over every handle of every stage, reading each result.

    ``max_in_flight``: the descriptors are a generator, read lazily (bounded input).
    """
    return _counted_chain(_consume_stream, "the stream yielded", processor_class, n, stages,
                          max_in_flight)


def _counted_chain(consume, what, processor_class, n, stages, max_in_flight):
    def run():
        processors = [processor_class() for _ in range(stages)]
        seconds, counts = timed(consume, processors, n, max_in_flight)
        if [counts[processor] for processor in processors] != [n] * stages:
            raise CheckError("%s %r handles per processor, expected %d each"
                             % (what, [counts[p] for p in processors], n))
        return seconds
    return run


def _consume_stream(processors, n, max_in_flight):
    descriptors = list(range(n)) if max_in_flight is None else iter(six_range(n))
    graph = workloads.chain_graph(processors)
    counts = collections.Counter()
    for processor, handle in iter_batch_processors_graph(graph, {processors[0]: descriptors},
                                                         max_in_flight=max_in_flight):
        counts[processor] += 1
        handle.future.result()
    return counts


def consumed_chain(n, max_in_flight=None):
    """What `streamed_chain` is compared with: `run_batch_processors_graph` on the same
    chain, every handle kept, and the result read as a user reads it (``for processor,
    handles in results.items(): for handle in handles: ...``), the same reading as the
    stream's. ``max_in_flight``: the descriptors are a generator, read lazily."""
    return _counted_chain(_consume_result, "the run kept", workloads.Increment, n, 3,
                          max_in_flight)


def _consume_result(processors, n, max_in_flight):
    descriptors = list(range(n)) if max_in_flight is None else iter(six_range(n))
    graph = workloads.chain_graph(processors)
    results = run_batch_processors_graph(graph, {processors[0]: descriptors},
                                         max_in_flight=max_in_flight)
    counts = collections.Counter()
    for processor, handles in results.items():
        for handle in handles:
            counts[processor] += 1
            handle.future.result()
    return counts


def capped_chain(n, max_in_flight):
    """A timed run of the chain over a generator, read with ``max_in_flight`` (checked)."""
    def run():
        processors = [workloads.Increment() for _ in range(3)]
        graph = workloads.chain_graph(processors)
        seconds, results = timed(run_batch_processors_graph, graph,
                                 {processors[0]: iter(six_range(n))},
                                 None, [processors[-1]], False, None, max_in_flight)
        workloads.check_handles(results[processors[-1]], 3, n, "max_in_flight, last processor")
        return seconds
    return run


def baseline_tasks(job, n, stages=3):
    descriptors = list(range(n))

    def run():
        jobs = [job] * stages
        seconds, results = timed(baselines.run_on_new_loop,
                                 lambda loop: baselines.chain_tasks(loop, jobs, descriptors))
        workloads.check_values(results, stages, n, "baseline (a)")
        return seconds
    return run


def baseline_futures(n, stages=3):
    descriptors = list(range(n))

    def run():
        functions = [workloads.increment] * stages
        seconds, results = timed(baselines.run_on_new_loop,
                                 lambda loop: baselines.chain_futures(loop, functions, descriptors))
        workloads.check_values(results, stages, n, "baseline (b)")
        return seconds
    return run


# -- workloads ---------------------------------------------------------------------------

def workload_1(suite):
    """3-stage chain of async Separate processors vs baselines (a) and (b); peers on Python 3."""
    sizes = suite.sizes
    n = sizes.chain_n
    job = workloads.Increment()._run_one_job  # the library's job, called directly
    best = measure([
        ("library", library_chain(workloads.Increment, n)),
        ("a", baseline_tasks(job, n)),
        ("b", baseline_futures(n)),
    ], sizes.chain_repeats)
    name = "1 chain of 3 Separate"
    suite.row(name, "baseline (a) tasks", n, best["a"], 3)
    suite.row(name, "baseline (b) call_soon", n, best["b"], 3)
    suite.row(name, "library", n, best["library"], 3, "(a) tasks", best["library"] / best["a"],
              Target(1.5))
    suite.row(name, "library", n, best["library"], 3, "(b) call_soon floor",
              best["library"] / best["b"])
    # Both sides read every handle of every stage as a user would; only the stream
    # also frees each handle as it goes (the run's are freed after the timing).
    # The comparison too: the run's result is not read at all.
    best = measure([
        ("run", consumed_chain(n)),
        ("run unread", library_chain(workloads.Increment, n)),
        ("iter", streamed_chain(workloads.Increment, n)),
        ("run capped", consumed_chain(n, 1000)),
        ("iter capped", streamed_chain(workloads.Increment, n, max_in_flight=1000)),
    ], sizes.chain_repeats)
    suite.row(name, "library, iter_...graph", n, best["iter"], 3, "run_..., result read",
              best["iter"] / best["run"], Target(1.1))
    suite.row(name, "library, iter_...graph", n, best["iter"], 3, "run_..., result unread",
              best["iter"] / best["run unread"], Target(1.1))
    suite.row("1 chain of 3, max_in_flight=1000", "library, iter_...graph", n,
              best["iter capped"], 3, "run_..., result read",
              best["iter capped"] / best["run capped"], Target(1.1))
    if PY2:
        return
    import _py3
    best = measure([
        ("library", library_chain(_py3.NativeIncrement, n)),
        ("a", baseline_tasks(_py3.native_increment, n)),
    ], sizes.chain_repeats)
    name = "1 chain of 3, async def jobs"
    suite.row(name, "baseline (a) tasks", n, best["a"], 3)
    suite.row(name, "library", n, best["library"], 3, "(a) tasks", best["library"] / best["a"],
              Target(1.5))
    on_uvloop(suite, _py3, n)
    peers(suite, _py3)


def on_uvloop(suite, _py3, n):
    """Workload 1 (``async def`` jobs) on uvloop through ``loop_factory``, when installed."""
    try:
        import uvloop
    except ImportError as exc:
        suite.note("skipped uvloop: %s; `pip install \".[uvloop]\"` to compare" % (exc,))
        return
    best = measure([
        ("asyncio", library_chain(_py3.NativeIncrement, n)),
        ("uvloop", library_chain(_py3.NativeIncrement, n, loop_factory=uvloop.new_event_loop)),
    ], suite.sizes.chain_repeats)
    name = "1 chain of 3, on uvloop"
    suite.row(name, "library, asyncio loop", n, best["asyncio"], 3)
    suite.row(name, "library, uvloop", n, best["uvloop"], 3, "asyncio loop",
              best["uvloop"] / best["asyncio"])


def peers(suite, _py3):
    """pypeln and aiostream on workload 1 (``async def`` jobs), when installed."""
    n = suite.sizes.peer_n
    name = "1 peers, async def jobs"
    available = []
    for peer, run_peer in (("pypeln", _py3.run_pypeln), ("aiostream", _py3.run_aiostream)):
        missing = _py3.peer_missing(peer)
        if missing:
            suite.note("skipped %s: %s" % (peer, missing))
        else:
            available.append((peer, run_peer))
    if not available:
        return
    descriptors = list(range(n))

    def peer_run(peer, run_peer):
        def run():
            seconds, results = timed(run_peer, descriptors)
            workloads.check_values(results, 3, n, peer)
            return seconds
        return run
    alternatives = [("library", library_chain(_py3.NativeIncrement, n))]
    alternatives.extend((peer, peer_run(peer, run_peer)) for peer, run_peer in available)
    best = measure(alternatives, 2)
    for peer, _ in available:
        suite.row(name, peer, n, best[peer], 3)
    for peer, _ in available:
        suite.row(name, "library", n, best["library"], 3, peer, best["library"] / best[peer],
                  Target(1.0, strict=True))


def workload_2(suite):
    """3-stage chain of Synchronous processors on a shared 4-thread pool vs baseline (c)."""
    from concurrent.futures import ThreadPoolExecutor
    sizes = suite.sizes
    n = sizes.sync_n
    descriptors = list(range(n))
    for pool_name, make_pool, repeats in (
            ("ThreadPoolExecutor(4)", ThreadPoolExecutor, sizes.sync_repeats),
            ("UnsafeThreadPoolExecutor(4)", UnsafeThreadPoolExecutor, max(2, sizes.sync_repeats - 1))):
        pool = make_pool(4)
        try:
            def library(pool=pool):
                processors = [workloads.IncrementInExecutor(pool) for _ in range(3)]
                seconds, results = timed(workloads.run_chain, processors, descriptors)
                for index, processor in enumerate(processors):
                    workloads.check_handles(results[processor], index + 1, n,
                                            "library, processor %d" % (index + 1))
                return seconds

            def baseline(pool=pool):
                functions = [workloads.increment] * 3
                seconds, results = timed(baselines.run_on_new_loop, lambda loop: baselines.chain_executor(
                    loop, pool, functions, descriptors))
                workloads.check_values(results, 3, n, "baseline (c)")
                return seconds
            measure([("library", library), ("c", baseline)], 1)  # warm the pool's threads up
            best = measure([("library", library), ("c", baseline)], repeats)
        finally:
            pool.shutdown(wait=True)
        name = "2 chain of 3 Sync, 4 threads"
        suite.row(name, "baseline (c) run_in_exec", n, best["c"], 3, note=pool_name)
        suite.row(name, "library", n, best["library"], 3, "(c) run_in_executor",
                  best["library"] / best["c"], Target(1.2), note=pool_name)


def workload_3(suite):
    """A chain of 1,000 processors and a fan-out tree of 1,000 leaves, per job and stage."""
    sizes = suite.sizes
    n, length = sizes.long_chain_n, sizes.long_chain
    # The reference: the 3-stage chain with the same N and the same keep_results.
    reference = library_chain(workloads.Increment, n, 3, keep_last_only=True)
    long_chain = library_chain(workloads.Increment, n, length, keep_last_only=True)
    best = measure([("reference", reference), ("chain", long_chain, 1)], 3)
    name = "3 chain of %d Separate" % length
    suite.row(name, "library, 3 stages", n, best["reference"], 3, note="keep_results=[last]")
    suite.row(name, "library, %d stages" % length, n, best["chain"], length, "3-stage, per job*stage",
              best["chain"] / length / (best["reference"] / 3), Target(1.3), note="keep_results=[last]")

    fanout, depth, tree_n = sizes.tree_fanout, sizes.tree_depth, sizes.tree_n
    leaves_count = fanout ** depth
    tree_descriptors = list(range(tree_n))

    def tree():
        graph, root, leaves = workloads.build_tree(fanout, depth)
        seconds, results = timed(workloads.run_tree, graph, root, leaves, tree_descriptors)
        handles = []
        for leaf in leaves:
            if len(results[leaf]) != tree_n // leaves_count:
                raise CheckError("tree: a leaf got %d jobs instead of %d"
                                 % (len(results[leaf]), tree_n // leaves_count))
            handles.extend(results[leaf])
        workloads.check_handles(handles, depth + 1, tree_n, "tree leaves")
        return seconds
    tree_reference = library_chain(workloads.Increment, tree_n, 3, keep_last_only=True)
    best = measure([("reference", tree_reference), ("tree", tree)], 3)
    stages = depth + 1
    name = "3 tree of %d leaves" % leaves_count
    suite.row(name, "library, 3-stage chain", tree_n, best["reference"], 3, note="keep_results=[last]")
    suite.row(name, "library, %d processors" % (sum(fanout ** k for k in range(stages))), tree_n,
              best["tree"], stages, "3-stage, per job*stage", best["tree"] / stages / (best["reference"] / 3),
              Target(1.3), note="%d levels, %d jobs per leaf" % (stages, tree_n // leaves_count))


def workload_4(suite):
    """A 2-node cycle counting each descriptor down from 10, vs baseline (a)."""
    sizes = suite.sizes
    n = sizes.cycle_n
    descriptors = [(key, 10) for key in range(n)]
    job = workloads.Countdown()._run_one_job

    def check_ends(ends, what):
        keys = []
        for key, count in ends:
            if count != 0:
                raise CheckError("%s: a descriptor ended at %d, not 0" % (what, count))
            keys.append(key)
        workloads.check_values(keys, 0, n, what)

    def library():
        seconds, (results, a, b) = timed(workloads.run_cycle, descriptors)
        if len(results[a]) != 5 * n or len(results[b]) != 5 * n:
            raise CheckError("cycle: %d and %d jobs instead of %d each"
                             % (len(results[a]), len(results[b]), 5 * n))
        check_ends((h.future.result() for h in results[b] if h.future.result()[1] == 0), "cycle")
        return seconds

    def baseline():
        seconds, ends = timed(baselines.run_on_new_loop,
                              lambda loop: baselines.cycle_tasks(loop, job, job, descriptors))
        check_ends(ends, "baseline (a) cycle")
        return seconds
    best = measure([("library", library), ("a", baseline)], sizes.cycle_repeats)
    name = "4 cycle of 2, count down 10"
    suite.row(name, "baseline (a) tasks", n, best["a"], 10)
    suite.row(name, "library", n, best["library"], 10, "(a) tasks", best["library"] / best["a"])


def workload_5(suite):
    """A Sequential processor, ``max_batch_size=1000``, vs a hand-written loop over batches."""
    sizes = suite.sizes
    n, size = sizes.seq_n, 1000
    descriptors = list(range(n))
    batch_job = workloads.IncrementBatch()._run_batch

    def library():
        seconds, handles = timed(workloads.run_sequential, descriptors, size)
        workloads.check_handles(handles, 1, n, "sequential")
        return seconds

    def baseline():
        seconds, results = timed(baselines.run_on_new_loop, lambda loop: baselines.sequential_batches(
            loop, batch_job, descriptors, size))
        workloads.check_values(results, 1, n, "baseline batches")
        return seconds
    best = measure([("library", library), ("batches", baseline)], sizes.seq_repeats)
    name = "5 Sequential, batches of %d" % size
    suite.row(name, "baseline: loop of batches", n, best["batches"], 1)
    suite.row(name, "library", n, best["library"], 1, "loop of batches", best["library"] / best["batches"],
              note="a handle and a future per descriptor")


def workload_8(suite):
    """(8) and (9): CPU-bound jobs in an owned process pool; see ``real``."""
    sizes = suite.sizes
    n = sizes.process_n
    iterations = real.calibrate()
    payload = b"x" * (20 * 1024 * 1024)
    best = measure([
        ("pool", lambda: real.run_pool(n, iterations)),
        ("library", lambda: real.run_library(n, iterations)),
        ("library+20MB", lambda: real.run_library(n, iterations, payload)),
    ], sizes.process_repeats)
    name = "8 processes, 2 ms CPU jobs"
    suite.row(name, "ProcessPoolExecutor(2).map", n, best["pool"], 1)
    suite.row(name, "executor=\"processes\"", n, best["library"], 1, "pool.map chunksize=1",
              best["library"] / best["pool"], Target(1.1))
    suite.row("9 processes, 20 MB processor", "executor=\"processes\"", n, best["library+20MB"],
              1, "the same without 20 MB", best["library+20MB"] / best["library"], Target(1.1))


def workload_14(suite):
    """(14): the first handle of a new process-pool processor against a bare pool's first
    result, in a program of its own that imports scikit-learn (``first_handle.py``)."""
    repeats = 6 if suite.sizes.quick else 10
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
    output = subprocess.check_output(
        [sys.executable, os.path.join(HERE, "first_handle.py"), str(repeats), "--json"],
        env=env, universal_newlines=True)
    best = json.loads(output.strip().splitlines()[-1])
    name = "14 first handle, new pool"
    suite.row(name, "ProcessPoolExecutor(%d)" % best["workers"], 1, best["pool"], 1,
              note="%s job" % best["what"])
    suite.row(name, "executor=\"processes\"", 1, best["library"], 1, "bare pool, 1st result",
              best["library"] / best["pool"], Target(1.2),
              note="the program's first processor: %.2f s" % best["first"])


def workload_resources(suite):
    """(13): workload 1's chain whose processors use a Resource that never runs short."""
    import functools
    from batch_processor import Resource
    n = suite.sizes.chain_n
    licence = Resource("licence", capacity=3 * n)  # every job of the chain at once
    using = functools.partial(workloads.Increment, uses={licence: 1})
    best = measure([
        ("without", library_chain(workloads.Increment, n)),
        ("with", library_chain(using, n)),
    ], suite.sizes.chain_repeats)
    suite.row("13 chain of 3, uses={Resource: 1}", "library", n, best["with"], 3,
              "the same without uses", best["with"] / best["without"], Target(1.1))


def workload_10(suite):
    """(10): a Sequential processor with max_batch_wait fed one at a time; see ``real``."""
    n = suite.sizes.batching_n
    waited, mean = real.run_batching(n, max_batch_size=64, max_batch_wait=0.005)
    single, _ = real.run_batching(n, max_batch_size=1)
    name = "10 Sequential, max_batch_wait"
    suite.row(name, "max_batch_size=1", n, single, 1)
    suite.row(name, "64, wait 5 ms", n, waited, 1, "max_batch_size=1 (slow-", waited / single,
              Target(0.2), note="throughput ratio %.1fx (target >= 5)" % (single / waited))
    suite.row(name, "mean batch size", n, value=mean, unit="items", ratio=32.0 / mean,
              ref="32 / mean batch", target=Target(1.0))


def workload_6(suite):
    """Workload 1 at growing N: the cost per job must not grow."""
    sizes = suite.sizes
    job = workloads.Increment()._run_one_job
    per_job = {}
    name = "6 chain of 3, growing N"
    for n in sizes.scale:
        best = measure([("library", library_chain(workloads.Increment, n)),
                        ("a", baseline_tasks(job, n))], sizes.scale_repeats(n))
        per_job[n] = best["library"] / n
        suite.row(name, "baseline (a) tasks", n, best["a"], 3)
        suite.row(name, "library", n, best["library"], 3, "(a) tasks", best["library"] / best["a"])
    smallest = sizes.scale[0]
    for n in sizes.scale[1:]:
        suite.row(name, "library, per job", n, per_job[n] * n, 3, "per job at N=%d" % smallest,
                  per_job[n] / per_job[smallest], Target(1.2) if n == sizes.scale[-1] else None)


def workload_6_capped(suite):
    """Workload 6 over a generator read with ``max_in_flight=10000``: flat cost per job."""
    sizes = suite.sizes
    name = "6 chain of 3, max_in_flight=10k"
    smallest, largest = sizes.scale[0], sizes.scale[-1]
    per_job = {}
    for n in (smallest, largest):
        best = measure([("library", capped_chain(n, 10000))], sizes.scale_repeats(n))
        per_job[n] = best["library"] / n
        suite.row(name, "library, generator", n, best["library"], 3)
    suite.row(name, "library, per job", largest, per_job[largest] * largest, 3,
              "per job at N=%d" % smallest, per_job[largest] / per_job[smallest], Target(1.2))


def workload_7_stream(suite):
    """Peak memory of a generator through the chain, ``max_in_flight=1000``, streamed."""
    name = "7 peak memory, streamed"
    small, large = suite.sizes.stream_memory
    figures = {}
    for n in (small, large):
        figures[n] = child_memory("stream-capped", n)
        suite.row(name, "iter, max_in_flight=1000", n, unit="MB peak",
                  value=figures[n]["peak_kb"] / 1024.0,
                  note="%.1f us/job (3 stages)" % (figures[n]["seconds"] * 1e6 / n))
    suite.row(name, "iter, max_in_flight=1000", large, unit="MB peak",
              value=figures[large]["peak_kb"] / 1024.0, ref="peak at N=%d" % small,
              ratio=figures[large]["peak_kb"] / figures[small]["peak_kb"], target=Target(1.1))
    small_cost = figures[small]["seconds"] / small
    suite.row(name, "iter, per job", large, figures[large]["seconds"], 3,
              "per job at N=%d" % small, figures[large]["seconds"] / large / small_cost)


def workload_7(suite):
    """Peak memory of workload 1 with ``keep_results=[last]``, one child process per size."""
    sizes = suite.sizes
    name = "7 peak memory, chain of 3"
    kinds = (
        ("library-keep-last", "library, keep_results=[last]"),
        ("library-keep-none-capped", "library, keep none, cap 1000"),
        ("baseline-a", "baseline (a) tasks"),
    )
    small, large = sizes.memory
    for kind, label in kinds:
        figures = {}
        for n in (small, large):
            figures[n] = child_memory(kind, n)
            peak_mb = figures[n]["peak_kb"] / 1024.0
            per_job = (figures[n]["peak_kb"] - figures[n]["base_kb"]) * 1024.0 / n
            suite.row(name, label, n, unit="MB peak", value=peak_mb,
                      note="%.0f bytes/job above the %.0f MB interpreter"
                      % (per_job, figures[n]["base_kb"] / 1024.0))
        suite.row(name, label, large, unit="MB peak", value=figures[large]["peak_kb"] / 1024.0,
                  ref="peak at N=%d" % small, ratio=figures[large]["peak_kb"] / figures[small]["peak_kb"],
                  target=Target(2.0, strict=True) if kind == "library-keep-last" else None)


def child_memory(kind, n):
    """Run ``--memory-child kind n`` in a fresh interpreter; return its figures."""
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", kind, str(n)]
    output = subprocess.check_output(command)
    if not isinstance(output, str):
        output = output.decode("utf-8")
    return json.loads(output.strip().splitlines()[-1])


def max_rss_kb():
    """The peak resident set size of this process so far, in KiB.

    ``VmHWM`` of ``/proc/self/status`` where there is one (Linux): unlike
    ``ru_maxrss``, it does not inherit the peak of the parent that forked us.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        pass
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


def memory_child(kind, n):
    """The body of a memory child process: run workload 1 once at size ``n`` and report."""
    base = max_rss_kb()
    if kind == "stream-capped":  # a generator, never a list: memory bounded by the cap
        processors = [workloads.Increment() for _ in range(3)]
        graph = workloads.chain_graph(processors)
        start = clock()
        count = 0
        for _, handle in iter_batch_processors_graph(
                graph, {processors[0]: iter(six_range(n))}, keep_results=processors[-1:],
                max_in_flight=1000):
            handle.future.result()
            count += 1
        seconds = clock() - start
        if count != n:
            raise CheckError("the stream yielded %d handles, expected %d" % (count, n))
        print(json.dumps({"kind": kind, "n": n, "base_kb": base, "peak_kb": max_rss_kb(),
                          "seconds": seconds}))
        return
    descriptors = list(range(n))
    if kind == "library-keep-last":
        processors = [workloads.Increment() for _ in range(3)]
        results = workloads.run_chain(processors, descriptors, keep_last_only=True)
        workloads.check_handles(results[processors[-1]], 3, n, "memory, last processor")
    elif kind == "library-keep-none-capped":
        processors = [workloads.Increment(max_parallel_jobs=1000) for _ in range(3)]
        graph = BatchProcessorsGraph()
        for source, destination in zip(processors, processors[1:]):
            graph.add_connected_processors(source, destination, workloads.results_of)
        seen = []

        def record(*handles):  # sees every final handle, passes nothing on
            seen.extend(handle.future.result() for handle in handles)
            return []
        graph.add_connected_processors(processors[-1], workloads.Increment(), record)
        results = run_batch_processors_graph(graph, {processors[0]: descriptors}, keep_results=[])
        if any(results.values()):
            raise CheckError("keep_results=[] kept handles")
        workloads.check_values(seen, 3, n, "memory, keep none")
    elif kind == "baseline-a":
        job = workloads.Increment()._run_one_job
        results = baselines.run_on_new_loop(
            lambda loop: baselines.chain_tasks(loop, [job] * 3, descriptors))
        workloads.check_values(results, 3, n, "memory, baseline (a)")
    else:
        raise ValueError("unknown memory benchmark %r" % (kind,))
    print(json.dumps({"kind": kind, "n": n, "base_kb": base, "peak_kb": max_rss_kb()}))


def workload_checkpoint(suite):
    """Workload 2 with ``checkpoint=`` (default interval) against the same run without it."""
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    n = suite.sizes.sync_n
    descriptors = list(range(n))
    folder = tempfile.mkdtemp(prefix="bp-bench-")
    pool = ThreadPoolExecutor(4)
    runs = [0]
    try:
        def chain(checkpoint):
            processors = [workloads.IncrementInExecutor(pool) for _ in range(3)]
            graph = BatchProcessorsGraph()
            for source, destination in zip(processors, processors[1:]):
                graph.add_connected_processors(source, destination, workloads.results_of)
            seconds, results = timed(lambda: run_batch_processors_graph(
                graph, {processors[0]: descriptors}, checkpoint=checkpoint))
            for index, processor in enumerate(processors):
                workloads.check_handles(results[processor], index + 1, n,
                                        "checkpointed, processor %d" % (index + 1))
            return seconds

        def plain():
            return chain(None)

        def recorded():
            runs[0] += 1
            return chain(os.path.join(folder, "run%d.sqlite" % runs[0]))

        measure([("plain", plain), ("recorded", recorded)], 1)  # warm the pool's threads up
        best = measure([("plain", plain), ("recorded", recorded)], suite.sizes.sync_repeats)
        resumed = measure([("resume", lambda: chain(os.path.join(folder, "run1.sqlite")))], 1)
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(folder, ignore_errors=True)
    name = "11 W2 with checkpoint="
    suite.row(name, "library, no checkpoint", n, best["plain"], 3)
    suite.row(name, "library, checkpoint", n, best["recorded"], 3, "no checkpoint",
              best["recorded"] / best["plain"], Target(1.3))
    suite.row(name, "resume a finished one", n, unit="s", value=float(resumed["resume"]),
              target=Target(2.0), ratio=float(resumed["resume"]), ref="seconds")


def workload_watched(suite):
    """(12) A checkpointed run watched from another process against the same run unwatched.

    Jobs of 1 ms (sleeping, as I/O or a GPU would) in a 4-thread pool, 3 stages,
    ``checkpoint_interval=0.1``; the watcher (``watching.py``) reads the checkpoint
    every 0.1 s as ``status`` does and, on Python 3, fetches the dashboard's page every
    0.5 s. Watching must cost the run nothing: a reader never blocks the writer.
    """
    import shutil
    import subprocess
    import tempfile
    import time
    from concurrent.futures import ThreadPoolExecutor

    class Napping(workloads.IncrementInExecutor):
        def _run_one_job_synchronous(self, job_descriptor):
            time.sleep(0.001)
            return job_descriptor + 1

    n = 2000 if suite.sizes.quick else 10000
    repeats = 2 if suite.sizes.quick else 3
    descriptors = list(range(n))
    folder = tempfile.mkdtemp(prefix="bp-bench-")
    pool = ThreadPoolExecutor(4)
    runs = [0]
    reads = []
    try:
        def chain():
            runs[0] += 1
            path = os.path.join(folder, "run%d.sqlite" % runs[0])
            processors = [Napping(pool) for _ in range(3)]
            graph = BatchProcessorsGraph()
            for source, destination in zip(processors, processors[1:]):
                graph.add_connected_processors(source, destination, workloads.results_of)
            return path, processors, graph

        def run(path, processors, graph):
            seconds, results = timed(lambda: run_batch_processors_graph(
                graph, {processors[0]: descriptors}, checkpoint=path, checkpoint_interval=0.1))
            workloads.check_handles(results[processors[-1]], 3, n, "watched run")
            return seconds

        def unwatched():
            return run(*chain())

        def watched():
            path, processors, graph = chain()
            watcher = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "watching.py"), path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
            try:
                if watcher.stdout.readline().strip() != "ready":
                    raise CheckError("the watcher did not start")
                return run(path, processors, graph)
            finally:
                out, _ = watcher.communicate("")
                reads.append(out.strip())

        best = measure([("unwatched", unwatched), ("watched", watched)], repeats)
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(folder, ignore_errors=True)
    name = "12 W11 watched from outside"
    suite.row(name, "checkpoint, unwatched", n, best["unwatched"], 3)
    suite.row(name, "status 0.1 s + dashboard", n, best["watched"], 3, "unwatched",
              best["watched"] / best["unwatched"], Target(1.05),
              note="watcher: %s" % (reads[-1] if reads else "?"))


WORKLOADS = [
    ("1", workload_1),
    ("2", workload_2),
    ("3", workload_3),
    ("4", workload_4),
    ("5", workload_5),
    ("6", workload_6),
    ("6", workload_6_capped),
    ("7", workload_7),
    ("7", workload_7_stream),
    ("8", workload_8),
    ("10", workload_10),
    ("11", workload_checkpoint),
    ("12", workload_watched),
    ("13", workload_resources),
    ("14", workload_14),
]


# -- profiling ---------------------------------------------------------------------------

def profile(n, top, gc_off=False):
    """cProfile of workloads 1 and 2, library against its baseline; print where time goes.

    The cyclic garbage collector's time is charged to whatever allocated when it
    ran (``create_task``, ``Task.__init__``...): ``gc_off`` takes it out of the picture.
    """
    import cProfile
    import pstats
    from concurrent.futures import ThreadPoolExecutor
    job = workloads.Increment()._run_one_job
    pool = ThreadPoolExecutor(4)
    cases = [
        ("workload 1, library", library_chain(workloads.Increment, n)),
        ("workload 1, baseline (a)", baseline_tasks(job, n)),
    ]

    def sync_library():
        processors = [workloads.IncrementInExecutor(pool) for _ in range(3)]
        seconds, results = timed(workloads.run_chain, processors, list(range(n)))
        workloads.check_handles(results[processors[-1]], 3, n, "library")
        return seconds

    def sync_baseline():
        seconds, results = timed(baselines.run_on_new_loop, lambda loop: baselines.chain_executor(
            loop, pool, [workloads.increment] * 3, list(range(n))))
        workloads.check_values(results, 3, n, "baseline (c)")
        return seconds
    cases.extend([("workload 2, library", sync_library), ("workload 2, baseline (c)", sync_baseline)])
    try:
        for title, run in cases:
            run()  # warm up
            gc.collect()
            if gc_off:
                gc.disable()
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                run()
            finally:
                profiler.disable()
                gc.enable()
            stats = pstats.Stats(profiler)
            total = stats.total_tt
            print("\n=== %s, N=%d, Python %s%s: %.2f us per job under the profiler ==="
                  % (title, n, PYTHON, ", gc off" if gc_off else "", total * 1e6 / n))
            print("%8s %6s %9s %9s  %s" % ("calls/j", "tot%", "tot us/j", "cum us/j", "function"))
            entries = sorted(stats.stats.items(), key=lambda item: -item[1][2])
            for (filename, line, function), (_, nc, tt, ct, _callers) in entries[:top]:
                print("%8.2f %5.1f%% %9.3f %9.3f  %s:%d(%s)" % (
                    nc / n, 100.0 * tt / total, tt * 1e6 / n, ct * 1e6 / n,
                    _short(filename), line, function))
    finally:
        pool.shutdown(wait=True)


def _short(filename):
    for marker in ("batch_processor", "trollius", "asyncio", "concurrent", "benchmarks"):
        index = filename.rfind(os.sep + marker + os.sep)
        if index >= 0:
            return filename[index + 1:]
    return os.path.basename(filename)


# -- main --------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 1 min)")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    parser.add_argument("--only", metavar="LIST", help="comma-separated workloads to run (1-8, 10-14)")
    parser.add_argument("--profile", action="store_true",
                        help="profile workloads 1 and 2 with cProfile instead of timing them")
    parser.add_argument("--profile-n", type=int, default=20000, help="N for --profile")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--gc-off", action="store_true",
                        help="--profile with the cyclic garbage collector off")
    parser.add_argument("--memory-child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return 0
    if args.profile:
        profile(args.profile_n, args.top, args.gc_off)
        return 0

    sizes = Sizes(args.quick)
    suite = Suite(sizes)
    only = set(args.only.split(",")) if args.only else None
    print("batch_processor benchmarks: %s %s on %s, %s run" % (
        platform.python_implementation(), platform.python_version(), platform.platform(),
        "quick" if args.quick else "full"))
    print(HEADER)
    start = clock()
    for key, workload in WORKLOADS:
        if only is not None and key not in only:
            continue
        try:
            workload(suite)
        except Exception as exc:  # a failed check, or a crash: report it and go on
            suite.error(key, exc)
    elapsed = clock() - start
    missed = [row for row in suite.rows if row.get("met") is False]
    busy = sorted(row["seconds"] / row["cpu_seconds"] for row in suite.rows
                  if row.get("cpu_seconds") and row["seconds"] > 0.05)
    if busy and busy[len(busy) // 2] > 1.2:
        suite.note("wall-clock time was %.1fx the CPU time of the benchmark (median): the machine "
                   "was busy, so every figure is noisy; run again on a quiet machine"
                   % busy[len(busy) // 2])
    print("\n%d rows in %.1f s; %d targets missed (never an error: machines are noisy); %d errors"
          % (len(suite.rows), elapsed, len(missed), len(suite.errors)))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "quick": args.quick,
                "seconds": elapsed,
                "rows": suite.rows,
                "notes": suite.notes,
                "errors": suite.errors,
            }, stream, indent=1, sort_keys=True)
    return 1 if suite.errors else 0


if __name__ == "__main__":
    sys.exit(main())
