"""The pure-Python machine learning behind ``python -m batch_processor.demo``.

Nothing here knows about batch processors: this module is the *work* that the demo's
processors run. It holds

* the Iris data set (``data/iris.csv``, read with `pkgutil.get_data` so that it is
  found in an installed package too) and a fixed, stratified k-fold split of it;
* two small classifiers written without numpy: k-nearest neighbours and softmax
  (multinomial logistic) regression trained by stochastic gradient descent;
* the search space of their hyper-parameters (`Config`), `cross_val_score`, and
  `propose`, which draws new configurations from a `ProposalRequest`: random ones
  first, then mutations of the best so far (a simple evolutionary search).

Everything is deterministic: random numbers come only from ``random.Random.random()``
with integer seeds, whose sequence is the same on Python 2.7 and 3.x (``choice`` and
``randrange`` are not), so a seed gives the same search on every interpreter.
"""
from __future__ import absolute_import, division, print_function

import math
import pkgutil
import random

import attr

__all__ = [
    "Config",
    "Dataset",
    "Evaluation",
    "FEATURE_ABBREVIATIONS",
    "ProposalRequest",
    "Trial",
    "TrialResult",
    "accuracy",
    "cross_val_score",
    "evaluate",
    "fit_predict",
    "iris",
    "iris_folds",
    "load_iris",
    "mutate",
    "propose",
    "random_config",
    "stratified_folds",
]

# -- data -------------------------------------------------------------------------------


@attr.s(frozen=True)
class Dataset(object):
    """Rows ``x`` (tuples of floats), labels ``y`` (class indices) and their names."""

    x = attr.ib()
    y = attr.ib()
    feature_names = attr.ib()
    class_names = attr.ib()


#: Short names of the Iris features, as the demo's table prints them.
FEATURE_ABBREVIATIONS = {
    "sepal_length": "SL", "sepal_width": "SW", "petal_length": "PL", "petal_width": "PW",
}


def load_iris():
    """Read ``batch_processor/data/iris.csv``: 150 rows, 4 features, 3 classes.

    The data are Fisher's (1936), with the two values that the UCI copy got wrong
    corrected (rows 35 and 38), as scikit-learn ships them.
    """
    raw = pkgutil.get_data("batch_processor", "data/iris.csv")
    if raw is None:  # pragma: no cover - a loader that cannot read package data
        raise IOError("batch_processor/data/iris.csv is missing: reinstall batch_processor "
                      "(its package_data includes data/*.csv)")
    lines = [line.strip() for line in raw.decode("ascii").splitlines() if line.strip()]
    header = lines[0].split(",")
    class_names, x, y = [], [], []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(",")
        if len(fields) != len(header):
            raise ValueError("iris.csv line %d has %d fields, expected %d: %r"
                             % (number, len(fields), len(header), line))
        species = fields[-1]
        if species not in class_names:
            class_names.append(species)
        x.append(tuple(float(value) for value in fields[:-1]))
        y.append(class_names.index(species))
    return Dataset(tuple(x), tuple(y), tuple(header[:-1]), tuple(class_names))


def _shuffled(items, rng):
    """A Fisher-Yates shuffle that draws only ``rng.random()`` (same on 2.7 and 3.x)."""
    items = list(items)
    for i in range(len(items) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]
    return items


def stratified_folds(y, n_folds=5, seed=0):
    """Split row indices into ``n_folds`` (train, test) pairs, each class spread evenly.

    Returns:
        A list of ``(train_indices, test_indices)`` tuples; the test parts are disjoint
        and cover every row once. The split depends only on ``y``, ``n_folds`` and
        ``seed``.
    """
    if n_folds < 2 or n_folds > len(y):
        raise ValueError("n_folds=%r: give an integer between 2 and the number of rows (%d)"
                         % (n_folds, len(y)))
    rng = random.Random(seed)
    fold_of = [0] * len(y)
    position = 0
    for label in sorted(set(y)):
        for index in _shuffled([i for i, value in enumerate(y) if value == label], rng):
            fold_of[index] = position % n_folds
            position += 1
    folds = []
    for fold in range(n_folds):
        test = tuple(i for i in range(len(y)) if fold_of[i] == fold)
        train = tuple(i for i in range(len(y)) if fold_of[i] != fold)
        folds.append((train, test))
    return folds


_CACHE = {}  # type: dict


def iris():
    """The Iris `Dataset`, read once per process."""
    if "iris" not in _CACHE:
        _CACHE["iris"] = load_iris()
    return _CACHE["iris"]


