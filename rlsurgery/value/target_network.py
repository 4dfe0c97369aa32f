"""Target network: how the bootstrap network θ⁻ follows the online network θ.

Mnih et al. 2015, https://www.nature.com/articles/nature14236 (hard copy);
Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971 (Polyak averaging)::

    hard:    θ⁻ ← θ                      every C steps
    polyak:  θ⁻ ← τ θ + (1 − τ) θ⁻        every C steps (C = 1: every step)
    none:    θ⁻ ≡ θ                       (copied after every update: no target network)

Steps are environment steps (``unit: env_steps``, as SB3 counts
``target_update_interval``) or gradient updates (``unit: updates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stable_baselines3.common.utils import polyak_update

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


@dataclass
class TargetNetworkParams:
    mode: Literal["hard", "polyak", "none"] = param(
        "hard", "hard copy, Polyak averaging, or no target network"
    )
    interval: int | None = param(
        None,
        "C: steps between updates (default: the agent's target_update_interval for hard, 1 for polyak)",
        ge=1,
    )
    tau: float = param(0.005, "τ of the Polyak average (mode polyak)", gt=0.0, le=1.0)
    unit: Literal["env_steps", "updates"] = param(
        "env_steps", "what C counts: environment steps or gradient updates"
    )

    def check(self) -> None:
        if self.unit == "updates" and self.mode == "hard" and self.interval is None:
            raise ValueError("parameter 'interval' is required with mode 'hard' and unit 'updates'")


def sync_target(online_params: list, target_params: list, tau: float) -> None:
    """θ⁻ ← τ θ + (1 − τ) θ⁻ (τ = 1: hard copy), in place."""
    polyak_update(online_params, target_params, tau)


@register(proof="tests/value/test_target_network.py::test_target_follows_rule")
class TargetNetwork(Surgery):
    """Choose how the target network tracks the online network (hard, Polyak or none)."""

    key = "target_network"
    attaches_to = (Attachment.LOSS,)
    Params = TargetNetworkParams
    stages = ("target_sync", "after_update")
    params: TargetNetworkParams

    def interval(self, agent: SurgicalDQN) -> int:
        """C, with the mode's default when not given."""
        if self.params.interval is not None:
            return self.params.interval
        return agent.target_update_interval if self.params.mode == "hard" else 1

    def _tau(self) -> float:
        return 1.0 if self.params.mode in ("hard", "none") else self.params.tau

    def _sync(self, agent: SurgicalDQN) -> None:
        sync_target(list(agent.q_net.parameters()), list(agent.q_net_target.parameters()), self._tau())
        sync_target(agent.batch_norm_stats, agent.batch_norm_stats_target, 1.0)

    def target_sync(self, agent: SurgicalDQN) -> None:
        """Per environment step (``unit: env_steps``)."""
        if self.params.mode == "none" or self.params.unit != "env_steps":
            return
        if agent._n_calls % max(self.interval(agent) // agent.n_envs, 1) == 0:
            self._sync(agent)

    def after_update(self, agent: SurgicalDQN, batch: Batch) -> None:
        """Per gradient update (``unit: updates``, and ``mode: none``)."""
        per_update = self.params.unit == "updates" and agent._n_updates % self.interval(agent) == 0
        if self.params.mode == "none" or per_update:
            self._sync(agent)
