"""What the domain-adaptation surgeries share: the target env and a buffer of its observations.

A surgery names the target env (``target_env``, ``target_env_kwargs``: a Gymnasium id usable by every
command, e.g. ``rlsurgery/Shifted-v0`` for a miscalibrated sensor). Every ``collect_every`` env steps
of training, :class:`TargetObservations` rolls the agent's current policy (``predict`` with
``deterministic=False``: DQN's ε, PPO's and SAC's sampling; TD3's actor as it is)
for ``collect_steps`` steps in the target env and keeps the observations in a FIFO buffer of
``target_buffer``; rewards are never read. The buffer is working memory, refilled after ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery, reject_dict_observations
from rlsurgery.envs import ensure_registered
from rlsurgery.runtime.callbacks import EveryStep

#: the loss roles of the acting network (the one the adaptation terms act on)
ACTING_ROLES = ("q", "policy", "actor")
#: the families whose acting network has a latent layer (:attr:`NetworkLayout.latent`)
ADAPTATION_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "sac", "td3")


@dataclass
class TargetFields:
    target_env: str = param(doc="Gymnasium id of the target env (its rewards are never used)")
    target_env_kwargs: dict[str, Any] = param({}, "the target env's keyword arguments")
    target_buffer: int = param(5_000, "target observations kept (FIFO)", ge=1)
    collect_every: int = param(1_000, "env steps of training between two target rollouts", ge=1)
    collect_steps: int = param(256, "target env steps per rollout of the current policy", ge=1)
    batch_size: int = param(64, "target observations per update", ge=2)


class TargetObservations:
    """The target env and its observations, collected with the agent's current policy."""

    def __init__(self, fields: TargetFields, seed: int) -> None:
        ensure_registered(fields.target_env)
        self.env = gym.make(fields.target_env, **fields.target_env_kwargs)
        self.fields = fields
        self.buffer: list[np.ndarray] = []
        self.obs, _ = self.env.reset(seed=seed)
        self.next_collect = 0
        self.rng = np.random.default_rng(seed)

    def collect(self, agent: BaseAlgorithm, steps: int) -> None:
        for _ in range(steps):
            action, _ = agent.predict(self.obs, deterministic=False)
            self.buffer.append(np.asarray(self.obs, dtype=np.float32))
            self.obs, _reward, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                self.obs, _ = self.env.reset()
        del self.buffer[: max(0, len(self.buffer) - self.fields.target_buffer)]

    def maybe_collect(self, agent: BaseAlgorithm) -> None:
        """Roll the policy in the target env when ``collect_every`` steps have passed."""
        if agent.num_timesteps >= self.next_collect:
            self.collect(agent, self.fields.collect_steps)
            self.next_collect = agent.num_timesteps + self.fields.collect_every

    def sample(self, n: int, device: th.device) -> th.Tensor:
        """``n`` target observations drawn uniformly from the buffer."""
        rows = self.rng.integers(len(self.buffer), size=n)
        return th.as_tensor(np.stack([self.buffer[i] for i in rows]), device=device)


class AdaptationSurgery(Surgery):
    """The base of the domain-adaptation surgeries: the target env, its observations, the checks."""

    attaches_to = (Attachment.LOSS, Attachment.SCHEDULE)
    families = ADAPTATION_FAMILIES
    stages = ("aux_loss",)
    params: Any

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        reject_dict_observations(self.key, observation_space)

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        try:
            ensure_registered(self.params.target_env)
            env = gym.make(self.params.target_env, **self.params.target_env_kwargs)
        except Exception as exc:  # any failure to make it is the user's to fix
            raise IncompatibleSurgeryError(f"{self.key}: cannot make the target env: {exc}") from None
        space = env.observation_space
        env.close()
        if space.shape != agent.observation_space.shape:
            raise IncompatibleSurgeryError(
                f"{self.key}: the target env observes {space}, the agent {agent.observation_space}"
            )

    def target(self, agent: BaseAlgorithm) -> TargetObservations:
        """The target observations (made on first use)."""
        if getattr(self, "_target", None) is None:
            self._target = TargetObservations(self.params, int(agent.seed or 0) + 20_000)
        return self._target

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Collects target observations as training goes."""
        return EveryStep(lambda model: self.target(model).maybe_collect(model))

    def update_batches(
        self, agent: BaseAlgorithm, role: str, batch: Any
    ) -> tuple[th.Tensor, th.Tensor] | None:
        """(source states of the update's batch, target states) for a loss of the acting network, or None
        (another role, or before the first target rollout)."""
        if role not in ACTING_ROLES:
            return None
        target = self.target_batch(agent)
        if target is None:
            return None
        return batch.observations[: self.params.batch_size].float(), target

    def target_batch(self, agent: BaseAlgorithm) -> th.Tensor | None:
        """A batch of target observations, or None before the first rollout."""
        target = self.target(agent)
        if len(target.buffer) < 2:
            return None
        return target.sample(self.params.batch_size, agent.device)
