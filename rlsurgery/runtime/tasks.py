"""Task sequences: one agent trained through tasks in order, the surgeries told at every switch.

A continual-learning run trains one agent on task 0, then task 1, … (each its own env, e.g. the
permuted or the heavier CartPoles of :mod:`rlsurgery.envs.variants`). Between two tasks
:func:`switch_task` calls every surgery's ``on_task_switch(agent, switch)`` with a
:class:`TaskSwitch` *before* the env changes (EWC computes its Fisher on the finished task's data,
PackNet prunes and freezes, progressive networks add a column), then sets the new env, empties the
replay buffer (as Continual World does for every method; ``memory_replay`` keeps its own store),
and records the switch in the agent's task log (``rls_task_log``, saved with the model and printed by
``rlsurgery inspect``). The current task's index is ``rls_task``; :func:`on_task` sets it for a while
(evaluating an old task with the task's PackNet mask or progressive column).

:func:`train_sequence` is the whole loop from Python: train, evaluate every task every
``eval_freq`` steps and after each task, switch. Every task's ``learn`` goes on from the agent's
step count (one clock for the whole sequence); after a switch the agent's schedules (DQN's ε, a
learning-rate schedule) run over the task's own steps and ``learning_starts`` counts from the switch,
as in a fresh run (``restart_schedules``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from rlsurgery.envs import ensure_registered
from rlsurgery.runtime.callbacks import EveryStep


@dataclass(frozen=True)
class TaskSwitch:
    """What a surgery is told when the agent moves to another task."""

    ended: int
    """index of the task just trained"""
    starting: int
    """index of the task about to be trained"""
    step: int
    """the agent's env step at the switch"""
    env: VecEnv
    """the new task's training env (not yet the agent's: the finished task's data is still there)"""


@dataclass(frozen=True)
class Task:
    """One task of a sequence: a Gymnasium id, its constructor arguments and its training budget."""

    env_id: str
    steps: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.env_id

    def make_env(self, seed: int, n_envs: int = 1) -> VecEnv:
        ensure_registered(self.env_id)
        return make_vec_env(self.env_id, n_envs=n_envs, seed=seed, env_kwargs=dict(self.env_kwargs) or None)


def current_task(agent: BaseAlgorithm) -> int:
    """The index of the task the agent trains (or acts) on now: 0 until the first switch."""
    return int(getattr(agent, "rls_task", 0) or 0)


def switch_task(
    agent: BaseAlgorithm, env: VecEnv, task: int, reset_replay: bool = True, restart_schedules: bool = True
) -> TaskSwitch:
    """Move ``agent`` to task ``task`` trained on ``env`` (see the module docstring); return the switch.

    :param reset_replay: empty the replay buffer (off-policy agents)
    :param restart_schedules: the next ``learn`` runs the agent's schedules (DQN's ε, learning-rate and
        clip-range schedules) over the task's own steps, and an off-policy agent collects
        ``learning_starts`` steps of the new task before it updates, as a fresh run would; else they go
        on from where the previous task left them
    """
    for what in ("observation_space", "action_space"):
        if getattr(env, what) != getattr(agent, what):
            raise ValueError(
                f"task {task}: its {what.replace('_', ' ')} {getattr(env, what)} differs from the agent's "
                f"{getattr(agent, what)}; the tasks of a sequence share their spaces"
            )
    switch = TaskSwitch(ended=current_task(agent), starting=int(task), step=int(agent.num_timesteps), env=env)
    for surgery in getattr(agent, "surgeries", []):
        hook = getattr(surgery, "on_task_switch", None)
        if hook is not None:
            hook(agent, switch)
    agent.set_env(env, force_reset=True)
    buffer = getattr(agent, "replay_buffer", None)
    if reset_replay and buffer is not None:
        buffer.reset()
    if restart_schedules:
        agent.rls_schedule_start = int(agent.num_timesteps)
        if hasattr(agent, "learning_starts"):
            if getattr(agent, "rls_learning_starts", None) is None:
                agent.rls_learning_starts = int(agent.learning_starts)  # the agent's own, kept once
            agent.learning_starts = int(agent.num_timesteps) + agent.rls_learning_starts
    agent.rls_task = switch.starting
    log = list(getattr(agent, "rls_task_log", None) or [])
    log.append({"task": switch.starting, "from": switch.ended, "step": switch.step})
    agent.rls_task_log = log
    return switch


