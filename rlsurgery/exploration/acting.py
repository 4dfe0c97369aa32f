"""Helpers for action-selection surgeries of the DQN family: Q-values in, env actions out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from rlsurgery.runtime.acting import env_actions, q_values_for

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN

__all__ = ["QValueActing", "env_actions", "q_values_for"]


class QValueActing:
    """Mixin of DQN-family action-selection surgeries that choose from Q(s, ·).

    ``act`` (the agent's ``act`` stage) stays greedy for deterministic predictions and
    otherwise hands the Q-values of the batch to :meth:`choose`.
    """

    def choose(self, agent: SurgicalDQN, observation: Any, q_values: th.Tensor) -> th.Tensor | np.ndarray:
        """Actions (B,) for a batch of observations and their Q-values (B, A)."""
        raise NotImplementedError(f"{type(self).__name__} must define choose()")

    def act(
        self,
        agent: SurgicalDQN,
        observation: Any,
        state: Any,
        episode_start: np.ndarray | None,
        deterministic: bool,
    ) -> tuple[np.ndarray, Any]:
        """Greedy when deterministic, else :meth:`choose` on Q(s, ·)."""
        if deterministic:
            return agent.policy.predict(observation, state, episode_start, deterministic=True)
        q_values, vectorized = q_values_for(agent, observation)
        return env_actions(self.choose(agent, observation, q_values), vectorized), state


def observation_batch(agent: SurgicalDQN, observation: Any) -> np.ndarray:
    """``observation`` as a batch (B, *obs_shape) numpy array."""
    obs = np.asarray(observation)
    shape = agent.observation_space.shape or ()
    return obs.reshape((-1, *shape))
