from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.exploration.entropy import soft_value


def test_ppo_entropy_term_and_dqn_soft_target(tiny_kwargs):
    # PPO: the loss is L_clip + α(t)·(−E[H]) + c_v·L_V with α from the schedule
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        surgeries=["entropy_regularization:schedule=linear,initial=0.1,final=0.02,fraction=1.0"],
    ).learn(128)
    assert model.ent_coef == pytest.approx(0.1 + (0.02 - 0.1) * 0.5)  # set before the 2nd rollout
    data = next(model.rollout_buffer.get(32))
    batch = PolicyBatch.from_rollout(data, 0.2)
    loss = model.compute_loss(batch)
    th.testing.assert_close(batch.entropy_loss, -batch.entropy.mean())
    th.testing.assert_close(
        loss, batch.policy_loss + model.ent_coef * batch.entropy_loss + 0.5 * batch.value_loss
    )
    # DQN: y = r + γ(1 − d)·α·logsumexp(Q_target(s')/α), by hand
    dqn = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["entropy_regularization:initial=0.5"], **tiny_kwargs
    )
    dqn.learn(100)
    batch = dqn.sample_batch(8)
    dqn.compute_loss(batch)
    with th.no_grad():
        q_next = dqn.q_net_target(batch.next_observations)
    manual = batch.rewards + 0.99 * (1 - batch.dones) * 0.5 * th.log(
        th.exp(q_next / 0.5).sum(1, keepdim=True)
    )
    th.testing.assert_close(batch.target, manual)
    # α → 0: the soft value tends to the max
    q = th.tensor([[1.0, 2.0, 0.5]])
    assert soft_value(q, 1e-3).item() == pytest.approx(2.0, abs=1e-3)
    assert soft_value(q, 1.0).item() > 2.0


def test_soft_target_conflicts_with_distributional_targets():
    with pytest.raises(IncompatibleSurgeryError, match="both fill the 'target' stage"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["distributional_rl", "entropy_regularization"])
