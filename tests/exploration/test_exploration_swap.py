"""One action-selection strategy at a time; intrinsic rewards stack with any of them."""

from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.exploration.intrinsic import IntrinsicRewardVecEnv


@pytest.mark.parametrize(
    "pair",
    [
        ["noisy_nets", "boltzmann_exploration"],
        ["epsilon_greedy_annealing", "ucb_bonus:c=1"],
        ["boltzmann_exploration", "epsilon_greedy_annealing"],
    ],
)
def test_two_action_selection_strategies_are_refused(pair):
    first, second = (s.split(":")[0] for s in pair)
    with pytest.raises(
        IncompatibleSurgeryError, match=f"{first} and {second} both choose how the agent explores"
    ):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=pair)


def test_intrinsic_rewards_stack_with_a_strategy(tiny_kwargs):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["boltzmann_exploration", "ucb_bonus:beta=0.1", "curiosity_driven"],
        **tiny_kwargs,
    ).learn(100)
    assert isinstance(model.env, IntrinsicRewardVecEnv) and isinstance(model.env.venv, IntrinsicRewardVecEnv)
    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=32,
        batch_size=32,
        surgeries=["noisy_nets", "curiosity_driven:variant=icm"],
    )
    ppo.set_env(ppo.get_env())  # handing the env back does not wrap it twice
    assert not isinstance(ppo.env.venv, IntrinsicRewardVecEnv)


def test_env_handed_over_without_reset_keeps_training(tiny_kwargs):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["ucb_bonus"], **tiny_kwargs).learn(80)
    other = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=1, surgeries=["ucb_bonus"], **tiny_kwargs).learn(10)
    model.set_env(other.get_env(), force_reset=False)
    model.learn(40, reset_num_timesteps=False)
    assert model.num_timesteps == 120


@pytest.mark.cuda
@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    ("cls", "surgeries"),
    [
        ("SurgicalDQN", ["ucb_bonus:c=1.0", "curiosity_driven:variant=icm"]),
        ("SurgicalDQN", ["boltzmann_exploration", "curiosity_driven", "entropy_regularization"]),
        ("SurgicalPPO", ["noisy_nets", "curiosity_driven", "entropy_regularization"]),
    ],
)
def test_exploration_surgeries_run_and_reload_on_cuda(cls, surgeries, tmp_path):
    import rlsurgery as rls

    kwargs = dict(learning_starts=64) if cls == "SurgicalDQN" else dict(n_steps=64, batch_size=32)
    model = getattr(rls, cls)("MlpPolicy", "CartPole-v1", device="cuda", surgeries=surgeries, **kwargs).learn(
        256
    )
    assert all(p.device.type == "cuda" for p in model.policy.parameters())
    assert all(p.device.type == "cuda" for p in model.rls_modules["curiosity_driven"].parameters())
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip", device="cuda")
    assert loaded.surgery_log == model.surgery_log
