"""Hindsight experience replay: relabel the goals of stored transitions.

Andrychowicz et al. 2017 (https://arxiv.org/abs/1707.01495). For a transition
(s, a, s', g) of an episode, k extra goals g' are drawn and the reward recomputed::

    future    g' = the goal achieved at a later step of the same episode
    final     g' = the goal achieved at the end of the episode
    episode   g' = the goal achieved at any step of the episode
    r' = env.compute_reward(achieved_goal(s'), g', info)

so a failed episode still teaches how to reach the goals it did reach. The surgery plugs
SB3's own ``HerReplayBuffer`` into SurgicalDQN (goal envs with discrete actions) and
SurgicalSAC / SurgicalTD3 (continuous ones), with ``n_sampled_goal = k`` (a fraction k/(k+1) of each
batch is relabelled).

As with SB3's own HER, loading such an agent needs its env: ``rls.load(path, env=env)``.

Composes with the surgeries that do not replace the replay buffer: ``double_q_learning``,
``dueling_architecture``, ``distributional_rl``, ``noisy_nets``, the exploration and
schedule surgeries. Refused with ``prioritized_replay`` and ``n_step_returns`` (each needs
its own buffer class; a buffer doing both is not written yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery

#: surgeries that bring their own replay buffer, which HER's buffer cannot be combined with
CONFLICTS = ("prioritized_replay", "n_step_returns")


@dataclass
class HindsightParams:
    n_sampled_goal: int = param(
        4, "k: relabelled goals per real one (k/(k+1) of a batch is relabelled)", ge=1
    )
    strategy: Literal["future", "final", "episode"] = param("future", "where relabelled goals come from")


@register(proof="tests/replay/test_hindsight.py::test_relabelled_rewards_are_recomputed_with_compute_reward")
class HindsightExperienceReplay(Surgery):
    """Goal relabelling with SB3's HerReplayBuffer (future / final / episode, k goals)."""

    key = "hindsight_experience_replay"
    attaches_to = (Attachment.REPLAY,)
    Params = HindsightParams
    families = ("dqn", "sac", "td3")
    conflicts = CONFLICTS
    conflict_reason = (
        "each replaces the replay buffer; it composes with double_q_learning, dueling_architecture, "
        "distributional_rl, noisy_nets"
    )
    params: HindsightParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        needed = {"observation", "achieved_goal", "desired_goal"}
        if not isinstance(observation_space, spaces.Dict) or not needed <= set(observation_space.spaces):
            raise IncompatibleSurgeryError(
                f"{self.key}: needs a goal env: Dict observations with {', '.join(sorted(needed))}"
            )

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        if agent.replay_buffer_class not in (None, HerReplayBuffer):  # type: ignore[attr-defined]
            raise IncompatibleSurgeryError(
                f"{self.key}: the agent already has replay_buffer_class={agent.replay_buffer_class.__name__}"  # type: ignore[attr-defined]
            )

    def configure(self, agent: Any) -> None:
        agent.replay_buffer_class = HerReplayBuffer
        agent.replay_buffer_kwargs = {
            **(agent.replay_buffer_kwargs or {}),
            "n_sampled_goal": self.params.n_sampled_goal,
            "goal_selection_strategy": self.params.strategy,
        }
