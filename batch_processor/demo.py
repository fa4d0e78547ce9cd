"""``python -m batch_processor.demo``: a small AutoML search on Iris, as a cycle of processors.

Three processors, wired with the public API only::

          ProposalRequest               Trial
     +-------------------> Proposer ------------> Trainer  (process pool)
     |                    (Sequential)           (Separate)
     |                                               |
     |                                               | TrialResult
     +------------------- Leaderboard <--------------+
                          (Sequential)

* `Proposer` turns a `ProposalRequest` into a *generation* of trials: random
  configurations at first, then mostly mutations of the best so far;
* `Trainer` scores each trial (5-fold cross-validated accuracy of a pure-Python
  k-nearest-neighbours or softmax-regression model) in a shared process pool;
* `Leaderboard` records the scores and, when a generation is complete and the budget
  is not spent, asks the proposer for the next one: that edge closes the cycle. The
  run ends by itself when nothing more is asked for.

A generation is proposed only from complete results, so a seed gives the same search
whatever order the trainings finish in, with any number of workers, on every
interpreter. The machine learning itself lives in ``batch_processor._demo_model``.

Usage: ``python -m batch_processor.demo [--budget 60] [--workers 2] [--seed 0] [--top 10]``.
"""
from __future__ import absolute_import, division, print_function

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import attr

from batch_processor import (
    BatchProcessorsGraph,
    SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous,
    run_batch_processors_graph,
)
from batch_processor import _demo_model as model
from batch_processor.dask import DaskExecutorMixin, local_client

__all__ = ["Leaderboard", "Proposer", "Search", "SearchOutcome", "Trainer", "main"]

GENERATION_SIZE = 10  #: trials per generation (the last one may be smaller)
ELITE_SIZE = 5  #: how many of the best configurations the proposer mutates


# -- the processors ---------------------------------------------------------------------


class Proposer(SequentialBatchProcessorSynchronous):
    """Sequential: each `ProposalRequest` gives one list of new `Trial` descriptors."""

    def _run_batch_synchronous(self, requests):
        return [model.propose(request) for request in requests]


def _new_process_pool(workers):
    """A process pool whose workers are not forked from a process that runs threads.

    The loop's executors run threads by the time the first training starts, and
    forking a multi-threaded process can deadlock (Python 3.12+ warns about it), so
    the pool starts its workers from a fork server where there is one. Python 2.7
    and 3.6 only fork.
    """
    try:
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(workers, mp_context=context)
    except (AttributeError, ValueError, TypeError):  # 2.7 or 3.6 (no mp_context); Windows
        return _forked_now(ProcessPoolExecutor(workers))


def _forked_now(pool):
    """``pool``, its worker processes forked at once (they fork all on the first job)."""
    pool.submit(int).result()
    return pool


class Trainer(SeparateBatchProcessorSynchronous):
    """Separate: scores one `Trial` per job, in a process pool of ``workers`` processes.

    The pool is made on the first job and shared by all of them; `close` shuts it
    down. It is not part of the pickled processor that the pool's workers receive.
    """

    _pool = None

    def __init__(self, workers=2):
        super(Trainer, self).__init__(max_parallel_jobs=workers)
        self.workers = workers
        if not hasattr(multiprocessing, "get_context") or sys.version_info < (3, 7):
            # Only fork is there: fork the workers now, before the run starts threads.
            self._pool = _new_process_pool(workers)

    @property
    def _executor(self):
        if self._pool is None:
            self._pool = _new_process_pool(self.workers)
        return self._pool

    def _run_one_job_synchronous(self, trial):
        return model.evaluate(trial.config)

    def close(self):
        """Shut the process pool down, waiting for its workers to exit."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __getstate__(self):
        state = super(Trainer, self).__getstate__()
        state.pop("_pool", None)
        return state


class Leaderboard(SequentialBatchProcessorSynchronous):
    """Sequential: records `TrialResult` descriptors and asks for more until ``budget`` is spent.

    A batch returns, per result, the `ProposalRequest` of the next generation if that
    result completed its generation and budget remains, else ``None``.
    """

    def __init__(self, budget, seed, generation_size=GENERATION_SIZE, elite_size=ELITE_SIZE):
        super(Leaderboard, self).__init__()
        self.budget = budget
        self.seed = seed
        self.generation_size = generation_size
        self.elite_size = elite_size
        self.results = []  # TrialResult, in the order they arrived
        self.seen = set()  # every configuration evaluated (or failed)
        self.counts = {}  # generation -> results received

    def first_request(self):
        """The `ProposalRequest` that starts the search."""
        return model.ProposalRequest(self.seed, 0, 0, min(self.generation_size, self.budget))

    def ranking(self):
        """The successful results, best first (ties: the earlier trial first)."""
        scored = [r for r in self.results if r.evaluation is not None]
        return sorted(scored, key=lambda r: (-r.evaluation.score, r.trial.trial_id))

    def failures(self):
        """The results of trials whose training failed, in trial order."""
        return sorted((r for r in self.results if r.error is not None),
                      key=lambda r: r.trial.trial_id)

    def _run_batch_synchronous(self, results):
        return [self._record(result) for result in results]

    def _record(self, result):
        trial = result.trial
        self.results.append(result)
        self.seen.add(trial.config)
        self.counts[trial.generation] = self.counts.get(trial.generation, 0) + 1
        remaining = self.budget - len(self.results)
        if self.counts[trial.generation] < trial.generation_size or remaining <= 0:
            return None
        elite = tuple((r.evaluation.score, r.trial.config)
                      for r in self.ranking()[:self.elite_size])
        return model.ProposalRequest(
            self.seed, trial.generation + 1, first_trial_id=len(self.results),
            size=min(self.generation_size, remaining), elite=elite, seen=frozenset(self.seen))


# -- the graph --------------------------------------------------------------------------


def _failure(handle):
    """``None`` if the handle's job succeeded, else a one-line description of why not."""
    future = handle.future
    if future.cancelled():
        return "cancelled"
    error = future.exception()
    if error is None:
        return None
    return "%s: %s" % (type(error).__name__, error)


