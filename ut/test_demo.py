"""Tests of ``python -m batch_processor.demo``: its search space, scikit-learn training and CLI.

The tests that train models skip where scikit-learn is not installed (``pip install
".[demo]"``); the search space and the command line's checks run everywhere.
"""
from __future__ import absolute_import, division, print_function

import os
import pickle
import random
import re
import signal
import subprocess
import sys
import warnings
import zlib

import pytest
import six

from batch_processor import UnsafeThreadPoolExecutor
from batch_processor import demo

with warnings.catch_warnings():
    # Python 2.7's last scipy was built against an older numpy; the warning is benign
    # (numpy ignores it itself, unless -W error overrides that). Import all the demo uses.
    warnings.filterwarnings("ignore", r"numpy\.(ufunc|dtype) size changed", RuntimeWarning)
    try:
        import sklearn
        import sklearn.datasets  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.model_selection  # noqa: F401
        import sklearn.neighbors  # noqa: F401
        import sklearn.pipeline  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
        import sklearn.svm  # noqa: F401
        import sklearn.tree  # noqa: F401
    except ImportError:
        sklearn = None

needs_sklearn = pytest.mark.skipif(sklearn is None, reason='scikit-learn is not installed: '
                                   'pip install ".[demo]"')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^\s*(\d+)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+(\d+)\s+(%s)\s"
                 % "|".join(demo.MODELS))
SUMMARY = re.compile(r"Evaluated (\d+) of (\d+) configurations \((\d+) failed\)\.")


def knn(n_neighbors=5, weights="uniform", p=2, features=(2, 3), scaling="none"):
    return demo.Config("knn", features, scaling,
                       (("n_neighbors", n_neighbors), ("weights", weights), ("p", p)))


class ThreadTrainer(demo.Trainer):
    """The demo's trainer, on a thread pool: nothing to pickle, nothing to fork."""

    @property
    def _executor(self):
        if self._pool is None:
            self._pool = UnsafeThreadPoolExecutor(self.workers)
        return self._pool


class QuickTrainer(ThreadTrainer):
    """Scores a trial by a checksum of its configuration: the search's logic, no training."""

    def _run_one_job_synchronous(self, trial):
        return demo.Evaluation(zlib.crc32(repr(trial.config).encode("utf-8")) % 1000 / 1000.0, 0.0)


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


# -- the search space ---------------------------------------------------------------------


def test_config_rejects_values_outside_the_space():
    with pytest.raises(ValueError):
        demo.Config("boosting", (0,), "none", ())
    with pytest.raises(ValueError):
        knn(features=())
    with pytest.raises(ValueError):
        knn(features=(4,))
    with pytest.raises(ValueError):
        knn(scaling="log")
    with pytest.raises(ValueError):
        demo.Config("knn", (0,), "none", (("C", 1.0),))


def test_config_describes_itself_on_one_line():
    assert knn(n_neighbors=5, features=(3, 2)).describe() == (
        "knn    n_neighbors=5 weights=uniform p=2 scaling=none features=PL,PW")


def test_random_configurations_cover_every_family_and_stay_in_the_space():
    rng = random.Random(0)
    configs = [demo.random_config(rng) for _ in range(200)]
    assert set(c.model for c in configs) == set(demo.MODELS)
    assert set(demo.MODELS) >= set(["knn", "logreg", "tree", "forest", "svc"])
    for config in configs:
        space = dict(demo.SPACE[config.model])
        assert all(value in space[name] for name, value in config.params)


def test_a_mutation_changes_one_gene_and_stays_in_the_space():
    rng = random.Random(1)
    for _ in range(200):
        parent = demo.random_config(rng)
        child = demo.mutate(parent, rng)
        assert isinstance(child, demo.Config)
        if child.model == parent.model:
            changed = [name for (name, a), (_, b) in zip(parent.params, child.params) if a != b]
            changed += ["features"] if child.features != parent.features else []
            changed += ["scaling"] if child.scaling != parent.scaling else []
            assert len(changed) <= 1


def test_first_generation_is_the_requested_number_of_new_random_trials():
    request = demo.ProposalRequest(seed=3, generation=0, first_trial_id=0, size=10)
    trials = demo.propose(request)
    assert [t.trial_id for t in trials] == list(range(10))
    assert all(t.generation == 0 and t.generation_size == 10 for t in trials)
    assert len(set(t.config for t in trials)) == 10
    assert demo.propose(request) == trials
    assert demo.propose(demo.ProposalRequest(4, 0, 0, 10)) != trials


