"""Diagnostics: numbers on constructed networks and gradients with known answers."""

from __future__ import annotations

import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import ParameterError
from rlsurgery.diagnostics.monitoring import activation_stats, gradient_noise_scale, per_layer_grad_norms

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def test_gradient_norms_and_noise_scale(tmp_path):
    # per-layer norms on a hand-made gradient
    a, b, c = (nn.Parameter(th.zeros(2)) for _ in range(3))
    a.grad, b.grad, c.grad = th.tensor([3.0, 0.0]), th.tensor([0.0, 4.0]), th.tensor([1.0, 0.0])
    assert per_layer_grad_norms([("l1.weight", a), ("l1.bias", b), ("l2.weight", c)]) == {
        "l1": 5.0,
        "l2": 1.0,
    }
    # noise scale on synthetic gradients g_i = G + ξ_i / sqrt(B), Cov(ξ) = diag(σ²): B_simple = Σσ² / |G|²
    gen = th.Generator().manual_seed(0)
    true_g = th.tensor([1.0, -2.0, 0.5, 0.0])
    sigma = th.tensor([3.0, 1.0, 2.0, 4.0])
    batch = 8
    grads = [true_g + sigma * th.randn(4, generator=gen) / batch**0.5 for _ in range(20000)]
    estimate = gradient_noise_scale(grads, batch)
    assert estimate["trace"] == pytest.approx(float(sigma.pow(2).sum()), rel=0.05)
    assert estimate["g2"] == pytest.approx(float(true_g.pow(2).sum()), rel=0.05)
    assert estimate["b_simple"] == pytest.approx(30.0 / 5.25, rel=0.08)
    # in DQN's updates: the recorded per-layer norms are those the optimizer receives
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["gradient_monitoring:log_every=5", "gradient_noise:window=4,log_every=10"],
        max_grad_norm=1e9,
        **KW,
    )
    seen = []
    model.learn(40)  # builds the hooks' counters; now watch one recorded update
    handle = model.policy.optimizer.register_step_pre_hook(
        lambda opt, _a, _k: seen.append(
            per_layer_grad_norms([(n, p) for n, p in model.q_net.named_parameters()])
        )
    )
    counts = model.surgery_state["gradient_monitoring"].updates["policy"]
    model.learn(5 - (counts % 5) + 1, reset_num_timesteps=False)  # through the next recorded update
    handle.remove()
    recorded = model.surgery_state["gradient_monitoring"].latest
    assert set(recorded) == {"q.q_net.0", "q.q_net.2", "q.q_net.4"}
    assert any(recorded["q.q_net.0"] == pytest.approx(s["q_net.0"]) for s in seen)
    noise = model.surgery_state["gradient_noise"].latest["policy"]
    assert noise["trace"] > 0 and th.isfinite(th.tensor(noise["b_simple"]))
    # the update counts and the latest values are saved: a loaded model logs on the same updates
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    monitoring, noise_state = (s.state(loaded) for s in loaded.surgeries)
    assert monitoring == model.surgery_state["gradient_monitoring"]
    assert monitoring.updates["policy"] == model._n_updates  # one optimizer step per DQN update
    assert noise_state == model.surgery_state["gradient_noise"]
    with pytest.raises(ParameterError, match="'window' must be <= 'log_every'"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["gradient_noise:window=50,log_every=10"])


def test_dead_and_dormant_units_are_counted():
    # a layer of dead ReLUs reads as dead; units far below the layer's mean activity as dormant
    h = th.relu(th.randn(100, 8) + th.tensor([0, 0, 0, 0, 0, 0, -100.0, -100.0]))
    h[:, 5] *= 1e-3
    stats = activation_stats(h, tau=0.025)
    assert stats["dead"] == 2 / 8 and stats["dormant"] == 3 / 8
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["activation_statistics:log_every=10,samples=64"], **KW
    )
    with th.no_grad():
        model.q_net.q_net[0].bias.fill_(-1e3)  # every first-layer unit dead
    model.q_net_target.load_state_dict(model.q_net.state_dict())
    model.learn(40)
    stats = model.surgery_state["activation_statistics"].latest
    assert stats["q.q_net.1"]["dead"] == 1.0 and stats["q.q_net.1"]["dormant"] == 1.0
    assert stats["q.q_net.3"]["dead"] < 1.0
    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_steps=64,
        batch_size=32,
        surgeries=["activation_statistics:log_every=1"],
    )
    ppo.learn(128)  # measured during the second rollout, after the first update
    assert set(ppo.surgery_state["activation_statistics"].latest) == {
        f"policy.mlp_extractor.{n}.{i}" for n in ("policy_net", "value_net") for i in (1, 3)
    }


def test_weight_statistics_and_histograms(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        tensorboard_log=str(tmp_path / "tb"),
        surgeries=[
            "magnitude_pruning:amount=0.5",
            f"weight_histograms:log_every=5,png_dir={tmp_path / 'png'}",
        ],
        **KW,
    )
    model.learn(40)
    stats = model.surgery_state["weight_histograms"].latest
    assert set(stats) == {"q.q_net.0", "q.q_net.2", "q.q_net.4"}
    w = model.q_net.q_net[0].weight.detach()
    assert stats["q.q_net.0"]["abs_mean"] == pytest.approx(float(w.abs().mean()), rel=1e-3)
    total_zero = sum(s["zero_fraction"] * n for s, n in zip(stats.values(), (64, 256, 32))) / 352
    assert total_zero == pytest.approx(0.5, abs=0.01)  # the pruning shows
    assert list((tmp_path / "png").glob("weights_*.png"))
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and max(e.stat().st_size for e in events) > 1000  # histograms written
