"""``python -m batch_processor.demo``: an AutoML search on Iris with scikit-learn, as a cycle.

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
* `Trainer` scores each trial in a shared process pool: the 5-fold cross-validated
  accuracy, on ``sklearn.datasets.load_iris()``, of a scikit-learn estimator
  (k-nearest neighbours, logistic regression, a decision tree, a random forest or a
  support-vector classifier, with its hyper-parameters, on some of the features,
  optionally scaled);
* `Leaderboard` records the scores and, when a generation is complete and the budget
  is not spent, asks the proposer for the next one: that edge closes the cycle. The
  run ends by itself when nothing more is asked for.

A generation is proposed only from complete results, and every estimator and split
has a fixed ``random_state``, so a seed gives the same table whatever order the
trainings finish in, with any number of workers. Ctrl-C stops the search and prints
the best configurations found so far (exit status 130).

Needs scikit-learn: ``pip install ".[demo]"`` in a checkout of this project.

With ``--checkpoint PATH`` the search records its progress in the SQLite file ``PATH``:
killed (Ctrl-C, SIGKILL, a lost machine), the same command run again continues it, and
once it has finished, prints its table at once.

With ``--gpus N`` the trainer shares ``N`` GPUs, the ids ``"0"`` to ``"N-1"`` of a
`batch_processor.Resource`: each training job holds one, each worker process serves
one (with ``CUDA_VISIBLE_DEVICES`` set to it), and the line of each trained model says
which it got (`batch_processor.devices`). The models here are scikit-learn's and train
on the CPU, so a machine without GPUs runs it too: it only shows the ids.

Usage: ``python -m batch_processor.demo [--budget 60] [--workers 2] [--seed 0] [--top 10]
[--checkpoint PATH] [--gpus N]``.
"""
from __future__ import absolute_import, division, print_function

import argparse
import logging
import math
import multiprocessing
import os
import random
import subprocess
import sys
import time

import attr

from batch_processor import (
    BatchProcessorsGraph,
    CheckpointError,
    Resource,
    SeparateBatchProcessorSynchronous,
    SequentialBatchProcessorSynchronous,
    devices,
    run_batch_processors_graph,
)
from batch_processor.dask import DaskExecutorMixin, local_client

__all__ = [
    "Config",
    "Evaluation",
    "Leaderboard",
    "ProposalRequest",
    "Proposer",
    "Search",
    "SearchOutcome",
    "Trainer",
    "Trial",
    "TrialResult",
    "evaluate",
    "main",
    "make_estimator",
    "mutate",
    "propose",
    "random_config",
]

GENERATION_SIZE = 10  #: trials per generation (the last one may be smaller)
ELITE_SIZE = 5  #: how many of the best configurations the proposer mutates
N_FOLDS = 5  #: folds of the cross-validation
INSTALL_HINT = 'pip install ".[demo]" in a checkout of this project'

# -- the search space ---------------------------------------------------------------------

#: Each model family's hyper-parameters and the values the search tries, in order: a
#: mutation of a numeric one moves to a neighbouring value, of a named one to any other.
SPACE = {
    "knn": (("n_neighbors", (1, 3, 5, 7, 9, 15, 25)), ("weights", ("uniform", "distance")),
            ("p", (1, 2))),
    "logreg": (("C", (0.01, 0.1, 1.0, 10.0, 100.0)),),
    "tree": (("max_depth", (1, 2, 3, 4, 6, None)), ("min_samples_leaf", (1, 2, 5, 10)),
             ("criterion", ("gini", "entropy"))),
    "forest": (("n_estimators", (10, 25, 50)), ("max_depth", (2, 4, None)),
               ("max_features", (0.5, 1.0))),
    "svc": (("C", (0.1, 1.0, 10.0, 100.0)), ("kernel", ("linear", "rbf")),
            ("gamma", ("scale", 0.1, 1.0))),
}
MODELS = tuple(sorted(SPACE))
SCALINGS = ("none", "minmax", "standard")
FEATURES = ("SL", "SW", "PL", "PW")  #: sepal length and width, petal length and width
_NAMED = frozenset(["weights", "criterion", "kernel", "p"])  # no order between values


