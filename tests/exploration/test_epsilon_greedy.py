from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.runtime.schedules import ValueSchedule


def agent(tiny_kwargs, spec, **extra):
    tiny_kwargs.update(extra)
    return SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **tiny_kwargs)


def test_epsilon_values_and_random_action_rate(tiny_kwargs):
    # exponential: ε(t) = max(ε_min, ε_max · decay^t)
    model = agent(
        tiny_kwargs, "epsilon_greedy_annealing:schedule=exponential,initial=0.8,final=0.05,decay=0.99"
    )
    model.set_logger(configure(None, []))
    surgery = model.surgeries[0]
    model.num_timesteps = 0
    for t, expected in [(0, 0.8), (10, 0.8 * 0.99**10), (100, 0.8 * 0.99**100), (1000, 0.05)]:
        model.num_timesteps = t
        assert surgery.epsilon(model) == pytest.approx(expected)
    # piecewise: interpolated through the points
    piecewise = ValueSchedule("piecewise", 0, 0, points=[[0, 1.0], [100, 0.5], [300, 0.1]])
    assert [piecewise(t, 1.0) for t in (0, 50, 100, 200, 300, 10_000)] == pytest.approx(
        [1, 0.75, 0.5, 0.3, 0.1, 0.1]
    )
    # the empirical rate of non-greedy actions is ε·(A−1)/A
    model.num_timesteps = 30
    surgery.on_step(model)
    eps = model.exploration_rate
    assert eps == pytest.approx(0.8 * 0.99**30)
    obs = np.zeros(4, dtype=np.float32)
    greedy = model.predict(obs, deterministic=True)[0]
    actions = np.array([model.predict(obs, deterministic=False)[0] for _ in range(3000)])
    rate = float(np.mean(actions != greedy))  # a random action differs from the greedy one half the time
    assert rate == pytest.approx(eps / 2, abs=0.03)


def test_linear_schedule_with_sb3_values_reproduces_plain_dqn(tiny_kwargs):
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=1, **dict(tiny_kwargs)).learn(600)
    annealed = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=1, surgeries=["epsilon_greedy_annealing"], **dict(tiny_kwargs)
    ).learn(600)
    assert annealed.exploration_rate == plain.exploration_rate
    for a, b in zip(plain.policy.parameters(), annealed.policy.parameters()):
        assert th.equal(a, b)


def test_changed_linear_schedule_reaches_its_final_value(tiny_kwargs):
    model = agent(tiny_kwargs, "epsilon_greedy_annealing:initial=0.5,final=0.2,fraction=0.5").learn(400)
    assert model.exploration_rate == pytest.approx(0.2)
    surgery = model.surgeries[0]
    model._current_progress_remaining = 0.75  # a quarter of the run: half-way through the annealing
    assert surgery.epsilon(model) == pytest.approx(0.35)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("epsilon_greedy_annealing:schedule=piecewise", "needs points"),
        ("epsilon_greedy_annealing:schedule=piecewise,points=[[10,1],[5,0]]", "increasing steps"),
        ("epsilon_greedy_annealing:initial=1.5", "'initial' must be <= 1.0"),
        ("epsilon_greedy_annealing:schedule=cosine", "'schedule' must be one of"),
        (
            "epsilon_greedy_annealing:schedule=piecewise,points=[[0,1],[100,1.5]]",
            "piecewise point value 1.5 must be <= 1.0, as 'initial'",
        ),
    ],
)
def test_bad_parameters_are_refused(spec, match):
    with pytest.raises(ParameterError, match=match):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=[spec])


def test_refused_on_ppo():
    with pytest.raises(
        IncompatibleSurgeryError, match="epsilon_greedy_annealing: not available for SurgicalPPO"
    ):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["epsilon_greedy_annealing"])
