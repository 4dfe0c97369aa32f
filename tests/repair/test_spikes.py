"""Spike repairs: the detector's verdicts, and what each repair does to the update and the rate."""

from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN
from rlsurgery.repair.spikes import SpikeDetector

KW = dict(
    learning_rate=1e-3,
    learning_starts=20,
    batch_size=16,
    buffer_size=500,
    train_freq=1,
    policy_kwargs=dict(net_arch=[16, 16]),
)


def spiking_run(spec):
    """A DQN run whose loss is multiplied by 1000 for one update at step 80."""
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **KW)
    original = model.compute_loss
    state = {"before": None}

    def compute_loss(batch):
        loss = original(batch)
        if model.num_timesteps == 80:
            state["before"] = {n: p.detach().clone() for n, p in model.q_net.named_parameters()}
            return loss * 1000
        return loss

    model.compute_loss = compute_loss
    return model, state


def test_spikes_are_filtered_and_reduce_or_rewarm_the_rate():
    detector = SpikeDetector(k=3.0, beta=0.5, warmup=2)
    verdicts = [detector.is_bad(x) for x in (1.0, 1.0, 10.0, 1.0, float("nan"), 2.9)]
    assert verdicts == [False, False, True, False, True, False]
    # 1, 1 → m = 1; the spike counts as k·m → m = 2; 1 → 1.5; NaN ignored; 2.9 ≤ 4.5 accepted → 2.2
    assert detector.mean == pytest.approx(2.2)
    # a negative loss (PPO's, with its entropy bonus) is judged by its size: −1.2 is no spike, 10 is
    negative = SpikeDetector(k=3.0, beta=0.5, warmup=2)
    assert [negative.is_bad(x) for x in (-1.0, -1.0, -1.2, 10.0)] == [False, False, False, True]
    # filtering: the spiking update changes nothing
    model, state = spiking_run("loss_spike_filtering:k=5,warmup=20")
    model.learn(80)
    after = {n: p.detach().clone() for n, p in model.q_net.named_parameters()}
    assert state["before"] is not None
    assert all(th.equal(after[n], state["before"][n]) for n in after)  # the step at 80 was skipped
    assert model.surgery_state["loss_spike_filtering"].events == 1
    model.learn(10, reset_num_timesteps=False)  # later updates go through
    assert any(not th.equal(after[n], p) for n, p in model.q_net.named_parameters())
    # reduction: the rate halves at the spike and stays there
    model, _ = spiking_run("learning_rate_reduction:k=5,warmup=20,factor=0.5")
    model.learn(100)
    assert model.surgery_state[
        "learning_rate_reduction"
    ].factor == 0.5 and model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    # warmup restart: from the spike on, the rate climbs back linearly
    model, _ = spiking_run("warmup_restart:k=5,warmup=20,warmup_steps=100,start_factor=0.0")
    model.learn(130)
    assert model.surgery_state["warmup_restart"].rewarm_from == 80
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 50 / 100)


def test_two_repairs_each_see_the_spiking_loss():
    # each repair judges the loss itself: the first to watch must not hide it from the second
    both = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["learning_rate_reduction:k=5,warmup=20,factor=0.5", "loss_spike_filtering:k=5,warmup=20"],
        **KW,
    )
    original = both.compute_loss
    both.compute_loss = lambda batch: original(batch) * (1000 if both.num_timesteps == 80 else 1)
    both.learn(100)
    assert {k: s.events for k, s in both.surgery_state.items()} == {
        "learning_rate_reduction": 1,
        "loss_spike_filtering": 1,
    }


def test_a_loaded_model_resumes_the_repairs_state(tmp_path):
    import rlsurgery as rls

    model, _ = spiking_run("learning_rate_reduction:k=5,warmup=20,factor=0.5")
    model.learn(100)
    state = model.surgery_state["learning_rate_reduction"]
    assert state.factor == 0.5 and state.events == 1 and state.averages["policy"][1] > 20
    del model.compute_loss  # the injected fault, not part of the agent
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    restored = loaded.surgeries[0].state(loaded)
    assert restored == state  # the factor, the count and the running average, not started afresh
    loaded.set_env(model.get_env())
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.policy.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)  # still halved