@attr.s(frozen=True)
class Config(object):
    """One point of the search space.

    Attributes:
        model: a key of `SPACE` (``"knn"``, ``"logreg"``, ``"tree"``, ``"forest"``, ``"svc"``).
        features: the sorted tuple of the Iris columns (0 to 3) the estimator sees.
        scaling: ``"none"``, ``"minmax"`` or ``"standard"`` (fitted on the training folds).
        params: the estimator's hyper-parameters, ``(name, value)`` pairs in the order
            of ``SPACE[model]``.
    """

    model = attr.ib()
    features = attr.ib(converter=lambda columns: tuple(sorted(set(columns))))  # type: tuple
    scaling = attr.ib()
    params = attr.ib(converter=tuple)  # type: tuple

    @model.validator
    def _check_model(self, _, value):
        if value not in SPACE:
            raise ValueError("model=%r: give one of %s" % (value, ", ".join(MODELS)))

    @features.validator
    def _check_features(self, _, value):
        if not value or any(not 0 <= column < len(FEATURES) for column in value):
            raise ValueError("features=%r: give a non-empty set of columns in 0..%d"
                             % (value, len(FEATURES) - 1))

    @scaling.validator
    def _check_scaling(self, _, value):
        if value not in SCALINGS:
            raise ValueError("scaling=%r: give one of %s" % (value, ", ".join(SCALINGS)))

    @params.validator
    def _check_params(self, _, value):
        names = tuple(name for name, _ in SPACE[self.model])
        if tuple(name for name, _ in value) != names:
            raise ValueError("params=%r: a %s model takes exactly %s, in that order"
                             % (value, self.model, ", ".join(names)))

    @property
    def param(self):
        """The hyper-parameters as a dict."""
        return dict(self.params)

    def describe(self):
        """One line for a table: ``knn    n_neighbors=5 weights=uniform p=2 scaling=none features=PL,PW``."""
        params = " ".join("%s=%s" % (name, _format_value(value)) for name, value in self.params)
        return "%-6s %s scaling=%s features=%s" % (
            self.model, params, self.scaling, ",".join(FEATURES[c] for c in self.features))


def _format_value(value):
    if isinstance(value, float):
        return "%g" % value
    return str(value)


# Random numbers come only from random.Random.random() with integer seeds, whose
# sequence is the same on Python 2.7 and 3.x (choice() and randrange() are not).
def _pick(rng, values):
    return values[int(rng.random() * len(values))]


def random_config(rng, model=None):
    """A configuration drawn uniformly (of ``model``, or of a random model)."""
    model = model or _pick(rng, MODELS)
    features = ()
    while not features:
        features = tuple(c for c in range(len(FEATURES)) if rng.random() < 0.5)
    params = tuple((name, _pick(rng, values)) for name, values in SPACE[model])
    return Config(model, features, _pick(rng, SCALINGS), params)


def mutate(config, rng):
    """``config`` with one gene changed: a feature, the scaling, the model or a hyper-parameter."""
    genes = ["features", "scaling", "model"] + [name for name, _ in SPACE[config.model]]
    gene = _pick(rng, genes)
    if gene == "model":
        fresh = random_config(rng, _pick(rng, [m for m in MODELS if m != config.model]))
        return attr.evolve(fresh, features=config.features, scaling=config.scaling)
    if gene == "features":
        features = set(config.features) ^ set([int(rng.random() * len(FEATURES))])
        return attr.evolve(config, features=features or config.features)
    if gene == "scaling":
        return attr.evolve(config, scaling=_pick(rng, [s for s in SCALINGS if s != config.scaling]))
    values = dict(SPACE[config.model])[gene]
    if gene in _NAMED:
        new = _pick(rng, [v for v in values if v != config.param[gene]])
    else:
        current = values.index(config.param[gene])
        step = 1 if rng.random() < 0.5 else -1
        if not 0 <= current + step < len(values):
            step = -step
        new = values[current + step]
    params = tuple((name, new if name == gene else value) for name, value in config.params)
    return attr.evolve(config, params=params)