@attr.s
class SearchOutcome(object):
    """What a run of the search gives: the ranked results and what went wrong."""

    budget = attr.ib()
    evaluated = attr.ib()  # training jobs that came back (succeeded or failed)
    ranking = attr.ib()  # successful TrialResults, best first
    failures = attr.ib()  # failed TrialResults
    problems = attr.ib()  # messages of proposer or leaderboard failures
    seconds = attr.ib()


class Search(object):
    """The demo's graph: `Proposer` -> `Trainer` -> `Leaderboard` -> `Proposer`.

    Args:
        budget: how many configurations to evaluate.
        workers: processes of the trainer's pool.
        seed: the seed of the proposals.
        trainer: a `Trainer` to use instead of ``Trainer(workers)``.
    """

    def __init__(self, budget=60, workers=2, seed=0, trainer=None):
        self.proposer = Proposer()
        self.trainer = trainer if trainer is not None else Trainer(workers)
        self.leaderboard = Leaderboard(budget, seed)
        self.problems = []
        graph = self.graph = BatchProcessorsGraph()
        graph.add_connected_processors(self.proposer, self.trainer, self.trials_to_train)
        graph.add_connected_processors(self.trainer, self.leaderboard, self.results_to_record)
        graph.add_connected_processors(self.leaderboard, self.proposer, self.requests_for_more)

    # Converters: each takes the handles of one get_ready() of its source.

    def trials_to_train(self, *handles):
        """Proposer -> Trainer: the proposed trials, one descriptor each."""
        trials = []
        for handle in handles:
            failure = _failure(handle)
            if failure is None:
                trials.extend(handle.future.result())
            else:
                self.problems.append("the proposer failed on %r: %s"
                                     % (handle.descriptor, failure))
        return trials

    def results_to_record(self, *handles):
        """Trainer -> Leaderboard: every trial's score, or the reason it has none."""
        results = []
        for handle in handles:
            failure = _failure(handle)
            if failure is None:
                results.append(model.TrialResult(handle.descriptor,
                                                 evaluation=handle.future.result()))
            else:
                results.append(model.TrialResult(handle.descriptor, error=failure))
        return results

    def requests_for_more(self, *handles):
        """Leaderboard -> Proposer: the request for the next generation, if any."""
        requests = []
        for handle in handles:
            failure = _failure(handle)
            if failure is None:
                if handle.future.result() is not None:
                    requests.append(handle.future.result())
            else:
                self.problems.append("the leaderboard failed on %r: %s"
                                     % (handle.descriptor, failure))
        return requests

    def run(self, progress=False):
        """Run the search to the end; return its `SearchOutcome`."""
        started = time.time()
        results = self.results = run_batch_processors_graph(
            self.graph, {self.proposer: [self.leaderboard.first_request()]}, progress=progress)
        return SearchOutcome(
            budget=self.leaderboard.budget, evaluated=len(results[self.trainer]),
            ranking=self.leaderboard.ranking(), failures=self.leaderboard.failures(),
            problems=list(self.problems), seconds=time.time() - started)

    def close(self):
        """Release the trainer's process pool."""
        close = getattr(self.trainer, "close", None)
        if close is not None:
            close()


# -- the command line --------------------------------------------------------------------


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not an integer >= 1" % (text,))
    return value


