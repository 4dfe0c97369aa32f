from __future__ import annotations

import copy

import pytest
import torch as th

from rlsurgery import SurgicalDQN
from rlsurgery.core.errors import ParameterError


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def filled_agent(spec, tiny_kwargs):
    # learning_starts beyond the collected steps: the buffer fills, no training happens yet
    tiny_kwargs.update(learning_starts=10**9, target_update_interval=10)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=[spec], **tiny_kwargs)
    model.learn(100)
    # make online and target differ so every rule is visible
    with th.no_grad():
        for p in model.q_net.parameters():
            p.add_(0.5)
    return model


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("target_network:mode=hard,interval=3,unit=updates", ["old", "old", "online", "old"]),
        ("target_network:mode=polyak,tau=0.1,unit=updates", ["polyak"] * 4),
        ("target_network:mode=polyak,tau=0.1,interval=2,unit=updates", ["old", "polyak", "old", "polyak"]),
        ("target_network:mode=none", ["online"] * 4),
    ],
    ids=["hard-every-3", "polyak-every-update", "polyak-every-2", "none"],
)
def test_target_follows_rule(spec, expected, tiny_kwargs):
    model = filled_agent(spec, tiny_kwargs)
    for rule in expected:
        before_target = params(model.q_net_target)
        model.train(gradient_steps=1, batch_size=16)
        online, target = params(model.q_net), params(model.q_net_target)
        for o, t, old in zip(online, target, before_target):
            if rule == "old":
                assert th.equal(t, old)
            elif rule == "online":
                assert th.equal(t, o)
            else:  # θ⁻ ← τθ + (1 − τ)θ⁻
                th.testing.assert_close(t, 0.1 * o + 0.9 * old)


@pytest.mark.parametrize("mode", ["hard", "polyak"])
def test_env_step_unit_counts_environment_steps(mode, tiny_kwargs):
    model = filled_agent(f"target_network:mode={mode},interval=5,tau=0.5", tiny_kwargs)
    model._n_calls = 0
    old = params(model.q_net_target)
    for _ in range(4):
        model._on_step()
        assert all(th.equal(t, o) for t, o in zip(params(model.q_net_target), old))
    model._on_step()  # 5th step: sync
    tau = 1.0 if mode == "hard" else 0.5
    for t, o, prev in zip(params(model.q_net_target), params(model.q_net), old):
        th.testing.assert_close(t, tau * o + (1 - tau) * prev)


def test_hard_default_interval_is_agents_target_update_interval(tiny_kwargs):
    model = filled_agent("target_network", tiny_kwargs)
    assert model._pipeline.owner("target_sync").interval(model) == model.target_update_interval == 10


def test_hard_copy_in_updates_needs_an_interval():
    with pytest.raises(
        ParameterError, match="parameter 'interval' is required with mode 'hard' and unit 'updates'"
    ):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["target_network:unit=updates"])


def test_bad_tau_is_rejected():
    with pytest.raises(ParameterError, match=r"target_network: parameter 'tau' must be > 0\.0"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["target_network:mode=polyak,tau=0"])


def test_without_surgery_target_is_frozen_between_syncs(tiny_kwargs):
    tiny_kwargs.update(learning_starts=10**9, target_update_interval=10**6)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **tiny_kwargs)
    model.learn(100)
    snapshot = copy.deepcopy(model.q_net_target.state_dict())
    model.train(gradient_steps=3, batch_size=16)
    assert all(th.equal(snapshot[k], v) for k, v in model.q_net_target.state_dict().items())
