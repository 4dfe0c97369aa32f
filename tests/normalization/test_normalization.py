"""Spectral and weight normalization: σ_max measured by SVD, outputs preserved, training and save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch.nn.utils import parametrize

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalSAC
from rlsurgery.core.errors import IncompatibleSurgeryError

KW = dict(learning_starts=64, batch_size=16, buffer_size=2000, policy_kwargs=dict(net_arch=[32, 32]))


def parametrized_layers(net):
    return [m for m in net.modules() if parametrize.is_parametrized(m)]


def test_spectral_norm_bounds_sigma_and_weight_norm_preserves_outputs(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["spectral_normalization"], **KW)
    layers = parametrized_layers(model.q_net)
    assert len(layers) == 3
    for layer in layers:
        assert th.linalg.matrix_norm(layer.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.02)
    model.learn(600)  # σ_max stays near 1 through training updates (power iteration tracks it)
    for layer in parametrized_layers(model.q_net):
        assert th.linalg.matrix_norm(layer.weight.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)
    assert len(parametrized_layers(model.q_net_target)) == 3
    # weight norm is function-preserving when applied: same outputs as the plain network
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    normed = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["weight_normalization"], **KW)
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    with th.no_grad():
        th.testing.assert_close(normed.q_net(obs), plain.q_net(obs), rtol=1e-5, atol=1e-6)
    g = normed.q_net.q_net[0].parametrizations.weight.original0
    v = normed.q_net.q_net[0].parametrizations.weight.original1
    th.testing.assert_close(g.squeeze(), v.norm(dim=1))  # g starts at ‖v‖ row by row
    optimized = {id(p) for group in normed.policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in normed.q_net.parameters()}  # g and v are trained
    g_before = g.detach().clone()
    normed.learn(300)
    assert not th.allclose(normed.q_net.q_net[0].parametrizations.weight.original0, g_before)
    normed.save(tmp_path / "wn.zip")
    loaded = rls.load(tmp_path / "wn.zip")
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(obs), normed.q_net(obs), rtol=0, atol=0)


def test_sac_optimizers_follow_and_pruning_is_refused():
    sac = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=20,
        batch_size=16,
        surgeries=["weight_normalization"],
    ).learn(60)
    for net in (sac.actor, sac.critic):
        optimized = {id(p) for group in net.optimizer.param_groups for p in group["params"]}
        assert optimized == {id(p) for p in net.parameters()}
    with pytest.raises(
        IncompatibleSurgeryError, match="spectral_normalization: does not compose with magnitude_pruning"
    ):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["spectral_normalization", "magnitude_pruning"])