def parse_args(argv=None):
    """The demo's options (``argv``: the arguments, ``sys.argv[1:]`` by default)."""
    parser = argparse.ArgumentParser(
        prog="python -m batch_processor.demo",
        description="A small AutoML search on the Iris data set, run as a graph of batch "
                    "processors: propose configurations -> train and score them in a process "
                    "pool -> update the leaderboard -> propose more, until the budget is spent.")
    parser.add_argument("--budget", type=_positive_int, default=60,
                        help="configurations to evaluate (default: %(default)s)")
    parser.add_argument("--workers", type=_positive_int, default=2,
                        help="processes that train models (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the search; the same seed gives the same table "
                             "(default: %(default)s)")
    parser.add_argument("--top", type=_positive_int, default=10,
                        help="rows of the table of the best configurations (default: %(default)s)")
    parser.add_argument("--progress", action="store_true",
                        help="show a live progress bar per processor on stderr")
    parser.add_argument("--dot", metavar="PATH", default="batch_processor_demo.dot",
                        help="where to write the picture of the pipeline with its counts, in "
                             "Graphviz DOT; a PNG beside it when Graphviz is installed "
                             "(default: %(default)s; '' for none)")
    parser.add_argument("--dask", metavar="ADDRESS", nargs="?", const="local", default=None,
                        help="train on a Dask cluster: a new local one of --workers processes, "
                             "or the scheduler at ADDRESS (e.g. tcp://host:8786); needs the "
                             "[dask] extra")
    return parser.parse_args(argv)


class DaskTrainer(DaskExecutorMixin, Trainer):
    """The `Trainer`, its jobs run on a Dask cluster instead of a local process pool."""


def _dask_client(args):
    try:
        import distributed
    except ImportError:
        raise SystemExit("batch_processor.demo: --dask needs the distributed package: "
                         "pip install \".[dask]\" in a checkout of this project")
    if args.dask == "local":
        return local_client(n_workers=args.workers)
    return distributed.Client(args.dask)


def build_search(args, client=None):
    """The `Search` that ``args`` describe (its trainer on ``client``'s cluster if given)."""
    trainer = DaskTrainer(client, workers=args.workers) if client is not None else None
    return Search(budget=args.budget, workers=args.workers, seed=args.seed, trainer=trainer)


def write_picture(search, path, err=None):
    """Write the pipeline, with its counts, as DOT to ``path``, and as PNG if Graphviz is here."""
    err = err if err is not None else sys.stderr
    with open(path, "w") as out:
        out.write(search.graph.to_dot(getattr(search, "results", None)))
    written = [path]
    dot = _which("dot")
    if dot is not None:
        png = os.path.splitext(path)[0] + ".png"
        if subprocess.call([dot, "-Tpng", "-o", png, path]) == 0:
            written.append(png)
    print("batch_processor.demo: the pipeline's picture is in %s" % " and ".join(written), file=err)


def _which(program):
    try:
        from shutil import which
    except ImportError:  # Python 2
        from distutils.spawn import find_executable as which
    return which(program)


def print_report(outcome, top, out=None, err=None):
    """Print the ``top`` best configurations as a table to ``out``, problems to ``err``."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    shown = outcome.ranking[:top]
    print("Best %d of %d configurations (5-fold cross-validated accuracy on Iris):"
          % (len(shown), len(outcome.ranking)), file=out)
    print("", file=out)
    print("rank   score     std  trial  configuration", file=out)
    for rank, result in enumerate(shown, 1):
        print("%4d  %.4f  %.4f  %5d  %s" % (
            rank, result.evaluation.score, result.evaluation.std, result.trial.trial_id,
            result.trial.config.describe()), file=out)
    print("", file=out)
    print("Features: SL sepal length, SW sepal width, PL petal length, PW petal width.", file=out)
    print("Evaluated %d of %d configurations (%d failed)."
          % (outcome.evaluated, outcome.budget, len(outcome.failures)), file=out)
    for result in outcome.failures:
        print("batch_processor.demo: trial %d (%s) failed: %s"
              % (result.trial.trial_id, result.trial.config.describe(), result.error), file=err)
    for problem in outcome.problems:
        print("batch_processor.demo: %s" % (problem,), file=err)
    print("batch_processor.demo: the search took %.1f s" % (outcome.seconds,), file=err)


def main(argv=None):
    """Parse the options, build the graph, run it, print the table. Returns the exit status."""
    args = parse_args(argv)
    client = _dask_client(args) if args.dask else None
    try:
        search = build_search(args, client)
        try:
            outcome = search.run(progress=args.progress)
        finally:
            search.close()
    finally:
        if client is not None:
            cluster = client.cluster if args.dask == "local" else None
            client.close()
            if cluster is not None:
                cluster.close()
    print_report(outcome, args.top)
    if args.dot:
        write_picture(search, args.dot)
    return 0 if outcome.ranking and not outcome.problems else 1


if __name__ == "__main__":
    # Run the copy of this module imported under its package name, so that the
    # processors pickled for the pool's workers are batch_processor.demo.Trainer, a
    # name every worker can import, rather than __main__.Trainer.
    from batch_processor.demo import main as _main
    sys.exit(_main())
