"""A trial's score: a configuration trained on several seeds in lockstep, scored by a named metric.

The K seeds of a trial train side by side in chunks of ``eval_freq`` steps; after each chunk every
seed is evaluated (greedy, ``n_eval_episodes`` episodes on its own evaluation env, seeded
``10_000 + seed`` as in studies) and the mean over seeds is reported to Optuna at that step, so a
pruner (median, successive halving, Hyperband) compares trials on the mean of all their seeds and
never on one lucky seed. Metrics:

    final   mean over seeds of the last evaluation's mean return
    auc     mean over seeds and evaluation points of the mean return (the area under the
            evaluation curve divided by its length: rewards learning early as well as well)

Chunked training keeps SB3's schedules (learning rate, exploration) on the trial's whole budget:
:class:`WholeBudget` gives each ``learn`` call the total, not the chunk, as its horizon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rlsurgery.bench.worker import EVAL_SEED_OFFSET
from rlsurgery.recipes import load_recipe
from rlsurgery.tune.space import Config

#: the tuning seeds (a trial's, a population's members') start here; the final check's start at 0
TUNE_SEEDS_FROM = 1000
Metric = Literal["final", "auc"]
METRICS = ("final", "auc")


class WholeBudget(BaseCallback):
    """While a ``learn`` call runs, the agent's progress (what its schedules read: learning rate,
    clip range, exploration) is measured against ``total`` steps, not against the call's own
    budget, so that a budget trained in chunks (``learn(chunk, reset_num_timesteps=False)``) follows
    the schedules of one ``learn(total)``.

    SB3 computes the progress in ``_update_current_progress_remaining(num_timesteps, total)``, with
    the call's ``total_timesteps`` (on-policy) or ``_total_timesteps`` (off-policy); the callback
    puts a version that uses ``total`` on the agent for the call and takes it away at its end."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = int(total)

    def _on_training_start(self) -> None:
        model, total = self.model, self.total
        model._total_timesteps = total
        whole = type(model)._update_current_progress_remaining

        def on_the_whole_budget(num_timesteps: int, _call_total: int) -> None:
            whole(model, num_timesteps, total)

        model._update_current_progress_remaining = on_the_whole_budget  # this call only
        model._update_current_progress_remaining(model.num_timesteps, total)

    def _on_training_end(self) -> None:
        self.model.__dict__.pop("_update_current_progress_remaining", None)

    def _on_step(self) -> bool:
        return True


@dataclass
class TrialBudget:
    """How a trial trains and is evaluated."""

    steps: int
    eval_freq: int
    n_eval_episodes: int = 5
    metric: Metric = "final"
    device: str = "cpu"


def score(curve: list[float], metric: Metric) -> float:
    """The trial's value from its curve of per-evaluation means over seeds."""
    if not curve:
        raise ValueError("no evaluation: the curve is empty")
    return float(curve[-1]) if metric == "final" else float(np.mean(curve))


def train_config(
    recipe: str,
    env_id: str,
    config: Config,
    seeds: list[int],
    budget: TrialBudget,
    report: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``config`` on ``seeds`` in lockstep; return the curve of mean returns over seeds, one
    entry per evaluation point. ``report(step, mean)`` is called after each evaluation and may
    raise (``optuna.TrialPruned``) to stop the trial."""
    import torch as th

    from rlsurgery.envs import ensure_registered

    th.set_num_threads(1)
    ensure_registered(env_id)
    resolved_recipe = load_recipe(recipe)
    agents, envs = [], []
    try:
        for seed in seeds:
            resolved = resolved_recipe.resolve(
                env_id,
                surgeries=[{"key": s.key, **s.params} for s in config.surgeries],
                remove=config.remove,
                seed=seed,
                device=budget.device,
                verbose=0,
                **config.hyperparams,
            )
            train_env = resolved.make_env(seed=seed)
            eval_env = make_vec_env(
                env_id, n_envs=1, seed=EVAL_SEED_OFFSET + seed, env_kwargs=resolved.env_kwargs or None
            )
            envs += [train_env, eval_env]
            agents.append((resolved.build(env=train_env), eval_env))
        curve: list[float] = []
        done = 0
        while done < budget.steps:
            target = min(done + budget.eval_freq, budget.steps)
            means = []
            for agent, eval_env in agents:
                # the steps trained, not asked for: on-policy agents finish whole rollouts
                agent.learn(
                    max(target - agent.num_timesteps, 1),
                    callback=WholeBudget(budget.steps),
                    reset_num_timesteps=done == 0,
                )
                mean_return, _ = evaluate_policy(
                    agent, eval_env, n_eval_episodes=budget.n_eval_episodes, deterministic=True
                )
                means.append(float(mean_return))
            done = min(int(agent.num_timesteps) for agent, _ in agents)
            curve.append(float(np.mean(means)))
            if report is not None:
                report(done, score(curve, budget.metric))
        return curve
    finally:
        for env in envs:
            env.close()


def requeue_lost(study: Any, trial: Any) -> None:
    """Queue a lost trial's parameters again (its process was killed or interrupted, or its machine
    went silent); the new trial's ``requeued_from`` names it, which marks it lost, not failed."""
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})


def finished_twin(trial: Any, config: dict[str, Any]) -> Any:
    """A finished trial of the study whose configuration is ``config``, or None.

    Points that differ only in parameters the trial never used (those of a switched-off surgery,
    which a grid still enumerates) are the same configuration; so are repeats that a sampler draws
    in a small discrete space. Trials train on the same tuning seeds, so a twin's value is this
    trial's."""
    import optuna

    for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if other.number != trial.number and other.user_attrs.get("config") == config:
            return other
    return None


def trial_objective(
    recipe: str, env_id: str, space: Any, seeds: list[int], budget: TrialBudget
) -> Callable[[Any], float]:
    """Optuna's objective: suggest a configuration, train it on ``seeds``, report as it goes."""

    def objective(trial: Any) -> float:
        import optuna

        config = space.suggest(trial)
        trial.set_user_attr("config", config.as_dict())
        same = finished_twin(trial, config.as_dict())
        if same is not None:  # the same configuration on the same seeds: the same result, not retrained
            trial.set_user_attr("duplicate_of", same.number)
            trial.set_user_attr("curve", same.user_attrs.get("curve"))
            return float(same.value)

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (value {value:.3f})")

        try:
            curve = train_config(recipe, env_id, config, seeds, budget, report)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # interrupted, not failed: run again when the tune is resumed
            trial.set_user_attr("lost", True)
            requeue_lost(trial.study, trial)
            raise
        except Exception as exc:  # kept with the trial: the tune's error names it if none finishes
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        trial.set_user_attr("curve", curve)
        return score(curve, budget.metric)

    return objective
