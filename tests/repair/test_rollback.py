"""Checkpoint rollback: a NaN injected into a real run is rolled back bit for bit, and training goes on."""

from __future__ import annotations

import copy

import numpy as np
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalSAC

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=1000, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def test_nan_rolls_back_to_the_snapshot_bit_for_bit(tmp_path):
    for folder in ("", str(tmp_path / "snapshots")):
        model = SurgicalDQN(
            "MlpPolicy",
            "CartPole-v1",
            seed=0,
            surgeries=["checkpoint_rollback:every=100,warmup=10" + (f",folder={folder}" if folder else "")],
            **KW,
        )
        model.learn(150)  # snapshots at steps 1 and 101
        (surgery,) = model.surgeries
        snap = (
            surgery.newest(model)
            if not folder
            else th.load(surgery.newest(model)["path"], weights_only=False)
        )
        assert snap["step"] == 101
        # corrupt the replay buffer: every reward NaN, so the next loss is NaN
        model.replay_buffer.rewards[: model.replay_buffer.pos] = np.nan
        pos_at_snapshot = snap["replay"][0]
        model.learn(1, reset_num_timesteps=False)
        assert model.surgery_state["checkpoint_rollback"].events >= 1
        for name, value in model.policy.state_dict().items():
            assert th.equal(value, snap["policy"][name]), name
        assert model.replay_buffer.pos == pos_at_snapshot
        assert (
            model.policy.optimizer.state_dict()["state"][0]["step"]
            == snap["optimizers"]["policy"]["state"][0]["step"]
        )
        # training goes on with finite parameters once the corrupted transitions are gone
        model.replay_buffer.rewards[:] = 0.0
        model.learn(50, reset_num_timesteps=False)
        assert all(th.isfinite(p).all() for p in model.policy.parameters())


def test_non_finite_gradients_are_caught_on_sac():
    model = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        buffer_size=300,
        learning_starts=20,
        batch_size=16,
        surgeries=["checkpoint_rollback:every=50"],
        policy_kwargs=dict(net_arch=[16]),
    )
    model.learn(60)
    model.replay_buffer.rewards[: model.replay_buffer.pos] = np.inf
    model.learn(5, reset_num_timesteps=False)
    assert model.surgery_state["checkpoint_rollback"].events >= 1
    assert all(th.isfinite(p).all() for p in model.policy.parameters())


def test_injected_faults_break_plain_runs_and_repairs_hold():
    fault = "fault_injection:step=100,kind=nan,count=500"
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[fault], **KW)
    plain.learn(100)
    assert np.isnan(
        plain.replay_buffer.rewards[: plain.replay_buffer.pos - 1]
    ).all()  # all stored before step 100
    plain.learn(20, reset_num_timesteps=False)
    assert not all(th.isfinite(p).all() for p in plain.policy.parameters())  # the fault breaks a plain run
    repaired = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=[fault, "checkpoint_rollback:every=50,warmup=10"], **KW
    )
    repaired.learn(200)
    assert repaired.surgery_state["checkpoint_rollback"].events >= 1
    assert all(th.isfinite(p).all() for p in repaired.policy.parameters())
    # PPO: the corrupted rollout (huge rewards) is filtered update by update
    from rlsurgery import SurgicalPPO

    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        surgeries=[
            "fault_injection:step=130,kind=value,value=1e9,count=64",
            "loss_spike_filtering:warmup=5,k=5",
        ],
    )
    ppo.learn(256)
    assert ppo.surgery_state["loss_spike_filtering"].events >= 1
    assert all(th.isfinite(p).all() for p in ppo.policy.parameters())


def test_a_snapshot_taken_after_the_fault_is_dropped_for_the_one_before(tmp_path):
    # the fault lands at step 201, just before that step's snapshot, with no update in between: the
    # snapshot of step 201 already holds the NaN rewards, so restoring it alone cannot repair the run
    kw = {**KW, "train_freq": 50, "buffer_size": 2000}
    surgeries = ["fault_injection:step=201,kind=nan,count=30", "checkpoint_rollback:every=100,warmup=2"]
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=surgeries, **kw)
    model.learn(150)
    rollback = model.surgeries[1]
    before_fault = copy.deepcopy(rollback.newest(model))
    assert before_fault["step"] == 101
    model.learn(150, reset_num_timesteps=False)  # to step 300: bad updates at steps 250 and 300
    assert [s["step"] for s in rollback.state(model).snapshots] == [
        101
    ]  # the tainted step-201 snapshot is gone
    assert model.surgery_state["checkpoint_rollback"].events == 2
    for name, value in model.policy.state_dict().items():
        assert th.equal(value, before_fault["policy"][name]), name
    assert model.replay_buffer.pos == before_fault["replay"][0]  # the NaN transitions are out of reach
    # the probation, the count and the running averages are saved (the snapshots are not), and so is
    # the fault, so a resumed run is not faulted twice
    state = rollback.state(model)
    assert state.probation_from == 300 and not state.pending
    model.save(tmp_path / "rolled_back.zip")
    loaded = rls.load(tmp_path / "rolled_back.zip")
    restored = loaded.surgeries[1].state(loaded)
    assert (restored.probation_from, restored.events, restored.averages) == (300, 2, state.averages)
    assert restored.snapshots == [] and state.snapshots
    assert loaded.surgeries[0].state(loaded).result["injected"] == 201
    model.learn(300, reset_num_timesteps=False)
    assert model.surgery_state["checkpoint_rollback"].events == 2  # every later update is good
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert rollback.state(model).snapshots[-1]["step"] > 300  # snapshots resume once training is healthy
    # with one snapshot kept there is nothing older to fall back to: every update stays bad
    stuck = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=[surgeries[0], surgeries[1] + ",keep=1"], **kw
    )
    stuck.learn(600)
    assert stuck.surgery_state["checkpoint_rollback"].events == len(range(250, 601, 50))
