"""ε-greedy with a choice of annealing schedules.

Mnih et al. 2015 (https://www.nature.com/articles/nature14236)::

    a = random action with probability ε(t), else argmax_a Q(s, a)
    linear       ε(t) = ε₀ + (ε₁ − ε₀) · min(1, progress / fraction)      (SB3's schedule)
    exponential  ε(t) = max(ε_min, ε_max · decayᵗ)
    piecewise    ε(t) interpolated through [[step, ε], ...]

The surgery sets ``exploration_rate`` after every environment step and acts with SB3's
own ε-greedy, so the linear schedule with SB3's parameters reproduces SB3's DQN exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3 import DQN

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.runtime.schedules import ScheduleFields, ValueSchedule

if TYPE_CHECKING:
    from gymnasium import spaces

    from rlsurgery.agents.dqn import SurgicalDQN


@dataclass
class EpsilonGreedyParams(ScheduleFields):
    initial: float = param(1.0, "ε at the start (ε_max)", ge=0.0, le=1.0)
    final: float = param(0.05, "ε at the end (ε_min)", ge=0.0, le=1.0)


@register(proof="tests/exploration/test_epsilon_greedy.py::test_epsilon_values_and_random_action_rate")
class EpsilonGreedyAnnealing(Surgery):
    """ε-greedy acting with a linear, exponential or piecewise ε schedule."""

    key = "epsilon_greedy_annealing"
    attaches_to = (Attachment.EXPLORATION, Attachment.SCHEDULE)
    Params = EpsilonGreedyParams
    families = ("dqn",)
    stages = ("act", "on_step")
    selects_actions = True
    params: EpsilonGreedyParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def configure(self, agent: SurgicalDQN) -> None:
        p = self.params
        self.schedule = ValueSchedule.from_fields(p, p.initial, p.final)
        if p.schedule == "linear":  # SB3's own schedule then agrees with ours
            agent.exploration_initial_eps, agent.exploration_final_eps = p.initial, p.final
            agent.exploration_fraction = p.fraction

    def epsilon(self, agent: SurgicalDQN) -> float:
        """ε at the agent's current step."""
        return self.schedule.at(agent)

    def on_step(self, agent: SurgicalDQN) -> None:
        """ε for the next action."""
        agent.exploration_rate = self.epsilon(agent)
        agent.logger.record("rollout/exploration_rate", agent.exploration_rate)

    def act(
        self,
        agent: SurgicalDQN,
        observation: Any,
        state: Any,
        episode_start: np.ndarray | None,
        deterministic: bool,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ε-greedy with the scheduled ε."""
        return DQN.predict(agent, observation, state, episode_start, deterministic)