# -- what flows through the graph ----------------------------------------------------------


@attr.s(frozen=True)
class Trial(object):
    """One configuration to evaluate: the trainer's job descriptor."""

    trial_id = attr.ib()
    generation = attr.ib()
    generation_size = attr.ib()  # how many trials the generation has
    config = attr.ib()


@attr.s(frozen=True)
class Evaluation(object):
    """A trial's cross-validated accuracy: the mean and the standard deviation over folds."""

    score = attr.ib()
    std = attr.ib()
    #: The device ids the training job held (``--gpus``), else ``()``; not compared.
    devices = attr.ib(default=(), eq=False, converter=tuple)  # type: tuple


@attr.s(frozen=True)
class TrialResult(object):
    """What the leaderboard records of a trial: its `Evaluation`, or the error it failed with."""

    trial = attr.ib()
    evaluation = attr.ib(default=None)
    error = attr.ib(default=None)  # a message when the training job failed or was cancelled


@attr.s(frozen=True)
class ProposalRequest(object):
    """Everything the proposer needs to propose one generation.

    Attributes:
        seed: the search's seed.
        generation: 0 for the first generation.
        first_trial_id: the id of the generation's first trial.
        size: how many configurations to propose.
        elite: the best ``(score, config)`` pairs so far, best first.
        seen: every configuration already proposed (a frozenset), never proposed again.
    """

    seed = attr.ib()
    generation = attr.ib()
    first_trial_id = attr.ib()
    size = attr.ib()
    elite = attr.ib(default=())
    seen = attr.ib(default=frozenset())  # type: frozenset


EXPLORE = 0.25  # share of random configurations once there is an elite
_TRIES = 200


def propose(request):
    """The `Trial` list of one generation: random at first, then mostly mutations of the elite.

    The result depends only on ``request``; it has ``request.size`` trials with distinct
    configurations never seen before (fewer only if the space has run out).
    """
    rng = random.Random(request.seed * 1000003 + request.generation)
    seen = set(request.seen)
    parents = [config for _, config in request.elite]
    configs = []
    while len(configs) < request.size:
        for _ in range(_TRIES):
            if parents and rng.random() >= EXPLORE:
                # rng.random() ** 2 favours the best parents.
                config = mutate(parents[int(rng.random() ** 2 * len(parents))], rng)
                if rng.random() < 0.3:
                    config = mutate(config, rng)
            else:
                config = random_config(rng)
            if config not in seen:
                break
        else:
            break  # the space is (nearly) exhausted
        seen.add(config)
        configs.append(config)
    return [Trial(request.first_trial_id + i, request.generation, len(configs), config)
            for i, config in enumerate(configs)]


# -- the training: plain scikit-learn ---------------------------------------------------------


def _sklearn_version():
    import sklearn
    return tuple(int(part) for part in sklearn.__version__.split(".")[:2])


