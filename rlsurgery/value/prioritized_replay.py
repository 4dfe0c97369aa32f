"""Prioritized experience replay: sample transitions in proportion to their TD error.

Schaul et al. 2016, https://arxiv.org/abs/1511.05952 (proportional variant)::

    P(i) = p_i^α / Σ_k p_k^α,    p_i = |δ_i| + ε,    w_i = (N P(i))^(−β) / max_j w_j
    β(t) = β₀ + (1 − β₀) · min(1, t / (f · T))          (annealed to 1 over a fraction f of training)

Deviation from the paper: weights are normalised by the largest weight of the *batch*
(as Dopamine does), not of the whole buffer.

The surgery swaps in :class:`~rlsurgery.replay.prioritized.PrioritizedReplayBuffer`
(sum tree; composes with ``n_step_returns``), lets the loss be weighted by the
buffer's ``weights`` batch field, and after each update writes the new priorities from
the ``td_error`` batch field — whatever loss stage wrote it (Huber, C51, QR; on SAC and TD3
the critics' |y − Q_i| averaged over the critics, whose loss the weights scale; the actor's
loss is not weighted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from gymnasium import spaces

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations
from rlsurgery.replay.prioritized import PrioritizedReplayBuffer

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


@dataclass
class PrioritizedReplayParams:
    alpha: float = param(0.6, "priority exponent α (0: uniform sampling)", ge=0.0, le=1.0)
    beta: float = param(0.4, "initial importance-sampling exponent β₀", ge=0.0, le=1.0)
    beta_fraction: float = param(1.0, "fraction of training over which β is annealed to 1", gt=0.0, le=1.0)
    eps: float = param(1e-6, "ε added to |δ| so every transition keeps a chance", gt=0.0)


def annealed_beta(beta0: float, progress: float, fraction: float) -> float:
    """β₀ + (1 − β₀) · min(1, progress / fraction), progress in [0, 1].

    >>> annealed_beta(0.4, 0.5, 1.0)
    0.7
    """
    return beta0 + (1.0 - beta0) * min(1.0, progress / fraction)


@register(proof="tests/replay/test_prioritized.py::test_sampling_frequencies_match_priorities")
class PrioritizedReplay(Surgery):
    """Sample by priority (|δ| + ε)^α, correct with importance weights annealed to 1."""

    key = "prioritized_replay"
    attaches_to = (Attachment.REPLAY, Attachment.LOSS)
    families = ("dqn", "sac", "td3")
    family_notes: ClassVar[dict[str, str]] = {
        f: "weights the critics' loss, priorities from their mean |TD error|; the actor's loss is unweighted"
        for f in ("sac", "td3")
    }
    Params = PrioritizedReplayParams
    stages = ("after_update", "on_step")
    params: PrioritizedReplayParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)

    def validate(self, agent: SurgicalDQN) -> None:
        super().validate(agent)
        if agent.optimize_memory_usage:
            raise IncompatibleSurgeryError(f"{self.key}: does not support optimize_memory_usage=True")
        current = agent.replay_buffer_class
        if current is not None and not issubclass(current, PrioritizedReplayBuffer):
            raise IncompatibleSurgeryError(
                f"{self.key}: the agent already uses replay_buffer_class={current.__name__}"
            )

    def configure(self, agent: SurgicalDQN) -> None:
        agent.replay_buffer_class = PrioritizedReplayBuffer
        agent.replay_buffer_kwargs.update(alpha=self.params.alpha, beta=self.params.beta, eps=self.params.eps)

    def on_step(self, agent: SurgicalDQN) -> None:
        """Anneal β with training progress."""
        buffer = agent.replay_buffer
        buffer.beta = annealed_beta(
            self.params.beta, 1.0 - agent._current_progress_remaining, self.params.beta_fraction
        )
        agent.logger.record("train/per_beta", buffer.beta)

    def after_update(self, agent: SurgicalDQN, batch: Batch) -> None:
        """p_i ← |δ_i| + ε for the sampled transitions."""
        if batch.indices is None or batch.td_error is None:
            raise RuntimeError(f"{self.key}: the batch lacks 'indices' or 'td_error'")
        agent.replay_buffer.update_priorities(batch.indices, batch.td_error)
