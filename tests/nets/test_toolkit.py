from __future__ import annotations

import pytest
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from torch import nn

from rlsurgery import SurgicalDQN
from rlsurgery.nets import find_networks, rebuild_optimizer, replace_modules, target_pairs, transform_networks
from rlsurgery.nets.modules import fresh_copy, split_mlp


@pytest.mark.parametrize(("cls", "online"), [(SurgicalDQN, "q_net"), (DQN, "q_net"), (QRDQN, "quantile_net")])
def test_finds_networks_by_role(cls, online):
    model = cls("MlpPolicy", "CartPole-v1", buffer_size=100)
    nets = find_networks(model)
    assert set(nets) == {"q", "q_target"}
    assert nets["q"] is getattr(model.policy, online)
    assert target_pairs(model) == [(nets["q"], nets["q_target"])]


def test_rebuild_optimizer_carries_state_of_surviving_parameters():
    a, b = nn.Parameter(th.randn(3)), nn.Parameter(th.randn(2))
    opt = th.optim.Adam([a, b], lr=0.01, betas=(0.8, 0.9))
    (a.sum() + b.sum()).backward()
    opt.step()
    c = nn.Parameter(th.randn(4))
    new = rebuild_optimizer(opt, [a, c])
    assert new.param_groups[0]["lr"] == 0.01 and new.param_groups[0]["betas"] == (0.8, 0.9)
    assert new.state[a] is opt.state[a] and th.equal(new.state[a]["exp_avg"], opt.state[a]["exp_avg"])
    assert c not in new.state and b not in new.state


def test_replace_modules_skips_nested_matches_and_keeps_dtype():
    net = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 1)).double()
    replaced = replace_modules(
        net, lambda n, m: isinstance(m, (nn.Sequential, nn.Linear)) and n != "", lambda n, m: nn.Linear(2, 2)
    )
    assert replaced == ["0", "1"]  # "0.0" sits inside "0", which is replaced whole
    assert net[0].weight.dtype == th.float64


def test_split_mlp_and_fresh_copy():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    blocks, out = split_mlp(mlp)
    assert [type(b[1]) for b in blocks] == [nn.Tanh, nn.ReLU] and out is mlp[4]
    copy = fresh_copy(blocks[0])
    assert copy[0].weight.shape == blocks[0][0].weight.shape and not th.equal(
        copy[0].weight, blocks[0][0].weight
    )
    with pytest.raises(TypeError, match="ends with a linear layer"):
        split_mlp(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(TypeError, match=r"non-empty nn\.Sequential"):
        split_mlp(nn.Linear(2, 2))


def test_transform_networks_syncs_target_and_optimizer():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", buffer_size=100, policy_kwargs=dict(net_arch=[8]))

    def widen_output(net):
        net.q_net[-1] = nn.Linear(8, 2)

    transform_networks(model, widen_output)
    for (k, a), (_, b) in zip(model.q_net.state_dict().items(), model.q_net_target.state_dict().items()):
        assert th.equal(a, b), k
    optimized = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.q_net.parameters()}


def test_rebuild_optimizer_keeps_parameter_groups():
    a, b, c = (nn.Parameter(th.randn(2)) for _ in range(3))
    opt = th.optim.Adam([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    new_param = nn.Parameter(th.randn(2))
    new = rebuild_optimizer(opt, [a, b, new_param])
    assert [g["lr"] for g in new.param_groups] == [0.1, 0.01]
    assert new.param_groups[0]["params"] == [a] and new.param_groups[1]["params"] == [b, new_param]
    assert c is not None