def make_estimator(config, random_state=0):
    """The scikit-learn estimator of ``config``: a pipeline of its scaler and its model."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    param = config.param
    if config.model == "knn":
        model = KNeighborsClassifier(**param)
    elif config.model == "logreg":
        # Multinomial: 0.22 made it the default for lbfgs, 0.20 and 0.21 need saying so
        # (and 1.5 deprecated saying so).
        extra = {"multi_class": "multinomial"} if _sklearn_version() < (0, 22) else {}
        model = LogisticRegression(solver="lbfgs", max_iter=5000, **dict(param, **extra))
    elif config.model == "tree":
        model = DecisionTreeClassifier(random_state=random_state, **param)
    elif config.model == "forest":
        model = RandomForestClassifier(random_state=random_state, **param)
    else:
        model = SVC(**param)
    steps = {"minmax": [MinMaxScaler()], "standard": [StandardScaler()]}.get(config.scaling, [])
    return make_pipeline(*(steps + [model]))


_SKLEARN_MODULES = ("sklearn.datasets", "sklearn.ensemble", "sklearn.linear_model",
                    "sklearn.model_selection", "sklearn.neighbors", "sklearn.pipeline",
                    "sklearn.preprocessing", "sklearn.svm", "sklearn.tree")
_IRIS = []  # the data, loaded once per process


def _iris():
    if not _IRIS:
        from sklearn.datasets import load_iris
        data = load_iris()
        _IRIS.append((data.data, data.target))
    return _IRIS[0]


def evaluate(config, random_state=0):
    """``config`` scored on Iris, 5-fold stratified cross-validation: what one training job does."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    x, y = _iris()
    folds = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=random_state)
    scores = cross_val_score(make_estimator(config, random_state), x[:, list(config.features)],
                             y, cv=folds)
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    return Evaluation(round(mean, 12), round(std, 12))


# -- the processors ---------------------------------------------------------------------


class Proposer(SequentialBatchProcessorSynchronous):
    """Sequential: each `ProposalRequest` gives one list of new `Trial` descriptors."""

    def _run_batch_synchronous(self, requests):
        return [propose(request) for request in requests]


def _preload_sklearn():
    """Workers fork from a server that has imported scikit-learn once (when it starts)."""
    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(_SKLEARN_MODULES))
    except (AttributeError, ValueError):  # 2.7: fork only; no fork server on this platform
        pass


