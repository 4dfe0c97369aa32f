"""rlsurgery tune: the space is checked before any trial, trials train on every seed, Optuna prunes
and resumes, the best configuration becomes a recipe, and the final check uses fresh seeds."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import optuna
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.cli import main
from rlsurgery.recipes import load_recipe
from rlsurgery.tune import TuneError, TuneSettings, load_space, tune
from rlsurgery.tune import objective as objective_module
from rlsurgery.tune.objective import TrialBudget, WholeBudget, trial_objective
from rlsurgery.tune.space import SearchSpace
from rlsurgery.tune.tuner import STUDY_NAME, TUNE_SEEDS_FROM, tuned_recipe
from tests.breakage import assert_proof_fails_when, replaced

GRID = """\
hyperparams:
  learning_rate: {choices: [1.0e-3, 3.0e-3]}
switch: [double_q_learning]
"""
TINY = dict(steps=400, eval_freq=200, n_eval_episodes=1, final_seeds=0)


def write(folder: Path, text: str, name: str = "space.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("hyperparams:\n  learning_rat: {low: 0.1, high: 0.2}\n", 2, "learning_rat"),
        ("hyperparams:\n  batch_size: {low: 64, high: 32}\n", 2, "'low' must be below 'high'"),
        ("hyperparams:\n  learning_rate: {low: 0.0, high: 0.1, log: true}\n", 2, "log range needs low > 0"),
        ("surgeries:\n  prioritized_replay:\n    alpha: {low: 0.2, high: 3.0}\n", 3, "alpha"),
        ("surgeries:\n  prioritized_replayy: {}\n", 2, "prioritized_replay"),
        ("switch: [double_q_learning, double_q_learning]\n", 1, "listed twice"),
        ("hyperparams:\n  gamma: 0.99\n", 1, "searches nothing"),
        ("hyperparam:\n  gamma: {low: 0.9, high: 0.99}\n", 2, "did you mean 'hyperparams'"),
    ],
)
def test_a_bad_space_fails_with_its_line_before_any_trial(tmp_path, text, line, message):
    space = write(tmp_path, text)
    out = tmp_path / "out"
    with pytest.raises(TuneError, match=message) as caught:
        tune(TuneSettings("dqn", "CartPole-v1", str(space), str(out), **TINY))
    assert f"space.yaml:{line}" in str(caught.value)
    assert not out.exists()  # nothing was created: no storage, no trial


def test_a_float_range_needs_a_step_for_grid_search(tmp_path):
    space = write(tmp_path, "hyperparams:\n  learning_rate: {low: 0.001, high: 0.01}\n")
    with pytest.raises(TuneError, match="needs 'choices' or a 'step'"):
        tune(TuneSettings("dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="grid", **TINY))
    stepped = load_space(
        write(tmp_path, "hyperparams:\n  gamma: {low: 0.9, high: 0.99, step: 0.03}\n"), "dqn"
    )
    assert stepped.grid() == {"hp.gamma": [0.9, 0.93, 0.96, 0.99]}


def test_the_switch_is_a_categorical_over_subsets(tmp_path):
    space = load_space(write(tmp_path, "switch: [double_q_learning, dueling_architecture]\n"), "dqn")
    assert space.subsets() == [
        "none",
        "double_q_learning",
        "dueling_architecture",
        "double_q_learning+dueling_architecture",
    ]
    fixed = optuna.trial.FixedTrial({"switch": "dueling_architecture"})
    assert [s.key for s in space.suggest(fixed).surgeries] == ["dueling_architecture"]


def test_grid_search_trains_every_point_once(tmp_path):
    space = write(tmp_path, GRID)
    summary = tune(
        TuneSettings(
            "dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="grid", trials=50, **TINY
        )
    )
    assert summary["trials"]["complete"] == 4  # 2 rates x 2 subsets, then the grid is done
    study = optuna.load_study(study_name=STUDY_NAME, storage=summary["storage"])
    points = {(t.params["hp.learning_rate"], t.params["switch"]) for t in study.trials}
    assert points == {(r, s) for r in (1e-3, 3e-3) for s in ("none", "double_q_learning")}


def check_a_switched_off_surgery_does_not_multiply_the_grid(tmp_path, monkeypatch):
    trained = []
    real = objective_module.train_config

    def counting(recipe, env_id, config, seeds, budget, report=None):
        trained.append(config.as_dict())
        return real(recipe, env_id, config, seeds, budget, report)

    monkeypatch.setattr(objective_module, "train_config", counting)
    space = write(
        tmp_path,
        "surgeries:\n  prioritized_replay: {alpha: {choices: [0.4, 0.8]}}\nswitch: [prioritized_replay]\n",
    )
    summary = tune(
        TuneSettings(
            "dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="grid", trials=50, **TINY
        )
    )
    study = optuna.load_study(study_name=STUDY_NAME, storage=summary["storage"])
    assert len(study.trials) == 4  # the grid's 2 × 2 points
    assert len(trained) == 3  # three configurations: off, alpha 0.4, alpha 0.8
    (twin,) = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    original = study.trials[twin.user_attrs["duplicate_of"]]
    assert twin.user_attrs["config"] == original.user_attrs["config"] and twin.value == original.value
    assert twin.params["switch"] == "none"


def test_a_switched_off_surgery_does_not_multiply_the_grid(tmp_path, monkeypatch):
    check_a_switched_off_surgery_does_not_multiply_the_grid(tmp_path, monkeypatch)


def test_the_twin_proof_fails_when_every_point_trains(tmp_path, monkeypatch):
    from tests.breakage import assert_proof_fails_when, replaced

    assert_proof_fails_when(
        replaced(objective_module, "finished_twin", lambda trial, config: None),
        check_a_switched_off_surgery_does_not_multiply_the_grid,
        tmp_path,
        monkeypatch,
    )


def test_a_surgery_that_cannot_act_on_the_recipe_fails_before_any_trial(tmp_path):
    space = write(
        tmp_path, "hyperparams:\n  learning_rate: {low: 1.0e-4, high: 1.0e-3}\nsurgeries:\n  bagging: {}\n"
    )
    settings = TuneSettings("ppo", "CartPole-v1", str(space), str(tmp_path / "out"), trials=1, **TINY)
    with pytest.raises(
        TuneError, match=r"space.yaml:4: .*bagging cannot be used with ppo on CartPole-v1"
    ) as info:
        tune(settings)
    assert "dqn" in str(info.value)  # the surgery's own reason: the families it acts on
    assert not (tmp_path / "out" / "tune.db").exists()


def check_chunks_follow_the_whole_schedule() -> None:
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    agent = SurgicalDQN("MlpPolicy", env, learning_starts=10_000, exploration_fraction=1.0, seed=0)
    rates = []
    for i in range(2):  # 400 steps in two chunks: ε falls linearly from 1 to 0.05 over all 400
        agent.learn(200, callback=objective_module.WholeBudget(400), reset_num_timesteps=i == 0)
        rates.append(agent.exploration_rate)
    assert rates == pytest.approx([1 - 0.95 * 200 / 400, 0.05])  # ε after t steps: 1 − 0.95 · t / 400
    # on-policy: PPO's learning rate (a schedule of the progress) after 128 of 256 steps
    ppo = SurgicalPPO(
        "MlpPolicy",
        DummyVecEnv([lambda: gym.make("CartPole-v1")]),
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        learning_rate=lambda progress: 1e-3 * progress,
        seed=0,
    )
    ppo.learn(128, callback=objective_module.WholeBudget(256))
    assert ppo._current_progress_remaining == pytest.approx(0.5)
    assert ppo.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)  # the last update's rate
    assert "_update_current_progress_remaining" not in ppo.__dict__  # taken away: the model saves as before


def test_a_budget_trained_in_chunks_follows_the_whole_schedule():
    check_chunks_follow_the_whole_schedule()


def test_the_schedule_proof_fails_when_each_chunk_is_its_own_budget():
    breakage = replaced(WholeBudget, "_on_training_start", lambda self: None)
    assert_proof_fails_when(breakage, check_chunks_follow_the_whole_schedule)


def test_a_trial_reports_the_mean_over_its_seeds_and_is_pruned(tmp_path, monkeypatch):
    space = load_space(write(tmp_path, GRID), "dqn")
    curves = {}
    original = objective_module.train_config

    def per_seed(recipe, env_id, config, seeds, budget, report=None):
        curves.update({s: original(recipe, env_id, config, [s], budget) for s in seeds})
        return original(recipe, env_id, config, seeds, budget, report)

    monkeypatch.setattr(objective_module, "train_config", per_seed)
    budget = TrialBudget(steps=400, eval_freq=200, n_eval_episodes=1)
    study = optuna.create_study(direction="maximize")
    study.optimize(trial_objective("dqn", "CartPole-v1", space, [3, 4], budget), n_trials=1)
    trial = study.trials[0]
    assert trial.value == pytest.approx((curves[3][-1] + curves[4][-1]) / 2)  # the mean of both seeds
    # reported at the steps trained: the recipe's DQN collects 256 steps at a time (train_freq)
    assert sorted(trial.intermediate_values) == [256, 512]
    pruning = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    pruning.optimize(trial_objective("dqn", "CartPole-v1", space, [3], budget), n_trials=1)
    assert pruning.trials[0].state == optuna.trial.TrialState.PRUNED
    assert list(pruning.trials[0].intermediate_values) == [256]  # stopped at its first evaluation


def finished_values(db: Path) -> dict[int, float]:
    """Finished trials' values; none while Optuna is still creating its tables."""
    try:
        with sqlite3.connect(db) as con:
            rows = con.execute(
                "SELECT t.number, v.value FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id "
                "WHERE t.state = 'COMPLETE'"
            ).fetchall()
    except sqlite3.OperationalError:  # the file exists before its tables do
        return {}
    return dict(rows)


