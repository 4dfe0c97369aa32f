from __future__ import annotations

import pytest
import torch as th
from torch import nn

from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC
from rlsurgery.core.errors import SurgeryError
from rlsurgery.nets import mixture
from rlsurgery.nets.mixture import MixtureOfExperts, gate_weights
from rlsurgery.nets.modules import modules_of_type
from tests.breakage import assert_proof_fails_when, replaced


def args() -> dict:
    return dict(seed=0, policy_kwargs=dict(net_arch=[16, 16]))  # fresh: SB3 edits policy_kwargs in place


def experts_of(module: nn.Module) -> tuple[MixtureOfExperts, ...]:
    return modules_of_type(module, MixtureOfExperts)


def check_the_layer_is_the_gated_sum_of_its_experts():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["mixture_of_experts:n_experts=4"], **args())
    (layer,) = experts_of(model.q_net)
    assert layer.n_experts == 4
    with th.no_grad():
        layer.gate.weight.normal_(0, 2.0)  # gates far from uniform
    x = th.randn(64, 16)
    gates = th.softmax(x @ layer.gate.weight.T + layer.gate.bias, dim=1)  # computed here, by hand
    assert th.allclose(layer.gates(x).sum(dim=1), th.ones(64))  # the gates sum to one
    assert float(gates.detach().std(dim=1).mean()) > 0.1
    experts = [layer.experts.members[k](x) for k in range(4)]
    expected = sum(gates[:, k : k + 1] * experts[k] for k in range(4))
    th.testing.assert_close(layer(x), expected)
    # the whole Q network goes through it, and training reaches the gate and every expert
    obs = th.randn(8, 4)
    q = model.q_net(obs)
    q.sum().backward()
    assert layer.gate.weight.grad is not None and float(layer.gate.weight.grad.abs().sum()) > 0
    for expert in layer.experts.members:
        assert float(expert[0].weight.grad.abs().sum()) > 0
    assert all(
        id(p) in {id(q) for g in model.policy.optimizer.param_groups for q in g["params"]}
        for p in layer.parameters()
    )


def test_the_layer_is_the_gated_sum_of_its_experts():
    check_the_layer_is_the_gated_sum_of_its_experts()


def test_the_proof_fails_when_the_gate_is_ignored():
    uniform = lambda logits, top_k=0: th.full_like(logits, 1.0 / logits.shape[-1])  # noqa: E731
    assert_proof_fails_when(
        replaced(mixture, "gate_weights", uniform), check_the_layer_is_the_gated_sum_of_its_experts
    )


def test_the_proof_fails_when_only_the_first_expert_speaks():
    def first(gates, outputs):
        return outputs[:, 0]

    assert_proof_fails_when(replaced(mixture, "mix", first), check_the_layer_is_the_gated_sum_of_its_experts)


def test_top_k_routes_each_input_to_k_experts():
    g = gate_weights(th.randn(100, 8), top_k=2)
    assert th.allclose(g.sum(dim=1), th.ones(100))
    assert ((g > 0).sum(dim=1) == 2).all()
    soft = gate_weights(th.randn(100, 8))
    assert (soft > 0).all()


def test_one_expert_keeps_the_function():
    plain = SurgicalPPO("MlpPolicy", "CartPole-v1", **args())
    moe = SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["mixture_of_experts:n_experts=1"], **args())
    obs = th.randn(32, 4)
    with th.no_grad():
        th.testing.assert_close(
            plain.policy.get_distribution(obs).distribution.logits,
            moe.policy.get_distribution(obs).distribution.logits,
        )
        th.testing.assert_close(plain.policy.predict_values(obs), moe.policy.predict_values(obs))
    assert len(experts_of(moe.policy)) == 2  # the policy MLP and the value MLP


def test_every_network_gets_the_penultimate_layer_as_experts():
    model = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        surgeries=["mixture_of_experts:n_experts=3,top_k=2"],
        learning_starts=0,
        **args(),
    )
    assert len(experts_of(model.actor)) == 1
    assert len(experts_of(model.critic)) == 2  # both Q networks
    assert len(experts_of(model.critic_target)) == 2
    (actor_layer,) = experts_of(model.actor)
    assert (
        actor_layer.top_k == 2 and actor_layer.experts.members[0][0].in_features == 16
    )  # second hidden layer
    model.learn(120)  # trains with them
    dqn = SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["mixture_of_experts:position=0"], **args())
    (layer,) = experts_of(dqn.q_net)
    assert layer.experts.members[0][0].in_features == 4  # the first hidden layer


@pytest.mark.parametrize(
    "spec, match",
    [("mixture_of_experts:n_experts=2,top_k=3", "top_k"), ("mixture_of_experts:position=5", "position 5")],
)
def test_bad_settings_are_refused(spec, match):
    with pytest.raises(SurgeryError, match=match):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=[spec], **args())
