from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import SurgeryError
from rlsurgery.nas import network_morphism
from rlsurgery.nets.mlp import mlp_stacks
from rlsurgery.nets.modules import fresh_copy
from tests.breakage import assert_proof_fails_when, replaced


def stalling_dqn(spec: str) -> SurgicalDQN:
    """A DQN that never updates (learning_starts beyond the run): its return cannot improve for long."""
    return SurgicalDQN(
        "MlpPolicy", "CartPole-v1", surgeries=[spec], seed=0, learning_starts=10**6,
        target_update_interval=100, policy_kwargs=dict(net_arch=[8, 8]),  # a shape mismatch would fail the sync
    )  # fmt: skip


def n_params(module: th.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_a_stalled_agent_grows_and_computes_the_same():
    model = stalling_dqn("network_morphism:check_freq=200,patience=1,max_moves=3")
    obs = th.randn(256, 4)
    with th.no_grad():
        before, before_target = model.q_net(obs), model.q_net_target(obs)
    size = n_params(model.q_net)
    model.learn(2_000)
    surgery = model._surgeries[0]
    assert surgery.params.applied == ["widen", "deepen", "widen"]  # three stalls, the moves in turn
    assert [m for _, m, _ in surgery.state(model).history] == ["widen", "deepen", "widen"]
    (stack,) = surgery.stacks(model)
    assert stack.widths == [18, 18, 18]  # 8 -> 12 -> (an identity layer of 12) -> 18
    target_stacks = [s for s in mlp_stacks(model.q_net_target)]
    assert [s.widths for s in target_stacks] == [[18, 18, 18]]  # the target grew the same way
    assert n_params(model.q_net) > 3 * size
    with th.no_grad():
        th.testing.assert_close(model.q_net(obs), before, rtol=1e-5, atol=1e-5)  # the same function
        th.testing.assert_close(model.q_net_target(obs), before_target, rtol=1e-5, atol=1e-5)
    optimized = {id(p) for g in model.policy.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimized for p in model.q_net.parameters())  # the optimizer trains the new weights


def test_a_stalled_agent_grows_and_computes_the_same():
    check_a_stalled_agent_grows_and_computes_the_same()


def test_the_proof_fails_when_the_moves_are_not_function_preserving():
    def widen_fresh(agent, factor):
        network_morphism.resize_hidden_layers(
            agent, lambda s, i: int(factor * s.linear(i).out_features), None
        )
        agent.q_net.q_net = fresh_copy(agent.q_net.q_net)  # a grown but re-initialised head

    assert_proof_fails_when(
        replaced(network_morphism, "widen", widen_fresh), check_a_stalled_agent_grows_and_computes_the_same
    )


def test_the_proof_fails_when_stalls_are_never_seen():
    def on_step(self, agent):  # compares with the latest mean instead of the best: a flat return never stalls
        self.state(agent).stalled = 0

    assert_proof_fails_when(
        replaced(network_morphism.NetworkMorphism, "on_step", on_step),
        check_a_stalled_agent_grows_and_computes_the_same,
    )


def test_moves_preserve_the_actor_critic_outputs():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        surgeries=["network_morphism"],
        seed=0,
        policy_kwargs=dict(net_arch=[8], activation_fn=th.nn.Tanh),
    )
    surgery = model._surgeries[0]
    obs = th.randn(64, 4)
    with th.no_grad():
        logits, values = (
            model.policy.get_distribution(obs).distribution.logits,
            model.policy.predict_values(obs),
        )
    surgery.morph(model, "deepen")  # tanh is not idempotent: a linear identity layer
    surgery.morph(model, "widen")
    with th.no_grad():
        th.testing.assert_close(
            model.policy.get_distribution(obs).distribution.logits, logits, rtol=1e-5, atol=1e-5
        )
        th.testing.assert_close(model.policy.predict_values(obs), values, rtol=1e-5, atol=1e-5)
    assert [s.widths for s in surgery.stacks(model)] == [[12, 12], [12, 12]]


def test_a_grown_agent_reloads_grown(tmp_path):
    model = stalling_dqn("network_morphism:check_freq=200,patience=1,max_moves=2")
    model.learn(1_000)
    model.save(tmp_path / "grown.zip")
    loaded = SurgicalDQN.load(tmp_path / "grown.zip")
    assert loaded._surgeries[0].params.applied == ["widen", "deepen"]
    obs = th.randn(32, 4)
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(obs), model.q_net(obs))


def test_unknown_moves_are_refused():
    with pytest.raises(SurgeryError, match="moves"):
        stalling_dqn("network_morphism:moves=[shrink]")


def test_on_policy_agents_check_after_each_rollout():
    model = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=64,
        seed=0,
        surgeries=["network_morphism:check_freq=64,patience=1,max_moves=1,moves=[deepen]"],
        policy_kwargs=dict(net_arch=[8]),
    )
    model.learn(1_024)
    surgery = model._surgeries[0]
    assert surgery.params.applied == ["deepen"]
    assert all(len(s.hidden) == 2 for s in surgery.stacks(model))