def iris_folds():
    """The fixed 5-fold split of Iris that every configuration is scored on."""
    if "folds" not in _CACHE:
        _CACHE["folds"] = stratified_folds(iris().y, n_folds=5, seed=0)
    return _CACHE["folds"]


# -- configurations -----------------------------------------------------------------------

# The values each hyper-parameter can take, in order (mutations step to a neighbour).
SPACE = {
    "knn": (
        ("k", (1, 3, 5, 7, 9, 11, 15, 21, 31)),
        ("metric", ("euclidean", "manhattan", "chebyshev")),
        ("weights", ("uniform", "distance")),
    ),
    "softmax": (
        ("lr", (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
        ("epochs", (5, 10, 20, 40)),
        ("l2", (0.0, 0.0001, 0.001, 0.01, 0.1)),
    ),
}
MODELS = ("knn", "softmax")
SCALINGS = ("none", "minmax", "standard")
N_FEATURES = 4


@attr.s(frozen=True)
class Config(object):
    """One point of the search space.

    Attributes:
        model: ``"knn"`` or ``"softmax"``.
        features: the sorted tuple of the feature columns the model sees.
        scaling: ``"none"``, ``"minmax"`` or ``"standard"`` (fitted on the training part).
        params: the model's hyper-parameters, a tuple of ``(name, value)`` pairs in the
            order of ``SPACE[model]``.
    """

    model = attr.ib()
    features = attr.ib(converter=lambda columns: tuple(sorted(set(columns))))  # type: tuple
    scaling = attr.ib()
    params = attr.ib(converter=tuple)  # type: tuple

    @model.validator
    def _check_model(self, _, value):
        if value not in SPACE:
            raise ValueError("model=%r: give one of %s" % (value, ", ".join(sorted(SPACE))))

    @features.validator
    def _check_features(self, _, value):
        if not value or any(not 0 <= column < N_FEATURES for column in value):
            raise ValueError("features=%r: give a non-empty set of columns in 0..%d"
                             % (value, N_FEATURES - 1))

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

    def describe(self, feature_names=None):
        """One line for a table: ``knn k=5 metric=manhattan ... features=PL,PW``."""
        if feature_names is None:
            feature_names = iris().feature_names
        columns = ",".join(FEATURE_ABBREVIATIONS.get(feature_names[c], feature_names[c])
                           for c in self.features)
        params = " ".join("%s=%s" % (name, _format_value(value)) for name, value in self.params)
        return "%-7s %s scaling=%s features=%s" % (self.model, params, self.scaling, columns)


def _format_value(value):
    if isinstance(value, float):
        return "%g" % value
    return str(value)


def _pick(rng, values):
    return values[int(rng.random() * len(values))]


def random_config(rng, model=None):
    """A configuration drawn uniformly (of ``model``, or of a random model)."""
    model = model or _pick(rng, MODELS)
    features = ()
    while not features:
        features = tuple(c for c in range(N_FEATURES) if rng.random() < 0.5)
    params = tuple((name, _pick(rng, values)) for name, values in SPACE[model])
    return Config(model, features, _pick(rng, SCALINGS), params)


def mutate(config, rng):
    """``config`` with one hyper-parameter changed (a neighbouring value when ordered)."""
    genes = ["features", "scaling", "model"] + [name for name, _ in SPACE[config.model]]
    gene = _pick(rng, genes)
    if gene == "model":
        other = [model for model in MODELS if model != config.model]
        fresh = random_config(rng, _pick(rng, other))
        return attr.evolve(fresh, features=config.features, scaling=config.scaling)
    if gene == "features":
        column = int(rng.random() * N_FEATURES)
        features = set(config.features) ^ set([column])
        return attr.evolve(config, features=features or config.features)
    if gene == "scaling":
        return attr.evolve(config, scaling=_pick(rng, [s for s in SCALINGS if s != config.scaling]))
    values = dict(SPACE[config.model])[gene]
    current = values.index(config.param[gene])
    if gene == "metric" or gene == "weights":
        new = _pick(rng, [v for v in values if v != config.param[gene]])
    else:
        step = 1 if rng.random() < 0.5 else -1
        if not 0 <= current + step < len(values):
            step = -step
        new = values[current + step]
    params = tuple((name, new if name == gene else value) for name, value in config.params)
    return attr.evolve(config, params=params)


# -- the search: what the proposer gets and gives ------------------------------------------


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


# -- models ---------------------------------------------------------------------------------


def _scaler(rows, scaling):
    """Fit ``scaling`` on ``rows``; return a function that scales one row."""
    if scaling == "none":
        return lambda row: row
    columns = list(zip(*rows))
    if scaling == "minmax":
        offsets = [min(column) for column in columns]
        scales = [(max(column) - min(column)) or 1.0 for column in columns]
    else:  # standard
        offsets = [math.fsum(column) / len(column) for column in columns]
        scales = [math.sqrt(math.fsum((v - m) ** 2 for v in column) / len(column)) or 1.0
                  for column, m in zip(columns, offsets)]
    pairs = list(zip(offsets, scales))
    return lambda row: tuple((v - o) / s for v, (o, s) in zip(row, pairs))


def _distance(metric):
    if metric == "euclidean":
        return lambda a, b: math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))
    if metric == "manhattan":
        return lambda a, b: sum(abs(u - v) for u, v in zip(a, b))
    if metric == "chebyshev":
        return lambda a, b: max(abs(u - v) for u, v in zip(a, b))
    raise ValueError("metric=%r: give euclidean, manhattan or chebyshev" % (metric,))


