"""Tests of ``python -m batch_processor.demo`` and of its model code, ``_demo_model``."""
from __future__ import absolute_import, division, print_function

import os
import pickle
import random
import re
import subprocess
import sys

import pytest
import six

from batch_processor import UnsafeThreadPoolExecutor
from batch_processor import _demo_model as model
from batch_processor import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^\s*(\d+)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+(\d+)\s+(knn|softmax)\s")
SUMMARY = re.compile(r"Evaluated (\d+) of (\d+) configurations \((\d+) failed\)\.")


def knn(k=1, metric="euclidean", weights="uniform", features=(0, 1), scaling="none"):
    return model.Config("knn", features, scaling,
                        (("k", k), ("metric", metric), ("weights", weights)))


def softmax(lr=0.1, epochs=20, l2=0.0, features=(0, 1), scaling="none"):
    return model.Config("softmax", features, scaling, (("lr", lr), ("epochs", epochs), ("l2", l2)))


def toy_clusters():
    """Three well separated 2-D clusters, 8 points each, and 3 held-out points per cluster."""
    rng = random.Random(7)
    centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]

    def around(centre, n):
        return [(centre[0] + rng.random() - 0.5, centre[1] + rng.random() - 0.5) for _ in range(n)]
    train_x, train_y, test_x, test_y = [], [], [], []
    for label, centre in enumerate(centres):
        train_x += around(centre, 8)
        train_y += [label] * 8
        test_x += around(centre, 3)
        test_y += [label] * 3
    return train_x, train_y, test_x, test_y


class ThreadTrainer(demo.Trainer):
    """The demo's trainer, on a thread pool: nothing to pickle, nothing to fork."""

    @property
    def _executor(self):
        if self._pool is None:
            self._pool = UnsafeThreadPoolExecutor(self.workers)
        return self._pool


class FailingTrainer(ThreadTrainer):
    """Fails the trials whose ids are in ``failing``."""

    failing = (3, 7)

    def _run_one_job_synchronous(self, trial):
        if trial.trial_id in self.failing:
            raise RuntimeError("no model for trial %d" % trial.trial_id)
        return ThreadTrainer._run_one_job_synchronous(self, trial)


def run_search(**kwargs):
    search = demo.Search(**kwargs)
    try:
        return search.run()
    finally:
        search.close()


def table_rows(text):
    return [ROW.match(line).groups() for line in text.splitlines() if ROW.match(line)]


# -- the data -------------------------------------------------------------------------------


def test_iris_has_150_rows_of_4_features_and_50_of_each_species():
    data = model.load_iris()
    assert data.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")
    assert data.class_names == ("setosa", "versicolor", "virginica")
    assert len(data.x) == len(data.y) == 150
    assert all(len(row) == 4 and all(0 < v < 8 for v in row) for row in data.x)
    assert [data.y.count(c) for c in range(3)] == [50, 50, 50]
    assert data.x[0] == (5.1, 3.5, 1.4, 0.2) and data.x[-1] == (5.9, 3.0, 5.1, 1.8)
    means = [round(sum(column) / 150, 3) for column in zip(*data.x)]
    assert means == [5.843, 3.057, 3.758, 1.199]


def test_stratified_folds_partition_the_rows_and_spread_each_class():
    y = model.iris().y
    folds = model.stratified_folds(y, n_folds=5, seed=0)
    assert len(folds) == 5
    tested = []
    for train, test in folds:
        assert sorted(train + test) == list(range(150))
        assert [sum(1 for i in test if y[i] == c) for c in range(3)] == [10, 10, 10]
        tested += test
    assert sorted(tested) == list(range(150))
    assert model.stratified_folds(y, 5, seed=0) == folds
    assert model.stratified_folds(y, 5, seed=1) != folds


def test_stratified_folds_reject_impossible_fold_counts():
    with pytest.raises(ValueError):
        model.stratified_folds([0, 1, 0], n_folds=1)
    with pytest.raises(ValueError):
        model.stratified_folds([0, 1, 0], n_folds=4)


# -- the models -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("scaling", ["none", "minmax", "standard"])
def test_knn_classifies_separable_clusters_perfectly(metric, weights, scaling):
    train_x, train_y, test_x, test_y = toy_clusters()
    config = knn(k=3, metric=metric, weights=weights, scaling=scaling)
    assert model.fit_predict(config, train_x, train_y, test_x, 3) == test_y


@pytest.mark.parametrize("scaling", ["none", "minmax", "standard"])
def test_softmax_regression_classifies_separable_clusters_perfectly(scaling):
    train_x, train_y, test_x, test_y = toy_clusters()
    predicted = model.fit_predict(softmax(scaling=scaling), train_x, train_y, test_x, 3)
    assert model.accuracy(predicted, test_y) == 1.0


