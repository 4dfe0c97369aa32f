"""SurgicalA2C and SurgicalSAC: equivalence with SB3, exploration surgeries on them, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, SAC

import rlsurgery as rls
from rlsurgery import SurgicalA2C, SurgicalSAC
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.exploration.boltzmann import TemperedLogits
from rlsurgery.exploration.intrinsic import IntrinsicRewardVecEnv
from rlsurgery.exploration.noisy_nets import NoisyLinear

A2C_SMALL = dict(n_steps=8, policy_kwargs=dict(net_arch=[16]))
SAC_SMALL = dict(learning_starts=50, batch_size=16, buffer_size=1000, policy_kwargs=dict(net_arch=[16]))


def assert_same_parameters(a, b):
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert th.equal(sa[key], sb[key]), key


def test_no_surgeries_reproduces_sb3_td3_exactly():
    from stable_baselines3 import TD3

    from rlsurgery import SurgicalTD3

    assert_same_parameters(
        TD3("MlpPolicy", "Pendulum-v1", seed=2, **SAC_SMALL).learn(150),
        SurgicalTD3("MlpPolicy", "Pendulum-v1", seed=2, **SAC_SMALL).learn(150),
    )
    from rlsurgery.envs.bit_flip import BitFlipEnv

    her = SurgicalTD3(
        "MultiInputPolicy",
        BitFlipEnv(n_bits=4, continuous=True),
        seed=0,
        surgeries=["hindsight_experience_replay:strategy=episode"],
        **{**SAC_SMALL, "policy_kwargs": dict(net_arch=[16])},
    )
    assert type(her.replay_buffer).__name__ == "HerReplayBuffer"


def test_no_surgeries_reproduces_sb3_a2c_and_sac_exactly():
    assert_same_parameters(
        A2C("MlpPolicy", "CartPole-v1", seed=2, **A2C_SMALL).learn(400),
        SurgicalA2C("MlpPolicy", "CartPole-v1", seed=2, **A2C_SMALL).learn(400),
    )
    assert_same_parameters(
        SAC("MlpPolicy", "Pendulum-v1", seed=2, **SAC_SMALL).learn(150),
        SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=2, **SAC_SMALL).learn(150),
    )


def test_exploration_surgeries_on_a2c(tmp_path):
    model = SurgicalA2C(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[
            "noisy_nets:scope=all",
            "entropy_regularization:initial=0.05",
            "curiosity_driven:update_every=16",
        ],
        **A2C_SMALL,
    ).learn(200)
    assert isinstance(model.policy.action_net, NoisyLinear) and model.ent_coef == pytest.approx(0.05)
    assert isinstance(model.env, IntrinsicRewardVecEnv)
    model.save(tmp_path / "a2c.zip")
    loaded = rls.load(tmp_path / "a2c.zip")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    tempered = SurgicalA2C("MlpPolicy", "CartPole-v1", surgeries=["boltzmann_exploration"], **A2C_SMALL)
    assert isinstance(tempered.policy.action_net, TemperedLogits)


def test_sac_entropy_coefficient_fixed_or_learnt_and_intrinsic_reward(tmp_path):
    fixed = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        surgeries=["entropy_regularization:sac_alpha=fixed,initial=0.3"],
        **SAC_SMALL,
    )
    assert fixed.ent_coef_optimizer is None and float(fixed.ent_coef_tensor) == pytest.approx(0.3)
    learnt = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        surgeries=["entropy_regularization:initial=0.5,target_entropy=-0.5", "curiosity_driven:variant=icm"],
        **SAC_SMALL,
    )
    assert learnt.target_entropy == -0.5 and float(learnt.log_ent_coef.detach().exp()) == pytest.approx(0.5)
    learnt.learn(120)
    assert float(learnt.log_ent_coef.detach().exp()) != pytest.approx(
        0.5
    )  # α moved towards the target entropy
    assert learnt.rls_modules["curiosity_driven"]._steps == 120
    learnt.save(tmp_path / "sac.zip")
    loaded = rls.load(tmp_path / "sac.zip")
    assert type(loaded) is SurgicalSAC and loaded.surgery_log == learnt.surgery_log
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        learnt.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    with pytest.raises(IncompatibleSurgeryError, match="on SAC α is fixed"):
        SurgicalSAC("MlpPolicy", "Pendulum-v1", surgeries=["entropy_regularization:schedule=linear"])
    with pytest.raises(IncompatibleSurgeryError, match="noisy_nets: not available for SurgicalSAC"):
        SurgicalSAC("MlpPolicy", "Pendulum-v1", surgeries=["noisy_nets"])
