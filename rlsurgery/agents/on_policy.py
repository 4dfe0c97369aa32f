"""What the surgical on-policy agents (SurgicalPPO, SurgicalA2C) share.

Around collection they run the composable ``on_rollout_start`` / ``on_rollout_end`` hooks;
``predict`` goes through the exclusive ``act`` stage (default: the policy's own), as for
every surgical agent (:class:`~rlsurgery.agents.surgical.SurgicalMixin`).
"""

from __future__ import annotations

from typing import ClassVar

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

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's rollout collection between the ``on_rollout_start`` and ``on_rollout_end`` hooks."""
        self._pipeline.run_all("on_rollout_start", self)
        result = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[misc]
        self._pipeline.run_all("on_rollout_end", self)
        return result