def test_later_generations_avoid_seen_configurations_and_mutate_the_elite():
    first = demo.propose(demo.ProposalRequest(0, 0, 0, 10))
    seen = frozenset(t.config for t in first)
    best = first[0].config
    request = demo.ProposalRequest(0, 1, first_trial_id=10, size=20, elite=((0.9, best),),
                                   seen=seen)
    trials = demo.propose(request)
    assert [t.trial_id for t in trials] == list(range(10, 30))
    configs = [t.config for t in trials]
    assert len(set(configs)) == 20 and not seen.intersection(configs)
    # Most are one or two mutations of the only parent: they keep most of its genes.
    close = [c for c in configs if c.model == best.model and
             (c.features == best.features or c.scaling == best.scaling)]
    assert len(close) >= 10


# -- the training ---------------------------------------------------------------------------


@needs_sklearn
def test_every_family_builds_a_scikit_learn_pipeline_that_scores_on_iris():
    rng = random.Random(2)
    for model in demo.MODELS:
        config = demo.random_config(rng, model)
        estimator = demo.make_estimator(config)
        assert hasattr(estimator, "fit") and hasattr(estimator, "predict")
        evaluation = demo.evaluate(config)
        assert 0.0 <= evaluation.score <= 1.0 and evaluation.std >= 0.0


@needs_sklearn
def test_a_good_configuration_scores_well_and_the_score_is_deterministic():
    config = knn(n_neighbors=9, features=(2, 3), scaling="standard")
    evaluation = demo.evaluate(config)
    assert 0.9 < evaluation.score <= 1.0
    assert 0.0 <= evaluation.std < 0.1
    assert demo.evaluate(config) == evaluation
    assert type(evaluation.score) is float  # plain floats travel back from the pool


@needs_sklearn
def test_scaling_is_a_step_of_the_pipeline():
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    steps = [type(step) for _, step in demo.make_estimator(knn(scaling="minmax")).steps]
    assert steps[0] is MinMaxScaler
    steps = [type(step) for _, step in demo.make_estimator(knn(scaling="standard")).steps]
    assert steps[0] is StandardScaler
    assert len(demo.make_estimator(knn(scaling="none")).steps) == 1


# -- the processors and the search --------------------------------------------------------------


@needs_sklearn
def test_trainer_pickles_without_its_process_pool_and_runs_in_it():
    trainer = demo.Trainer(workers=1)
    try:
        pool = trainer._executor
        assert trainer._executor is pool  # created once, shared by the jobs
        copy = pickle.loads(pickle.dumps(trainer, protocol=2))
        assert copy._pool is None and copy.workers == 1
        trial = demo.Trial(0, 0, 1, knn(n_neighbors=9, features=(2, 3)))
        # As the processor submits a job: the processor and its method's name.
        from batch_processor._synchronous import _call_method
        evaluation = pool.submit(_call_method, trainer, "_run_one_job_synchronous", trial).result()
        assert evaluation == demo.evaluate(trial.config)
    finally:
        trainer.close()
    assert trainer._pool is None


@needs_sklearn
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


