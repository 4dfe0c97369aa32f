"""Initialization surgeries: measured variances, orthogonality, resets mid-training."""

from __future__ import annotations

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.core.errors import ParameterError
from rlsurgery.initialization.surgeries import InitializationSurgery, LayerSequentialInitialization
from rlsurgery.nets.masks import prunable_layers
from tests.breakage import assert_proof_fails_when, replaced

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
    assert (
        same.surgery_state["pre_training_initialization"].result["shape_mismatch"] == []
        and same.surgery_state["pre_training_initialization"].result["missing_in_source"] == []
    )
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
    report = wider.surgery_state["pre_training_initialization"].result
    assert "q_net.q_net.0.weight" in report["copied"] and "q_net.q_net.2.weight" in report["shape_mismatch"]
    assert th.equal(wider.q_net.q_net[0].weight, source.q_net.q_net[0].weight)
    with pytest.raises(ParameterError, match=r"parameter 'source' must be an existing \.zip"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["pre_training_initialization:source=nope.zip"])


def random_action_states(n, seed):
    """CartPole observations under uniform random actions, from ``reset(seed=seed)``."""
    import gymnasium as gym
    import numpy as np

    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    states, (obs, _) = [], env.reset(seed=seed)
    while len(states) < n:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return th.as_tensor(np.array(states))


def output_variances(model, layers, obs):
    """Var of each layer's output over units and samples, measured here with forward hooks."""
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, _i, out: outputs.__setitem__(m, out)) for m in layers]
    try:
        with th.no_grad():
            if hasattr(model.policy, "q_net"):
                model.q_net(obs)
            else:
                model.policy.mlp_extractor(
                    model.policy.extract_features(obs, model.policy.features_extractor)
                )
    finally:
        for hook in hooks:
            hook.remove()
    return [float(outputs[m].var()) for m in layers]


def check_lsuv_gives_orthogonal_layers_of_unit_output_variance(cls):
    """Every hidden layer's output has variance ≈ 1, measured here (not the surgery's own report) on its
    calibration states and on others; each weight matrix is a scaled (semi-)orthogonal one; biases are
    0; the output layers keep their own initialisation; the targets are copies."""
    model = cls("MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_sequential_initialization:samples=512"])
    plain = cls("MlpPolicy", "CartPole-v1", seed=0)
    layers = [m for _, m in prunable_layers(model, include_output=False)]
    assert len(layers) == (2 if cls is SurgicalDQN else 4)
    # on the calibration states (the rollout of seed 0, collected again here): 1 to the tolerance
    variances = output_variances(model, layers, random_action_states(512, seed=0))
    assert all(abs(v - 1) < 0.02 for v in variances), f"output variances {variances}"
    # on 5000 other states: 1 up to the sampling error of 512 CartPole states (about ±20%)
    variances = output_variances(model, layers, random_action_states(5000, seed=123))
    assert all(abs(v - 1) < 0.3 for v in variances), f"output variances {variances}"
    assert len(model.surgery_state["layer_sequential_initialization"].result["output_variances"]) == len(
        layers
    )
    for layer in layers:
        w = layer.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        th.testing.assert_close(gram / gram.diagonal().mean(), th.eye(len(gram)), atol=1e-4, rtol=0)
        assert not layer.bias.any()
    for (_, layer), (_, original) in zip(prunable_layers(model), prunable_layers(plain)):
        if layer not in layers:  # an output layer
            assert th.equal(layer.weight, original.weight)
    if cls is SurgicalDQN:
        for a, b in zip(model.q_net.parameters(), model.q_net_target.parameters()):
            assert th.equal(a, b)


@pytest.mark.parametrize("cls", [SurgicalDQN, SurgicalPPO])
def test_lsuv_gives_unit_output_variance_per_layer(cls):
    check_lsuv_gives_orthogonal_layers_of_unit_output_variance(cls)


@pytest.mark.parametrize("cls", [SurgicalDQN, SurgicalPPO])
def test_lsuv_proof_fails_without_the_scaling_or_the_orthogonal_start(cls):
    def orthogonal_only(self, agent):  # no variance scaling, a report that says it was done
        InitializationSurgery.reinitialize(self, agent)
        n = len(prunable_layers(agent, include_output=False))
        self.state(agent).result = {"output_variances": [1.0] * n}

    check = check_lsuv_gives_orthogonal_layers_of_unit_output_variance
    assert_proof_fails_when(
        replaced(LayerSequentialInitialization, "reinitialize", orthogonal_only),
        check,
        cls,
        match="output variances",
    )

    def gaussian(self, weight):  # scaled to unit variance later, but not orthogonal
        th.nn.init.normal_(weight)

    assert_proof_fails_when(replaced(LayerSequentialInitialization, "init_weight", gaussian), check, cls)


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
    assert masked.surgery_state["pre_training_initialization"].result["missing_in_source"] == []
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
