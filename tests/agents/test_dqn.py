"""SurgicalDQN: equivalence with SB3's DQN, policies, vectorized envs, devices, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv

from rlsurgery import SurgicalDQN
from rlsurgery.agents import ALGORITHMS
from rlsurgery.core.errors import (
    IncompatibleSurgeryError,
    ParameterError,
    PlannedSurgeryError,
    UnknownSurgeryError,
)
from rlsurgery.core.surgery import Surgery
from tests.helpers import TinyImageEnv

ZOO_CARTPOLE = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[64, 64]),
)


def assert_same_parameters(a, b):
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert th.equal(sa[key], sb[key]), key


def multi_obs_env() -> SimpleMultiObsEnv:
    """SB3's multi-input test env; it draws its images from NumPy's global RNG when built,
    so both agents of a comparison must build it from the same RNG state."""
    np.random.seed(0)
    return SimpleMultiObsEnv(random_start=False)


#: SB3 parent of each surgical agent; each has an equivalence test (DQN below, the others in
#: test_ppo.py and test_a2c_sac.py, TRPO in tests/policy/test_trust_region.py)
SB3_PARENTS = {"dqn": DQN, "ppo": PPO, "a2c": A2C, "sac": SAC, "trpo": TRPO, "td3": TD3}


def test_every_surgical_agent_has_an_equivalence_test():
    assert set(ALGORITHMS) == set(SB3_PARENTS), "add the new agent's SB3 parent and an equivalence case"
    for name, cls in ALGORITHMS.items():
        assert issubclass(cls, SB3_PARENTS[name])


@pytest.mark.parametrize(
    ("env_factory", "policy", "kwargs", "steps"),
    [
        (lambda: "CartPole-v1", "MlpPolicy", ZOO_CARTPOLE, 3000),
        (
            lambda: make_vec_env("CartPole-v1", n_envs=2, seed=5),
            "MlpPolicy",
            dict(ZOO_CARTPOLE, train_freq=16, gradient_steps=4),
            2000,
        ),
        (
            lambda: TinyImageEnv(),
            "CnnPolicy",
            dict(
                learning_starts=50,
                buffer_size=500,
                batch_size=8,
                target_update_interval=40,
                policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)),
            ),
            200,
        ),
        (
            multi_obs_env,
            "MultiInputPolicy",
            dict(learning_starts=50, buffer_size=500, batch_size=8, target_update_interval=40),
            200,
        ),
    ],
    ids=["mlp", "vec-env-2", "cnn", "multi-input"],
)
def test_no_surgeries_reproduces_sb3_dqn_exactly(env_factory, policy, kwargs, steps):
    sb3 = DQN(policy, env_factory(), seed=3, **kwargs).learn(steps)
    ours = SurgicalDQN(policy, env_factory(), seed=3, **kwargs).learn(steps)
    assert ours._n_updates == sb3._n_updates > 0
    assert_same_parameters(sb3, ours)
    ours.observation_space.seed(0)
    samples = [ours.observation_space.sample() for _ in range(8)]
    if isinstance(samples[0], dict):
        obs = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    else:
        obs = np.stack(samples)
    np.testing.assert_array_equal(
        sb3.predict(obs, deterministic=True)[0], ours.predict(obs, deterministic=True)[0]
    )


def test_rainbow_surgeries_on_cnn_policy_and_vec_env():
    env = make_vec_env(TinyImageEnv, n_envs=2, seed=0)
    model = SurgicalDQN(
        "CnnPolicy",
        env,
        seed=0,
        learning_starts=40,
        buffer_size=400,
        batch_size=8,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)),
        surgeries=[
            "double_q_learning",
            "dueling_architecture",
            "distributional_rl:n_atoms=11",
            "prioritized_replay",
            "n_step_returns",
            "noisy_nets",
        ],
    )
    model.learn(160)
    assert model._n_updates > 0
    q = model.q_net(th.as_tensor(np.stack([model.observation_space.sample()] * 3), device=model.device))
    assert q.shape == (3, 2)


@pytest.mark.cuda
@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
def test_rainbow_runs_on_cuda():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        device="cuda",
        learning_starts=64,
        surgeries=[
            "double_q_learning",
            "dueling_architecture",
            "distributional_rl",
            "prioritized_replay",
            "n_step_returns",
            "noisy_nets",
        ],
    )
    model.learn(300)
    assert all(p.device.type == "cuda" for p in model.policy.parameters())
    assert model.q_net_target.readout.support.device.type == "cuda"


@pytest.mark.parametrize(
    ("surgeries", "error", "match"),
    [
        (["dueling_architectur"], UnknownSurgeryError, "did you mean 'dueling_architecture'"),
        (["vq_vae"], PlannedSurgeryError, "planned, not implemented yet"),
        (
            ["prioritized_replay:alpha=1.5"],
            ParameterError,
            "prioritized_replay: parameter 'alpha' must be <= 1.0",
        ),
        (
            ["distributional_rl:n_atoms=1"],
            ParameterError,
            "distributional_rl: parameter 'n_atoms' must be >= 2",
        ),
        (["distributional_rl:v_min=5,v_max=5"], ParameterError, "'v_min' must be < 'v_max'"),
        (["double_q_learning", "double_q_learning"], IncompatibleSurgeryError, "given twice"),
    ],
)
def test_bad_surgeries_fail_before_anything_is_built(surgeries, error, match):
    with pytest.raises(error, match=match):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=surgeries)


@pytest.mark.parametrize("key", ["dueling_architecture", "distributional_rl"])
def test_discrete_action_surgeries_refuse_continuous_actions(key):
    with pytest.raises(IncompatibleSurgeryError, match=f"{key}: needs a discrete action space, got Box"):
        SurgicalDQN("MlpPolicy", "Pendulum-v1", surgeries=[key])


@pytest.mark.parametrize("key", ["prioritized_replay", "n_step_returns"])
def test_replay_surgeries_refuse_dict_observations(key):
    with pytest.raises(
        IncompatibleSurgeryError, match=f"{key}: Dict observation spaces are not supported yet"
    ):
        SurgicalDQN("MultiInputPolicy", SimpleMultiObsEnv(), surgeries=[key])


def test_n_step_refuses_a_buffer_without_n_step_returns():
    with pytest.raises(
        IncompatibleSurgeryError, match="n_step_returns: replay_buffer_class=ReplayBuffer does not"
    ):
        SurgicalDQN(
            "MlpPolicy", "CartPole-v1", replay_buffer_class=ReplayBuffer, surgeries=["n_step_returns"]
        )


def test_custom_unregistered_surgery_fills_a_stage(tiny_kwargs, tmp_path):
    class CountUpdates(Surgery):
        """Counts gradient updates (a user's own surgery, not in the catalog)."""

        key = "count_updates"
        stages = ("after_update",)

        def __init__(self):
            super().__init__()
            self.calls = 0

        def after_update(self, agent, batch):
            self.calls += 1

    counter = CountUpdates()
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=[counter, "double_q_learning"], **tiny_kwargs
    )
    model.learn(200)
    assert counter.calls == model._n_updates > 0
    model.save(tmp_path / "m.zip")
    with pytest.raises(UnknownSurgeryError, match="unknown surgery 'count_updates'"):
        SurgicalDQN.load(tmp_path / "m.zip")