class Trainer(SeparateBatchProcessorSynchronous):
    """Separate: scores one `Trial` per job, in a process pool of ``workers`` processes.

    The pool is the processor's own (``executor="processes"``): made on the first
    job, shared by all of them, started safely in this threaded process, and given
    the processor once per worker; `close` shuts it down.
    """

    _bp_not_pickled = ("_pool",)  # never pickled to the workers, nor into a checkpoint
    _pool = None  # a subclass may keep its own executor here (see the tests)

    def __init__(self, workers=2, gpus=None):
        uses = None
        if gpus is not None:
            # One GPU per job: a worker serves one id, CUDA_VISIBLE_DEVICES set to it.
            uses = {Resource("gpu", devices=[str(i) for i in range(gpus)]): 1}
        super(Trainer, self).__init__(max_parallel_jobs=workers, executor="processes",
                                      uses=uses)
        self.workers = workers
        _preload_sklearn()

    def _run_one_job_synchronous(self, trial):
        held = devices()  # the GPU ids of this job (with --gpus), else ()
        evaluation = evaluate(trial.config)
        return attr.evolve(evaluation, devices=held) if held else evaluation

    def close(self):
        """Shut the process pool down, waiting for its workers to exit."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.stop()


class Leaderboard(SequentialBatchProcessorSynchronous):
    """Sequential: records `TrialResult` descriptors and asks for more until ``budget`` is spent.

    A batch returns, per result, the `ProposalRequest` of the next generation if that
    result completed its generation and budget remains, else ``None``. Its state (the
    results so far) is what a checkpoint restores; ``log`` is not recorded.
    """

    _bp_not_pickled = ("log",)

    def __init__(self, budget, seed, generation_size=GENERATION_SIZE, elite_size=ELITE_SIZE,
                 log=None):
        super(Leaderboard, self).__init__()
        self.log = log  # called with a line for each new best score, if given
        self.budget = budget
        self.seed = seed
        self.generation_size = generation_size
        self.elite_size = elite_size
        self.results = []  # TrialResult, in the order they arrived
        self.seen = set()  # every configuration evaluated (or failed)
        self.counts = {}  # generation -> results received

    def first_request(self):
        """The `ProposalRequest` that starts the search."""
        return ProposalRequest(self.seed, 0, 0, min(self.generation_size, self.budget))

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
        best = self.ranking()[:1]
        self.results.append(result)  # before the log line: whoever reads it finds the result
        if (self.log is not None and result.evaluation is not None
                and (not best or result.evaluation.score > best[0].evaluation.score)):
            self.log("trial %d: new best %.4f  %s"
                     % (trial.trial_id, result.evaluation.score, trial.config.describe()))
        self.seen.add(trial.config)
        self.counts[trial.generation] = self.counts.get(trial.generation, 0) + 1
        remaining = self.budget - len(self.results)
        if self.counts[trial.generation] < trial.generation_size or remaining <= 0:
            return None
        elite = tuple((r.evaluation.score, r.trial.config)
                      for r in self.ranking()[:self.elite_size])
        return ProposalRequest(
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
        trainer: a `Trainer` to use instead of ``Trainer(workers, gpus)``.
        log: called with a line of text for each new best score, if given, and for
            each trained model that held device ids.
        gpus: how many GPUs the trainer shares (one per job), if any.
    """

    def __init__(self, budget=60, workers=2, seed=0, trainer=None, log=None, gpus=None):
        self.proposer = Proposer()
        self.log = log
        self.trainer = trainer if trainer is not None else Trainer(workers, gpus)
        self.leaderboard = Leaderboard(budget, seed, log=log)
        self.problems = []
        self.results = None  # the run's result dict, once it has ended
        self.started = None
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
                evaluation = handle.future.result()
                if self.log is not None and getattr(evaluation, "devices", ()):
                    trial = handle.descriptor
                    self.log("trial %d: trained on GPU %s: %.4f  %s"
                             % (trial.trial_id, ",".join(evaluation.devices), evaluation.score,
                                trial.config.describe()))
                results.append(TrialResult(handle.descriptor, evaluation=evaluation))
            else:
                results.append(TrialResult(handle.descriptor, error=failure))
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

    def run(self, progress=False, checkpoint=None, trace=None):
        """Run the search to the end; return its `SearchOutcome`.

        ``progress`` and ``trace`` are the runner's options of those names. With
        ``checkpoint`` (a path), the run records its progress there and resumes
        from what an earlier run of the same search recorded in it.

        Raises:
            KeyboardInterrupt: the run was interrupted; `outcome` then tells what the
                search found until then.
        """
        self.started = time.time()
        self.results = run_batch_processors_graph(
            self.graph, {self.proposer: [self.leaderboard.first_request()]}, progress=progress,
            checkpoint=checkpoint, trace=trace)
        return self.outcome()

    def outcome(self, results=None):
        """The `SearchOutcome` so far: of the run's ``results`` dict, or of the leaderboard's.

        After an interrupted run, pass the partial results that the interrupt carries,
        if any; without them the leaderboard's own record of the trials counts.
        """
        results = results if results is not None else self.results
        leaderboard = self.leaderboard
        if results is not None and results.get(self.trainer) is not None:
            # The jobs that came back, succeeded or failed; not those an interrupt cancelled.
            evaluated = sum(1 for handle in results[self.trainer]
                            if not handle.future.cancelled())
        else:
            evaluated = len(leaderboard.results)
        started = self.started if self.started is not None else time.time()
        return SearchOutcome(
            budget=leaderboard.budget, evaluated=evaluated, ranking=leaderboard.ranking(),
            failures=leaderboard.failures(), problems=list(self.problems),
            seconds=time.time() - started)

    def close(self):
        """Release the trainer's process pool."""
        close = getattr(self.trainer, "close", None)
        if close is not None:
            close()


# -- the command line --------------------------------------------------------------------

PROGRAM = "batch_processor.demo"


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not an integer >= 1" % (text,))
    return value


def _output_path_problem(path):
    """``None`` if a file can be written at ``path``, else why not (one line)."""
    if os.path.isdir(path):
        return "%s is a directory; give a file name" % (path,)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return "the directory %s does not exist" % (folder,)
    if not os.access(folder, os.W_OK):
        return "the directory %s is not writable" % (folder,)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "%s is not writable" % (path,)
    return None


