"""Behaviour cloning and DAgger, with a linear CartPole expert saved as a real PPO zip."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.exploration.counts import StateHasher
from rlsurgery.policy.imitation import Demonstrations, rollouts


@pytest.fixture(scope="module")
def expert_zip(tmp_path_factory):
    """PPO with no hidden layer whose action logits are [0, 100·(x·w)], w = (0, 0, 1, 0.5):
    push right when the pole falls right; it keeps CartPole up for all 500 steps."""
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[]))
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 100.0, 50.0]]))
        model.policy.action_net.bias.zero_()
    path = tmp_path_factory.mktemp("expert") / "expert.zip"
    model.save(path)
    return path


def test_behavior_cloning_reaches_held_out_accuracy(expert_zip, tmp_path):
    spec = f"behavior_cloning:expert={expert_zip},episodes=4,epochs=40,learning_rate=0.003"
    ppo = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32]), surgeries=[spec])
    report = ppo.surgery_state["behavior_cloning"].result
    assert report["pairs"] == 2000 and report["expert_returns"] == [500.0] * 4
    assert report["held_out_pairs"] == 200 and report["held_out_accuracy"] >= 0.95
    assert report["losses"][-1] < report["losses"][0]
    # any agent family: DQN imitates through softmax(Q); the target network follows
    dqn = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32]), surgeries=[spec])
    assert dqn.surgery_state["behavior_cloning"].result["held_out_accuracy"] >= 0.9
    for a, b in zip(dqn.q_net.parameters(), dqn.q_net_target.parameters()):
        assert th.equal(a, b)
    # demonstrations from an .npz; save/load keeps the fitted policy without refitting
    data, _, _ = rollouts(gym.make("CartPole-v1"), PPO.load(expert_zip), 2, seed=5)
    np.savez(tmp_path / "demos.npz", observations=data.observations, actions=data.actions)
    from_file = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[f"behavior_cloning:expert={tmp_path / 'demos.npz'},epochs=40,learning_rate=0.003"],
    )
    assert (
        from_file.surgery_state["behavior_cloning"].result["pairs"] == 1000
        and from_file.surgery_state["behavior_cloning"].result["held_out_accuracy"] >= 0.9
    )
    from_file.save(tmp_path / "bc.zip")
    loaded = rls.load(tmp_path / "bc.zip")
    np.testing.assert_array_equal(
        loaded.predict(data.observations, deterministic=True)[0],
        from_file.predict(data.observations, deterministic=True)[0],
    )


def test_dagger_aggregates_learner_states_and_matches_the_expert(expert_zip):
    spec = f"dagger:expert={expert_zip},iterations=3,episodes=2,beta=0.3,epochs=10"
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=1, policy_kwargs=dict(net_arch=[32]), surgeries=[spec]
    )
    state = model.surgery_state["dagger"]
    history = state.result["iterations"]
    assert [h["expert_probability"] for h in history] == pytest.approx([1.0, 0.3, 0.09])
    assert history[-1]["pairs"] == len(state.dataset) > history[0]["pairs"]
    # states the learner drove to: grid cells over (x, ẋ, θ, θ̇) the expert's own rollouts never visited
    box = gym.spaces.Box(np.array([-2.4, -3, -0.21, -3.5]), np.array([2.4, 3, 0.21, 3.5]), dtype=np.float64)
    cells = StateHasher(box, kind="grid", bins=12)
    expert_only, _, _ = rollouts(gym.make("CartPole-v1"), PPO.load(expert_zip), 2, seed=1)
    expert_cells = set(cells.codes(expert_only.observations).tolist())
    learner_states = state.dataset.observations[~state.expert_acted]
    assert len(learner_states) > 0
    assert len(set(cells.codes(learner_states).tolist()) - expert_cells) > 0
    # the learner alone keeps the pole up at least 95% as long as the expert
    env = gym.make("CartPole-v1")
    _, _, returns = rollouts(env, model, 3, seed=100)
    assert np.mean(returns) >= 0.95 * 500


def test_bad_expert_and_mismatched_spaces_fail_before_anything_is_trained(expert_zip, tmp_path):
    with pytest.raises(ParameterError, match="behavior_cloning: parameter 'expert' is required"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["behavior_cloning"])
    with pytest.raises(ParameterError, match=r"dagger: parameter 'expert' must be an existing \.zip file"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=[f"dagger:expert={tmp_path / 'missing.zip'}"])
    with pytest.raises(IncompatibleSurgeryError, match="behavior_cloning: the expert's spaces"):
        SurgicalPPO("MlpPolicy", "Acrobot-v1", surgeries=[f"behavior_cloning:expert={expert_zip}"])
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ParameterError, match="needs 'observations' and 'actions'"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=[f"behavior_cloning:expert={tmp_path / 'bad.npz'}"])
    assert len(Demonstrations(np.zeros((10, 4)), np.zeros(10)).split(0.3, 0)[1]) == 3
