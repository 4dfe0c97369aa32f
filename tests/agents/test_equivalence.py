"""Every surgical agent without surgeries reproduces its SB3 parent bit for bit.

Settings off SB3's defaults are included where the staged train step has a branch of its own
(batches that are not powers of two, several gradient steps, a fixed or learnt entropy
coefficient, delayed policy updates, sub-sampling, advantage normalisation, KL early stop).
"""

from __future__ import annotations

import copy

import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3

from rlsurgery import SurgicalA2C, SurgicalDQN, SurgicalPPO, SurgicalSAC, SurgicalTD3, SurgicalTRPO

OFF = dict(learning_starts=40, buffer_size=1000, policy_kwargs=dict(net_arch=[12]))
ON = dict(policy_kwargs=dict(net_arch=[12]))

CASES = {
    "dqn": (DQN, SurgicalDQN, "CartPole-v1", 300, dict(OFF, batch_size=24, train_freq=2, gradient_steps=3)),
    "ppo": (PPO, SurgicalPPO, "CartPole-v1", 256, dict(ON, n_steps=64, batch_size=24, n_epochs=2)),
    "ppo-kl-vf": (
        PPO,
        SurgicalPPO,
        "Pendulum-v1",
        256,
        dict(ON, n_steps=64, batch_size=32, n_epochs=3, target_kl=0.001, clip_range_vf=0.3),
    ),
    "a2c": (A2C, SurgicalA2C, "CartPole-v1", 200, dict(ON, n_steps=7)),
    "a2c-normalized": (A2C, SurgicalA2C, "Pendulum-v1", 200, dict(ON, n_steps=6, normalize_advantage=True)),
    "sac": (SAC, SurgicalSAC, "Pendulum-v1", 150, dict(OFF, batch_size=24, gradient_steps=2)),
    "sac-fixed-alpha": (
        SAC,
        SurgicalSAC,
        "Pendulum-v1",
        120,
        dict(OFF, batch_size=20, ent_coef=0.2, target_update_interval=2, gradient_steps=3),
    ),
    "td3": (TD3, SurgicalTD3, "Pendulum-v1", 150, dict(OFF, batch_size=24, gradient_steps=3, policy_delay=2)),
    "trpo": (TRPO, SurgicalTRPO, "CartPole-v1", 256, dict(ON, n_steps=64, batch_size=24, n_critic_updates=3)),
    "trpo-subsampled": (
        TRPO,
        SurgicalTRPO,
        "Pendulum-v1",
        256,
        dict(ON, n_steps=64, batch_size=32, sub_sampling_factor=2, normalize_advantage=False),
    ),
}


def assert_same_state(a, b) -> None:
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert th.equal(sa[key], sb[key]), key
    if getattr(a, "log_ent_coef", None) is not None:
        assert th.equal(a.log_ent_coef, b.log_ent_coef)


@pytest.mark.parametrize("case", list(CASES))
def test_no_surgeries_reproduces_the_sb3_parent_bit_for_bit(case):
    parent, surgical, env_id, steps, kwargs = CASES[case]
    # SB3 writes into policy_kwargs (use_sde …): each agent gets its own copy
    ours = surgical("MlpPolicy", env_id, seed=3, **copy.deepcopy(kwargs)).learn(steps)
    theirs = parent("MlpPolicy", env_id, seed=3, **copy.deepcopy(kwargs)).learn(steps)
    assert_same_state(theirs, ours)
    assert ours._n_updates == theirs._n_updates > 0


@pytest.mark.parametrize("case", ["dqn", "ppo", "a2c", "sac", "td3", "trpo"])
def test_signatures_are_the_sb3_parents_plus_surgeries(case):
    # one shared construction forwards the arguments; the explicit signatures (for help() and IDEs)
    # must stay SB3's: same names, order and defaults, plus ``surgeries``
    import inspect

    parent, surgical, *_ = CASES[case]
    theirs = dict(inspect.signature(parent.__init__).parameters)
    ours = dict(inspect.signature(surgical.__init__).parameters)
    assert ours.pop("surgeries").default is None
    assert list(ours) == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
    assert ":param surgeries:" in surgical.__doc__  # help() documents it
