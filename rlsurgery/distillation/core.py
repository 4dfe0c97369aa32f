"""What every distillation surgery shares: policy outputs, the losses, and the training loop.

A teacher (any saved SB3 model) labels states; a student (any surgical agent, usually a
smaller network) is trained to reproduce its outputs. The *outputs* of a policy are::

    DQN family:              Q(s, ·)                      (logits of the Boltzmann policy)
    actor-critic, discrete:  the action logits
    continuous actions:      the deterministic action μ(s)

States come from rolling out the student itself (as DAgger, so the student learns where it
goes): ``rounds`` times, ``steps / rounds`` env steps with the current student, labelled by
the teacher, added to the data set, then ``epochs`` passes of Adam over all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn import functional as F

from rlsurgery.core.params import MAX_BATCH, MAX_SAMPLES, MAX_WIDTH, param
from rlsurgery.nets.layout import acting_parameters, layout_of, sync_acting_targets
from rlsurgery.nets.optim import minibatch_steps


def discrete_actions(model: BaseAlgorithm) -> bool:
    """Whether the model acts in a Discrete action space."""
    return isinstance(model.action_space, spaces.Discrete)


def policy_outputs(model: BaseAlgorithm, obs: th.Tensor) -> th.Tensor:
    """Q-values, action logits, or deterministic actions of ``model`` at ``obs`` (B, ·)."""
    return outputs_of_policy(model.policy, obs, discrete_actions(model))


def outputs_of_policy(policy: nn.Module, obs: th.Tensor, discrete: bool) -> th.Tensor:
    """:func:`policy_outputs` for a policy module (e.g. a peer copy of a student's policy)."""
    return layout_of(policy).outputs(policy, obs, discrete)


def policy_latent(model: BaseAlgorithm, obs: th.Tensor) -> th.Tensor:
    """The last hidden layer of the policy (the input of its output layer)."""
    return layout_of(model).latent(model.policy, obs)


def soft_kl(teacher: th.Tensor, student: th.Tensor, temperature: float) -> th.Tensor:
    """KL(softmax(t/τ) ‖ softmax(s/τ)), averaged over the batch."""
    target = F.softmax(teacher / temperature, dim=-1)
    return F.kl_div(F.log_softmax(student / temperature, dim=-1), target, reduction="batchmean")


@dataclass
class DistillationFields:
    """Parameters shared by the distillation surgeries."""

    teacher: str = param(
        "",
        "the teacher: a saved model (.zip) of any algorithm ('' with rlsurgery operate: the operated model)",
    )
    steps: int = param(
        10_000,
        "environment steps of student rollouts labelled by the teacher (all kept)",
        ge=1,
        le=MAX_SAMPLES,
    )
    rounds: int = param(5, "roll-out / fit rounds the steps are split into", ge=1)
    epochs: int = param(5, "passes over the collected data per round", ge=1)
    batch_size: int = param(128, "minibatch size", ge=1, le=MAX_BATCH)
    learning_rate: float = param(1e-3, "Adam learning rate", gt=0.0)
    net_arch: list[int] | None = param(
        None, f"rlsurgery operate: hidden layers of the student, widths 1..{MAX_WIDTH} (None: the teacher's)"
    )
    seed: int = param(0, "seed of the rollouts and the minibatches")

    def check(self) -> None:
        """Hidden widths the student can have."""
        bad = [w for w in self.net_arch or [] if not 1 <= w <= MAX_WIDTH]
        if bad:
            raise ValueError(f"'net_arch' widths must be in [1, {MAX_WIDTH}] (got {bad[0]})")


def collect_states(student: BaseAlgorithm, env: gym.Env, n_steps: int, seed: int) -> np.ndarray:
    """Observations visited by the student acting (sampling its own policy) for ``n_steps``."""
    states = []
    obs, _ = env.reset(seed=seed)
    for step in range(n_steps):
        states.append(np.array(obs, copy=True))
        action = student.predict(obs, deterministic=False)[0]
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + step + 1)
    return np.stack(states)


def distill(
    student: BaseAlgorithm,
    teacher: BaseAlgorithm,
    env: gym.Env,
    loss_fn: Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor],
    fields: DistillationFields,
    extra_modules: list[nn.Module] | None = None,
) -> dict[str, Any]:
    """Train ``student`` to reproduce ``teacher`` with ``loss_fn(obs, teacher_out, student_out)``.

    :param extra_modules: trained together with the student (e.g. a feature regressor)
    :return: what happened: data set size and the loss per round
    """
    device = student.device
    params = acting_parameters(student) + [p for m in extra_modules or [] for p in m.parameters()]
    optimizer = th.optim.Adam(params, lr=fields.learning_rate)
    generator = th.Generator().manual_seed(fields.seed)
    per_round = max(fields.steps // fields.rounds, 1)
    observations = np.zeros((0, *student.observation_space.shape), dtype=np.float32)
    teacher_outputs: th.Tensor | None = None
    round_losses = []
    for r in range(fields.rounds):
        student.policy.set_training_mode(False)
        new = collect_states(student, env, per_round, fields.seed + 7919 * r)
        with th.no_grad():
            labels = policy_outputs(teacher, th.as_tensor(new, device=teacher.device).float()).to(device)
        observations = np.concatenate([observations, new.astype(np.float32)])
        teacher_outputs = labels if teacher_outputs is None else th.cat([teacher_outputs, labels])
        obs = th.as_tensor(observations, device=device)
        student.policy.set_training_mode(True)
        labels = teacher_outputs

        def batch_loss(idx: th.Tensor, obs: th.Tensor = obs, labels: th.Tensor = labels) -> th.Tensor:
            return loss_fn(obs[idx], labels[idx], policy_outputs(student, obs[idx]))

        losses = []
        for _ in range(fields.epochs):
            losses += minibatch_steps(optimizer, len(obs), fields.batch_size, generator, device, batch_loss)
        round_losses.append(float(np.mean(losses)))
    student.policy.set_training_mode(False)
    sync_acting_targets(student)
    return {"states": len(observations), "round_losses": round_losses}


def action_agreement(student: BaseAlgorithm, teacher: BaseAlgorithm, observations: np.ndarray) -> float:
    """Share of states where both pick the same greedy action (discrete); −mean |Δa| otherwise."""
    a = np.asarray(student.predict(observations, deterministic=True)[0])
    b = np.asarray(teacher.predict(observations, deterministic=True)[0])
    if discrete_actions(student):
        return float(np.mean(a.reshape(-1) == b.reshape(-1)))
    return -float(np.mean(np.abs(a - b)))


def count_parameters(model: BaseAlgorithm) -> int:
    """Parameters of the acting network(s): online Q-network, actor-critic policy, or SAC actor."""
    return sum(p.numel() for p in acting_parameters(model))
