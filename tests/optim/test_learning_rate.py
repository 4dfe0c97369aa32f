"""Learning-rate surgeries: the rate each optimizer group really uses equals the formula at given steps."""

from __future__ import annotations

import math

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.core.errors import ParameterError
from rlsurgery.optim.learning_rate import current_learning_rates

LR = 1e-3
KW = dict(
    learning_rate=LR,
    learning_starts=20,
    batch_size=16,
    buffer_size=500,
    train_freq=1,
    policy_kwargs=dict(net_arch=[16, 16]),
)


def sgdr(t):
    """Cosine within periods [0, 100), [100, 300), [300, 700), [700, 1500), ..."""
    start, period = 0, 100
    while t >= start + period:
        start, period = start + period, period * 2
    return 0.5 * (1 + math.cos(math.pi * (t - start) / period))


def rate_at(model, step):
    """The rate the optimizer uses for an update at env step ``step`` (its pre-step hook sets it)."""
    model.num_timesteps = step
    optimizer = model.policy.optimizer
    optimizer.zero_grad()
    optimizer.step()  # no gradients: nothing moves, the hooks run
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("learning_rate_warmup:warmup_steps=1000,start_factor=0.1", lambda t: 0.1 + 0.9 * min(1, t / 1000)),
        (
            "cosine_annealing:period=1000,min_factor=0.2",
            lambda t: 0.2 + 0.4 * (1 + math.cos(math.pi * min(t, 1000) / 1000)),
        ),
        ("learning_rate_restart:first_period=100,period_mult=2", lambda t: sgdr(t)),
        (
            "cyclical_learning_rate:half_cycle=100,min_factor=0.2",
            lambda t: 0.2 + 0.8 * max(0, 1 - abs(t / 100 - 2 * (t // 200) - 1)),
        ),
        (
            "cyclical_learning_rate:half_cycle=100,min_factor=0.2,mode=triangular2",
            lambda t: 0.2 + 0.8 * 0.5 ** (t // 200) * max(0, 1 - abs(t / 100 - 2 * (t // 200) - 1)),
        ),
    ],
    ids=["warmup", "cosine", "restart", "triangular", "triangular2"],
)
def test_the_optimizer_rate_follows_each_formula(spec, expected):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **KW)
    for t in (0, 1, 50, 99, 100, 150, 299, 300, 500, 999, 1000, 5000):
        assert rate_at(model, t) == pytest.approx(LR * expected(t), rel=1e-9, abs=1e-15), t
    # in a real run: the rate of the last update is the formula at that step (train_freq 1)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **KW).learn(150)
    assert current_learning_rates(model)["policy"][0] == pytest.approx(LR * expected(150), rel=1e-9)


def test_factors_compose_and_follow_sb3_schedules_and_other_agents(tmp_path):
    # warmup × cosine: the product; on top of SB3's own (linear) schedule of the base rate
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        learning_rate=lambda p: 1e-3 * p,
        surgeries=["learning_rate_warmup:warmup_steps=100,start_factor=0.0", "cosine_annealing:period=256"],
    )
    model.learn(128)
    base = 1e-3 * model._current_progress_remaining
    f = (min(1, 128 / 100)) * 0.5 * (1 + math.cos(math.pi * 128 / 256))
    assert current_learning_rates(model)["policy"][0] == pytest.approx(base * f, rel=1e-9)
    # SAC: both optimizers
    sac = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_rate=LR,
        buffer_size=300,
        learning_starts=20,
        batch_size=16,
        surgeries=["learning_rate_warmup:warmup_steps=1000,start_factor=0.0"],
        policy_kwargs=dict(net_arch=[16]),
    )
    sac.learn(60)
    rates = current_learning_rates(sac)
    assert rates["actor"][0] == pytest.approx(LR * 60 / 1000) and rates["critic"][0] == pytest.approx(
        LR * 60 / 1000
    )
    # save/load: the hooks come back with the surgery
    sac.save(tmp_path / "sac.zip")
    loaded = rls.load(tmp_path / "sac.zip", env=sac.get_env())
    loaded.learn(40, reset_num_timesteps=False)
    assert current_learning_rates(loaded)["actor"][0] == pytest.approx(LR * 100 / 1000)


def test_reduce_on_plateau_reduces_after_patience(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["reduce_on_plateau:patience=2,factor=0.5,threshold=1.0,min_factor=0.2"],
        **KW,
    )
    (surgery,) = model.surgeries
    for value, factor in [
        (10, 1.0),
        (10.5, 1.0),
        (9, 0.5),
        (30, 0.5),
        (30, 0.5),
        (30, 0.25),
        (5, 0.25),
        (5, 0.2),
    ]:
        surgery.observe(model, value)  # best 10; 10.5 is not > 10 + δ; ...
        assert surgery.state(model).factor == factor
    assert rate_at(model, 0) == pytest.approx(LR * 0.2)
    # in training: greedy evaluations every eval_freq steps feed it; the state is saved with the model
    trained = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["reduce_on_plateau:eval_freq=50,n_eval_episodes=1,patience=1"],
        **KW,
    ).learn(160)
    state = trained.surgery_state["reduce_on_plateau"]
    assert state.best is not None and state.next_eval == 200
    trained.save(tmp_path / "p.zip")
    loaded = rls.load(tmp_path / "p.zip")
    assert loaded.surgeries[0].state(loaded) == state  # restored, not started afresh
    assert not hasattr(loaded, "rls_plateau")


def test_layer_wise_rates_decay_with_depth():
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_wise_learning_rates:decay=0.5"], **KW
    )
    optimizer = model.policy.optimizer
    assert len(optimizer.param_groups) == 3  # one group per Linear layer of the Q network
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2, 2]
    assert optimizer.param_groups[0]["params"][0] is model.q_net.q_net[0].weight
    rate_at(model, 10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([LR * 0.25, LR * 0.5, LR])
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.q_net.parameters()}
    model.learn(60)
    assert [g["lr"] for g in model.policy.optimizer.param_groups] == pytest.approx([LR * 0.25, LR * 0.5, LR])


def test_refusals():
    with pytest.raises(ParameterError, match="'mode' must be 'triangular' or 'triangular2'"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["cyclical_learning_rate:mode=exp"])
    with pytest.raises(ParameterError, match="'warmup_steps' must be >= 1"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["learning_rate_warmup:warmup_steps=0"])
    assert th.optim.Adam  # the default optimizer the formulas are checked on


def test_cosine_over_the_whole_run():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["cosine_annealing:period=0"], **KW)
    model.learn(100)  # the last update at step 100 of a 100-step run: factor 0
    assert current_learning_rates(model)["policy"][0] == pytest.approx(0.0, abs=1e-15)


def test_warmup_factor_never_goes_below_its_start():
    from rlsurgery.optim.learning_rate import warmup_factor

    assert warmup_factor(-50, 100, 0.1) == 0.1 and warmup_factor(50, 100, 0.1) == pytest.approx(0.55)
