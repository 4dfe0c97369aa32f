"""Layer and block surgeries: function-preserving ones keep the outputs, the others change what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.blocks import DenseConnections, Residual
from rlsurgery.nets.mlp import mlp_stacks

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))
PPO_KW = dict(n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=dict(net_arch=[32, 32]))
OBS = th.as_tensor(np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32))


def outputs(model):
    """Every number the networks give on OBS: Q-values, or action logits and values."""
    with th.no_grad():
        if hasattr(model, "q_net"):
            return th.cat([model.q_net(OBS), model.q_net_target(OBS)], dim=1)
        logits = model.policy.get_distribution(OBS).distribution.logits
        return th.cat([logits, model.policy.predict_values(OBS)], dim=1)


def n_params(model):
    return sum(p.numel() for p in model.policy.parameters())


@pytest.mark.parametrize(
    "spec",
    [
        "layer_addition",
        "layer_addition:count=2,position=0",
        "layer_addition:activation=none",
        "skip_connection_addition",
        "skip_connection_addition:projection=true",
        "skip_connection_addition:projection=true,correction=diagonal",
        "dense_connection",
        "width_scaling:factor=2.5",
    ],
)
@pytest.mark.parametrize(("cls", "kw"), [(SurgicalDQN, DQN_KW), (SurgicalPPO, PPO_KW)], ids=["dqn", "ppo"])
def test_function_preserving_morphisms_keep_outputs(spec, cls, kw, tmp_path):
    if spec.startswith("layer_addition") and "none" not in spec and cls is SurgicalPPO:
        # PPO's default Tanh is not idempotent (refused, see test_refusals): use ReLU
        kw = dict(kw, policy_kwargs=dict(net_arch=[32, 32], activation_fn=nn.ReLU))
    plain = cls("MlpPolicy", "CartPole-v1", seed=0, **kw)
    model = cls("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **kw)
    # same seed: the same weights before the surgery; the architecture grew, the function did not change
    assert n_params(model) > n_params(plain)
    th.testing.assert_close(outputs(model), outputs(plain), rtol=1e-5, atol=1e-5)
    # the new parameters are trained: the optimizer covers them and they move
    optimized = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    online = model.q_net if cls is SurgicalDQN else model.policy
    assert optimized == {id(p) for p in online.parameters()}
    before = {n: p.detach().clone() for n, p in online.named_parameters()}
    model.learn(200)
    assert any(not th.equal(before[n], p) for n, p in online.named_parameters())
    # the same on a trained model through rls.operate, and save/load rebuilds the architecture
    trained = cls("MlpPolicy", "CartPole-v1", seed=0, **kw).learn(100)
    reference = outputs(trained)
    rls.operate(trained, spec)
    th.testing.assert_close(outputs(trained), reference, rtol=1e-5, atol=1e-5)
    trained.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    th.testing.assert_close(outputs(loaded), outputs(trained), rtol=0, atol=0)


def test_layer_structures_are_what_was_asked():
    deeper = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_addition:count=2"], **DQN_KW)
    (stack,) = mlp_stacks(deeper.q_net)
    assert stack.widths == [32, 32, 32, 32]
    th.testing.assert_close(stack.linear(2).weight, th.eye(32))
    residual = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["skip_connection_addition"], **DQN_KW
    )
    blocks = [m for m in residual.q_net.q_net if isinstance(m, Residual)]
    assert len(blocks) == 1 and isinstance(blocks[0].shortcut, nn.Identity)  # only the 32→32 block
    assert th.equal(blocks[0].correction.weight, th.eye(32))
    dense = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["dense_connection"], **DQN_KW)
    (block,) = [m for m in dense.q_net.q_net if isinstance(m, DenseConnections)]
    second = block.blocks[1][0]
    assert second.in_features == 32 + 4 and th.equal(second.weight[:, 32:], th.zeros(32, 4))
    # a wider SAC keeps its actor's and critics' outputs
    kw = dict(buffer_size=200, learning_starts=20, policy_kwargs=dict(net_arch=[16, 16]))
    plain = SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=0, **kw)
    wide = SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=0, surgeries=["width_scaling:factor=2"], **kw)
    obs = th.randn(32, 3)
    with th.no_grad():
        th.testing.assert_close(wide.actor(obs, deterministic=True), plain.actor(obs, deterministic=True))
        act = th.rand(32, 1) * 2 - 1
        for a, b in zip(wide.critic(obs, act), plain.critic(obs, act)):
            th.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for a, b in zip(wide.critic_target(obs, act), plain.critic(obs, act)):
            th.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert [s.widths for s in mlp_stacks(wide.actor)] == [[32, 32]]
    wide.learn(60)


class ZeroBranch(nn.Module):
    """Stands in for a dropped residual branch."""

    def forward(self, x):
        return th.zeros_like(x)


def test_residual_blocks_add_their_input_and_pass_it_when_the_branch_is_dropped():
    # skip_connection_addition: u_{l+1} = u_l + f(u_l), identity shortcut, f(x) = g(x) − C x with C = I
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["skip_connection_addition"], **DQN_KW)
    (block,) = [m for m in model.q_net.q_net if isinstance(m, Residual)]
    x = th.randn(64, 32)
    with th.no_grad():
        g = block.body(x)
        th.testing.assert_close(block(x), g)  # unchanged at insertion
        block.correction.weight.mul_(0.5)  # once C moves, y = x + g(x) − C x
        th.testing.assert_close(block(x), x + g - 0.5 * x)
        block.drop = ZeroBranch()
        th.testing.assert_close(block(x), x, rtol=0, atol=0)  # a dropped block passes its input through
    # where the widths differ, the projection starts as the rectangular identity [I 0]
    for n_in, n_out in ((4, 6), (6, 4)):
        block = Residual(nn.Sequential(nn.Linear(n_in, n_out), nn.Tanh()), n_in, n_out)
        x = th.randn(16, n_in)
        with th.no_grad():
            th.testing.assert_close(block(x), block.body(x))
            block.drop = ZeroBranch()
            expected = th.cat([x, th.zeros(16, 2)], 1) if n_out > n_in else x[:, :n_out]
            th.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_a_diagonal_correction_cancels_the_shortcut_with_one_scale_per_unit():
    # C = diag(c) [I 0], c = 1 at insertion: y = g(x); once c moves, y = S x + g(x) − c ⊙ [I 0] x
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["skip_connection_addition:correction=diagonal"],
        **DQN_KW,
    )
    (block,) = [m for m in model.q_net.q_net if isinstance(m, Residual)]
    assert [p.numel() for p in block.correction.parameters()] == [32]  # O(width), not 32 × 32
    x = th.randn(64, 32)
    with th.no_grad():
        g = block.body(x)
        th.testing.assert_close(block(x), g)
        scale = th.linspace(0.0, 2.0, 32)
        block.correction.weight.copy_(scale)
        th.testing.assert_close(block(x), x + g - scale * x)
    for n_in, n_out in ((4, 6), (6, 4)):
        block = Residual(nn.Sequential(nn.Linear(n_in, n_out), nn.Tanh()), n_in, n_out, "diagonal")
        x = th.randn(16, n_in)
        with th.no_grad():
            th.testing.assert_close(block(x), block.body(x))  # unchanged at insertion
            block.correction.weight.mul_(0.0)  # C = 0: the classic y = S x + g(x)
            th.testing.assert_close(block(x), block.shortcut(x) + block.body(x))


def test_layer_removal_folds_the_layer_into_its_readers():
    kw = dict(DQN_KW, policy_kwargs=dict(net_arch=[8, 6], activation_fn=nn.Identity))
    linear = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **kw)
    (stack,) = mlp_stacks(linear.q_net)
    w1, b1, w2, b2 = (
        stack.linear(1).weight,
        stack.linear(1).bias,
        stack.readers(1)[0].weight,
        stack.readers(1)[0].bias,
    )
    expected_w, expected_b = (w2 @ w1).detach(), (b2 + w2 @ b1).detach()
    reference = outputs(linear)
    rls.operate(linear, "layer_removal")
    (stack,) = mlp_stacks(linear.q_net)
    assert stack.widths == [8]
    th.testing.assert_close(stack.readers(0)[0].weight, expected_w)
    th.testing.assert_close(stack.readers(0)[0].bias, expected_b)
    # with identity activations the removal is exact; with ReLU/Tanh it is an approximation
    th.testing.assert_close(outputs(linear), reference, rtol=1e-5, atol=1e-5)
    ppo = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_removal:position=0"], **PPO_KW)
    assert [s.widths for s in mlp_stacks(ppo.policy)] == [[32], [32]]
    assert ppo.policy.mlp_extractor.policy_net[0].in_features == 4
    ppo.learn(64)


def test_width_scaling_widens_exactly_and_narrows_by_activity():
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, **PPO_KW).learn(128)
    rls.operate(model, "width_scaling:factor=0.5,samples=64")
    assert model.surgery_state["width_scaling"].result["widths"] == {
        "mlp_extractor.policy_net": [16, 16],
        "mlp_extractor.value_net": [16, 16],
    }
    assert model.policy.action_net.in_features == 16 and model.policy.value_net.in_features == 16
    model.learn(64)
    # widening twice is allowed (repeatable) and stays function-preserving
    reference = outputs(model)
    rls.operate(model, "width_scaling:factor=2")
    rls.operate(model, "width_scaling:factor=1.5")
    assert model.surgery_state["width_scaling"].result["widths"]["mlp_extractor.policy_net"] == [48, 48]
    th.testing.assert_close(outputs(model), reference, rtol=1e-5, atol=1e-5)


def test_block_replacement_swaps_one_block():
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW)
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["block_replacement:width=12,activation=gelu"], **DQN_KW
    )
    (stack,) = mlp_stacks(model.q_net)
    assert stack.widths == [32, 12] and isinstance(stack.activation(1), nn.GELU)
    assert isinstance(stack.activation(0), nn.ReLU)
    th.testing.assert_close(stack.linear(0).weight, mlp_stacks(plain.q_net)[0].linear(0).weight)  # untouched
    assert not th.allclose(outputs(model), outputs(plain))
    model.learn(100)


def test_refusals():
    with pytest.raises(
        IncompatibleSurgeryError, match=r"Tanh after layer 1 of mlp_extractor\.policy_net is not idempotent"
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["layer_addition"])
    with pytest.raises(IncompatibleSurgeryError, match="position 5 is outside the 2 hidden layers"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["layer_removal:position=5"], **DQN_KW)
    with pytest.raises(IncompatibleSurgeryError, match="single hidden layer"):
        SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=["layer_removal"],
            **dict(DQN_KW, policy_kwargs=dict(net_arch=[8])),
        )
    with pytest.raises(IncompatibleSurgeryError, match="no MLP with a hidden layer"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["width_scaling"], policy_kwargs=dict(net_arch=[]))
    with pytest.raises(IncompatibleSurgeryError, match="projection=true"):
        SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=["skip_connection_addition"],
            **dict(DQN_KW, policy_kwargs=dict(net_arch=[8, 16])),
        )
    with pytest.raises(rls.ParameterError, match="'factor' must differ from 1"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["width_scaling:factor=1"], **DQN_KW)


def test_operate_from_the_command_line_and_a_recipe_step(tmp_path):
    from stable_baselines3 import DQN

    from rlsurgery.cli import main

    DQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).save(tmp_path / "plain.zip")
    plain = rls.load(tmp_path / "plain.zip", trust=True)  # a plain SB3 zip: pickled, so opted in
    out = tmp_path / "wide.zip"
    operate = ["operate", str(tmp_path / "plain.zip"), "--surgery", "width_scaling:factor=2", "-o", str(out)]
    assert main([*operate, "--trust"]) == 0
    wide = rls.load(out)
    assert [s.widths for s in mlp_stacks(wide.q_net)] == [[64, 64]]
    th.testing.assert_close(outputs(wide), outputs(plain), rtol=1e-5, atol=1e-5)
    # at a step, as a recipe's `at_step` does: the network deepens mid-training and keeps its outputs
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_addition:at_step=100"], **DQN_KW
    )
    model.learn(150)
    assert model.surgery_log[-1]["applied"] == "at_step" and [s.widths for s in mlp_stacks(model.q_net)] == [
        [32] * 3
    ]
    model.save(tmp_path / "deep.zip")
    assert [s.widths for s in mlp_stacks(rls.load(tmp_path / "deep.zip").q_net)] == [[32] * 3]


def test_repeated_operations_reload_and_targets_copy_the_same_units(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW)
    rls.operate(model, "width_scaling:factor=1.5")
    rls.operate(model, "width_scaling:factor=2")
    # online and target were equal: the same unit copies keep them equal
    online, target = model.q_net.state_dict(), model.q_net_target.state_dict()
    assert all(th.equal(online[k], target[k]) for k in online)
    model.save(tmp_path / "twice.zip")
    loaded = rls.load(tmp_path / "twice.zip")  # the same key twice in the log: still loads
    assert [s.widths for s in mlp_stacks(loaded.q_net)] == [[96, 96]]
    th.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)
    # a model whose only surgery is still scheduled keeps its schedule through save/load
    scheduled = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_addition:at_step=150"], **DQN_KW
    )
    scheduled.learn(100)
    scheduled.save(tmp_path / "scheduled.zip")
    resumed = rls.load(tmp_path / "scheduled.zip", env=scheduled.get_env())
    assert [s.key for s in resumed._scheduled] == ["layer_addition"]
    resumed.learn(60, reset_num_timesteps=False)
    assert [s.widths for s in mlp_stacks(resumed.q_net)] == [[32] * 3]
