"""adapter_layers: identities at insertion, only the adapters train, load rebuilds them."""

from __future__ import annotations

import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalSAC
from rlsurgery.lowrank import adapters
from rlsurgery.nets.blocks import BottleneckAdapter
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike, freezes_nothing

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def check_adapters(tmp_path) -> None:
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(300)
    observations = th.randn(64, 4, generator=th.Generator().manual_seed(1))
    with th.no_grad():
        before = model.q_net(observations)
    weights = [p.detach().clone() for p in model.q_net.parameters()]

    rls.operate(model, "adapter_layers:bottleneck=4")

    inserted = [m for m in model.q_net.modules() if isinstance(m, BottleneckAdapter)]
    assert len(inserted) == 2 and all(m.down.out_features == 4 for m in inserted)
    with th.no_grad():
        th.testing.assert_close(model.q_net(observations), before, rtol=0, atol=0)
        th.testing.assert_close(model.q_net_target(observations), before, rtol=0, atol=0)
    trainable = [p for p in model.q_net.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for m in inserted for p in m.parameters()}
    result = model.surgery_state["adapter_layers"].result
    assert result["trainable_parameters"] == 2 * (32 * 4 + 4 + 4 * 32 + 32)

    model.learn(300)
    originals = [p for p in model.q_net.parameters() if not p.requires_grad]
    assert len(originals) == len(weights) and all(th.equal(a, b) for a, b in zip(originals, weights))
    assert any(m.up.weight.abs().sum() > 0 for m in inserted)  # the adapters did train
    loaded = assert_reload_acts_alike(model, tmp_path / "adapters.zip", observations)
    assert sum(isinstance(m, BottleneckAdapter) for m in loaded.q_net.modules()) == 2
    assert [p.requires_grad for p in loaded.q_net.parameters()] == [
        p.requires_grad for p in model.q_net.parameters()
    ]


def test_adapters_start_as_identities_and_alone_train(tmp_path):
    check_adapters(tmp_path)


class _RandomUp(BottleneckAdapter):
    def __init__(self, width, bottleneck):
        super().__init__(width, bottleneck)
        th.nn.init.normal_(self.up.weight)


def test_the_adapter_proof_fails_when_adapters_start_random(tmp_path):
    assert_proof_fails_when(replaced(adapters, "BottleneckAdapter", _RandomUp), check_adapters, tmp_path)


def test_the_adapter_proof_fails_when_nothing_is_frozen(tmp_path):
    assert_proof_fails_when(replaced(adapters, "train_only", freezes_nothing), check_adapters, tmp_path)


def test_adapters_go_into_sac_actor_and_critics():
    model = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=16,
        batch_size=16,
        buffer_size=200,
        policy_kwargs=dict(net_arch=[16, 16]),
    )
    obs = th.randn(8, 3)
    with th.no_grad():
        action = model.actor(obs, deterministic=True)
    rls.operate(model, "adapter_layers")
    counts = [
        sum(isinstance(m, BottleneckAdapter) for m in net.modules()) for net in (model.actor, model.critic)
    ]
    assert counts == [2, 4]  # two hidden layers in the actor and in each of the two critics
    with th.no_grad():
        th.testing.assert_close(model.actor(obs, deterministic=True), action, rtol=0, atol=0)
    model.learn(40)
