from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import SurgeryError
from rlsurgery.ensembles import snapshots
from rlsurgery.ensembles.fast_geometric_ensembling import FastGeometricEnsembling, geometric_factor
from rlsurgery.ensembles.snapshot_ensembling import SnapshotEnsembling
from rlsurgery.runtime.schedules import cosine_factor
from tests.breakage import assert_proof_fails_when, replaced

LR = 1e-3


class Recorder(BaseCallback):
    """The Q network's weights and the optimizer's rate at every env step (before that step's update)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[int, dict] = {}
        self.rates: dict[int, float] = {}

    def _on_step(self) -> bool:
        self.weights[self.num_timesteps] = copy.deepcopy(self.model.q_net.state_dict())
        self.rates[self.num_timesteps] = self.model.policy.optimizer.param_groups[0]["lr"]
        return True


def trained(spec: str, steps: int = 200) -> tuple[SurgicalDQN, Recorder]:
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", surgeries=[spec], seed=0, learning_starts=0, train_freq=1,
        learning_rate=LR, batch_size=16, policy_kwargs=dict(net_arch=[16]),
    )  # fmt: skip
    recorder = Recorder()
    model.learn(steps, callback=recorder)
    return model, recorder


def reference_values(model: SurgicalDQN, states: list[dict], obs: th.Tensor) -> th.Tensor:
    net = copy.deepcopy(model.q_net)
    values = []
    for state in states:
        net.load_state_dict(state)
        with th.no_grad():
            values.append(net(obs))
    return th.stack(values).mean(dim=0)


def observations() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2.0, size=(2000, 4)).astype(np.float32)


def check_rates(recorder: Recorder, factor) -> None:
    """The rate applied at step t - 1 (seen at step t) is η · f(t - 1)."""
    for t, rate in recorder.rates.items():
        if t >= 2:
            assert rate == pytest.approx(LR * factor(t - 1), rel=1e-6, abs=1e-12), t


def check_snapshots_are_taken_at_the_cycle_ends_and_act_together():
    model, recorder = trained("snapshot_ensembling:n_snapshots=3,cycle_steps=50")
    bank = model.policy.snapshot_bank
    assert sorted(bank.taken_at.tolist()) == [100, 150, 200]  # cycle ends; the first (50) dropped
    for k in range(3):
        step = int(bank.taken_at[k])
        for name, value in bank.slots[k].state_dict().items():
            th.testing.assert_close(value, recorder.weights[step][name])  # the weights of that step
    check_rates(recorder, lambda t: cosine_factor(t % 50, 50, 0.0))
    assert min(recorder.rates.values()) < 0.01 * LR  # the cosine reaches ~0 before each restart
    obs = observations()
    expected = reference_values(model, [recorder.weights[s] for s in (100, 150, 200)], th.as_tensor(obs))
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, expected.argmax(dim=1).numpy())
    current = model.q_net(th.as_tensor(obs)).argmax(dim=1).numpy()
    assert (current != actions).any()  # the ensemble, not the network being trained, decides
    np.random.seed(3)  # collecting stays DQN's ε-greedy on the network being trained
    explored, _ = model.predict(obs[:64], deterministic=False)
    np.random.seed(3)
    np.testing.assert_array_equal(explored, DQN.predict(model, obs[:64], deterministic=False)[0])


def test_snapshots_are_taken_at_the_cycle_ends_and_act_together():
    check_snapshots_are_taken_at_the_cycle_ends_and_act_together()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(SnapshotEnsembling, "collection_count", lambda self, agent, step: step),  # every step
        replaced(SnapshotEnsembling, "lr_factor", lambda self, agent, step: 1.0),  # no cycles
        replaced(
            snapshots.SnapshotBank, "values", lambda self, obs: self.slots[self.filled[-1]](obs)
        ),  # latest only
    ],
    ids=["every-step", "constant-rate", "latest-snapshot-acts"],
)
def test_the_snapshot_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_snapshots_are_taken_at_the_cycle_ends_and_act_together)


def check_fge_collects_at_each_cycle_middle():
    # t₀ = 100, c = 20: the lowest rate's updates at 110, 130, …, 190; each collected right after it
    model, recorder = trained(
        "fast_geometric_ensembling:cycle_steps=20,start_fraction=0.5,n_models=3,min_factor=0.1"
    )
    taken = sorted(model.policy.snapshot_bank.taken_at.tolist())
    assert taken == [151, 171, 191]  # the latest three kept
    for t in taken:
        assert recorder.rates[t] == pytest.approx(LR * 0.1)  # the last update before it: the lowest rate
    check_rates(recorder, lambda t: 1.0 if t < 100 else geometric_factor((t - 100) % 20, 20, 0.1))
    obs = observations()
    expected = reference_values(model, [recorder.weights[s] for s in taken], th.as_tensor(obs))
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], expected.argmax(dim=1).numpy())
    # the averaged variant: the mean of the weights of all five collections acts
    swa, recorder = trained("fast_geometric_ensembling:cycle_steps=20,start_fraction=0.5,variant=swa")
    average = swa.policy.snapshot_bank.average
    assert int(average.n_averaged) == 5
    states = [recorder.weights[s] for s in (111, 131, 151, 171, 191)]
    for name, value in average.module.state_dict().items():
        th.testing.assert_close(value, sum(s[name] for s in states) / 5)
    mean_net = copy.deepcopy(swa.q_net)
    mean_net.load_state_dict({name: sum(s[name] for s in states) / 5 for name in states[0]})
    with th.no_grad():
        expected = mean_net(th.as_tensor(obs)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(swa.predict(obs, deterministic=True)[0], expected)


def test_fge_collects_at_each_cycle_middle():
    check_fge_collects_at_each_cycle_middle()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(  # at the cycle ends instead of their middles
            FastGeometricEnsembling,
            "collection_count",
            lambda self, agent, step: max(0, step - self.start(agent)) // self.params.cycle_steps,
        ),
        replaced(
            snapshots.AveragedBank,
            "store",
            lambda self, net, step: self.average.module.load_state_dict(net.state_dict()),
        ),
        replaced(FastGeometricEnsembling, "start", lambda self, agent: 0),  # cycles from the first step
    ],
    ids=["cycle-ends", "swa-keeps-the-latest", "no-first-stretch"],
)
def test_the_fge_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_fge_collects_at_each_cycle_middle)


def test_geometric_factor_is_a_triangle_down_to_its_minimum():
    assert [geometric_factor(t, 10, 0.0) for t in (0, 5, 10)] == [1.0, 0.0, 1.0]
    assert geometric_factor(2, 10, 0.5) == pytest.approx(0.8)


def test_an_empty_bank_leaves_greedy_actions_to_the_network_being_trained():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["snapshot_ensembling"], seed=0)
    obs = observations()[:50]
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], model.q_net(th.as_tensor(obs)).argmax(dim=1).numpy()
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["snapshot_ensembling"]),
            "snapshot_ensembling",
        ),
        (
            lambda: SurgicalDQN(
                "MlpPolicy", "CartPole-v1", surgeries=["fast_geometric_ensembling:cycle_steps=5"]
            ),
            "even",
        ),
        (
            lambda: SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["snapshot_ensembling", "bagging"]),
            "act",
        ),
    ],
    ids=["ppo", "odd-cycle", "two-acting-surgeries"],
)
def test_refusals(make, match):
    with pytest.raises(SurgeryError, match=match):
        make()


def test_a_second_learn_call_goes_on_collecting():
    model, _ = trained("snapshot_ensembling:n_snapshots=3,cycle_steps=50")  # snapshots at 100, 150, 200 kept
    bank = model.policy.snapshot_bank
    model.learn(100)  # steps restart at 0: its cycles end at 50 and 100
    newest = [int(bank.taken_at[k]) for k in bank.filled]
    assert newest == [200, 50, 100]  # oldest first: the first call's last, then this call's two