def test_models_use_only_the_selected_features():
    # Feature 0 separates the classes, feature 1 is noise that points the other way.
    train_x = [(0.0, 9.0), (0.1, 8.0), (5.0, 0.0), (5.1, 1.0)]
    train_y = [0, 0, 1, 1]
    test_x = [(0.2, 0.5), (4.9, 8.5)]
    assert model.fit_predict(knn(features=(0,)), train_x, train_y, test_x, 2) == [0, 1]
    assert model.fit_predict(knn(features=(1,)), train_x, train_y, test_x, 2) == [1, 0]


def test_knn_majority_vote_and_a_single_neighbour_differ():
    train_x = [(0.0,), (1.0,), (1.2,), (1.4,)]
    train_y = [0, 1, 1, 1]
    assert model.fit_predict(knn(k=1, features=(0,)), train_x, train_y, [(0.1,)], 2) == [0]
    assert model.fit_predict(knn(k=3, features=(0,)), train_x, train_y, [(0.1,)], 2) == [1]


def test_cross_validated_score_of_a_separable_set_is_perfect():
    train_x, train_y, test_x, test_y = toy_clusters()
    data = model.Dataset(tuple(train_x + test_x), tuple(train_y + test_y),
                         ("a", "b"), ("p", "q", "r"))
    folds = model.stratified_folds(data.y, n_folds=3)
    for config in (knn(k=3), softmax()):
        evaluation = model.cross_val_score(config, data, folds)
        assert (evaluation.score, evaluation.std) == (1.0, 0.0)


def test_accuracy_counts_matches_and_rejects_mismatched_lists():
    assert model.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError):
        model.accuracy([0, 1], [0])
    with pytest.raises(ValueError):
        model.accuracy([], [])


def test_a_good_configuration_scores_well_on_iris():
    evaluation = model.evaluate(knn(k=9, features=(2, 3), scaling="standard"))
    assert 0.9 < evaluation.score <= 1.0
    assert 0.0 <= evaluation.std < 0.1


def test_config_rejects_values_outside_the_space():
    with pytest.raises(ValueError):
        model.Config("tree", (0,), "none", ())
    with pytest.raises(ValueError):
        knn(features=())
    with pytest.raises(ValueError):
        knn(scaling="log")
    with pytest.raises(ValueError):
        model.Config("knn", (0,), "none", (("lr", 0.1), ("epochs", 5), ("l2", 0.0)))


def test_config_describes_itself_on_one_line():
    assert knn(k=5, features=(3, 2)).describe() == (
        "knn     k=5 metric=euclidean weights=uniform scaling=none features=PL,PW")


# -- the proposer -----------------------------------------------------------------------------


def test_first_generation_is_the_requested_number_of_new_random_trials():
    request = model.ProposalRequest(seed=3, generation=0, first_trial_id=0, size=10)
    trials = model.propose(request)
    assert [t.trial_id for t in trials] == list(range(10))
    assert all(t.generation == 0 and t.generation_size == 10 for t in trials)
    assert len(set(t.config for t in trials)) == 10
    assert model.propose(request) == trials
    assert model.propose(model.ProposalRequest(4, 0, 0, 10)) != trials


def test_later_generations_avoid_seen_configurations_and_mutate_the_elite():
    first = model.propose(model.ProposalRequest(0, 0, 0, 10))
    seen = frozenset(t.config for t in first)
    best = first[0].config
    request = model.ProposalRequest(0, 1, first_trial_id=10, size=20, elite=((0.9, best),),
                                    seen=seen)
    trials = model.propose(request)
    assert [t.trial_id for t in trials] == list(range(10, 30))
    configs = [t.config for t in trials]
    assert len(set(configs)) == 20 and not seen.intersection(configs)
    # Most are one or two mutations of the only parent: they keep most of its genes.
    close = [c for c in configs if c.model == best.model and
             (c.features == best.features or c.scaling == best.scaling)]
    assert len(close) >= 10


# -- the processors and the search --------------------------------------------------------------


def test_trainer_pickles_without_its_process_pool_and_runs_in_it():
    trainer = demo.Trainer(workers=1)
    try:
        pool = trainer._executor
        assert trainer._executor is pool  # created once, shared by the jobs
        copy = pickle.loads(pickle.dumps(trainer, protocol=2))
        assert copy._pool is None and copy.workers == 1
        trial = model.Trial(0, 0, 1, knn(k=9, features=(2, 3)))
        # As the processor submits a job: the processor and its method's name.
        from batch_processor._synchronous import _call_method
        evaluation = pool.submit(_call_method, trainer, "_run_one_job_synchronous", trial).result()
        assert evaluation == model.evaluate(trial.config)
    finally:
        trainer.close()
    assert trainer._pool is None


