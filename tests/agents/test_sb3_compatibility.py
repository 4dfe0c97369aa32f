"""Without surgeries, a surgical agent behaves as its SB3 parent: the rule, agent by agent.

Numbers (bit-for-bit training) are in ``test_equivalence.py``; this module covers what a user of
the SB3 class notices besides: the TensorBoard run names, and the exceptions SB3 raises for an
agent it cannot build (an ``AssertionError``, which the surgical agents raise too, as an
``AgentBuildError`` that is also a ``SurgeryError`` for the command line)."""

from __future__ import annotations

import pytest
from sb3_contrib import TRPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3

import rlsurgery as rls
from rlsurgery.core.errors import AgentBuildError, SurgeryError

#: surgical class, SB3 parent, an env it trains on, small settings, an action space it refuses
AGENTS = [
    (rls.SurgicalDQN, DQN, "CartPole-v1", dict(learning_starts=0, buffer_size=100), "Pendulum-v1"),
    (rls.SurgicalPPO, PPO, "CartPole-v1", dict(n_steps=16, batch_size=16, n_epochs=1), None),
    (rls.SurgicalA2C, A2C, "CartPole-v1", dict(n_steps=8), None),
    (rls.SurgicalSAC, SAC, "Pendulum-v1", dict(learning_starts=0, buffer_size=100), "CartPole-v1"),
    (rls.SurgicalTD3, TD3, "Pendulum-v1", dict(learning_starts=0, buffer_size=100), "CartPole-v1"),
    (rls.SurgicalTRPO, TRPO, "CartPole-v1", dict(n_steps=16, batch_size=16), None),
]
IDS = [a[1].__name__ for a in AGENTS]


@pytest.mark.parametrize(("surgical", "parent", "env_id", "kwargs", "_refused"), AGENTS, ids=IDS)
def test_tensorboard_runs_are_named_as_sb3_names_them(surgical, parent, env_id, kwargs, _refused, tmp_path):
    names = {}
    for cls in (surgical, parent):
        log = tmp_path / cls.__name__
        cls("MlpPolicy", env_id, tensorboard_log=str(log), seed=0, **kwargs).learn(16)
        names[cls] = sorted(p.name for p in log.iterdir())
    assert names[surgical] == names[parent] == [f"{parent.__name__}_1"]


@pytest.mark.parametrize(("surgical", "parent", "env_id", "kwargs", "refused"), AGENTS, ids=IDS)
def test_an_agent_sb3_cannot_build_raises_sb3s_assertion_error(surgical, parent, env_id, kwargs, refused):
    cases = [("MlpPolicy", refused, {})] if refused else []
    if parent in (PPO, TRPO):
        cases.append(("MlpPolicy", env_id, dict(n_steps=1, batch_size=1)))  # n_steps * n_envs must be > 1
    if not cases:
        pytest.skip(f"SB3 builds {parent.__name__} on every space these tests use")
    for policy, env, extra in cases:
        with pytest.raises(AssertionError) as sb3:
            parent(policy, env, **{**kwargs, **extra})
        with pytest.raises(AssertionError) as ours:
            surgical(policy, env, **{**kwargs, **extra})
        assert isinstance(ours.value, AgentBuildError) and isinstance(ours.value, SurgeryError)
        assert str(sb3.value) in str(ours.value)  # SB3's message, after the agent's name
