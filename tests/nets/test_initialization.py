"""Initialization surgeries: measured variances, orthogonality, resets mid-training."""

from __future__ import annotations

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.core.errors import ParameterError
from rlsurgery.nets.masks import prunable_layers

WIDE = dict(net_arch=[512, 512])


def test_measured_variances_and_orthogonality():
    xavier = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=WIDE, surgeries=["xavier_initialization"]
    )
    he = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=WIDE, surgeries=["he_initialization"])
    ortho = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        policy_kwargs=WIDE,
        surgeries=["orthogonal_initialization:gain=2.0"],
    )
    for name, layer in prunable_layers(xavier):
        fan_out, fan_in = layer.weight.shape
        if fan_in * fan_out >= 2000:  # enough entries for a tight variance estimate
            assert layer.weight.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.1), name
        assert (layer.bias == 0).all()
    for name, layer in prunable_layers(he):
        fan_out, fan_in = layer.weight.shape
        if fan_in * fan_out >= 2000:
            assert layer.weight.var().item() == pytest.approx(2 / fan_in, rel=0.1), name
    for _, layer in prunable_layers(ortho):
        w = layer.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        th.testing.assert_close(gram, 4.0 * th.eye(gram.shape[0]), atol=1e-4, rtol=0)
    # targets follow their online networks
    for a, b in zip(ortho.critic.parameters(), ortho.critic_target.parameters()):
        assert th.equal(a, b)
    for a, b in zip(xavier.q_net.parameters(), xavier.q_net_target.parameters()):
        assert th.equal(a, b)


def test_reset_at_a_step_redraws_trained_weights_and_clears_their_optimizer_state(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        learning_starts=50,
        train_freq=1,
        surgeries=["orthogonal_initialization:at_step=200"],
    )
    model.learn(199)
    assert len(model.policy.optimizer.state) > 0
    trained = model.q_net.q_net[0].weight.detach().clone()
    model.learn(1, reset_num_timesteps=False)  # step 200: the reset (then one gradient step)
    w = model.q_net.q_net[0].weight.detach()
    assert not th.allclose(w, trained, atol=1e-2)
    th.testing.assert_close(w.T @ w, th.eye(w.shape[1]), atol=5e-3, rtol=0)  # 64×4: orthonormal columns
    assert model.surgery_log[-1]["applied"] == "at_step"
    # Adam's state of the re-drawn weights restarted: one update since the reset
    assert all(int(model.policy.optimizer.state[p]["step"]) == 1 for p in model.q_net.parameters())
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    for a, b in zip(model.q_net.parameters(), loaded.q_net.parameters()):
        assert th.equal(a, b)
    with pytest.raises(ParameterError, match="'mode' must be 'fan_in' or 'fan_out'"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["he_initialization:mode=avg"])


def test_pre_training_copies_matching_weights_and_reports(tmp_path):
    source = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=5, policy_kwargs=dict(net_arch=[32, 16]))
    source.save(tmp_path / "source.zip")
    same = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[32, 16]),
        surgeries=[f"pre_training_initialization:source={tmp_path / 'source.zip'}"],
    )
    assert same.rls_pretraining["shape_mismatch"] == [] and same.rls_pretraining["missing_in_source"] == []
    for a, b in zip(source.policy.parameters(), same.policy.parameters()):
        assert th.equal(a, b)
    # a wider second layer: the first layer is copied, the mismatching ones are reported and left alone
    with pytest.warns(UserWarning, match="6 of another shape"):
        wider = SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            seed=0,
            policy_kwargs=dict(net_arch=[32, 64]),
            surgeries=[f"pre_training_initialization:source={tmp_path / 'source.zip'}"],
        )
    report = wider.rls_pretraining
    assert "q_net.q_net.0.weight" in report["copied"] and "q_net.q_net.2.weight" in report["shape_mismatch"]
    assert th.equal(wider.q_net.q_net[0].weight, source.q_net.q_net[0].weight)
    with pytest.raises(ParameterError, match=r"parameter 'source' must be an existing \.zip"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["pre_training_initialization:source=nope.zip"])


@pytest.mark.parametrize("cls", [SurgicalDQN, SurgicalPPO])
def test_lsuv_gives_unit_output_variance_per_layer(cls):
    model = cls("MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_sequential_initialization:samples=512"])
    variances = model.rls_lsuv["output_variances"]
    assert len(variances) == len(prunable_layers(model, include_output=False))
    assert all(abs(v - 1) < 0.02 for v in variances), variances


def test_pre_training_looks_through_pruning_masks_on_either_side(tmp_path):
    kw = dict(policy_kwargs=dict(net_arch=[32, 16]))
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=5, **kw)
    plain.save(tmp_path / "plain.zip")
    # a target whose layers are masked at build time (gradual pruning) gets the weights in weight_orig
    masked = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[
            f"pre_training_initialization:source={tmp_path / 'plain.zip'}",
            "gradual_magnitude_pruning:final_sparsity=0.5,start_step=100,end_step=200",
        ],
        **kw,
    )
    assert masked.rls_pretraining["missing_in_source"] == []
    assert th.equal(masked.q_net.q_net[0].weight_orig, plain.q_net.q_net[0].weight)
    assert bool(masked.q_net.q_net[0].weight_mask.all())  # its own mask (all ones before pruning) is kept
    # a pruned source gives its effective weights to a plain target: the same Q-values
    pruned = rls.operate(plain, "magnitude_pruning", amount=0.6)
    pruned.save(tmp_path / "pruned.zip")
    with pytest.warns(UserWarning, match="missing in the source"):  # and a partial copy says so
        SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            surgeries=[f"pre_training_initialization:source={tmp_path / 'pruned.zip'}"],
            policy_kwargs=dict(net_arch=[32, 16, 8]),
        )
    student = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[f"pre_training_initialization:source={tmp_path / 'pruned.zip'}"],
        **kw,
    )
    obs = th.randn(64, 4)
    assert th.allclose(student.q_net(obs), pruned.q_net(obs))
    weights = [m.weight for m in student.q_net.modules() if isinstance(m, th.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)  # the source's sparsity, carried over
