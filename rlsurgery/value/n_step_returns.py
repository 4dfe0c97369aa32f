"""n-step returns: bootstrap after n rewards instead of one.

Sutton 1988; used in Rainbow (Hessel et al. 2018, https://arxiv.org/abs/1710.02298)::

    y = Σ_{k=0}^{m−1} γ^k r_{t+k} + (1 − d) γ^m Q_target(s_{t+m}, a*),   m = min(n, steps to episode end)

Alone it selects SB3's ``NStepReplayBuffer`` (so it equals ``DQN(n_steps=n)``); with
``prioritized_replay`` the prioritized buffer computes the same returns over the
(position, env) pairs it samples. The loss sees the discount γ^m through the
``discounts`` batch field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gymnasium import spaces

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN


@dataclass
class NStepParams:
    n: int = param(3, "number of rewards before bootstrapping", ge=1)


@register(
    proof="tests/replay/test_n_step.py::test_agent_n_step_equals_sb3_n_steps",
    name="N-step Returns",
    sections=(21,),
    translation="y = Σ_{k<n} γ^k r_{t+k} + γ^n Q(s_{t+n}, a*)",
    description="Multi-step bootstrap targets (Rainbow component)",
)
class NStepReturns(Surgery):
    """Bootstrap from s_{t+n} with the discounted sum of n rewards."""

    key = "n_step_returns"
    attaches_to = (Attachment.REPLAY,)
    Params = NStepParams
    params: NStepParams

    def validate(self, agent: SurgicalDQN) -> None:
        super().validate(agent)
        if isinstance(agent.observation_space, spaces.Dict):
            raise IncompatibleSurgeryError(f"{self.key}: Dict observation spaces are not supported yet")
        if agent.optimize_memory_usage:
            raise IncompatibleSurgeryError(f"{self.key}: does not support optimize_memory_usage=True")

    def configure(self, agent: SurgicalDQN) -> None:
        agent.n_steps = self.params.n
