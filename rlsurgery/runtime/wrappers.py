"""The base of the environment wrappers that surgeries put around an agent's training env.

A surgery with a ``wrap_env(agent, env)`` hook returns a :class:`SurgeryVecEnvWrapper`; the
surgical agent then knows its own wrappers without knowing the surgeries: it peels them off an env
handed over from another agent (so an env is never wrapped twice), tells them where collection goes
on after ``set_env`` without a reset, and logs the statistics they collected
(``rollout/<prefix>_<name>``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class SurgeryVecEnvWrapper(VecEnvWrapper):
    """A ``VecEnvWrapper`` put on by a surgery.

    :param venv: the wrapped environment
    :param name: the wrapper's label in the logs
    """

    #: prefix of the wrapper's log keys under ``rollout/``
    log_prefix = "surgery"

    def __init__(self, venv: VecEnv, name: str) -> None:
        super().__init__(venv)
        self.name = name

    def continue_from(self, obs: np.ndarray) -> None:
        """Take ``obs`` as the current observations (an env handed over without a reset)."""

    def pop_statistics(self) -> dict[str, float]:
        """What to log since the last call, by name (empty: nothing)."""
        return {}


def unwrap_surgery_wrappers(env: Any) -> Any:
    """``env`` without the surgery wrappers on top of it."""
    while isinstance(env, SurgeryVecEnvWrapper):
        env = env.venv
    return env


def surgery_wrappers(env: Any) -> list[SurgeryVecEnvWrapper]:
    """The surgery wrappers on top of ``env``, outermost first."""
    found = []
    while isinstance(env, SurgeryVecEnvWrapper):
        found.append(env)
        env = env.venv
    return found