def parse_args(argv=None):
    """The demo's options (``argv``: the arguments, ``sys.argv[1:]`` by default).

    Exits with status 2 and an ``error:`` line, as argparse does, on a bad option or a
    ``--dot`` path where no file can be written.
    """
    parser = argparse.ArgumentParser(
        prog="python -m batch_processor.demo",
        description="An AutoML search on the Iris data set with scikit-learn, run as a graph of "
                    "batch processors: propose configurations -> cross-validate them in a "
                    "process pool -> update the leaderboard -> propose more, until the budget "
                    "is spent. Ctrl-C stops it and prints the best configurations so far.")
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
    parser.add_argument("--trace", metavar="PATH", default=None,
                        help="write a timeline of the run (every training job and converter "
                             "call) to PATH as Chrome Trace Event JSON; open it in "
                             "https://ui.perfetto.dev or chrome://tracing")
    parser.add_argument("--dask", metavar="ADDRESS", nargs="?", const="local", default=None,
                        help="train on a Dask cluster: a new local one of --workers processes, "
                             "or the scheduler at ADDRESS (e.g. tcp://host:8786); needs the "
                             "[dask] extra")
    parser.add_argument("--gpus", metavar="N", type=_positive_int, default=None,
                        help="share N GPUs (ids 0 to N-1) between the trainings: each job "
                             "holds one, each worker serves one with CUDA_VISIBLE_DEVICES "
                             "set to it, and each trained model's line says which it got "
                             "(the models here train on the CPU: without GPUs it only shows "
                             "the ids)")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="record the search's progress in the SQLite file PATH; if it is "
                             "killed or interrupted, the same command continues it")
    args = parser.parse_args(argv)
    if args.gpus is not None and args.dask is not None:
        parser.error("argument --gpus: not with --dask: the GPUs are this machine's, and a "
                     "Dask cluster's workers have their own")
    problem = _output_path_problem(args.dot) if args.dot else None
    if problem is not None:
        parser.error("argument --dot: %s" % (problem,))
    problem = _output_path_problem(args.checkpoint) if args.checkpoint else None
    if problem is not None:
        parser.error("argument --checkpoint: %s" % (problem,))
    problem = _output_path_problem(args.trace) if args.trace else None
    if problem is not None:
        parser.error("argument --trace: %s" % (problem,))
    return args


class DaskTrainer(DaskExecutorMixin, Trainer):
    """The `Trainer`, its jobs run on a Dask cluster instead of a local process pool."""

    _bp_not_pickled = DaskExecutorMixin._bp_not_pickled + Trainer._bp_not_pickled


class UsageError(Exception):
    """Something the demo needs is missing: its message is the one line to show."""


def _check_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError as error:
        raise UsageError("the demo trains scikit-learn estimators, which are not installed "
                         "(%s): %s" % (error, INSTALL_HINT))


def _dask_client(args):
    try:
        import distributed
    except ImportError:
        raise UsageError('--dask needs the distributed package: pip install ".[dask]" '
                         "in a checkout of this project")
    if args.dask == "local":
        return local_client(n_workers=args.workers)
    return distributed.Client(args.dask)


def build_search(args, client=None, log=None):
    """The `Search` that ``args`` describe (its trainer on ``client``'s cluster if given)."""
    trainer = DaskTrainer(client, workers=args.workers) if client is not None else None
    return Search(budget=args.budget, workers=args.workers, seed=args.seed, trainer=trainer,
                  log=log, gpus=getattr(args, "gpus", None))


