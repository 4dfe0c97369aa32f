"""The search methods (section 15) on a synthetic objective: each builds the Optuna sampler or
pruner its docstring names, and each proof fails when the method is swapped for a plain one."""

from __future__ import annotations

import math

import optuna
import pytest

from rlsurgery import SurgicalDQN, catalog
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.tune.methods.bayesian_optimization import BayesianOptimization
from rlsurgery.tune.methods.grid_search import GridSearch
from rlsurgery.tune.methods.hyperband import Hyperband
from rlsurgery.tune.methods.random_search import RandomSearch
from rlsurgery.tune.methods.successive_halving import SuccessiveHalving
from rlsurgery.tune.objective import TrialBudget
from rlsurgery.tune.space import Dimension, SearchSpace
from rlsurgery.tune.tuner import search_method
from tests.breakage import assert_proof_fails_when, replaced

optuna.logging.set_verbosity(optuna.logging.WARNING)
#: one log-uniform learning rate; the synthetic score peaks at 1e-3
SPACE = SearchSpace({"learning_rate": Dimension("hp.learning_rate", 1e-6, 1e-0, log=True)})
BUDGET = TrialBudget(steps=900, eval_freq=100)


def distance(trial: optuna.trial.FrozenTrial) -> float:
    return abs(math.log10(trial.params["hp.learning_rate"]) + 3)


def peaked(trial: optuna.Trial) -> float:
    return -distance_of(SPACE.suggest(trial).hyperparams["learning_rate"])


def distance_of(rate: float) -> float:
    return abs(math.log10(rate) + 3)


def run(key: str, objective, trials: int, seed: int = 0, space: SearchSpace = SPACE) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=catalog.create(key).build(space, BUDGET, seed))
    study.optimize(objective, n_trials=trials)
    return study


def check_grid() -> None:
    space = SearchSpace(
        {
            "batch_size": Dimension("hp.batch_size", choices=(32, 64)),
            "gamma": Dimension("hp.gamma", 0.9, 0.99, step=0.09),
        },
        {"double_q_learning": {}},
        ["double_q_learning"],
    )
    study = run("grid_search", lambda t: float(len(space.suggest(t).surgeries)), trials=20, space=space)
    points = [(t.params["hp.batch_size"], t.params["hp.gamma"], t.params["switch"]) for t in study.trials]
    assert len(points) == 8 == len(set(points))  # 2 × 2 × 2 points, each once, then it stops
    assert set(points) == {
        (b, g, s) for b in (32, 64) for g in (0.9, 0.99) for s in ("none", "double_q_learning")
    }


def test_grid_search_trains_every_point_once():
    check_grid()


def test_the_grid_proof_fails_on_random_draws():
    breakage = replaced(
        GridSearch, "build", lambda self, space, budget, seed: optuna.samplers.RandomSampler(seed)
    )
    assert_proof_fails_when(breakage, check_grid)


def check_random_ignores_results() -> None:
    up = run("random_search", peaked, trials=30, seed=3)
    down = run("random_search", lambda t: -peaked(t), trials=30, seed=3)
    assert [t.params for t in up.trials] == [t.params for t in down.trials]  # the scores changed nothing
    logs = [math.log10(t.params["hp.learning_rate"]) for t in up.trials]
    assert min(logs) < -4.5 and max(logs) > -1.5  # spread over the log range, not only near the peak


def test_random_search_ignores_the_results():
    check_random_ignores_results()


def test_the_random_proof_fails_on_a_model_based_sampler():
    tpe = lambda self, space, budget, seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)  # noqa: E731
    assert_proof_fails_when(replaced(RandomSearch, "build", tpe), check_random_ignores_results)


def check_model_concentrates(key: str = "bayesian_optimization:n_startup_trials=8") -> None:
    model = run(key, peaked, trials=40, seed=1)
    random = run("random_search", peaked, trials=40, seed=1)
    late = lambda study: sorted(distance(t) for t in study.trials[-20:])[10]  # noqa: E731 (median)
    assert late(model) < late(random) / 2  # the model's late trials sit near the optimum


@pytest.mark.parametrize("model", ["tpe", "gp"])
def test_bayesian_optimization_concentrates_near_the_optimum(model):
    check_model_concentrates(f"bayesian_optimization:model={model},n_startup_trials=8")


def test_the_bayesian_proof_fails_on_random_draws():
    breakage = replaced(
        BayesianOptimization, "build", lambda self, space, budget, seed: optuna.samplers.RandomSampler(seed)
    )
    assert_proof_fails_when(breakage, check_model_concentrates)


def learning_curve(trial: optuna.Trial) -> float:
    """A trial's mean return at each evaluation: its quality times the share of the budget done."""
    quality = 10.0 - distance_of(SPACE.suggest(trial).hyperparams["learning_rate"])
    value = 0.0
    for step in range(BUDGET.eval_freq, BUDGET.steps + 1, BUDGET.eval_freq):
        value = quality * step / BUDGET.steps
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def check_pruner_stops_weak_trials(key: str) -> None:
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=catalog.create(key).build(SPACE, BUDGET, 0),
    )
    study.optimize(learning_curve, n_trials=40)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    used = sum(max(t.intermediate_values) for t in study.trials)
    assert len(pruned) >= 10 and used < 0.7 * 40 * BUDGET.steps  # many stopped early: steps saved
    best = max(study.trials, key=lambda t: 10.0 - distance(t))
    assert best.state == optuna.trial.TrialState.COMPLETE  # the best configuration ran to the end
    assert min(max(t.intermediate_values) for t in pruned) < BUDGET.steps / 2


def test_successive_halving_stops_the_weak_trials_early():
    check_pruner_stops_weak_trials("successive_halving")


def test_hyperband_stops_the_weak_trials_early():
    check_pruner_stops_weak_trials("hyperband")


@pytest.mark.parametrize(
    ("cls", "key"), [(SuccessiveHalving, "successive_halving"), (Hyperband, "hyperband")]
)
def test_the_pruner_proofs_fail_without_pruning(cls, key):
    breakage = replaced(cls, "build", lambda self, space, budget, seed: optuna.pruners.NopPruner())
    assert_proof_fails_when(breakage, check_pruner_stops_weak_trials, key)


def test_a_search_method_is_not_a_change_to_an_agent():
    with pytest.raises(IncompatibleSurgeryError, match="a search method of rlsurgery tune"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["hyperband"])


def test_tune_options_take_short_names_and_specs():
    assert search_method("tpe", "sampler").key == "bayesian_optimization"
    assert search_method("gp", "sampler").params.model == "gp"
    assert search_method("hyperband:reduction_factor=2", "pruner").params.reduction_factor == 2
    with pytest.raises(ValueError, match="not a sampler"):
        search_method("hyperband", "sampler")
    with pytest.raises(ValueError, match="reduction_factor"):
        search_method("successive_halving:reduction_factor=1", "pruner")
