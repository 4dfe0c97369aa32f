"""``rls.surgical(model)``: a plain SB3 model in memory becomes its surgical agent, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3

import rlsurgery as rls

CASES = [
    (DQN, "CartPole-v1", dict(learning_starts=16, buffer_size=500, train_freq=4), rls.SurgicalDQN),
    (PPO, "CartPole-v1", dict(n_steps=32, batch_size=16, n_epochs=1), rls.SurgicalPPO),
    (A2C, "CartPole-v1", dict(n_steps=8), rls.SurgicalA2C),
    (SAC, "Pendulum-v1", dict(learning_starts=16, buffer_size=500), rls.SurgicalSAC),
    (TD3, "Pendulum-v1", dict(learning_starts=16, buffer_size=500), rls.SurgicalTD3),
    (TRPO, "CartPole-v1", dict(n_steps=32, batch_size=32), rls.SurgicalTRPO),
]


def optimizer_tensors(model):
    out = []
    for optimizer in (v for v in vars(model.policy).values() if isinstance(v, th.optim.Optimizer)):
        out += [t for s in optimizer.state_dict()["state"].values() for t in s.values() if th.is_tensor(t)]
    for name in ("optimizer", "actor", "critic"):
        part = getattr(model.policy, name, None)
        if isinstance(part, th.nn.Module) and isinstance(
            getattr(part, "optimizer", None), th.optim.Optimizer
        ):
            state = part.optimizer.state_dict()["state"]
            out += [t for s in state.values() for t in s.values() if th.is_tensor(t)]
    return out


@pytest.mark.parametrize(
    ("parent", "env_id", "kwargs", "expected"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_a_plain_model_becomes_its_surgical_agent_with_everything(parent, env_id, kwargs, expected):
    plain = parent("MlpPolicy", env_id, seed=0, policy_kwargs=dict(net_arch=[16]), **kwargs)
    plain.learn(96)
    converted = rls.surgical(plain)
    assert type(converted) is expected and converted is not plain
    assert type(converted.policy) is expected.policy_aliases["MlpPolicy"]
    obs = np.stack([plain.observation_space.sample() for _ in range(16)])
    np.testing.assert_array_equal(
        converted.predict(obs, deterministic=True)[0], plain.predict(obs, deterministic=True)[0]
    )
    for name, value in plain.policy.state_dict().items():
        assert th.equal(converted.policy.state_dict()[name], value), name
    ours, theirs = optimizer_tensors(converted), optimizer_tensors(plain)
    assert len(ours) == len(theirs) > 0 and all(th.equal(a, b) for a, b in zip(ours, theirs))
    for counter in ("num_timesteps", "_n_updates", "_episode_num"):
        assert getattr(converted, counter) == getattr(plain, counter), counter
    np.testing.assert_array_equal(converted._last_obs, plain._last_obs)
    if hasattr(plain, "replay_buffer"):
        assert converted.replay_buffer is plain.replay_buffer and converted.replay_buffer.pos > 0
    assert converted.get_env() is plain.get_env()
    converted.learn(32, reset_num_timesteps=False)  # goes on training from where the plain one was
    assert converted.num_timesteps >= plain.num_timesteps + 32
    assert rls.surgical(converted) is converted


def test_image_policies_map_to_the_surgical_policy_of_the_same_name():
    from tests.helpers import TinyImageEnv

    plain = DQN("CnnPolicy", TinyImageEnv(), buffer_size=100, learning_starts=0, seed=0)
    converted = rls.surgical(plain)
    assert type(converted.policy) is rls.SurgicalDQN.policy_aliases["CnnPolicy"]


def test_an_algorithm_without_a_surgical_agent_is_named():
    from sb3_contrib import QRDQN

    with pytest.raises(rls.IncompatibleSurgeryError, match="QRDQN: no surgical agent"):
        rls.surgical(QRDQN("MlpPolicy", "CartPole-v1", buffer_size=100))


def test_each_surgical_class_converts_its_own_algorithm_only():
    plain = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    assert type(rls.SurgicalPPO.from_model(plain)) is rls.SurgicalPPO
    with pytest.raises(rls.IncompatibleSurgeryError, match="needs a DQN, got a PPO"):
        rls.SurgicalDQN.from_model(plain)


@pytest.mark.parametrize(("parent", "env_id", "kwargs", "expected"), CASES[:2], ids=["DQN", "PPO"])
def test_the_constructor_takes_a_plain_model_in_place_of_a_policy(parent, env_id, kwargs, expected):
    plain = parent("MlpPolicy", env_id, seed=0, policy_kwargs=dict(net_arch=[16]), **kwargs)
    plain.learn(64)
    converted = expected(plain)
    assert type(converted) is expected and converted.num_timesteps == plain.num_timesteps
    for name, value in plain.policy.state_dict().items():
        assert th.equal(converted.policy.state_dict()[name], value), name
    pruned = expected(plain, surgeries=["magnitude_pruning:amount=0.5"])  # applied as rls.operate does
    assert [r["key"] for r in pruned.surgery_log] == ["magnitude_pruning"]
    weights = [p for n, p in pruned.policy.named_parameters() if n.endswith("weight")]
    assert sum(int((w == 0).sum()) for w in weights) >= 0.45 * sum(w.numel() for w in weights)
    other = parent("MlpPolicy", env_id, seed=1, **kwargs).get_env()
    assert expected(plain, other).get_env() is other
    assert expected(policy=plain).num_timesteps == plain.num_timesteps


def test_the_constructor_refuses_settings_and_build_time_surgeries_with_a_plain_model():
    plain = DQN("MlpPolicy", "CartPole-v1", buffer_size=100, seed=0)
    with pytest.raises(rls.ParameterError, match=r"SurgicalDQN\(model, \.\.\.\).*\(got learning_rate\)"):
        rls.SurgicalDQN(plain, learning_rate=1e-3)
    with pytest.raises(rls.IncompatibleSurgeryError, match="dueling_architecture: cannot be applied to an"):
        rls.SurgicalDQN(plain, surgeries=["dueling_architecture"])
    with pytest.raises(rls.IncompatibleSurgeryError, match="needs a DQN, got a PPO"):
        rls.SurgicalDQN(PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16))


def test_help_shows_the_sb3_signature_not_the_conversion():
    import inspect

    assert list(inspect.signature(rls.SurgicalPPO).parameters)[:2] == ["policy", "env"]
    assert "surgeries" in inspect.signature(rls.SurgicalPPO).parameters
