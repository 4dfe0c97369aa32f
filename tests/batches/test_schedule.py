"""Batch-size and curriculum schedules: the sizes the updates see, and curricula advancing on their gate."""

from __future__ import annotations

import gymnasium as gym
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

import rlsurgery as rls
from rlsurgery import SurgicalA2C, SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError

KW = dict(learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16]))


def test_batch_sizes_follow_the_schedule(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["batch_size_increase:factor=2,every=50,start_step=50,max_batch_size=48"],
        **KW,
    )
    sizes = {}
    original = model.sample_batch
    model.sample_batch = lambda n: sizes.setdefault(model.num_timesteps, n) and original(n)
    model.learn(160)
    assert {t: n for t, n in sizes.items() if t in (30, 49, 50, 99, 100, 150)} == {
        30: 16,
        49: 16,
        50: 32,
        99: 32,
        100: 48,
        150: 48,  # 16 → 32 at t₀ = 50 → 64 capped at 48
    }
    del model.sample_batch  # the recording lambda: back to the agent's method before saving
    model.save(tmp_path / "m.zip")
    assert rls.load(tmp_path / "m.zip").surgery_state["batch_size_increase"].base_batch_size == 16
    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=16,
        n_epochs=1,
        surgeries=["batch_size_increase:factor=4,every=64,start_step=64,max_batch_size=64"],
    )
    ppo.learn(128)
    assert ppo.batch_size == 64


def test_batch_size_increase_refuses_a2c_before_training():
    # A2C updates on the whole rollout: no batch size to grow, so it is not among the families
    assert "a2c" not in rls.catalog.get("batch_size_increase").as_dict()["families"]
    with pytest.raises(IncompatibleSurgeryError, match=r"batch_size_increase: .*A2C has no batch size"):
        SurgicalA2C("MlpPolicy", "CartPole-v1", seed=0, n_steps=8, surgeries=["batch_size_increase"])


def test_curriculum_advances_on_its_gate(tmp_path):
    stages = "[{length: 0.25, polemass_length: 0.025}, {length: 0.5, polemass_length: 0.05}, {length: 1.0, polemass_length: 0.1}]"
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=[f"curriculum_learning:stages={stages},every=100"], **KW
    )
    env = model.get_env()
    assert env.get_attr("length") == [0.25] and model.surgery_state["curriculum_learning"].stage == 0
    model.learn(99)
    assert model.surgery_state["curriculum_learning"].stage == 0
    model.learn(2, reset_num_timesteps=False)
    assert model.surgery_state["curriculum_learning"].stage == 1 and env.get_attr("length") == [0.5]
    # the stage is saved, and load re-applies it to the env it is given
    model.save(tmp_path / "stage1.zip")
    fresh = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    fresh.set_attr("length", 0.25)
    fresh.set_attr("polemass_length", 0.025)
    loaded = rls.load(tmp_path / "stage1.zip", env=fresh)
    assert loaded.surgery_state["curriculum_learning"] == model.surgery_state["curriculum_learning"]
    assert fresh.get_attr("length") == [0.5] and fresh.get_attr("polemass_length") == [0.05]
    model.learn(300, reset_num_timesteps=False)
    assert model.surgery_state["curriculum_learning"].stage == 2 and env.get_attr("polemass_length") == [
        0.1
    ]  # and stays at the last
    # success gate: CartPole returns ≥ 9 in the last 3 episodes open the next stage
    gated = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[f"curriculum_learning:stages={stages},gate=success,threshold=9,window=3"],
        **KW,
    )
    gated.learn(60)
    assert gated.surgery_state["curriculum_learning"].stage >= 1
    never = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[f"curriculum_learning:stages={stages},gate=success,threshold=1000,window=3"],
        **KW,
    )
    never.learn(200)
    assert never.surgery_state["curriculum_learning"].stage == 0
    with pytest.raises(IncompatibleSurgeryError, match="no attribute 'gravityy'"):
        SurgicalDQN(
            "MlpPolicy", "CartPole-v1", surgeries=["curriculum_learning:stages=[{gravityy: 1.0}]"], **KW
        )
    with pytest.raises(ParameterError, match="non-empty list"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["curriculum_learning"], **KW)
