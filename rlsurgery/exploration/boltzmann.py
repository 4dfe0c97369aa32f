"""Boltzmann (softmax) exploration with a temperature schedule.

Sutton & Barto 2018, §2.3 / §13.1; Cesa-Bianchi et al. 2017 (https://arxiv.org/abs/1705.10257)::

    DQN family:  π(a | s) = exp(Q(s, a) / τ) / Σ_b exp(Q(s, b) / τ)
    PPO, A2C:    π(a | s) = softmax(logits(s) / τ)      (the policy's own distribution, tempered)

τ(t) follows a schedule (linear, exponential, piecewise, constant). On the DQN family the
surgery replaces ε-greedy while collecting; deterministic predictions stay greedy. On PPO
the temperature divides the action logits everywhere (collection, log-probabilities and
entropy in the loss), updated at the start of each rollout; argmax, hence deterministic
predictions, does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch as th
from gymnasium import spaces
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery, require_discrete_actions
from rlsurgery.exploration.acting import QValueActing
from rlsurgery.runtime.schedules import ScheduleFields, ValueSchedule

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from rlsurgery.agents.dqn import SurgicalDQN


def boltzmann_probabilities(q_values: th.Tensor, temperature: float) -> th.Tensor:
    """softmax(Q / τ) over the last dimension."""
    return th.softmax(q_values / temperature, dim=-1)


class TemperedLogits(nn.Module):
    """Wraps a logits layer: forward(x) = inner(x) / τ, τ a saved buffer."""

    def __init__(self, inner: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("temperature", th.tensor(float(temperature)))

    def forward(self, x: th.Tensor) -> th.Tensor:
        """Logits divided by the temperature."""
        return self.inner(x) / self.temperature


@dataclass
class BoltzmannParams(ScheduleFields):
    initial: float = param(1.0, "temperature τ at the start", gt=0.0)
    final: float = param(0.05, "temperature τ at the end", gt=0.0)


@register(proof="tests/exploration/test_boltzmann.py::test_action_frequencies_match_softmax")
class BoltzmannExploration(QValueActing, Surgery):
    """Softmax action sampling with a temperature schedule (DQN family, PPO and A2C)."""

    key = "boltzmann_exploration"
    attaches_to = (Attachment.EXPLORATION, Attachment.SCHEDULE)
    Params = BoltzmannParams
    families = ("dqn", *ON_POLICY_FAMILIES)
    stages: ClassVar[dict[str, tuple[str, ...]]] = {
        "dqn": ("act", "on_step"),
        **{family: ("on_rollout_start",) for family in ON_POLICY_FAMILIES},
    }
    selects_actions = True
    params: BoltzmannParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def configure(self, agent: BaseAlgorithm) -> None:
        p = self.params
        self.schedule = ValueSchedule.from_fields(p, p.initial, p.final)

    def temperature(self, agent: BaseAlgorithm) -> float:
        """τ at the agent's current step."""
        return self.schedule.at(agent)

    # ---------------------------------------------------------------- DQN family
    def on_step(self, agent: SurgicalDQN) -> None:
        """Log τ."""
        agent.logger.record("rollout/temperature", self.temperature(agent))

    def choose(self, agent: SurgicalDQN, observation: Any, q_values: th.Tensor) -> th.Tensor:
        """Sample a ~ softmax(Q(s, ·)/τ)."""
        probs = boltzmann_probabilities(q_values, self.temperature(agent))
        return th.multinomial(probs, 1).squeeze(1)

    # ---------------------------------------------------------------- PPO and A2C
    def modify_networks(self, agent: BaseAlgorithm) -> None:
        if agent.algorithm_family in ON_POLICY_FAMILIES:  # type: ignore[attr-defined]
            policy = agent.policy
            policy.action_net = TemperedLogits(policy.action_net, self.params.initial).to(agent.device)

    def on_rollout_start(self, agent: BaseAlgorithm) -> None:
        """Set τ for this rollout and the updates that follow it."""
        tau = self.temperature(agent)
        agent.policy.action_net.temperature.fill_(tau)
        agent.logger.record("rollout/temperature", tau)