@needs_sklearn
@pytest.mark.parametrize("budget", [1, 10, 11, 25])
def test_search_spends_the_budget_in_generations(budget):
    outcome = run_search(budget=budget, seed=1, trainer=QuickTrainer(workers=3))
    assert outcome.evaluated == len(outcome.ranking) == budget
    trials = sorted(r.trial for r in outcome.ranking)
    generations = [trial.generation for trial in trials]
    assert generations == [i // demo.GENERATION_SIZE for i in range(budget)]


@needs_sklearn
def test_same_seed_same_ranking_whatever_the_number_of_workers():
    def ranking(workers, seed):
        outcome = run_search(budget=15, seed=seed, trainer=ThreadTrainer(workers=workers))
        return [(r.trial.trial_id, r.trial.config, r.evaluation) for r in outcome.ranking]
    reference = ranking(1, seed=5)
    assert ranking(4, seed=5) == reference
    assert ranking(4, seed=6) != reference


@needs_sklearn
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


@needs_sklearn
def test_main_prints_the_table_of_the_best_configurations(capsys, tmpdir):
    picture = str(tmpdir.join("pipeline.dot"))
    assert demo.main(["--budget", "12", "--top", "4", "--seed", "2", "--dot", picture]) == 0
    out, err = capsys.readouterr()
    check_report(out, budget=12, top=4)
    assert "the search took" in err
    assert picture in err


@needs_sklearn
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


@needs_sklearn
def test_main_writes_a_trace_with_one_event_per_training_job(capsys, tmpdir):
    import json
    path = str(tmpdir.join("demo.trace.json"))
    assert demo.main(["--budget", "7", "--dot", "", "--trace", path]) == 0
    assert path in capsys.readouterr()[1]
    with open(path) as f:
        events = json.load(f)
    names = dict((e["tid"], e["args"]["name"]) for e in events
                 if e["ph"] == "M" and e["name"] == "thread_name")
    jobs = [e for e in events if e["ph"] == "X" and names[e["tid"]] == "Trainer"]
    assert len(jobs) == 7
    assert [e["args"]["outcome"] for e in jobs] == ["ok"] * 7
    assert any(e["cat"] == "converter" for e in events if e["ph"] == "X")


def test_a_trace_path_that_cannot_be_written_is_a_usage_error(tmpdir, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--trace", str(tmpdir.join("missing", "t.json"))])
    assert "argument --trace:" in capsys.readouterr()[1]


@needs_sklearn
def test_main_shows_progress_per_processor_on_request(capfd, tmpdir):
    assert demo.main(["--budget", "5", "--progress", "--dot", ""]) == 0
    out, err = capfd.readouterr()
    check_report(out, budget=5, top=5)
    for name in ("Proposer", "Trainer", "Leaderboard"):
        assert name in err
    assert not tmpdir.listdir()


@needs_sklearn
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


@pytest.mark.parametrize("option", ["--budget", "--workers", "--top", "--gpus"])
def test_options_must_be_positive_integers(option, capsys):
    for value in ("0", "-1", "many"):
        with pytest.raises(SystemExit):
            demo.parse_args([option, value])
    assert "is not an integer >= 1" in capsys.readouterr()[1]


@pytest.mark.parametrize("make_path, problem", [
    (lambda tmpdir: str(tmpdir.join("missing", "pipeline.dot")), "does not exist"),
    (lambda tmpdir: str(tmpdir), "is a directory"),
])
def test_a_dot_path_that_cannot_be_written_is_a_usage_error(make_path, problem, tmpdir, capsys):
    with pytest.raises(SystemExit) as exit:
        demo.parse_args(["--dot", make_path(tmpdir)])
    assert exit.value.code == 2
    err = capsys.readouterr()[1]
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "argument --dot:" in lines[0] and problem in lines[0]
    assert "Traceback" not in err


@needs_sklearn
def test_a_picture_that_fails_to_be_written_is_one_line_after_the_table(tmpdir, capsys,
                                                                        monkeypatch):
    picture = tmpdir.join("pipeline.dot")
    picture.mkdir()  # it passes the check, then becomes a directory
    monkeypatch.setattr(demo, "_output_path_problem", lambda path: None)
    assert demo.main(["--budget", "3", "--dot", str(picture)]) == 1
    out, err = capsys.readouterr()
    assert SUMMARY.search(out).groups() == ("3", "3", "0")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cannot write the pipeline's picture to" in errors[0]
    assert "Traceback" not in err


def test_without_scikit_learn_the_demo_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # "import sklearn" raises ImportError
    assert demo.main(["--budget", "2", "--dot", ""]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and 'pip install ".[demo]"' in err and "error:" in err


def _new_session_with_default_sigint():
    # A process group of its own, as a terminal's foreground job: Ctrl-C reaches the
    # demo and its pool's workers. SIGINT as default, in case the tests' runner ignores it.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@needs_sklearn
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_ctrl_c_prints_the_best_so_far_and_exits_130_without_a_traceback(tmpdir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_processor.demo", "--budget", "100000", "--top", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(tmpdir),
        preexec_fn=_new_session_with_default_sigint)
    try:
        first = process.stderr.readline().decode("utf-8", "replace")  # the first result
        assert "new best" in first
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out, err = out.decode("ascii"), err.decode("utf-8", "replace")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted; the best configurations so far" in err
    rows = table_rows(out)
    assert 1 <= len(rows) <= 3 and rows[0][0] == "1"
    evaluated, budget, failed = SUMMARY.search(out).groups()
    assert budget == "100000" and int(evaluated) >= 1 and failed == "0"
    assert not tmpdir.join("batch_processor_demo.dot").check()  # no picture of a cut run


# -- durable runs: --checkpoint ------------------------------------------------------------


def test_the_processors_state_pickles_for_a_checkpoint():
    # What a checkpoint records of each processor: its state, without pool or log.
    lines = []
    search = demo.Search(budget=3, seed=4, trainer=demo.Trainer(workers=1), log=lambda line: None)
    search.leaderboard.log = lines.append
    for processor in (search.proposer, search.trainer, search.leaderboard):
        state = processor.__getstate__()
        pickle.loads(pickle.dumps(state, protocol=2))
    assert "_pool" not in search.trainer.__getstate__()
    assert "log" not in search.leaderboard.__getstate__()
    restored = demo.Leaderboard(1, 0, log=lines.append)
    restored.__setstate__(pickle.loads(pickle.dumps(search.leaderboard.__getstate__(), 2)))
    assert (restored.budget, restored.seed, restored.log) == (3, 4, lines.append)


def test_a_checkpoint_path_in_a_missing_directory_is_a_usage_error(tmpdir, capsys):
    with pytest.raises(SystemExit) as exit:
        demo.parse_args(["--checkpoint", str(tmpdir.join("missing", "search.sqlite"))])
    assert exit.value.code == 2
    assert "argument --checkpoint: the directory" in capsys.readouterr()[1]


def _demo_command(*options):
    return [sys.executable, "-m", "batch_processor.demo", "--budget", "12", "--top", "12",
            "--dot", "", "--checkpoint", "search.sqlite"] + list(options)


def _demo_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _run_demo(tmpdir):
    process = subprocess.Popen(_demo_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_demo_env(), cwd=str(tmpdir))
    out, err = process.communicate()
    return process.returncode, out.decode("ascii"), err.decode("utf-8", "replace")


@needs_sklearn
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_a_killed_search_run_again_with_its_checkpoint_finishes_with_the_same_table(tmpdir):
    process = subprocess.Popen(_demo_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_demo_env(), cwd=str(tmpdir),
                               preexec_fn=_new_session_with_default_sigint)
    try:
        watch = process.stderr.readline().decode("utf-8", "replace")  # how to watch it
        assert ("python -m batch_processor status search.sqlite" in watch
                and "python -m batch_processor dashboard search.sqlite" in watch)
        first = process.stderr.readline().decode("utf-8", "replace")  # the first result
        assert "new best" in first
        os.killpg(process.pid, signal.SIGKILL)  # the search, its pool and its fork server
        process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert tmpdir.join("search.sqlite").check()

    status, out, err = _run_demo(tmpdir)  # the same command again: it continues
    assert status == 0, err
    assert "resuming a run that stopped" in err and "Traceback" not in err
    check_report(out, budget=12, top=12)
    reference = run_search(budget=12, seed=0, trainer=ThreadTrainer(workers=2))
    assert table_rows(out) == [
        (str(rank), "%.4f" % r.evaluation.score, "%.4f" % r.evaluation.std, str(r.trial.trial_id),
         r.trial.config.model) for rank, r in enumerate(reference.ranking, 1)]

    status, again, err = _run_demo(tmpdir)  # finished: the table at once, nothing runs
    assert status == 0, err
    assert "is of a finished run" in err and "new best" not in err
    assert again == out


# -- --gpus N: the trainer shares N GPUs (issue 21) ------------------------------------------

GPU_LINE = re.compile(r"trial (\d+): trained on GPU (\S+): ")


@needs_sklearn
def test_gpus_gives_each_training_one_id_and_no_id_to_two_trainings_at_once(capsys, tmpdir):
    import json
    path = str(tmpdir.join("demo.trace.json"))
    assert demo.main(["--budget", "4", "--gpus", "2", "--dot", "", "--trace", path]) == 0
    out, err = capsys.readouterr()
    check_report(out, budget=4, top=4)
    gpu_of = dict((int(trial), gpu) for trial, gpu in GPU_LINE.findall(err))
    assert sorted(gpu_of) == [0, 1, 2, 3], err  # one line per trained model
    assert set(gpu_of.values()) == set(["0", "1"])  # two trainings at once: both GPUs
    with open(path) as f:
        events = json.load(f)
    names = dict((e["tid"], e["args"]["name"]) for e in events
                 if e["ph"] == "M" and e["name"] == "thread_name")
    spans = {}  # GPU id -> [(start, end)] of the training jobs that held it
    for event in events:
        if event["ph"] == "X" and names[event["tid"]] == "Trainer":
            trial = int(re.search(r"trial_id=(\d+)", event["args"]["descriptor"]).group(1))
            spans.setdefault(gpu_of[trial], []).append(
                (event["ts"], event["ts"] + event["dur"]))
    assert sum(len(s) for s in spans.values()) == 4
    for gpu, times in spans.items():
        times.sort()
        for (_, end), (start, _) in zip(times, times[1:]):
            # One job of a GPU ends before the next starts (ts and dur are rounded to
            # 0.001 microseconds each: that much slack, no more).
            assert end <= start + 0.002, (gpu, times)


def test_gpus_is_refused_with_dask(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--gpus", "2", "--dask"])
    assert "--gpus" in capsys.readouterr()[1]


def test_without_gpus_a_training_holds_no_device():
    assert demo.Trainer(workers=1).uses is None
    (resource, units), = demo.Trainer(workers=1, gpus=3).uses.items()
    assert (resource.name, resource.devices, units) == ("gpu", ("0", "1", "2"), 1)
