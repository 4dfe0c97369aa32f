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
