"""Double Q-learning: select the bootstrap action with the online network, evaluate it with the target.

van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461::

    a* = argmax_a Q_θ(s', a)
    y  = r + (1 − d) γ^n Q_θ⁻(s', a*)

Decoupling selection from evaluation removes the max-operator's over-estimation bias.
Fills only the next-action stage, so it composes with any target (scalar, C51, QR):
with a distributional head, Q_θ is the mean of the online return distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch as th

from rlsurgery.catalog import register
from rlsurgery.core.surgery import Attachment, Surgery

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


def double_q_target(
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    online_next_q: th.Tensor,
    target_next_q: th.Tensor,
) -> th.Tensor:
    """y = r + (1 − d) γ Q_target(s', argmax_a Q_online(s', a)); shapes (B, 1) and (B, A).

    >>> double_q_target(th.tensor([[1.0]]), th.tensor([[0.0]]), 0.5,
    ...                 online_next_q=th.tensor([[1.0, 2.0]]), target_next_q=th.tensor([[10.0, 4.0]]))
    tensor([[3.]])
    """
    next_actions = online_next_q.argmax(dim=1, keepdim=True)
    return rewards + (1 - dones) * discounts * target_next_q.gather(1, next_actions)


@register(proof="tests/value/test_double_q.py::test_agent_target_matches_hand_computed_double_q")
class DoubleQLearning(Surgery):
    """a* = argmax_a Q_online(s', a); the target network evaluates a*."""

    key = "double_q_learning"
    attaches_to = (Attachment.LOSS,)
    stages = ("next_action",)

    def next_action(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.next_actions = argmax of the online network's Q-values at s'."""
        with th.no_grad():
            batch.next_actions = agent.q_net(batch.next_observations).argmax(dim=1, keepdim=True)
