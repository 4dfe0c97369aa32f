"""Gradient-based and movement pruning: scores are the stated sums over the agent's own gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.nets.masks import lowest_score_masks, prunable_layers, sparsity
from rlsurgery.pruning.gradient import GradientScoreAccumulator, movement_score, taylor_score

KW = dict(
    learning_starts=32, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def test_scores_accumulate_the_stated_formula(tmp_path):
    # on a hand-made layer: two backward passes, scores = Σ |w·g| and −Σ w·g, with w changing in between
    layer = nn.Linear(3, 2)
    taylor = GradientScoreAccumulator([layer], taylor_score)
    movement = GradientScoreAccumulator([layer], movement_score)
    expected_t, expected_m = th.zeros(2, 3), th.zeros(2, 3)
    for x in (th.tensor([[1.0, -2.0, 0.5]]), th.tensor([[0.3, 0.1, -1.0]])):
        layer.zero_grad()
        (layer(x) ** 2).sum().backward()
        w, g = layer.weight.detach(), layer.weight.grad
        expected_t += (w * g).abs()
        expected_m += -(w * g)
        with th.no_grad():
            layer.weight -= 0.1 * g
    assert taylor.updates == 2 and movement.updates == 2
    th.testing.assert_close(taylor.scores[0], expected_t)
    th.testing.assert_close(movement.scores[0], expected_m)
    taylor.remove()
    # in a DQN: all-ones masks at build; after `window` scored updates, exactly p pruned, lowest scores first
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["gradient_based_pruning:amount=0.7,window=40,start_step=100"],
        **KW,
    )
    layers = [m for _, m in prunable_layers(model)]
    assert sparsity(layers) == 0 and all(hasattr(m, "weight_mask") for m in layers)
    model.learn(120)
    assert sparsity(layers) == 0  # scoring started at step 100: fewer than 40 updates so far
    model.learn(200, reset_num_timesteps=False)
    (surgery,) = model.surgeries
    state = surgery.state(model)
    assert state.final_scores is not None and state.done and state.accumulator is None
    exact = round(0.7 * 352) / 352  # 4·16 + 16·16 + 16·2 = 352 weights
    assert sparsity(layers) == exact and state.result["sparsity"] == exact
    for layer, expected in zip(layers, lowest_score_masks(state.final_scores, 0.7)):
        assert th.equal(layer.weight_mask, expected)
    # the masks hold through further training, reach the target network, and survive save/load
    model.learn(200, reset_num_timesteps=False)
    assert sparsity(layers) == exact
    target_layers = [m for m in model.q_net_target.modules() if isinstance(m, nn.Linear)]
    assert all(th.equal(a.weight_mask, b.weight_mask) for a, b in zip(layers, target_layers))
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip", env=model.get_env())
    restored = loaded.surgeries[0].state(loaded)
    assert restored.done and restored.result == state.result  # the report survives the replay
    assert restored.final_scores is None  # transient: not saved
    loaded.learn(100, reset_num_timesteps=False)  # already pruned: not pruned a second time
    assert sparsity([m for _, m in prunable_layers(loaded)]) == exact
    # movement pruning on PPO, per layer
    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        surgeries=["movement_pruning:amount=0.5,window=4,scope=layer,include_output=false"],
        policy_kwargs=dict(net_arch=[16]),
    )
    ppo.learn(192)
    ppo_layers = [m for _, m in prunable_layers(ppo, include_output=False)]
    assert all(sparsity([m]) == pytest.approx(0.5, abs=0.02) for m in ppo_layers)
    np.testing.assert_array_equal(ppo.policy.action_net.weight.detach() != 0, True)


def test_a_scheduled_training_time_surgery_acts_in_the_same_learn_call():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["gradient_based_pruning:amount=0.5,window=20,at_step=100"],
        **KW,
    )
    model.learn(300)  # applied at step 100 (all-ones masks), scores 20 updates, prunes: one learn call
    assert model.surgery_log[-1]["applied"] == "at_step"
    assert sparsity([m for _, m in prunable_layers(model)]) == round(0.5 * 352) / 352
