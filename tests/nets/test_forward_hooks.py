"""Recorded forward hooks: put on named layers, saved as plain data, back after load."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.forward_hooks import (
    HOOK_KINDS,
    add_forward_hook,
    register_hook_kind,
    remove_forward_hooks,
)


class Shift(nn.Module):
    """Adds a (saved) vector to the layer's output: a steering vector."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.vector = nn.Parameter(th.zeros(size))

    def forward(self, _module, _inputs, output):
        return output + self.vector


register_hook_kind("shift_demo")(lambda size: Shift(size))

KW = dict(learning_starts=20, batch_size=8, buffer_size=300, policy_kwargs=dict(net_arch=[6]))
OBS = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)


def q_values(model, obs=OBS):
    return model.q_net(th.as_tensor(obs)).detach()


def test_a_hook_changes_the_outputs_and_comes_back_after_load(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(40)
    plain = q_values(model)
    add_forward_hook(model, "q_net.q_net.1", "ablate", owner="test", units=list(range(6)))
    ablated = q_values(model)
    bias = model.q_net.q_net[2].bias.detach()
    th.testing.assert_close(ablated, bias.expand_as(ablated))  # every hidden unit off: only the bias is left
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert loaded.forward_hooks == [
        {"layer": "q_net.q_net.1", "kind": "ablate", "params": {"units": list(range(6))}, "owner": "test"}
    ]
    th.testing.assert_close(q_values(loaded), ablated)
    assert remove_forward_hooks(loaded, owner="test") == 1
    th.testing.assert_close(q_values(loaded), plain)


def test_a_module_hook_keeps_its_parameters_through_save_and_load(tmp_path):
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=32, batch_size=16, policy_kwargs=dict(net_arch=[6])
    )
    add_forward_hook(model, "action_net", "shift_demo", owner="steer", size=2)
    with th.no_grad():
        model.policy.action_net.rlsurgery_hooks[0].vector.copy_(th.tensor([5.0, -5.0]))
    obs = th.as_tensor(OBS)
    logits = model.policy.get_distribution(obs).distribution.logits.detach()
    model.save(tmp_path / "p.zip")
    loaded = rls.load(tmp_path / "p.zip")
    th.testing.assert_close(loaded.policy.get_distribution(obs).distribution.logits.detach(), logits)
    assert th.equal(loaded.policy.action_net.rlsurgery_hooks[0].vector, th.tensor([5.0, -5.0]))
    assert (loaded.predict(OBS, deterministic=True)[0] == 0).all()  # steered to action 0


def test_unknown_kinds_and_layers_are_refused_by_name():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW)
    with pytest.raises(IncompatibleSurgeryError, match=r"forward hook kind 'nope'.*not registered"):
        add_forward_hook(model, "q_net.q_net.1", "nope")
    with pytest.raises(IncompatibleSurgeryError, match=r"the policy has no layer 'q_net\.missing'"):
        add_forward_hook(model, "q_net.missing", "ablate", units=[0])
    assert "ablate" in HOOK_KINDS and model.forward_hooks == []