def test_search_evaluates_exactly_the_budget_in_a_process_pool():
    outcome = run_search(budget=12, workers=2, seed=0)
    assert outcome.evaluated == 12
    assert (outcome.failures, outcome.problems) == ([], [])
    assert sorted(r.trial.trial_id for r in outcome.ranking) == list(range(12))
    assert len(set(r.trial.config for r in outcome.ranking)) == 12
    scores = [r.evaluation.score for r in outcome.ranking]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.8


@pytest.mark.parametrize("budget", [1, 10, 11, 25])
def test_search_spends_the_budget_in_generations(budget):
    outcome = run_search(budget=budget, seed=1, trainer=ThreadTrainer(workers=3))
    assert outcome.evaluated == len(outcome.ranking) == budget
    trials = sorted(r.trial for r in outcome.ranking)
    generations = [trial.generation for trial in trials]
    assert generations == [i // demo.GENERATION_SIZE for i in range(budget)]


def test_same_seed_same_ranking_whatever_the_number_of_workers():
    def ranking(workers, seed):
        outcome = run_search(budget=15, seed=seed, trainer=ThreadTrainer(workers=workers))
        return [(r.trial.trial_id, r.trial.config, r.evaluation) for r in outcome.ranking]
    reference = ranking(1, seed=5)
    assert ranking(4, seed=5) == reference
    assert ranking(4, seed=6) != reference


def test_failed_trainings_are_reported_and_the_search_goes_on():
    outcome = run_search(budget=12, seed=0, trainer=FailingTrainer(workers=2))
    assert outcome.evaluated == 12
    assert [r.trial.trial_id for r in outcome.failures] == [3, 7]
    assert all("RuntimeError: no model for trial" in r.error for r in outcome.failures)
    assert len(outcome.ranking) == 10 and outcome.problems == []
    out, err = six.StringIO(), six.StringIO()
    demo.print_report(outcome, 20, out, err)
    assert "Evaluated 12 of 12 configurations (2 failed)." in out.getvalue()
    assert len(table_rows(out.getvalue())) == 10
    assert "trial 3 " in err.getvalue() and "RuntimeError: no model for trial 7" in err.getvalue()


# -- the command line ----------------------------------------------------------------------------


def check_report(text, budget, top):
    rows = table_rows(text)
    assert [int(row[0]) for row in rows] == list(range(1, top + 1))
    scores = [float(row[1]) for row in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.8
    assert SUMMARY.search(text).groups() == (str(budget), str(budget), "0")


def test_main_prints_the_table_of_the_best_configurations(capsys, tmpdir):
    picture = str(tmpdir.join("pipeline.dot"))
    assert demo.main(["--budget", "12", "--top", "4", "--seed", "2", "--dot", picture]) == 0
    out, err = capsys.readouterr()
    check_report(out, budget=12, top=4)
    assert "the search took" in err
    assert picture in err


def test_main_writes_the_pipeline_with_its_counts_as_dot(capsys, tmpdir):
    picture = str(tmpdir.join("pipeline.dot"))
    assert demo.main(["--budget", "7", "--dot", picture]) == 0
    with open(picture) as f:
        dot = f.read()
    assert dot.startswith("digraph")
    labels = dict(re.findall(r'^\s*(p\d+) \[label="([^"]*)"', dot, re.M))
    assert sorted(label.split("\\n")[0] for label in labels.values()) == [
        "Leaderboard", "Proposer", "Trainer"]
    trainer = [label for label in labels.values() if label.startswith("Trainer")][0]
    assert "ok 7 / failed 0 / cancelled 0" in trainer
    edges = re.findall(r"(p\d+) -> (p\d+)", dot)
    assert len(edges) == 3  # proposer -> trainer -> leaderboard -> proposer


def test_main_shows_progress_per_processor_on_request(capfd, tmpdir):
    assert demo.main(["--budget", "5", "--progress", "--dot", ""]) == 0
    out, err = capfd.readouterr()
    check_report(out, budget=5, top=5)
    for name in ("Proposer", "Trainer", "Leaderboard"):
        assert name in err
    assert not tmpdir.listdir()


def test_the_module_runs_as_a_program(tmpdir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_processor.demo", "--budget", "12", "--top", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(tmpdir))
    out, err = process.communicate()
    assert process.returncode == 0, err.decode("utf-8", "replace")
    check_report(out.decode("ascii"), budget=12, top=5)
    assert tmpdir.join("batch_processor_demo.dot").check()  # the picture, by default


@pytest.mark.parametrize("option", ["--budget", "--workers", "--top"])
def test_options_must_be_positive_integers(option, capsys):
    for value in ("0", "-1", "many"):
        with pytest.raises(SystemExit):
            demo.parse_args([option, value])
    assert "is not an integer >= 1" in capsys.readouterr()[1]
