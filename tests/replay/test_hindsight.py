"""Hindsight experience replay through SB3's HerReplayBuffer on the surgical agents."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalSAC
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.envs.bit_flip import BitFlipEnv

KW = dict(learning_starts=100, buffer_size=2000, batch_size=64, policy_kwargs=dict(net_arch=[32]))


def test_relabelled_rewards_are_recomputed_with_compute_reward(tmp_path):
    model = SurgicalDQN(
        "MultiInputPolicy",
        BitFlipEnv(n_bits=12),
        seed=0,
        surgeries=["hindsight_experience_replay:n_sampled_goal=4,strategy=future", "double_q_learning"],
        **KW,
    ).learn(400)
    buffer = model.replay_buffer
    assert type(buffer).__name__ == "HerReplayBuffer" and buffer.n_sampled_goal == 4
    batch = model.sample_batch(512)
    obs, next_obs = batch.observations, batch.next_observations
    achieved = next_obs["achieved_goal"].cpu().numpy()
    desired = obs["desired_goal"].cpu().numpy()
    expected = BitFlipEnv(n_bits=12).compute_reward(achieved, desired, None)
    np.testing.assert_array_equal(batch.rewards.cpu().numpy().reshape(-1), expected)
    # with k = 4, about 4/5 of the goals are relabelled: many more successes than the env gives
    assert (expected == 0).mean() > 0.2
    model.compute_loss(batch)  # the Dict batch flows through the stages
    model.save(tmp_path / "her.zip")
    loaded = rls.load(tmp_path / "her.zip", env=model.get_env())
    assert (
        loaded.surgery_log == model.surgery_log and type(loaded.replay_buffer).__name__ == "HerReplayBuffer"
    )


def test_her_alone_is_sb3_dqn_with_her_replay_buffer_bit_for_bit():
    """The HER benchmark's "SB3's DQN + HerReplayBuffer" row: the surgery alone trains exactly SB3's DQN
    with SB3's buffer (same seed: same parameters and the same stored transitions after training)."""
    from stable_baselines3 import DQN
    from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

    kw = dict(KW, train_freq=1, target_update_interval=50)
    ours = SurgicalDQN(
        "MultiInputPolicy",
        BitFlipEnv(n_bits=8),
        seed=3,
        surgeries=["hindsight_experience_replay:n_sampled_goal=2,strategy=final"],
        **kw,
    ).learn(300)
    sb3 = DQN(
        "MultiInputPolicy",
        BitFlipEnv(n_bits=8),
        seed=3,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="final"),
        **kw,
    ).learn(300)
    assert ours.replay_buffer.pos == sb3.replay_buffer.pos
    np.testing.assert_array_equal(
        ours.replay_buffer.observations["achieved_goal"], sb3.replay_buffer.observations["achieved_goal"]
    )
    theirs = dict(sb3.policy.named_parameters())
    for name, value in ours.policy.named_parameters():
        assert th.equal(value, theirs[name]), name


def test_her_on_sac_for_continuous_goal_envs():
    model = SurgicalSAC(
        "MultiInputPolicy",
        BitFlipEnv(n_bits=6, continuous=True),
        seed=0,
        surgeries=["hindsight_experience_replay:strategy=final"],
        **KW,
    ).learn(200)
    assert model.replay_buffer.goal_selection_strategy.name == "FINAL"
    samples = model.replay_buffer.sample(64)
    assert th.isfinite(samples.rewards).all()


@pytest.mark.parametrize("other", ["prioritized_replay", "n_step_returns"])
def test_refuses_buffers_it_does_not_compose_with_and_non_goal_envs(other):
    with pytest.raises(IncompatibleSurgeryError, match=f"does not compose with {other}"):
        SurgicalDQN(
            "MultiInputPolicy", BitFlipEnv(n_bits=4), surgeries=["hindsight_experience_replay", other]
        )
    with pytest.raises(IncompatibleSurgeryError, match="needs a goal env"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["hindsight_experience_replay"])
