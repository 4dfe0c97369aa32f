from __future__ import annotations

import torch as th

from rlsurgery import SurgicalDQN
from rlsurgery.core.batch import Batch
from rlsurgery.value.double_q import double_q_target


def test_pure_function_hand_computed():
    rewards = th.tensor([[1.0], [0.0], [2.0]])
    dones = th.tensor([[0.0], [0.0], [1.0]])
    online = th.tensor([[1.0, 3.0], [5.0, 0.0], [0.0, 9.0]])
    target = th.tensor([[7.0, 2.0], [1.0, 4.0], [8.0, 6.0]])
    # a* = (1, 0, 1); Q_target(s', a*) = (2, 1, 6); the third transition is terminal
    expected = th.tensor([[1.0 + 0.9 * 2.0], [0.0 + 0.9 * 1.0], [2.0]])
    th.testing.assert_close(double_q_target(rewards, dones, 0.9, online, target), expected)


def linear_agent(surgeries):
    """Agent whose Q-networks are a single linear layer we can set by hand."""
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, gamma=0.9, policy_kwargs=dict(net_arch=[]), surgeries=surgeries
    )
    with th.no_grad():
        # Q(s, ·) = W s with s = e_0: Q = first column of W
        model.q_net.q_net[0].weight.zero_()
        model.q_net.q_net[0].bias.zero_()
        model.q_net_target.q_net[0].weight.zero_()
        model.q_net_target.q_net[0].bias.zero_()
        model.q_net.q_net[0].weight[:, 0] = th.tensor([1.0, 3.0])  # online argmax: action 1
        model.q_net_target.q_net[0].weight[:, 0] = th.tensor([5.0, 2.0])  # target argmax: action 0
    return model


def crafted_batch():
    s = th.zeros(1, 4)
    s_next = th.tensor([[1.0, 0.0, 0.0, 0.0]])
    return Batch(s, th.tensor([[0]]), s_next, th.tensor([[1.0]]), th.tensor([[0.0]]), 0.9)


def test_agent_target_matches_hand_computed_double_q():
    batch = crafted_batch()
    linear_agent(["double_q_learning"]).compute_loss(batch)
    assert batch.next_actions.item() == 1
    th.testing.assert_close(batch.target, th.tensor([[1.0 + 0.9 * 2.0]]))  # Q_target(s', 1) = 2


def test_plain_dqn_target_uses_target_max():
    batch = crafted_batch()
    linear_agent([]).compute_loss(batch)
    assert batch.next_actions.item() == 0
    th.testing.assert_close(batch.target, th.tensor([[1.0 + 0.9 * 5.0]]))  # max_a Q_target(s', a) = 5
