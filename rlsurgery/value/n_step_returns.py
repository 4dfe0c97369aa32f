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
from stable_baselines3.common.buffers import NStepReplayBuffer

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_N_STEP, param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN


@dataclass
class NStepParams:
    n: int = param(
        3, "number of rewards before bootstrapping (at most the agent's buffer_size)", ge=1, le=MAX_N_STEP
    )


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
    families = ("dqn", "sac", "td3")
    Params = NStepParams
    params: NStepParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)

    def validate(self, agent: SurgicalDQN) -> None:
        super().validate(agent)
        if self.params.n > agent.buffer_size:
            raise IncompatibleSurgeryError(
                f"{self.key}: n={self.params.n} must be <= the agent's buffer_size ({agent.buffer_size}): "
                "a return cannot sum more rewards than the buffer holds"
            )
        if agent.optimize_memory_usage:
            raise IncompatibleSurgeryError(f"{self.key}: does not support optimize_memory_usage=True")
        buffer = agent.replay_buffer_class
        if buffer is not None and not (
            issubclass(buffer, NStepReplayBuffer) or getattr(buffer, "supports_n_steps", False)
        ):
            raise IncompatibleSurgeryError(
                f"{self.key}: replay_buffer_class={buffer.__name__} does not compute n-step returns"
            )

    def configure(self, agent: SurgicalDQN) -> None:
        agent.n_steps = self.params.n