def test_surgery_refuses_other_algorithm_families():
    from rlsurgery.catalog import create

    class FakePPO:
        algorithm_family = "ppo"

    with pytest.raises(IncompatibleSurgeryError, match="double_q_learning: not available for FakePPO"):
        create("double_q_learning").validate(FakePPO())


def test_a_plain_sb3_model_in_memory_is_operated_as_its_surgical_agent(tmp_path):
    from stable_baselines3 import DQN

    import rlsurgery as rls

    plain = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]), learning_starts=0, seed=0)
    plain.learn(64)
    weights = {k: v.clone() for k, v in plain.policy.state_dict().items()}
    operated = rls.operate(plain, "magnitude_pruning", amount=0.5)
    assert type(operated) is SurgicalDQN and [r["key"] for r in operated.surgery_log] == ["magnitude_pruning"]
    assert all(th.equal(v, plain.policy.state_dict()[k]) for k, v in weights.items())  # untouched
    # a surgical agent's zip loaded with SB3's own loader is a plain DQN too: converted the same way
    SurgicalDQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8])).save(tmp_path / "m.zip")
    via_sb3 = rls.operate(DQN.load(tmp_path / "m.zip"), "magnitude_pruning", amount=0.5)
    assert [r["key"] for r in via_sb3.surgery_log] == ["magnitude_pruning"]
    pruned = rls.operate(rls.load(tmp_path / "m.zip"), "magnitude_pruning", amount=0.5)
    assert [r["key"] for r in pruned.surgery_log] == ["magnitude_pruning"]
