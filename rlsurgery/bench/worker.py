"""One run of a study, as a worker process (local pool or Ray task) executes it.

Evaluation protocol: every ``eval_freq`` environment steps and at the end of training,
``n_eval_episodes`` greedy episodes on a separate evaluation environment, seeded with
``10_000 + seed`` (never the training seed); the final score is the last evaluation's
mean return. The returns of the training episodes (with their step) are kept too, and the
logger values the study names in ``metrics`` each time the agent dumps its logs.
"""

from __future__ import annotations

import socket
import time
import traceback
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.vec_env import VecEnv

from rlsurgery.core.model_zip import trusted_zips

EVAL_SEED_OFFSET = 10_000


def metric_selected(key: str, metrics: list[str]) -> bool:
    """Whether logger ``key`` is one of ``metrics`` (exact keys, or prefixes ending in ``/``)."""
    return any(key == m or (m.endswith("/") and key.startswith(m)) for m in metrics)


class MetricRecorder(KVWriter):
    """An output of SB3's logger that keeps the chosen scalar values, with the step of each dump.

    :param metrics: logger keys (``train/approx_kl``) or prefixes ending in ``/`` (``train/``)
    """

    def __init__(self, metrics: list[str]) -> None:
        self.metrics = list(metrics)
        self.records: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        for key, value in key_values.items():
            if not metric_selected(key, self.metrics):
                continue
            if isinstance(value, np.ndarray | np.generic) and np.size(value) == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue  # histograms, images, text: not a scalar metric
            self.records.append({"step": int(step), "key": key, "value": float(value)})

    def close(self) -> None:
        """Nothing to release."""


