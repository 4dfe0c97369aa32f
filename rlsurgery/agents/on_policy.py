"""What the surgical on-policy agents (SurgicalPPO, SurgicalA2C) share.

Around collection they run the composable ``on_rollout_start`` / ``on_rollout_end`` hooks,
and ``predict`` goes through the exclusive ``act`` stage (default: the policy's own).
The build order is the DQN family's: surgeries validated and configured, SB3 builds the
policy, network surgeries applied, the training env wrapped (intrinsic rewards).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from rlsurgery.agents.surgical import SurgicalMixin
from rlsurgery.core.pipeline import Stage

#: stages every surgical on-policy agent has
ON_POLICY_STAGES = (
    Stage("on_rollout_start", True, "hooks before each rollout"),
    Stage("on_rollout_end", True, "hooks after each rollout"),
    Stage("act", False, "action selection of predict"),
)


class OnPolicySurgicalMixin(SurgicalMixin):
    """Mixed into SB3 ``OnPolicyAlgorithm`` subclasses (before the SB3 class)."""

    STAGES: ClassVar[tuple[Stage, ...]] = ON_POLICY_STAGES

    def _setup_model(self) -> None:
        self._prepare_surgeries()
        for surgery in self._surgeries:
            surgery.configure(self)  # type: ignore[arg-type]
        super()._setup_model()  # type: ignore[misc]
        for surgery in sorted(self._surgeries, key=lambda s: s.build_order):
            surgery.modify_networks(self)  # type: ignore[arg-type]
        self.env = self._wrap_with_surgeries(self.env)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *self._surgery_excluded_save_params()]  # type: ignore[misc]

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Action for ``observation`` through the ``act`` stage (default: the policy's own).

        :param observation: the input observation
        :param state: recurrent state (unused)
        :param episode_start: episode starts (unused)
        :param deterministic: the distribution's mode instead of a sample
        :return: the action and the next state
        """
        owner = self._pipeline.owner("act")
        if owner is None:
            return super().predict(observation, state, episode_start, deterministic)  # type: ignore[misc]
        return owner.act(self, observation, state, episode_start, deterministic)  # type: ignore[attr-defined]

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's rollout collection between the ``on_rollout_start`` and ``on_rollout_end`` hooks."""
        self._pipeline.run_all("on_rollout_start", self)
        result = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[misc]
        self._pipeline.run_all("on_rollout_end", self)
        return result
