"""Pruning: exact sparsity, structured patterns, masks that hold through training and save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.cli import main
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.nets.masks import prunable_layers, sparsity
from rlsurgery.pruning import structured
from rlsurgery.pruning.structured import block_mask
from tests.breakage import assert_proof_fails_when, replaced

KW = dict(learning_starts=64, batch_size=16, buffer_size=2000, train_freq=4, target_update_interval=50)


def weights(model):
    return [m.weight.detach() for _, m in prunable_layers(model)]


def test_threshold_and_magnitude_sparsity_are_exact():
    dense = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32, 32]), **KW)
    before = weights(dense)
    total = sum(w.numel() for w in before)
    # magnitude, global: exactly round(p·N) zeros, the smallest |w| over all layers
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[32, 32]),
        surgeries=["magnitude_pruning:amount=0.8"],
        **KW,
    )
    after = weights(model)
    assert sum(int((w == 0).sum()) for w in after) == round(0.8 * total)
    kept = th.cat([a[a != 0].abs() for a in after])
    pruned = th.cat([b[a == 0].abs() for a, b in zip(after, before)])
    assert kept.min() >= pruned.max()  # everything pruned was smaller than everything kept
    assert model.surgery_state["magnitude_pruning"].result["sparsity"] == pytest.approx(
        round(0.8 * total) / total
    )
    # per layer: each layer loses round(p·n_layer)
    layered = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["magnitude_based_pruning:amount=0.5,scope=layer"], **KW
    )
    for w in weights(layered):
        assert int((w == 0).sum()) == round(0.5 * w.numel())
    # threshold: |w| < τ zeroed, the rest untouched
    tau = 0.1
    thresholded = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[32, 32]),
        surgeries=[f"weight_pruning:threshold={tau}"],
        **KW,
    )
    for w, w0 in zip(weights(thresholded), before):
        assert th.equal(w, th.where(w0.abs() < tau, th.zeros_like(w0), w0))


#: one row, two groups of M = 4 inputs, and the mask of N kept (the N largest |w| of each group)
ROW = th.tensor([[0.1, -3.0, 0.2, 2.0, 5.0, 0.0, -0.1, 1.0]])
KEPT = {1: [0, 1, 0, 0, 1, 0, 0, 0], 2: [0, 1, 0, 1, 1, 0, 0, 1], 3: [0, 1, 1, 1, 1, 0, 1, 1]}


def check_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs(n):
    """N:M keeps N weights of every M consecutive inputs, the N largest |w| (not N zeros): on a crafted
    row, and in every layer of an agent, against the dense weights of the same seed."""
    m = 4
    np.testing.assert_array_equal(structured.n_m_mask(ROW, n, m).numpy(), [KEPT[n]])
    dense = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0)
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=[f"n_m_sparsity:n={n},m={m}"])
    layers = prunable_layers(model)
    assert len(layers) == len(prunable_layers(dense)) == 6  # every hidden and output layer
    for (name, layer), (_, original) in zip(layers, prunable_layers(dense)):
        pruned = layer.weight.detach().reshape(layer.weight.shape[0], -1, m)
        groups = original.weight.detach().reshape(pruned.shape)
        assert ((pruned != 0).sum(-1) == n).all(), name  # exactly N kept in each group of M inputs
        kept = th.zeros_like(groups, dtype=th.bool).scatter_(2, groups.abs().topk(n, dim=2).indices, True)
        assert th.equal(pruned != 0, kept), name  # the N largest |w| of the group
        assert th.equal(pruned[kept], groups[kept]), name  # kept as they were
    assert model.surgery_state["n_m_sparsity"].result["sparsity"] == pytest.approx(1 - n / m)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs(n):
    check_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs(n)


def test_n_m_proof_fails_on_n_zeros_or_the_smallest_kept():
    mask = structured.n_m_mask

    def n_zeros(weight, n, m):  # N of every M zeroed, the M − N largest kept: the 2:4 mask is the same
        return mask(weight, m - n, m)

    def smallest(weight, n, m):
        return mask(1 / (weight.abs() + 1e-12), n, m)  # the largest 1/|w|: the smallest |w|

    for n in (1, 3):
        assert_proof_fails_when(
            replaced(structured, "n_m_mask", n_zeros),
            check_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs,
            n,
        )
    assert_proof_fails_when(
        replaced(structured, "n_m_mask", smallest),
        check_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs,
        2,
    )


def test_block_sparsity_zeroes_the_weakest_blocks():
    # blocks: the weakest 50% of 4×4 blocks are all-zero, the rest untouched
    mat = th.arange(64.0).reshape(8, 8)
    mask = block_mask(mat, 4, 4, 0.5)
    assert mask[:4, :].sum() == 0 and mask[4:, :].sum() == 32  # the two top blocks have the smallest norms
    blocks = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=["block_sparsity:amount=0.5"])
    layers = prunable_layers(blocks, include_output=False)
    assert [n for n, _ in layers] == [
        "policy.mlp_extractor.policy_net.0",
        "policy.mlp_extractor.policy_net.2",
        "policy.mlp_extractor.value_net.0",
        "policy.mlp_extractor.value_net.2",
    ]
    for name, layer in layers:
        tiles = layer.weight.detach().reshape(layer.weight.shape[0] // 4, 4, -1, 4).abs().sum(dim=(1, 3))
        assert int((tiles == 0).sum()) == round(0.5 * tiles.numel()), name
    assert not hasattr(blocks.policy.action_net, "weight_mask")  # output layers left dense
    sac = SurgicalSAC(
        "MlpPolicy", "Pendulum-v1", seed=0, surgeries=["magnitude_pruning:amount=0.5,include_output=false"]
    )
    outputs = {"actor.mu", "actor.log_std", "critic.qf0.4", "critic.qf1.4"}
    assert outputs.isdisjoint(n for n, _ in prunable_layers(sac, include_output=False))
    assert not hasattr(sac.actor.mu, "weight_mask") and hasattr(sac.actor.latent_pi[0], "weight_mask")


def test_masks_hold_through_training_targets_and_save_load(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["magnitude_pruning:amount=0.9"], **KW)
    masks = [m.weight_mask.clone() for _, m in prunable_layers(model)]
    model.learn(1000)
    for (_, layer), mask in zip(prunable_layers(model), masks):
        assert th.equal(layer.weight_mask, mask) and (layer.weight.detach()[mask == 0] == 0).all()
    target_layers = [m for m in model.q_net_target.modules() if hasattr(m, "weight_mask")]
    assert len(target_layers) == len(masks) and all(
        th.equal(t.weight_mask, m) for t, m in zip(target_layers, masks)
    )
    assert all((t.weight.detach()[m == 0] == 0).all() for t, m in zip(target_layers, masks))
    model.save(tmp_path / "sparse.zip")
    loaded = rls.load(tmp_path / "sparse.zip")
    assert sparsity(m for _, m in prunable_layers(loaded)) == pytest.approx(
        sparsity(m for _, m in prunable_layers(model))
    )
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    loaded.set_env(model.get_env())
    loaded.learn(200, reset_num_timesteps=False)  # continued training keeps the sparsity
    assert sparsity(m for _, m in prunable_layers(loaded)) >= 0.9 - 1e-3


def test_operate_prunes_a_trained_model_from_the_command_line(tmp_path, capsys):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32).learn(64).save(tmp_path / "plain.zip")
    out = tmp_path / "pruned.zip"
    assert (
        main(
            [
                "operate",
                str(tmp_path / "plain.zip"),
                "--surgery",
                "magnitude_pruning:amount=0.9",
                "-o",
                str(out),
                "--trust",  # a plain SB3 zip holds pickled objects
            ]
        )
        == 0
    )
    pruned = rls.load(out)
    assert type(pruned) is SurgicalPPO and pruned.surgery_log[-1]["applied"] == "operate"
    assert sparsity(m for _, m in prunable_layers(pruned)) == pytest.approx(0.9, abs=1e-4)
    with pytest.raises(IncompatibleSurgeryError, match="already applied"):
        rls.operate(pruned, "magnitude_pruning:amount=0.5")


def test_bad_parameters_and_shapes_are_refused():
    with pytest.raises(ParameterError, match="'n' must be < 'm'"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["n_m_sparsity:n=4,m=4"])
    with pytest.raises(IncompatibleSurgeryError, match="has 4 inputs, not a multiple of m=8"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["n_m_sparsity:n=2,m=8"])
    with pytest.raises(IncompatibleSurgeryError, match="not a multiple of the 3×3 block"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["block_sparsity:block_rows=3,block_cols=3"])
    with pytest.raises(ParameterError, match="'amount' must be < 1"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["magnitude_pruning:amount=1.0"])


def test_gradual_pruning_follows_the_cubic_schedule(tmp_path):
    from rlsurgery.pruning.gradual import cubic_sparsity

    assert cubic_sparsity(300, 0.0, 0.8, 100, 600) == pytest.approx(0.8 * (1 - 0.6**3))
    assert cubic_sparsity(50, 0.1, 0.8, 100, 600) == 0.1 and cubic_sparsity(700, 0.1, 0.8, 100, 600) == 0.8
    spec = "gradual_magnitude_pruning:final_sparsity=0.8,start_step=100,end_step=600,frequency=100"
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **KW)
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    model.learn(350)  # last pruning step at t = 300
    layers = [m for _, m in prunable_layers(model)]
    assert sparsity(layers) == pytest.approx(round(cubic_sparsity(300, 0.0, 0.8, 100, 600) * total) / total)
    model.save(tmp_path / "mid.zip")
    resumed = rls.load(tmp_path / "mid.zip", env=model.get_env())
    assert sparsity(m for _, m in prunable_layers(resumed)) == pytest.approx(sparsity(layers))
    resumed.learn(650, reset_num_timesteps=False)  # through the end of the schedule
    assert sparsity(m for _, m in prunable_layers(resumed)) == pytest.approx(round(0.8 * total) / total)
    ppo = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, surgeries=[spec])
    ppo.learn(640)
    assert ppo.surgery_state["gradual_magnitude_pruning"].result["sparsity"] == pytest.approx(0.8, abs=1e-3)


def test_network_surgery_applied_at_a_step_during_training(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["double_q_learning", "magnitude_pruning:amount=0.5,at_step=300"],
        **KW,
    )
    assert model.surgery_log[-1] == {
        "key": "magnitude_pruning",
        "params": {"amount": 0.5, "scope": "global", "include_output": True},
        "step": 300,
        "applied": "scheduled",
    }
    model.learn(200)
    assert sparsity(m for _, m in prunable_layers(model)) == 0.0  # not yet
    model.save(tmp_path / "before.zip")
    resumed = rls.load(tmp_path / "before.zip", env=model.get_env())  # the schedule travels with the model
    resumed.learn(200, reset_num_timesteps=False)
    assert sparsity(m for _, m in prunable_layers(resumed)) == pytest.approx(0.5, abs=1e-3)
    record = resumed.surgery_log[-1]
    assert record["applied"] == "at_step" and 300 <= record["step"] < 310
    resumed.save(tmp_path / "after.zip")
    again = rls.load(tmp_path / "after.zip")  # replayed like a build-time surgery, masks restored
    assert (
        sparsity(m for _, m in prunable_layers(again)) == pytest.approx(0.5, abs=1e-3)
        and not again._scheduled
    )
    with pytest.raises(ParameterError, match="cannot be applied at a step during training"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["double_q_learning:at_step=10"])
    with pytest.raises(ParameterError, match="'at_step' must be an env step >= 0"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["magnitude_pruning:at_step=-5"])
