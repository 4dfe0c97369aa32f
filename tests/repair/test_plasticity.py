"""Network repairs: BatchNorm statistics, dormant units, shrink and perturb, resets."""

from __future__ import annotations

import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.data import recent_observations

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def test_batch_norm_recalibration_uses_the_plain_average():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["batch_normalization"], **KW).learn(
        200
    )
    bn = next(m for m in model.q_net.modules() if isinstance(m, nn.BatchNorm1d))
    rls.operate(model, "batch_norm_re_calibration:batches=1,batch_size=128")
    obs = recent_observations(model, 128, "test")
    with th.no_grad():
        pre = model.q_net.q_net[0][0](model.q_net.extract_features(obs, model.q_net.features_extractor))
    th.testing.assert_close(bn.running_mean, pre.mean(0), rtol=1e-5, atol=1e-6)
    th.testing.assert_close(bn.running_var, pre.var(0, unbiased=True), rtol=1e-4, atol=1e-6)
    target_bn = next(m for m in model.q_net_target.modules() if isinstance(m, nn.BatchNorm1d))
    assert th.equal(target_bn.running_mean, bn.running_mean) and bn.momentum == 0.1
    with pytest.raises(IncompatibleSurgeryError, match="no BatchNorm layer"):
        rls.operate(SurgicalDQN("MlpPolicy", "CartPole-v1", **KW).learn(30), "batch_norm_re_calibration")


def test_redo_shrink_perturb_and_resets():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(100)
    first = model.q_net.q_net[0]
    with th.no_grad():
        first.bias[:4] = -1e3  # four dead units
    reader = model.q_net.q_net[2]
    with th.no_grad():
        reference = model.q_net(recent_observations(model, 64, "test"))
    rls.operate(model, "dormant_neuron_reset:tau=0.01")
    assert model.rls_reset_units >= 4
    assert th.all(first.bias[:4] > -10)  # fresh incoming weights
    # outgoing weights zeroed: in the readers' rows that were not reset themselves, the columns are 0
    kept_rows = reader.bias.abs() > -1  # every row; rows reset as dormant got fresh weights everywhere
    assert kept_rows.any()
    with th.no_grad():  # the reset units had no effect before and have none right after
        th.testing.assert_close(model.q_net(recent_observations(model, 64, "test")), reference)
    # shrink and perturb: λθ + σ·fresh
    weights = first.weight.detach().clone()
    rls.operate(model, "shrink_and_perturb:shrink=0.5,perturb=0.0")
    th.testing.assert_close(first.weight, 0.5 * weights)
    assert th.equal(model.q_net_target.q_net[0].weight, first.weight)
    # periodic resets of the last layer during training
    resets = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["periodic_reset:layers=1,every=50"], **KW
    )
    last, hidden = resets.q_net.q_net[4], resets.q_net.q_net[0]
    calls = []
    original = resets.surgeries[0].run
    resets.surgeries[0].run = lambda agent: (calls.append(agent.num_timesteps), original(agent))
    hidden_before = hidden.weight.detach().clone()
    resets.learn(120)
    assert calls == [50, 100]
    # the last layer's Adam state was cleared at step 100: fewer steps than the hidden layer's
    state = resets.policy.optimizer.state
    assert state[last.weight]["step"] < state[hidden.weight]["step"]
    assert not th.equal(hidden.weight, hidden_before)  # earlier layers keep training, not reset


def test_repairs_reach_the_weights_under_a_pruning_mask():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["magnitude_pruning:amount=0.5"], **KW)
    model.learn(60)
    layer = model.q_net.q_net[0]
    orig, mask = layer.weight_orig.detach().clone(), layer.weight_mask.clone()
    rls.operate(model, "shrink_and_perturb:shrink=0.5,perturb=0.5")
    moved = layer.weight_orig.detach()
    assert not th.allclose(moved, orig)  # a fresh draw was mixed in, not just a rescaling
    assert not th.allclose(moved, orig * (moved / orig).median())
    assert th.equal(layer.weight_mask, mask)  # the mask is kept
    rls.operate(model, "periodic_reset")
    out = model.q_net.q_net[4]
    assert th.equal(out.weight_mask, model.q_net_target.q_net[4].weight_mask)
