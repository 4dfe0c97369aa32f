from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import ParameterError
from rlsurgery.exploration.curiosity import ICMModel, RNDModel
from rlsurgery.exploration.intrinsic import IntrinsicRewardVecEnv, RunningMoments

SPACE = gym.spaces.Box(0, 1, (25,), np.float32)
ACTIONS = gym.spaces.Discrete(2)


def onehot(i: int) -> np.ndarray:
    obs = np.zeros((1, 25), dtype=np.float32)
    obs[0, i] = 1
    return obs


@pytest.mark.parametrize("cls", [RNDModel, ICMModel], ids=["rnd", "icm"])
def test_bonus_shrinks_for_seen_states_and_stays_high_for_novel(cls):
    th.manual_seed(0)
    model = cls(SPACE, ACTIONS, update_every=16, normalize_reward=False)
    action = np.array([1])
    seen = (onehot(0), action, onehot(1))
    novel = (onehot(5), action, onehot(7))
    before = model.bonus(*seen)[0]
    for _ in range(400):
        model.bonus(*seen)
        model.observe(*seen)
    after, novel_after = model.bonus(*seen)[0], model.bonus(*novel)[0]
    assert after < before / 100  # the often-seen transition lost its bonus
    assert novel_after > 100 * after  # the novel one kept a large bonus


def test_running_moments_and_reward_normalisation():
    moments = RunningMoments((2,))
    data = th.randn(1000, 2) * th.tensor([2.0, 0.5]) + th.tensor([1.0, -1.0])
    for chunk in data.split(100):
        moments.update(chunk)
    th.testing.assert_close(moments.mean, data.mean(0), atol=1e-4, rtol=0)
    th.testing.assert_close(moments.var, data.var(0, unbiased=False), atol=1e-3, rtol=1e-3)
    model = RNDModel(SPACE, ACTIONS, normalize_reward=True, normalize_obs=False)
    raw = model.errors(model.obs_tensor(onehot(3))).item()
    first = model.bonus(onehot(0), np.array([0]), onehot(3))[0]
    assert first == pytest.approx(raw, rel=1e-5)  # raw while σ_R settles (32 returns)
    for _ in range(40):
        bonus = model.bonus(onehot(0), np.array([0]), onehot(3))[0]
    # b / σ_R with σ_R the std of the discounted returns r, r(1 + γ), r(1 + γ + γ²), ...
    returns = np.cumsum([raw * 0.99**k for k in range(41)])
    sigma = np.sqrt(np.var(returns) * 41 / (41 + 1e-4))
    assert bonus == pytest.approx(raw / sigma, rel=1e-3)


def test_curiosity_models_follow_the_agent_seed():
    def build():
        return SurgicalPPO(
            "MlpPolicy", "CartPole-v1", seed=7, n_steps=32, batch_size=32, surgeries=["curiosity_driven"]
        )

    a, b = build(), build()
    for (name, x), y in zip(a.rls_modules.state_dict().items(), b.rls_modules.state_dict().values()):
        if not name.endswith("_extra_state"):
            assert th.equal(x, y), name


@pytest.mark.parametrize("variant", ["rnd", "icm"])
def test_surgery_trains_its_predictor_inside_dqn_and_ppo(variant, tiny_kwargs):
    spec = f"curiosity_driven:variant={variant},update_every=32"
    dqn = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **tiny_kwargs)
    before = [p.detach().clone() for p in dqn.rls_modules["curiosity_driven"].parameters() if p.requires_grad]
    dqn.learn(128)
    after = [p for p in dqn.rls_modules["curiosity_driven"].parameters() if p.requires_grad]
    assert any(not th.equal(a, b) for a, b in zip(before, after))
    ppo = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, surgeries=[spec]).learn(
        128
    )
    assert isinstance(ppo.env, IntrinsicRewardVecEnv)
    # PPO's rollout holds the shaped rewards; Monitor's episode returns stay extrinsic
    assert all(float(ep["r"]).is_integer() for ep in ppo.ep_info_buffer)


def test_wrapper_with_plain_sb3_sac_and_continuous_icm():
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    icm = ICMModel(venv.observation_space, venv.action_space, update_every=50)
    env = IntrinsicRewardVecEnv(venv, icm, coefficient=0.5)
    model = SAC(
        "MlpPolicy", env, learning_starts=50, batch_size=16, seed=0, policy_kwargs=dict(net_arch=[16])
    )
    model.learn(120)
    stored = model.replay_buffer.rewards[:120, 0]
    assert icm._steps == 120
    assert np.isfinite(stored).all()


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterError, match="'variant' must be one of 'rnd', 'icm'"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["curiosity_driven:variant=ngu"])
    with pytest.raises(ParameterError, match="'update_every' must be >= 1"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["curiosity_driven:update_every=0"])


def test_intrinsic_bonus_reaches_the_logs(tmp_path):
    from stable_baselines3.common.logger import configure

    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, surgeries=["curiosity_driven"]
    )
    logger = configure(str(tmp_path), ["csv"])
    model.set_logger(logger)
    model.learn(128)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert (
        "rollout/intrinsic_curiosity_driven" in header and "rollout/intrinsic_curiosity_driven_coef" in header
    )