def running_mid_trial(db: Path) -> bool:
    """A trial is running and has reported an evaluation (the kill lands inside its training)."""
    try:
        with sqlite3.connect(db) as con:
            rows = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_intermediate_values v ON v.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING'"
            ).fetchone()
    except sqlite3.OperationalError:
        return False
    return bool(rows and rows[0])


def test_a_killed_tune_resumes_without_losing_a_finished_trial(tmp_path):
    space = write(tmp_path, "hyperparams:\n  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "rlsurgery",
        "tune",
        "dqn",
        "CartPole-v1",
        "--space",
        str(space),
        "--sampler",
        "random",
        "--trials",
        "5",
        "--steps",
        "1500",
        "--eval-freq",
        "500",
        "--n-eval-episodes",
        "1",
        "--final-seeds",
        "0",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "tune.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists() and len(finished_values(db)) >= 2 and running_mid_trial(db):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the tune ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = finished_values(db)
    assert len(before) >= 2
    assert main([*command[3:], "--json"]) == 0
    after = finished_values(db)
    assert {n: after[n] for n in before} == before  # every finished trial kept, value unchanged
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
    lost = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    requeued = [t for t in study.trials if "requeued_from" in t.user_attrs]
    assert lost and all(t.user_attrs.get("lost") for t in lost)  # the trial the kill interrupted
    assert [t.number for t in lost] == [t.user_attrs["requeued_from"] for t in requeued]
    assert all(r.params == study.trials[r.user_attrs["requeued_from"]].params for r in requeued)


def test_an_interrupted_trial_runs_again_on_resume(tmp_path, monkeypatch):
    space = write(tmp_path, "hyperparams:\n  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    settings = TuneSettings(
        "dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="random", trials=2, **TINY
    )
    real = objective_module.train_config
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second trial
        return real(*args, **kwargs)

    monkeypatch.setattr(objective_module, "train_config", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        tune(settings)
    monkeypatch.setattr(objective_module, "train_config", real)
    summary = tune(settings)
    study = optuna.load_study(study_name=STUDY_NAME, storage=summary["storage"])
    interrupted = study.trials[1]
    assert interrupted.state == optuna.trial.TrialState.FAIL and interrupted.user_attrs["lost"]
    (again,) = [t for t in study.trials if t.user_attrs.get("requeued_from") == 1]
    assert again.state == optuna.trial.TrialState.COMPLETE and again.params == interrupted.params
    assert summary["trials"]["complete"] == 2


def test_a_shared_database_requeues_only_silent_trials(tmp_path, monkeypatch):
    from rlsurgery.tune import tuner

    monkeypatch.setattr(tuner, "HEARTBEAT", (1, 2))
    space = write(tmp_path, "hyperparams:\n  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = TuneSettings(
        "dqn",
        "CartPole-v1",
        str(space),
        str(tmp_path / "out"),
        sampler="random",
        trials=1,
        storage=url,
        **TINY,
    )
    storage = settings.optuna_storage()
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize")
    silent, alive = study.ask(), study.ask()  # two machines' running trials
    silent.suggest_float("hp.learning_rate", 1e-4, 1e-2, log=True)
    storage.record_heartbeat(silent._trial_id)
    time.sleep(3)  # the first machine went silent for longer than the grace period
    storage.record_heartbeat(alive._trial_id)
    import threading

    done = threading.Event()

    def other_machine() -> None:  # still alive: it keeps beating while this tune runs
        while not done.is_set():
            storage.record_heartbeat(alive._trial_id)
            done.wait(0.3)

    beating = threading.Thread(target=other_machine, daemon=True)
    beating.start()
    monkeypatch.setattr(tuner, "_check_same_search", lambda study, settings: None)
    try:
        tune(settings)
    finally:
        done.set()
        beating.join()
    trials = optuna.load_study(study_name=STUDY_NAME, storage=url).trials
    assert trials[silent.number].state == optuna.trial.TrialState.FAIL
    (again,) = [t for t in trials if t.user_attrs.get("requeued_from") == silent.number]
    assert again.params == trials[silent.number].params and again.state == optuna.trial.TrialState.COMPLETE
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING  # another machine's: left alone


def test_a_resumed_tune_must_search_the_same_space(tmp_path):
    space = write(tmp_path, GRID)
    settings = TuneSettings(
        "dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="grid", trials=1, **TINY
    )
    tune(settings)
    write(tmp_path, GRID.replace("3.0e-3", "5.0e-3"))
    with pytest.raises(TuneError, match="another search"):
        tune(settings)


def test_tune_ends_with_a_recipe_and_a_check_on_fresh_seeds(tmp_path, capsys):
    space = write(tmp_path, GRID)
    out = tmp_path / "out"
    code = main(
        [
            "tune",
            "dqn",
            "CartPole-v1",
            "--space",
            str(space),
            "--sampler",
            "grid",
            "--trials",
            "2",
            "--seeds-per-trial",
            "2",
            "--steps",
            "400",
            "--eval-freq",
            "200",
            "--n-eval-episodes",
            "1",
            "--final-seeds",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tuning_seeds"] == [TUNE_SEEDS_FROM, TUNE_SEEDS_FROM + 1]
    final = summary["final_check"]
    assert final["seeds"] == [0, 1] and not set(final["seeds"]) & set(summary["tuning_seeds"])
    with sqlite3.connect(Path(final["folder"]) / "study.db") as con:
        seeds = {row[0] for row in con.execute("SELECT seed FROM runs")}
    assert seeds == {0, 1}
    improvement = final["tables"]["improvement"][0]
    assert (improvement["variant"], improvement["baseline"]) == ("tuned", "defaults")
    best = summary["best"]["config"]
    resolved = load_recipe(summary["best_recipe"]).resolve("CartPole-v1")
    assert resolved.kwargs["learning_rate"] == best["hyperparams"]["learning_rate"]
    assert [s.key for s in resolved.surgeries] == [s["key"] for s in best["surgeries"]]
    assert resolved.n_timesteps == 400


def test_an_empty_space_object_cannot_grid():
    assert SearchSpace().grid() == {} and SearchSpace().grid_size() == 1


@pytest.mark.parametrize(
    ("sampler", "pruner"), [("random", "successive-halving"), ("tpe", "hyperband"), ("gp", "median")]
)
def test_each_optuna_sampler_and_pruner_runs_a_tune(tmp_path, sampler, pruner):
    space = write(tmp_path, "hyperparams:\n  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    settings = TuneSettings(
        "dqn",
        "CartPole-v1",
        str(space),
        str(tmp_path / "out"),
        sampler=sampler,
        pruner=pruner,
        trials=3,
        **TINY,
    )
    summary = tune(settings)
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 3
    study = optuna.load_study(study_name=STUDY_NAME, storage=summary["storage"])
    rates = {t.params["hp.learning_rate"] for t in study.trials}
    assert len(rates) == 3 and all(1e-4 <= r <= 1e-2 for r in rates)


def test_a_tune_file_holds_the_settings_beside_the_space(tmp_path, capsys):
    path = write(
        tmp_path,
        "recipe: dqn\nenv: CartPole-v1\nsampler: grid\ntrials: 1\nsteps: 400\neval_freq: 200\n"
        "n_eval_episodes: 1\nfinal_seeds: 0\n" + GRID,
        "tune.yaml",
    )
    out = tmp_path / "out"
    assert main(["tune", str(path), "--trials", "2", "--out", str(out), "--json"]) == 0  # options win
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings"]["sampler"] == "grid" and summary["settings"]["steps"] == 400
    assert summary["trials"]["complete"] == 2
    # resuming with other settings of the file (not its space) goes on
    path.write_text(path.read_text().replace("trials: 1", "trials: 3"), encoding="utf-8")
    assert main(["tune", str(path), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"]["complete"] == 3
    write(tmp_path, "recipe: dqn\nenv: CartPole-v1\ntrails: 5\n" + GRID, "typo.yaml")
    with pytest.raises(
        TuneError, match=r"typo.yaml:3: unknown search space entry 'trails'; did you mean 'trials'"
    ):
        load_space(tmp_path / "typo.yaml", "dqn")
    assert main(["tune", str(tmp_path / "typo.yaml"), "--out", str(tmp_path / "out2")]) == 2
    assert not (tmp_path / "out2").exists()


def test_a_configuration_that_cannot_train_stops_the_tune(tmp_path, monkeypatch):
    def diverges(*args, **kwargs):  # builds, then fails while training (a NaN loss, say)
        raise FloatingPointError("the loss became NaN")

    monkeypatch.setattr(objective_module, "train_config", diverges)
    space = write(tmp_path, "hyperparams:\n  gamma: {choices: [0.9, 0.99]}\n")
    with pytest.raises(TuneError, match=r"no trial finished \(3 failed\).*the loss became NaN"):
        tune(TuneSettings("ppo", "CartPole-v1", str(space), str(tmp_path / "out"), trials=10, **TINY))


def test_switching_off_a_recipe_surgery_removes_it(tmp_path):
    space = load_space(write(tmp_path, "switch: [prioritized_replay]\n"), "rainbow")
    off = space.suggest(optuna.trial.FixedTrial({"switch": "none"}))
    on = space.suggest(optuna.trial.FixedTrial({"switch": "prioritized_replay"}))
    assert off.remove == ["prioritized_replay"] and on.remove == []
    resolved = load_recipe("rainbow").resolve("CartPole-v1", remove=off.remove)
    assert "prioritized_replay" not in [s.key for s in resolved.surgeries]
    settings = TuneSettings("rainbow", "CartPole-v1", str(tmp_path / "space.yaml"), str(tmp_path / "out"))
    recipe = tuned_recipe(settings, off, "a note")
    assert "prioritized_replay" not in [s["key"] for s in recipe["surgeries"]]
    assert "double_q_learning" in [s["key"] for s in recipe["surgeries"]]


def test_the_median_rule_waits_a_quarter_of_the_budget():
    from rlsurgery.tune.tuner import make_pruner

    pruner = make_pruner("median", SearchSpace(), TrialBudget(steps=40_000, eval_freq=2_000))
    assert (pruner._n_warmup_steps, pruner._n_startup_trials) == (10_000, 5)
    assert (
        make_pruner("median", SearchSpace(), TrialBudget(steps=1_000, eval_freq=500))._n_warmup_steps == 500
    )


@pytest.mark.parametrize(
    "setting, match",
    [("trials: many", "trials"), ("sampler: annealing", "sampler"), ("metric: best", "metric")],
)
def test_a_bad_tune_file_setting_names_its_line(tmp_path, setting, match):
    path = write(
        tmp_path,
        f"recipe: dqn\nenv: CartPole-v1\n{setting}\nhyperparams:\n  gamma: {{low: 0.9, high: 0.99}}\n",
        "tune.yaml",
    )
    from rlsurgery.tune.tuner import load_tune_file

    with pytest.raises(TuneError, match=rf"tune.yaml:3: .*{match}"):
        load_tune_file(path)


def test_a_grid_budget_counts_trained_points_only():
    from rlsurgery.tune.tuner import _finished, _stop_at

    study = optuna.create_study(direction="maximize")
    for number, twin in enumerate((False, True, False)):
        trial = study.ask()
        if twin:
            trial.set_user_attr("duplicate_of", number - 1)
        study.tell(trial, 1.0)
    assert (_finished(study), _finished(study, trained_only=True)) == (3, 2)
    stopped = []
    study.stop = lambda: stopped.append(True)  # what the callback calls
    _stop_at(3, trained_only=True)(study, study.trials[-1])
    assert not stopped  # two points trained of three: the grid goes on
    _stop_at(3, trained_only=False)(study, study.trials[-1])
    assert stopped
