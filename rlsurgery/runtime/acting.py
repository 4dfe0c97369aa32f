"""Acting helpers shared by the surgeries that choose a DQN-family agent's actions: Q-values in, env
actions out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN


def q_values_for(agent: SurgicalDQN, observation: Any) -> tuple[th.Tensor, bool]:
    """Q(s, ·) for an observation or a batch of them: (B, A) Q-values and whether it was a batch."""
    agent.policy.set_training_mode(False)
    obs_tensor, vectorized = agent.policy.obs_to_tensor(observation)
    with th.no_grad():
        q_values = agent.q_net(obs_tensor)
    return q_values, vectorized


def env_actions(actions: th.Tensor | np.ndarray, vectorized: bool) -> np.ndarray:
    """Actions in the shape SB3's ``predict`` returns (a batch, or one action)."""
    out = actions.cpu().numpy() if isinstance(actions, th.Tensor) else np.asarray(actions)
    out = out.reshape(-1)
    return out if vectorized else out.squeeze(axis=0)
