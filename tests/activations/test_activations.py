"""Activation surgeries: modules replaced, the function changes (or not) as the formula says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError

KW = dict(learning_starts=64, batch_size=16, buffer_size=2000, policy_kwargs=dict(net_arch=[32, 32]))
OBS = th.as_tensor(np.random.default_rng(0).normal(size=(128, 4)).astype(np.float32))


def kinds(net):
    return [
        type(m)
        for m in net.modules()
        if type(m) in (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.PReLU, nn.Softplus)
    ]


def test_replacements_change_the_modules_and_the_function_as_stated(tmp_path):
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    with th.no_grad():
        reference = plain.q_net(OBS)
    # PReLU with a₀ = 0 is ReLU: same outputs, but the slopes are new trained parameters
    prelu = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["learnable_activation"], **KW)
    assert kinds(prelu.q_net) == [nn.PReLU, nn.PReLU] and kinds(prelu.q_net_target) == [nn.PReLU, nn.PReLU]
    with th.no_grad():
        th.testing.assert_close(prelu.q_net(OBS), reference)
    slopes = [m.weight for m in prelu.q_net.modules() if isinstance(m, nn.PReLU)]
    optimized = {id(p) for g in prelu.policy.optimizer.param_groups for p in g["params"]}
    assert all(id(s) in optimized for s in slopes)
    prelu.learn(300)
    assert any(s.abs().sum() > 0 for s in slopes)  # the slopes learn
    # Softplus_β is within log 2 / β of ReLU per unit: outputs stay close for a large β, differ for a small one
    smooth = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["smooth_approximation:beta=200"], **KW
    )
    assert kinds(smooth.q_net) == [nn.Softplus, nn.Softplus]
    with th.no_grad():
        gap = (smooth.q_net(OBS) - reference).abs().max().item()
    assert 0 < gap < 0.1
    rough = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["smooth_approximation:beta=1"], **KW)
    with th.no_grad():
        assert (rough.q_net(OBS) - reference).abs().max().item() > gap
    layer = nn.Softplus(beta=4.0)
    x = th.linspace(-3, 3, 101)
    assert (layer(x) - th.relu(x)).abs().max().item() <= math.log(2) / 4 + 1e-6
    # replacement: Tanh → SiLU in PPO's MLP; the function changes
    ppo = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["activation_replacement:to=silu,source=tanh"]
    )
    assert set(kinds(ppo.policy)) == {nn.SiLU}
    ppo.save(tmp_path / "silu.zip")
    loaded = rls.load(tmp_path / "silu.zip")
    assert set(kinds(loaded.policy)) == {nn.SiLU}
    np.testing.assert_array_equal(
        ppo.predict(OBS.numpy(), deterministic=True)[0], loaded.predict(OBS.numpy(), deterministic=True)[0]
    )


def test_refusals():
    with pytest.raises(IncompatibleSurgeryError, match="have no ReLU activation to replace"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["learnable_activation"])  # PPO's MLP uses Tanh
    with pytest.raises(ParameterError, match="'source' and 'to' are both 'gelu'"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["activation_replacement:to=gelu,source=gelu"])
    with pytest.raises(ParameterError, match="'to' must be one of"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["activation_replacement:to=swish"])


def test_a_source_the_networks_lack_is_refused_by_name():
    # PPO's MLPs use Tanh: source=relu would replace nothing, and is refused before any step
    with pytest.raises(
        IncompatibleSurgeryError,
        match=r"^activation_replacement: parameter 'source': source='relu' matches no activation of "
        r"SurgicalPPO's networks, so nothing would be replaced; they have: tanh$",
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", n_steps=64, surgeries=["activation_replacement:source=relu"])
    with pytest.raises(IncompatibleSurgeryError, match=r"source='any' \(every activation but 'tanh'\)"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", n_steps=64, surgeries=["activation_replacement:to=tanh"])
    with pytest.raises(
        IncompatibleSurgeryError, match=r"^smooth_approximation: .* no ReLU .*they have: tanh"
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", n_steps=64, surgeries=["smooth_approximation"])
    # on a trained model through rls.operate: refused, the model is left as it was
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64)
    with pytest.raises(IncompatibleSurgeryError, match="parameter 'source'"):
        rls.operate(model, "activation_replacement:source=elu")
    assert set(kinds(model.policy)) == {nn.Tanh} and model.surgery_log == []


def test_adaptive_gated_and_attention_blocks(tmp_path):
    from rlsurgery.activations.surgeries import AdaptiveActivation, chosen_activations
    from rlsurgery.nets.blocks import FeatureAttention, Gate

    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    with th.no_grad():
        reference = plain.q_net(OBS)
    # adaptive: a learnt softmax mixture of candidates per layer, starting mostly at the layer's own activation
    mixed = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["adaptive_activation:start_logit=20"], **KW
    )
    layers = [m for m in mixed.q_net.modules() if isinstance(m, AdaptiveActivation)]
    assert len(layers) == 2 and layers[0].candidates == ["relu", "tanh", "silu"]
    x = th.linspace(-3, 3, 61)
    with th.no_grad():
        layers[0].logits.copy_(th.tensor([0.5, -1.0, 2.0]))
        w = th.softmax(th.tensor([0.5, -1.0, 2.0]), 0)
        expected = w[0] * th.relu(x) + w[1] * th.tanh(x) + w[2] * th.nn.functional.silu(x)
        th.testing.assert_close(layers[0](x), expected)
        layers[0].logits.copy_(th.tensor([20.0, 0.0, 0.0]))
        th.testing.assert_close(mixed.q_net(OBS), reference, atol=1e-6, rtol=1e-6)  # e⁻²⁰: ReLU
    assert chosen_activations(mixed) == {"q.q_net.1": "relu", "q.q_net.3": "relu"}
    optimized = {id(p) for g in mixed.policy.optimizer.param_groups for p in g["params"]}
    assert all(id(m.logits) in optimized for m in layers)
    before = [m.logits.detach().clone() for m in layers]
    mixed.learn(300)
    assert any(not th.equal(b, m.logits) for b, m in zip(before, layers))
    # gates start at exactly 1 (outputs unchanged) and are trained
    gated = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["gating_addition"], **KW)
    gates = [m for m in gated.q_net.modules() if isinstance(m, Gate)]
    assert len(gates) == 2 and gates[0].gate.in_features == 32
    with th.no_grad():
        th.testing.assert_close(gated.q_net(OBS), reference)
    gated.learn(300)
    assert gates[0].gate.weight.abs().sum() > 0
    with th.no_grad():
        h = th.randn(5, 32)
        th.testing.assert_close(gates[0](h), 2 * th.sigmoid(gates[0].gate(h)) * h)
    # attention over 8 tokens of 4 features after the last hidden layer: unchanged at first, then trained
    attn = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["attention_mechanism:tokens=8,heads=2"],
        n_steps=64,
        batch_size=32,
    )
    blocks = [m for m in attn.policy.modules() if isinstance(m, FeatureAttention)]
    assert len(blocks) == 2  # policy and value MLPs
    base = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32)
    with th.no_grad():
        th.testing.assert_close(
            attn.policy.get_distribution(OBS).distribution.probs,
            base.policy.get_distribution(OBS).distribution.probs,
        )
    assert blocks[0].last_attention.shape == (128, 8, 8)
    th.testing.assert_close(blocks[0].last_attention.sum(-1), th.ones(128, 8))
    attn.learn(128)
    assert blocks[0].out.weight.abs().sum() > 0
    attn.save(tmp_path / "attn.zip")
    loaded = rls.load(tmp_path / "attn.zip")
    loaded.policy.set_training_mode(False)
    attn.policy.set_training_mode(False)
    with th.no_grad():
        th.testing.assert_close(
            loaded.policy.get_distribution(OBS).distribution.probs,
            attn.policy.get_distribution(OBS).distribution.probs,
        )
    with pytest.raises(IncompatibleSurgeryError, match="has 32 units: not 5 tokens"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["attention_mechanism:tokens=5"], **KW)
    with pytest.raises(ParameterError, match="at least two distinct names"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["adaptive_activation:candidates=[relu]"], **KW)