def write_picture(search, path, err=None):
    """Write the pipeline, with its counts, as DOT to ``path``, and as PNG if Graphviz is here.

    Raises:
        UsageError: ``path`` cannot be written.
    """
    err = err if err is not None else sys.stderr
    try:
        with open(path, "w") as out:
            out.write(search.graph.to_dot(search.results))
    except (IOError, OSError) as error:
        raise UsageError("cannot write the pipeline's picture to %s: %s"
                         % (path, getattr(error, "strerror", None) or error))
    written = [path]
    dot = _which("dot")
    if dot is not None:
        png = os.path.splitext(path)[0] + ".png"
        if subprocess.call([dot, "-Tpng", "-o", png, path]) == 0:
            written.append(png)
    print("%s: the pipeline's picture is in %s" % (PROGRAM, " and ".join(written)), file=err)


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
    print("Best %d of %d configurations (%d-fold cross-validated accuracy on Iris):"
          % (len(shown), len(outcome.ranking), N_FOLDS), file=out)
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
        print("%s: trial %d (%s) failed: %s"
              % (PROGRAM, result.trial.trial_id, result.trial.config.describe(), result.error),
              file=err)
    for problem in outcome.problems:
        print("%s: %s" % (PROGRAM, problem), file=err)
    print("%s: the search took %.1f s" % (PROGRAM, outcome.seconds), file=err)


def _log(line):
    from .progress import write_line  # through tqdm while --progress bars are drawn
    write_line("%s: %s" % (PROGRAM, line), sys.stderr)


def _run_search(search, args):
    """``search.run``; with ``--checkpoint``, the library's warnings (resuming...) on stderr."""
    if not args.checkpoint:
        return search.run(progress=args.progress, trace=args.trace)
    _log_watch_commands(args.checkpoint)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(PROGRAM + ": %(message)s"))
    library = logging.getLogger("batch_processor")
    library.addHandler(handler)
    try:
        return search.run(progress=args.progress, checkpoint=args.checkpoint, trace=args.trace)
    finally:
        library.removeHandler(handler)


def _log_watch_commands(path):
    """Say how to watch the search from another terminal (issue 20)."""
    from six.moves import shlex_quote
    _log("watch it from another terminal with `python -m batch_processor status %s` or "
         "`python -m batch_processor dashboard %s`" % (shlex_quote(path), shlex_quote(path)))


def _run(args):
    """Build and run the search; return ``(search, outcome, interrupted)``."""
    _check_sklearn()
    client = _dask_client(args) if args.dask else None
    search = None
    try:
        search = build_search(args, client, log=_log)
        try:
            return search, _run_search(search, args), False
        except KeyboardInterrupt as interrupt:
            # Partial results, when the runner attaches them; else the leaderboard's record.
            return search, search.outcome(getattr(interrupt, "results", None)), True
        finally:
            search.close()
    finally:
        if client is not None:
            cluster = client.cluster if args.dask == "local" else None
            client.close()
            if cluster is not None:
                cluster.close()


def main(argv=None):
    """Parse the options, build the graph, run it, print the table. Returns the exit status.

    0: the search ran to the end; 1: it ran with failures, or something it needs is
    missing (a one-line message says what); 130: interrupted with Ctrl-C, after
    printing the best configurations found so far.
    """
    args = parse_args(argv)
    try:
        try:
            search, outcome, interrupted = _run(args)
        except (UsageError, CheckpointError) as error:
            print("%s: error: %s" % (PROGRAM, error), file=sys.stderr)
            return 1
        if interrupted:
            print("%s: interrupted; the best configurations so far:" % (PROGRAM,),
                  file=sys.stderr)
            sys.stderr.flush()
        print_report(outcome, args.top)
        if args.trace:
            print("%s: the run's timeline is in %s (open it in https://ui.perfetto.dev)"
                  % (PROGRAM, args.trace), file=sys.stderr)
        if interrupted:
            return 130
        if args.dot:
            try:
                write_picture(search, args.dot)
            except UsageError as error:
                print("%s: error: %s" % (PROGRAM, error), file=sys.stderr)
                return 1
    except KeyboardInterrupt:  # a second Ctrl-C, while shutting down or printing
        return 130
    return 0 if outcome.ranking and not outcome.problems else 1


if __name__ == "__main__":
    # Run the copy of this module imported under its package name, so that the
    # processors pickled for the pool's workers are batch_processor.demo.Trainer, a
    # name every worker can import, rather than __main__.Trainer.
    from batch_processor.demo import main as _main
    sys.exit(_main())
