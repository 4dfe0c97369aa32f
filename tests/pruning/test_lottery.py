"""Lottery tickets: snapshots, rewinding, and rounds of magnitude pruning."""

from __future__ import annotations

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

import rlsurgery as rls
from rlsurgery import SurgicalDQN
from rlsurgery.core.errors import ParameterError
from rlsurgery.nets.masks import effective_weight, prunable_layers, sparsity

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def weights(model):
    return [effective_weight(m).clone() for _, m in prunable_layers(model)]


class WeightsAt(BaseCallback):
    """Records the weights at one env step (the user's callbacks run just before the surgeries')."""

    def __init__(self, step):
        super().__init__()
        self.step, self.weights = step, None

    def _on_step(self):
        if self.num_timesteps == self.step:
            self.weights = weights(self.model)
        return True


def test_rewinding_restores_the_snapshot(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["lottery_ticket_rewinding:rewind_step=50,apply_step=150"],
        **KW,
    )
    at_50 = WeightsAt(50)
    model.learn(110, callback=at_50)
    snapshot = at_50.weights
    assert not all(th.equal(a, b) for a, b in zip(weights(model), snapshot))  # training moved them
    store = model.rls_modules["lottery_ticket_rewinding"]
    assert bool(store.taken) and th.equal(store.weight_0, snapshot[0])
    # saved and resumed between the snapshot and the rewind: the snapshot comes back with the model
    model.save(tmp_path / "m.zip")
    resumed = rls.load(tmp_path / "m.zip", env=model.get_env())
    resumed.learn(30, reset_num_timesteps=False)  # step 140: not yet
    assert not th.equal(weights(resumed)[0], snapshot[0])
    (surgery,) = resumed.surgeries
    resumed.num_timesteps = (
        150  # the step the callback checks; called directly to look before the next update
    )
    surgery.advance(resumed)
    assert all(th.equal(a, b) for a, b in zip(weights(resumed), snapshot))
    th.testing.assert_close(resumed.q_net_target.state_dict()["q_net.0.weight"], snapshot[0])
    assert resumed.q_net.q_net[0].weight not in resumed.policy.optimizer.state  # stale moments dropped
    resumed.learn(30, reset_num_timesteps=False)  # rewound once only; training goes on from there
    assert not th.equal(weights(resumed)[0], snapshot[0])
    assert int(resumed.rls_modules["lottery_ticket_rewinding"].rounds_done) == 1
    with pytest.raises(ParameterError, match="'rewind_step' must be < 'apply_step'"):
        SurgicalDQN(
            "MlpPolicy", "CartPole-v1", surgeries=["lottery_ticket_rewinding:rewind_step=5,apply_step=5"]
        )


def test_lottery_ticket_rounds_prune_and_rewind():
    spec = "lottery_ticket_pruning:amount_per_round=0.5,rounds=2,period=60,rewind_step=30"
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **KW)
    layers = [m for _, m in prunable_layers(model)]
    at_30 = WeightsAt(30)
    model.learn(89, callback=at_30)
    snapshot = at_30.weights
    assert sparsity(layers) == 0
    (surgery,) = model.surgeries
    model.num_timesteps = 90  # 30 + 60: round 1 (called directly to look before the next update)
    surgery.advance(model)
    # round 1: half of the weights pruned (by the trained magnitudes), the survivors back at their step-30 values
    assert sparsity(layers) == pytest.approx(0.5, abs=1 / 352)
    for now, then in zip(weights(model), snapshot):
        kept = now != 0
        assert th.equal(now[kept], then[kept])
    model.learn(61, reset_num_timesteps=False)  # step 150: round 2, 1 − 0.5² = 75% sparsity
    assert sparsity(layers) == pytest.approx(0.75, abs=1 / 352)
    assert int(model.rls_modules["lottery_ticket_pruning"].rounds_done) == 2
    model.learn(100, reset_num_timesteps=False)  # no third round
    assert sparsity(layers) == pytest.approx(0.75, abs=1 / 352)