def _knn_predict(train_x, train_y, test_x, n_classes, k, metric, weights):
    distance = _distance(metric)
    k = min(k, len(train_x))
    predictions = []
    for row in test_x:
        # Ties in distance go to the earlier training row: deterministic.
        nearest = sorted((distance(row, other), i) for i, other in enumerate(train_x))[:k]
        votes = [0.0] * n_classes
        exact = [i for d, i in nearest if d == 0.0]
        if weights == "distance" and exact:
            for i in exact:  # a training row at distance 0 decides alone, as in scikit-learn
                votes[train_y[i]] += 1.0
        else:
            for d, i in nearest:
                votes[train_y[i]] += 1.0 if weights == "uniform" else 1.0 / d
        predictions.append(max(range(n_classes), key=lambda c: (votes[c], -c)))
    return predictions


def _softmax(scores):
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _softmax_predict(train_x, train_y, test_x, n_classes, lr, epochs, l2, seed=0):
    n_inputs = len(train_x[0]) + 1  # the last weight is the bias
    weights = [[0.0] * n_inputs for _ in range(n_classes)]
    rng = random.Random(seed)
    order = list(range(len(train_x)))
    for _ in range(epochs):
        for i in _shuffled(order, rng):
            row = train_x[i] + (1.0,)
            probabilities = _softmax([sum(w * v for w, v in zip(ws, row)) for ws in weights])
            for c in range(n_classes):
                error = probabilities[c] - (1.0 if train_y[i] == c else 0.0)
                ws = weights[c]
                for j in range(n_inputs):
                    decay = l2 * ws[j] if j < n_inputs - 1 else 0.0
                    ws[j] -= lr * (error * row[j] + decay)
    predictions = []
    for row in test_x:
        row = row + (1.0,)
        scores = [sum(w * v for w, v in zip(ws, row)) for ws in weights]
        predictions.append(max(range(n_classes), key=lambda c: (scores[c], -c)))
    return predictions


def fit_predict(config, train_x, train_y, test_x, n_classes):
    """Train the model of ``config`` on ``(train_x, train_y)``; predict classes of ``test_x``.

    Rows are tuples of all the features; ``config.features`` picks the columns.
    """
    def select(rows):
        return [tuple(row[c] for c in config.features) for row in rows]
    train_x, test_x = select(train_x), select(test_x)
    scale = _scaler(train_x, config.scaling)
    train_x = [scale(row) for row in train_x]
    test_x = [scale(row) for row in test_x]
    param = config.param
    if config.model == "knn":
        return _knn_predict(train_x, train_y, test_x, n_classes,
                            param["k"], param["metric"], param["weights"])
    return _softmax_predict(train_x, train_y, test_x, n_classes,
                            param["lr"], param["epochs"], param["l2"])


def accuracy(predicted, actual):
    """The share of ``predicted`` labels equal to ``actual``."""
    if len(predicted) != len(actual) or not actual:
        raise ValueError("accuracy() needs two non-empty label lists of the same length, "
                         "got %d and %d labels" % (len(predicted), len(actual)))
    return sum(1 for p, a in zip(predicted, actual) if p == a) / len(actual)


def cross_val_score(config, dataset, folds):
    """The `Evaluation` of ``config``: mean and standard deviation of the fold accuracies."""
    n_classes = len(dataset.class_names)
    scores = []
    for train, test in folds:
        predicted = fit_predict(config, [dataset.x[i] for i in train],
                                [dataset.y[i] for i in train],
                                [dataset.x[i] for i in test], n_classes)
        scores.append(accuracy(predicted, [dataset.y[i] for i in test]))
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    return Evaluation(mean, std)


def evaluate(config):
    """``config`` scored on Iris with the fixed 5-fold split: what one training job does."""
    return cross_val_score(config, iris(), iris_folds())