class StudyCallback(BaseCallback):
    """Periodic greedy evaluation on a separate env, training episode returns, chosen logger values.

    :param eval_env: the evaluation environment
    :param eval_freq: evaluate every ``eval_freq`` environment steps (summed over envs)
    :param n_eval_episodes: episodes per evaluation
    :param metrics: logger keys (or prefixes ending in ``/``) to keep at every log dump
    """

    def __init__(
        self, eval_env: VecEnv, eval_freq: int, n_eval_episodes: int, metrics: list[str] | None = None
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.eval_freq = int(eval_freq)
        self.n_eval_episodes = int(n_eval_episodes)
        self.next_eval = self.eval_freq
        self.evals: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []
        self.recorder = MetricRecorder(metrics or [])

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The kept logger values: ``{"step", "key", "value"}`` per value and dump."""
        return self.recorder.records

    def _on_training_start(self) -> None:
        # learn() has configured the model's logger by now; listen to its dumps
        if self.recorder.metrics and self.recorder not in self.model.logger.output_formats:
            self.model.logger.output_formats.append(self.recorder)

    def evaluate(self) -> None:
        """Run one evaluation now and record it (also to SB3's logger, ``eval/mean_return``)."""
        returns, _ = evaluate_policy(
            self.model,
            self.eval_env,
            n_eval_episodes=self.n_eval_episodes,
            deterministic=True,
            return_episode_rewards=True,
        )
        values = np.asarray(returns, dtype=float)
        record = {
            "step": int(self.num_timesteps),
            "mean_return": float(values.mean()),
            "std_return": float(values.std()),
            "returns": [float(v) for v in values],
        }
        self.evals.append(record)
        self.logger.record("eval/mean_return", record["mean_return"])

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode is not None:
                self.episodes.append(
                    {
                        "step": int(self.num_timesteps),
                        "return": float(episode["r"]),
                        "length": int(episode["l"]),
                    }
                )
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if not self.evals or self.evals[-1]["step"] != self.num_timesteps:
            self.evaluate()


class SequenceCallback(StudyCallback):
    """A task-sequence run's evaluations: every task, acting as on that task, at each evaluation.

    ``task_evals`` gets one record per task and evaluation; ``evals`` (what the study's curves and
    final score read) the mean over the tasks of their mean returns.
    """

    def __init__(
        self, eval_envs: list[VecEnv], eval_freq: int, episodes: list[int], metrics: list[str] | None = None
    ) -> None:
        super().__init__(eval_envs[0], eval_freq, episodes[0], metrics)
        self.eval_envs = eval_envs
        self.episodes_per_task = list(episodes)
        self.task_evals: list[dict[str, Any]] = []

    def start_task(self, start_step: int, eval_freq: int) -> None:
        """The next evaluations: every ``eval_freq`` steps from ``start_step``."""
        self.eval_freq = int(eval_freq)
        self.next_eval = int(start_step) + self.eval_freq

    def evaluate(self) -> None:
        from rlsurgery.runtime.tasks import on_task

        means = []
        for task, env in enumerate(self.eval_envs):
            with on_task(self.model, task):
                returns, _ = evaluate_policy(
                    self.model,
                    env,
                    n_eval_episodes=self.episodes_per_task[task],
                    deterministic=True,
                    return_episode_rewards=True,
                )
            values = np.asarray(returns, dtype=float)
            self.task_evals.append(
                {
                    "step": int(self.model.num_timesteps),
                    "task": task,
                    "mean_return": float(values.mean()),
                    "std_return": float(values.std()),
                    "returns": [float(v) for v in values],
                }
            )
            means.append(float(values.mean()))
        step = int(self.model.num_timesteps)
        self.evals.append(
            {
                "step": step,
                "mean_return": float(np.mean(means)),
                "std_return": float(np.std(means)),
                "returns": means,
            }
        )
        if getattr(self, "logger", None) is not None:  # none before the first learn
            self.logger.record("eval/mean_return", float(np.mean(means)))


def execute_run(run: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one run (a :class:`~rlsurgery.bench.study.RunSpec` as a dict).

    Never raises for a failure of the run itself: a crash comes back as ``status: failed``
    with its traceback, so the rest of the study goes on.

    :return: ``run_id, status, final_score, final_std, steps, wall_s, evals, episodes, host``
        (and ``error`` for a failed run)
    """
    start = time.perf_counter()
    try:
        with trusted_zips(bool(run.get("trust"))):  # the study's --trust: zips its surgeries read
            if run.get("tasks"):
                return _train_sequence(run, start)
            return _train_and_evaluate(run, start)
    except Exception:  # a crash of this run is data, not the study's end
        return {
            "run_id": run["run_id"],
            "status": "failed",
            "error": traceback.format_exc(),
            "wall_s": time.perf_counter() - start,
            "host": socket.gethostname(),
        }


def _resolved(run: dict[str, Any], env_settings: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(env settings, the run's recipe resolved for that env, the env's keyword arguments)."""
    from rlsurgery.bench.study import merged_env_kwargs
    from rlsurgery.bench.suites import EnvSettings
    from rlsurgery.envs import ensure_registered
    from rlsurgery.recipes import load_recipe

    env = EnvSettings.from_dict(env_settings)
    ensure_registered(env.env_id)
    variant = run["variant"]
    recipe = load_recipe(variant["recipe"])
    env_kwargs = merged_env_kwargs(recipe, env)
    explore = {"explore": variant["explore"]} if variant.get("explore") is not None else {}
    resolved = recipe.resolve(
        env.env_id,
        surgeries=variant["surgeries"],
        remove=variant["remove"],
        **explore,
        seed=int(run["seed"]),
        device=run.get("device", "auto"),
        verbose=0,
        env_kwargs=env_kwargs,
        **variant["hyperparams"],
    )
    return env, resolved, env_kwargs


def _train_sequence(run: dict[str, Any], start: float) -> dict[str, Any]:
    """One agent through the run's tasks in order (:func:`rlsurgery.runtime.tasks.switch_task` between
    them), every task evaluated at step 0, every task's ``eval_freq`` and each task's end."""
    import torch as th

    from rlsurgery.runtime.tasks import switch_task

    th.set_num_threads(1)
    seed = int(run["seed"])
    settings = [_resolved(run, task) for task in run["tasks"]]
    eval_envs = [
        make_vec_env(
            env.env_id, n_envs=1, seed=EVAL_SEED_OFFSET + seed + 1_000 * j, env_kwargs=kwargs or None
        )
        for j, (env, _, kwargs) in enumerate(settings)
    ]
    train_envs = []
    task_ends = []
    try:
        train_envs.append(settings[0][1].make_env(seed=seed))
        model = settings[0][1].build(env=train_envs[0])
        first = settings[0][0]
        callback = SequenceCallback(
            eval_envs,
            int(first.eval_freq or max(int(first.steps) // 10, 1)),
            [env.n_eval_episodes for env, _, _ in settings],  # each task its own
            run.get("metrics") or [],
        )
        callback.model = model  # (learn sets it again, with the logger)
        callback.evaluate()  # before training: where every task's curve starts
        for i, (env, resolved, _) in enumerate(settings):
            if i > 0:
                train_envs.append(resolved.make_env(seed=seed + i))
                switch_task(model, train_envs[-1], i)
            steps = int(env.steps)
            callback.start_task(model.num_timesteps, int(env.eval_freq or max(steps // 10, 1)))
            model.learn(steps, callback=callback, reset_num_timesteps=False)
            task_ends.append({"task": i, "step": int(model.num_timesteps)})
        if run.get("model_path"):
            model.save(run["model_path"])
    finally:
        for env in [*train_envs, *eval_envs]:
            env.close()
    return _finished(run, model, callback, start, task_evals=callback.task_evals, task_ends=task_ends)


def _train_and_evaluate(run: dict[str, Any], start: float) -> dict[str, Any]:
    import torch as th

    th.set_num_threads(1)
    seed = int(run["seed"])
    env, resolved, env_kwargs = _resolved(run, run["env"])
    budget = int(env.steps or resolved.n_timesteps)
    eval_freq = int(env.eval_freq or max(budget // 10, 1))
    train_env = resolved.make_env(seed=seed)
    eval_env = make_vec_env(env.env_id, n_envs=1, seed=EVAL_SEED_OFFSET + seed, env_kwargs=env_kwargs or None)
    try:
        model = resolved.build(env=train_env)
        callback = StudyCallback(eval_env, eval_freq, env.n_eval_episodes, run.get("metrics") or [])
        model.learn(budget, callback=callback)
        if run.get("model_path"):
            model.save(run["model_path"])
    finally:
        train_env.close()
        eval_env.close()
    return _finished(run, model, callback, start)


def _finished(
    run: dict[str, Any], model: Any, callback: StudyCallback, start: float, **extra: Any
) -> dict[str, Any]:
    """The result of a finished run: its final evaluation, curves, episodes, kept metrics (and ``extra``)."""
    final = callback.evals[-1]
    return {
        "run_id": run["run_id"],
        "status": "done",
        "final_score": final["mean_return"],
        "final_std": final["std_return"],
        "steps": int(model.num_timesteps),
        "wall_s": time.perf_counter() - start,
        "evals": callback.evals,
        "episodes": callback.episodes,
        "metrics": callback.metrics,
        **extra,
        "host": socket.gethostname(),
    }