@contextlib.contextmanager
def on_task(agent: BaseAlgorithm, task: int) -> Iterator[BaseAlgorithm]:
    """Act as on task ``task`` inside the block (surgeries that keep something per task read it)."""
    before = current_task(agent)
    agent.rls_task = int(task)
    try:
        yield agent
    finally:
        agent.rls_task = before


def evaluate_on(agent: BaseAlgorithm, task_index: int, env: VecEnv, episodes: int) -> float:
    """The mean greedy return of ``agent`` on task ``task_index`` (acting as on that task)."""
    with on_task(agent, task_index):
        mean, _ = evaluate_policy(agent, env, n_eval_episodes=episodes, deterministic=True, warn=False)
    return float(mean)


@dataclass
class SequenceResult:
    """Returns measured along a task sequence."""

    tasks: list[str]
    """the tasks' names, in order"""
    boundaries: list[int]
    """env step at the end of each task"""
    curve_steps: list[int] = field(default_factory=list)
    """env steps of the evaluations (before training, every ``eval_freq`` and at each task's end)"""
    curves: list[list[float]] = field(default_factory=list)
    """mean return on every task (columns) at each evaluation (rows)"""

    def matrix(self) -> np.ndarray:
        """R[i, j]: the return on task j after training task i (the evaluation at task i's end)."""
        rows = [self.curve_steps.index(step) for step in self.boundaries]
        return np.asarray([self.curves[r] for r in rows], dtype=float)


def train_sequence(
    agent: BaseAlgorithm,
    tasks: Sequence[Task],
    seed: int = 0,
    eval_freq: int = 10_000,
    eval_episodes: int = 10,
    reset_replay: bool = True,
    on_evaluation: Callable[[int, list[float]], None] | None = None,
    progress_bar: bool = False,
) -> SequenceResult:
    """Train ``agent`` through ``tasks`` in order, evaluating it on every task as it goes.

    The agent must be built on task 0's env (``tasks[0].make_env(seed)``). Evaluation envs get
    seeds ``seed + 10_000 + j`` (never the training seeds).

    :param on_evaluation: called with (step, returns per task) after every evaluation
    :return: the curves and the boundaries (:meth:`SequenceResult.matrix` is the task matrix)
    """
    eval_envs = [task.make_env(seed + 10_000 + j) for j, task in enumerate(tasks)]
    result = SequenceResult(tasks=[t.name for t in tasks], boundaries=[])

    def evaluate() -> None:
        returns = [evaluate_on(agent, j, env, eval_episodes) for j, env in enumerate(eval_envs)]
        result.curve_steps.append(int(agent.num_timesteps))
        result.curves.append(returns)
        if on_evaluation is not None:
            on_evaluation(int(agent.num_timesteps), returns)

    try:
        evaluate()  # before any training: where every task's curve starts
        for i, task in enumerate(tasks):
            if i > 0:
                previous = agent.get_env()
                switch_task(agent, task.make_env(seed + i), i, reset_replay=reset_replay)
                if previous is not None:
                    previous.close()
            next_eval = [int(agent.num_timesteps) + eval_freq]

            def maybe_evaluate(model: BaseAlgorithm, next_eval: list[int] = next_eval) -> None:
                if model.num_timesteps >= next_eval[0]:
                    next_eval[0] += eval_freq
                    evaluate()

            agent.learn(
                task.steps,
                callback=EveryStep(maybe_evaluate),
                reset_num_timesteps=False,
                progress_bar=progress_bar,
            )
            if not result.curve_steps or result.curve_steps[-1] != agent.num_timesteps:
                evaluate()
            result.boundaries.append(int(agent.num_timesteps))
    finally:
        for env in eval_envs:
            env.close()
    return result
