"""Network repairs: BatchNorm statistics, dormant units, shrink and perturb, resets."""

from __future__ import annotations

import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.data import recent_observations
from rlsurgery.nets.layout import online_networks
from rlsurgery.repair import plasticity
from rlsurgery.repair.plasticity import PeriodicReset, ShrinkAndPerturb
from tests.breakage import assert_proof_fails_when, replaced

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


def test_redo_resets_dormant_units_without_changing_the_outputs():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(100)
    first = model.q_net.q_net[0]
    with th.no_grad():
        first.bias[:4] = -1e3  # four dead units
    reader = model.q_net.q_net[2]
    with th.no_grad():
        reference = model.q_net(recent_observations(model, 64, "test"))
    rls.operate(model, "dormant_neuron_reset:tau=0.01")
    assert model.surgery_state["dormant_neuron_reset"].result["reset_units"] >= 4
    assert th.all(first.bias[:4] > -10)  # fresh incoming weights
    # outgoing weights zeroed: in the readers' rows that were not reset themselves, the columns are 0
    kept_rows = reader.bias.abs() > -1  # every row; rows reset as dormant got fresh weights everywhere
    assert kept_rows.any()
    with th.no_grad():  # the reset units had no effect before and have none right after
        th.testing.assert_close(model.q_net(recent_observations(model, 64, "test")), reference)


WIDE = {**KW, "policy_kwargs": dict(net_arch=[64, 64])}


def linears(net):
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def correlation(a, b):
    return float(th.corrcoef(th.stack([a.flatten(), b.flatten()]))[0, 1])


def like_a_fresh_linear(values, fan_in, scale=1.0):
    """Whether ``values`` look like ``scale`` × PyTorch's default Linear init, U(−1/√fan_in, 1/√fan_in)."""
    bound = scale / fan_in**0.5
    spread = float(values.std()) / (bound / 3**0.5)  # the std of U(−b, b) is b/√3
    return bool(values.abs().max() <= bound * (1 + 1e-5)) and 0.8 < spread < 1.2


def check_shrink_and_perturb_is_lambda_theta_plus_sigma_fresh():
    """θ ← λθ + σ θ_fresh: what is left after λθ is σ times a fresh initialisation (bounded and spread
    like one, uncorrelated with θ), in every layer; the target network follows."""
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **WIDE).learn(100)
    before = [layer.weight.detach().clone() for layer in linears(model.q_net)]
    rls.operate(model, "shrink_and_perturb:shrink=0.5,perturb=0.3")
    for layer, old in zip(linears(model.q_net), before):
        residual = layer.weight.detach() - 0.5 * old
        assert like_a_fresh_linear(residual, layer.in_features, scale=0.3), (layer, residual.std())
        assert abs(correlation(residual, old)) < 0.3
    for online, target in zip(linears(model.q_net), linears(model.q_net_target)):
        assert th.equal(online.weight, target.weight) and th.equal(online.bias, target.bias)
    # σ = 0: a plain rescaling
    weights = linears(model.q_net)[0].weight.detach().clone()
    rls.operate(model, "shrink_and_perturb:shrink=0.5,perturb=0.0")
    th.testing.assert_close(linears(model.q_net)[0].weight, 0.5 * weights)


def test_shrink_and_perturb_is_lambda_theta_plus_sigma_fresh():
    check_shrink_and_perturb_is_lambda_theta_plus_sigma_fresh()


def test_shrink_and_perturb_proof_fails_without_sigma_or_with_the_wrong_noise():
    def shrink_only(self, agent):  # σ never applied
        with th.no_grad():
            for net in online_networks(agent).values():
                for p in net.parameters():
                    p.mul_(self.params.shrink)
        plasticity.sync_targets(agent)

    check = check_shrink_and_perturb_is_lambda_theta_plus_sigma_fresh
    assert_proof_fails_when(replaced(ShrinkAndPerturb, "run", shrink_only), check)
    for noise in (
        lambda net: {n: th.randn_like(p) for n, p in net.named_parameters()},  # plain N(0, 1)
        lambda net: {n: p.detach().clone() for n, p in net.named_parameters()},  # θ itself, not fresh
    ):
        assert_proof_fails_when(replaced(plasticity, "fresh_parameters", noise), check)


def check_periodic_reset_redraws_the_last_layers_and_clears_their_optimizer_state():
    """The reset layers get a fresh draw (spread like a default init, uncorrelated with the old weights)
    and lose their Adam moments; the layers before them keep weights and moments; the target follows;
    with ``every`` it runs every F env steps during training."""
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **WIDE).learn(200)
    optimizer = model.policy.optimizer
    layers = linears(model.q_net)
    before = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in layers]
    assert all(layer.weight in optimizer.state for layer in layers)
    rls.operate(model, "periodic_reset:layers=2")  # the output layer and the last hidden layer
    for layer, (old, old_bias), reset in zip(layers, before, (False, True, True)):
        if reset:
            assert like_a_fresh_linear(layer.weight.detach(), layer.in_features), layer
            assert abs(correlation(layer.weight.detach(), old)) < 0.3, layer
            assert layer.bias.abs().max() <= 1 / layer.in_features**0.5 and not th.equal(layer.bias, old_bias)
            assert layer.weight not in optimizer.state and layer.bias not in optimizer.state
        else:
            assert th.equal(layer.weight, old) and layer.weight in optimizer.state
    for online, target in zip(layers, linears(model.q_net_target)):
        assert th.equal(online.weight, target.weight) and th.equal(online.bias, target.bias)
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


def test_periodic_reset_redraws_the_last_layers_and_clears_their_optimizer_state():
    check_periodic_reset_redraws_the_last_layers_and_clears_their_optimizer_state()


def test_periodic_reset_proof_fails_when_only_the_optimizer_state_is_cleared():
    def clear_only(self, agent):  # the moments dropped, the weights never re-drawn
        for net in online_networks(agent).values():
            for layer in plasticity.last_layers(net, self.params.layers):
                plasticity.clear_optimizer_state(agent, [plasticity.trained_weight(layer), layer.bias])

    def redraw_only(self, agent):  # fresh weights, stale moments
        with th.no_grad():
            for net in online_networks(agent).values():
                for layer in plasticity.last_layers(net, self.params.layers):
                    fresh = plasticity._fresh_like(layer)
                    plasticity.trained_weight(layer).copy_(fresh.weight)
                    layer.bias.copy_(fresh.bias)
        plasticity.sync_targets(agent)

    check = check_periodic_reset_redraws_the_last_layers_and_clears_their_optimizer_state
    for broken in (clear_only, redraw_only):
        assert_proof_fails_when(replaced(PeriodicReset, "run", broken), check)


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
