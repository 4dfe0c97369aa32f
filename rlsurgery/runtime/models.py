"""Fresh environments that surgeries of several areas use: the env of an evaluation or of an expert's
rollouts, with the agent's observation layout. (Saved models are read by :mod:`rlsurgery.io`.)"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.envs import ensure_registered


def evaluation_env(agent: BaseAlgorithm, key: str) -> gym.Env:
    """A fresh env of the agent's Gymnasium id for rollouts, with the agent's observation layout
    (SB3 trains image policies on channel-first frames: the frames are transposed the same way)."""
    env_id = getattr(agent, "rls_env_id", None)
    if env_id is None:
        raise IncompatibleSurgeryError(
            f"{key}: the agent's environment has no Gymnasium id to roll the expert out on"
        )
    ensure_registered(env_id)
    env = gym.make(env_id, **(getattr(agent, "rls_env_kwargs", None) or {}))
    space = agent.observation_space
    raw = env.observation_space.shape
    if raw is not None and space.shape != raw and len(raw) == 3 and space.shape == (raw[2], raw[0], raw[1]):
        env = gym.wrappers.TransformObservation(env, lambda obs: np.transpose(obs, (2, 0, 1)), space)
    return env
