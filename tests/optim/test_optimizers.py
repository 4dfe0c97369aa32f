"""Optimizer switching and momentum schedules."""

from __future__ import annotations

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalTD3

KW = dict(
    learning_rate=1e-3,
    learning_starts=20,
    batch_size=16,
    buffer_size=500,
    train_freq=1,
    policy_kwargs=dict(net_arch=[16, 16]),
)


def test_switching_hands_over_state_and_survives_load(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["optimizer_switching:to=sgd,step=100,lr=0.01,momentum=0.9"],
        **KW,
    )
    model.learn(99)
    adam = model.policy.optimizer
    assert type(adam) is th.optim.Adam
    weight = model.q_net.q_net[0].weight
    first_moment = adam.state[weight]["exp_avg"].clone()
    (surgery,) = model.surgeries
    model.num_timesteps = 100
    surgery.switch(model)  # what the callback does at step 100
    sgd = model.policy.optimizer
    assert (
        type(sgd) is th.optim.SGD
        and sgd.param_groups[0]["lr"] == 0.01
        and sgd.param_groups[0]["momentum"] == 0.9
    )
    th.testing.assert_close(sgd.state[weight]["momentum_buffer"], first_moment / (1 - 0.9))
    assert {id(p) for g in sgd.param_groups for p in g["params"]} == {id(p) for p in model.q_net.parameters()}
    model.learn(50, reset_num_timesteps=False)
    assert (
        model.policy.optimizer is sgd and sgd.param_groups[0]["lr"] == 0.01
    )  # SB3's schedule follows the switch
    # saved after the switch: loads with SGD and its state
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip", env=model.get_env())
    assert type(loaded.policy.optimizer) is th.optim.SGD
    th.testing.assert_close(
        loaded.policy.optimizer.state_dict()["state"][0]["momentum_buffer"],
        sgd.state_dict()["state"][0]["momentum_buffer"],
    )
    loaded.learn(20, reset_num_timesteps=False)
    # during a run: TD3's actor and critic both switch at the step
    td3 = SurgicalTD3(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        buffer_size=300,
        learning_starts=20,
        batch_size=16,
        surgeries=["optimizer_switching:to=rmsprop,step=50"],
        policy_kwargs=dict(net_arch=[16]),
    )
    td3.learn(80)
    assert type(td3.actor.optimizer) is th.optim.RMSprop and type(td3.critic.optimizer) is th.optim.RMSprop


def test_momentum_follows_its_schedule():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["momentum_adjustment:initial=0.95,final=0.85,start_step=100,end_step=200"],
        **KW,
    )
    optimizer = model.policy.optimizer
    for step, expected in [(0, 0.95), (100, 0.95), (150, 0.90), (200, 0.85), (1000, 0.85)]:
        model.num_timesteps = step
        optimizer.step()
        assert optimizer.param_groups[0]["betas"][0] == pytest.approx(expected)
        assert optimizer.param_groups[0]["betas"][1] == 0.999
    model.learn(60)
    assert model.policy.optimizer.param_groups[0]["betas"][0] == pytest.approx(0.95)
