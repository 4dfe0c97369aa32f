from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.policy import improvement
from rlsurgery.policy.improvement import PolicyImprovement, action_values, evaluate_policy, improve
from tests.breakage import assert_proof_fails_when, replaced

#: a poor start on the chain (γ = 0.95): one step improves it in two states, to a policy that is
#: neither optimal (all right) nor myopic; Q^π has no ties (action gaps ≥ 0.024)
START = np.array([0, 1, 0, 1, 1, 1])


def by_hand(P, R, policy, gamma, sweeps=2000):
    """V^π by repeated Bellman backups, and Q^π (no linear solve, no library function)."""
    n = len(policy)
    v = np.zeros(n)
    for _ in range(sweeps):
        v = np.array([R[s, policy[s]] + gamma * P[s, policy[s]] @ v for s in range(n)])
    q = np.array([[R[s, a] + gamma * P[s, a] @ v for a in range(P.shape[1])] for s in range(n)])
    return v, q


def agent_acting(cls, policy):
    """An agent on the chain whose greedy action in state s is ``policy[s]`` (a linear network on the
    one-hot states, its output weights set by hand)."""
    model = cls("MlpPolicy", "rlsurgery/Chain-v0", seed=3, gamma=0.95, policy_kwargs=dict(net_arch=[]))
    layer = model.q_net.q_net[-1] if cls is SurgicalDQN else model.policy.action_net
    with th.no_grad():
        layer.weight.copy_(th.as_tensor(np.eye(2)[policy].T * 3.0, dtype=th.float32))
        layer.bias.zero_()
    states = np.eye(6, dtype=np.float32)
    np.testing.assert_array_equal(model.predict(states, deterministic=True)[0], policy)
    return model


def check_agent_acts_on_the_improved_policy(cls, tmp_path):
    """From a poor policy: the agent's new greedy policy is argmax_a Q^π(s, a) (computed here by
    Bellman backups), its values V^π' dominate V^π state by state and strictly somewhere; the DQN
    family's outputs are Q^π; the improvement survives save / load."""
    P, R = gym.make("rlsurgery/Chain-v0").unwrapped.transition_table()
    v_old, q_old = by_hand(P, R, START, 0.95)
    expected = q_old.argmax(axis=1)
    v_new, _ = by_hand(P, R, expected, 0.95)
    assert (expected != START).sum() >= 2 and (expected != R.argmax(axis=1)).any() and not expected.all()
    assert (v_new >= v_old - 1e-9).all() and (v_new > v_old + 1e-3).any()
    model = agent_acting(cls, START)
    rls.operate(model, "policy_improvement")
    report = model.surgery_state["policy_improvement"].result
    assert report["old_policy"] == START.tolist()
    assert report["improved_policy"] == expected.tolist()
    np.testing.assert_allclose(report["old_values"], v_old, atol=1e-6)
    np.testing.assert_allclose(report["improved_values"], v_new, atol=1e-6)
    states = np.eye(6, dtype=np.float32)
    acting = model.predict(states, deterministic=True)[0]
    np.testing.assert_array_equal(acting, expected)  # the network now acts greedily on Q^π
    if cls is SurgicalDQN:
        with th.no_grad():
            q_net = model.q_net(th.as_tensor(states)).numpy()
        # and its outputs are action values: Q^π to within 5% of its scale
        np.testing.assert_allclose(q_net, q_old, atol=0.05 * np.abs(q_old).max())
    model.save(tmp_path / "m.zip")
    np.testing.assert_array_equal(
        rls.load(tmp_path / "m.zip").predict(states, deterministic=True)[0], expected
    )


def test_evaluation_matches_the_bellman_equation_and_iteration_converges():
    env = gym.make("rlsurgery/Chain-v0").unwrapped
    P, R = env.transition_table()
    policy = np.zeros(P.shape[0], dtype=int)  # always left: farm the small reward
    v = evaluate_policy(P, R, policy, 0.95)
    states = np.arange(len(policy))
    np.testing.assert_allclose(v, R[states, policy] + 0.95 * P[states, policy] @ v)  # V = R_π + γ P_π V
    for _ in range(20):  # policy iteration reaches a fixed point: the optimal (swim right) policy
        policy = improve(P, R, policy, 0.95)
    q = action_values(P, R, evaluate_policy(P, R, policy, 0.95), 0.95)
    np.testing.assert_array_equal(policy, q.argmax(1))
    assert (policy == 1).all()


@pytest.mark.parametrize("cls", [SurgicalDQN, SurgicalPPO])
def test_improved_values_dominate_state_by_state(cls, tmp_path):
    check_agent_acts_on_the_improved_policy(cls, tmp_path)
    # as a build-time surgery, from whatever the fresh network does
    model = cls("MlpPolicy", "rlsurgery/Chain-v0", seed=3, gamma=0.95, surgeries=["policy_improvement"])
    report = model.surgery_state["policy_improvement"].result
    old, new = np.array(report["old_values"]), np.array(report["improved_values"])
    assert (new >= old - 1e-9).all()  # V^π' ≥ V^π in every state
    P, R = gym.make("rlsurgery/Chain-v0").unwrapped.transition_table()
    _, q_old = by_hand(P, R, np.array(report["old_policy"]), 0.95)
    acting = model.predict(np.eye(6, dtype=np.float32), deterministic=True)[0]
    assert (q_old[np.arange(6), acting] >= q_old.max(axis=1) - 1e-9).all()  # greedy on Q^π (ties: any)


@pytest.mark.parametrize("cls", [SurgicalDQN, SurgicalPPO])
def test_improvement_proof_fails_when_the_agent_is_not_improved(cls, tmp_path):
    def no_fit(self, agent, observations, q_old, new):  # the report says improved, the network is not
        return None

    with pytest.warns(UserWarning, match="policy_improvement: after the fit the agent is not greedy on Q"):
        assert_proof_fails_when(
            replaced(PolicyImprovement, "_fit", no_fit),
            check_agent_acts_on_the_improved_policy,
            cls,
            tmp_path,
        )

    def myopic(probabilities, rewards, values, gamma):  # the γ Σ P V term dropped
        return rewards + 0.0 * gamma

    assert_proof_fails_when(
        replaced(improvement, "action_values", myopic), check_agent_acts_on_the_improved_policy, cls, tmp_path
    )


def test_operate_improves_a_trained_model_and_refuses_non_tabular_envs():
    model = SurgicalDQN("MlpPolicy", "rlsurgery/Chain-v0", seed=0, gamma=0.95)
    before = model.predict(np.eye(6, dtype=np.float32), deterministic=True)[0]
    rls.operate(model, "policy_improvement")
    report = model.surgery_state["policy_improvement"].result
    assert report["old_policy"] == before.tolist() and model.surgery_log[-1]["applied"] == "operate"
    with pytest.raises(IncompatibleSurgeryError, match="needs a tabular env exposing transition_table"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["policy_improvement"])
