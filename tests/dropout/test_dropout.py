"""Dropout surgeries: measured drop rates in training mode, the identity in eval mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.dropout.surgeries import (
    DropBlock2d,
    DropConnectMask,
    DropPath,
    LinearSVDO,
    variational_sparsity,
)
from rlsurgery.nets.blocks import Residual
from rlsurgery.nets.penalty import with_penalty
from tests.test_roundtrip import IMAGE_ENV, env_for

KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[64, 64]))
OBS = th.as_tensor(np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32))


def q_values(model, training):
    model.policy.set_training_mode(training)
    with th.no_grad():
        return model.q_net(OBS)


def test_unit_and_weight_dropout_rates_in_train_and_eval(tmp_path):
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["dropout:p=0.3"], **KW)
    drops = [m for m in model.q_net.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == 0.3 for m in drops)
    # eval mode: exactly the plain network
    th.testing.assert_close(q_values(model, False), q_values(plain, False))
    # training mode: ~30% of the hidden units are zeroed, the rest scaled by 1/(1 − p)
    captured = []
    hook = drops[0].register_forward_hook(lambda _m, i, o: captured.append((i[0], o)))
    q_values(model, True)
    hook.remove()
    inp, out = captured[0]
    dropped = (out == 0) & (inp != 0)
    assert abs(dropped.float().mean().item() / (inp != 0).float().mean().item() - 0.3) < 0.02
    kept = out != 0
    th.testing.assert_close(out[kept], inp[kept] / 0.7)
    assert not th.allclose(q_values(model, True), q_values(model, False))
    model.learn(200)
    # DropConnect: ~20% of the weights masked per forward pass in training, none in eval
    dc = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["dropconnect:p=0.2"], **KW)
    layer = dc.q_net.q_net[0]
    assert isinstance(layer.parametrizations.weight[0], DropConnectMask)
    layer.train(True)
    masked = layer.weight
    assert abs((masked == 0).float().mean().item() - 0.2) < 0.05
    layer.train(False)
    th.testing.assert_close(layer.weight, layer.parametrizations.weight.original)
    th.testing.assert_close(q_values(dc, False), q_values(plain, False))
    dc.learn(100)
    dc.save(tmp_path / "dc.zip")
    loaded = rls.load(tmp_path / "dc.zip")
    th.testing.assert_close(q_values(loaded, False), q_values(dc, False), rtol=0, atol=0)


def test_dropout_schedule_and_path_and_block_drops():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        n_epochs=1,
        surgeries=["dropout_scheduling:p_start=0.0,p_end=0.5,start_step=0,end_step=256"],
    )
    drops = [m for m in model.policy.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 4 and all(m.p == 0.0 for m in drops)
    model.learn(128)
    assert all(abs(m.p - 0.5 * 128 / 256) < 1e-9 for m in drops)  # p(t) at the last step
    model.learn(256, reset_num_timesteps=False)
    assert all(m.p == 0.5 for m in drops)
    # stochastic depth: a residual body is dropped for ~p of the samples in training, never in eval
    path = DropPath(0.25).train()
    out = path(th.ones(20000, 3))
    assert abs((out[:, 0] == 0).float().mean().item() - 0.25) < 0.02 and th.all(
        (out == 0) | (out == 1 / 0.75)
    )
    assert th.equal(path.eval()(th.ones(5, 3)), th.ones(5, 3))
    sd = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["skip_connection_addition", "stochastic_depth:p=0.5"],
        **KW,
    )
    assert [m.p for m in sd.q_net.modules() if isinstance(m, DropPath)] == [0.5]
    sd.learn(100)
    # DropBlock: squares of b × b, about p of each map dropped
    block = DropBlock2d(0.2, 3).train()
    th.manual_seed(0)
    out = block(th.ones(64, 4, 20, 20))
    zero = out == 0
    assert abs(zero.float().mean().item() - 0.2) < 0.05
    ones = th.ones(64, 4, 20, 20)
    assert not th.equal(block.eval()(ones), th.zeros_like(ones)) and th.equal(block.eval()(ones), ones)
    # dropped pixels come in squares: eroding the dropped set by a 3×3 window keeps it non-empty
    eroded = -th.nn.functional.max_pool2d(-zero.float(), 3, stride=1)
    assert eroded.sum() > 0
    env_for(["attention_transfer"])
    cnn = SurgicalDQN(
        "CnnPolicy",
        IMAGE_ENV,
        seed=0,
        surgeries=["dropblock:p=0.1"],
        buffer_size=100,
        learning_starts=8,
        batch_size=4,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16]),
    )
    assert len([m for m in cnn.q_net.modules() if isinstance(m, DropBlock2d)]) == 3
    cnn.learn(16)


def test_stochastic_depth_passes_the_input_of_a_dropped_block():
    sd = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["skip_connection_addition", "stochastic_depth:p=0.5"],
        **KW,
    )
    (block,) = [m for m in sd.q_net.q_net if isinstance(m, Residual)]  # the 64→64 block
    x = th.randn(4000, 64)
    th.manual_seed(0)
    with th.no_grad():
        y = block.train()(x)
        dropped = (y - x).abs().amax(dim=1) == 0  # y = x: the block's input, not zeros
        assert abs(dropped.float().mean().item() - 0.5) < 0.05
        # the kept samples carry the branch f(x) = g(x) − C x, rescaled by 1/(1 − p)
        branch = block.body(x) - block.correction(x)
        th.testing.assert_close(y[~dropped], (x + branch / 0.5)[~dropped])
        # in eval mode nothing is dropped: the function of the block it wraps
        th.testing.assert_close(block.eval()(x), block.body(x))
    sd.learn(100)


def test_variational_dropout_learns_sparsity():
    # the penalty helper adds exactly ∂R/∂θ to the gradients
    theta = th.tensor([2.0], requires_grad=True)
    y = with_penalty(theta * 3, theta**2)
    y.sum().backward()
    assert theta.grad.item() == pytest.approx(3 + 2 * 2.0)
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["variational_dropout:kl_weight=0.05"],
        **dict(KW, learning_rate=0.01),
    )
    layers = [m for m in model.q_net.modules() if isinstance(m, LinearSVDO)]
    assert len(layers) == 2 and variational_sparsity(model) == 0.0
    # eval mode starts as the plain network (log α = −10 everywhere: nothing dropped)
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    th.testing.assert_close(q_values(model, False), q_values(plain, False))
    # the KL term pushes log α up: after training, a share of the weights is dropped in eval mode
    model.learn(1500)
    sparsity = variational_sparsity(model)
    assert sparsity > 0.05
    layer = layers[0]
    layer.eval()
    x = OBS[:8]
    th.testing.assert_close(layer(x), x @ (layer.weight * layer.kept()).T + layer.bias)


def test_refusals():
    with pytest.raises(IncompatibleSurgeryError, match="no residual block; add skip_connection_addition"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["stochastic_depth"], **KW)
    with pytest.raises(IncompatibleSurgeryError, match="dropblock needs a CnnPolicy"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["dropblock"], **KW)
    with pytest.raises(
        IncompatibleSurgeryError, match="dropconnect: does not compose with magnitude_pruning"
    ):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["dropconnect", "magnitude_pruning"], **KW)
