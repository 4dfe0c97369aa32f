from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.policy.improvement import action_values, evaluate_policy, improve


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
    model = cls("MlpPolicy", "rlsurgery/Chain-v0", seed=3, gamma=0.95, surgeries=["policy_improvement"])
    report = model.rls_policy_improvement
    old, new = np.array(report["old_values"]), np.array(report["improved_values"])
    assert (new >= old - 1e-9).all()  # V^π' ≥ V^π in every state
    assert (new > old + 1e-6).any() or report["old_policy"] == report["improved_policy"]
    assert report["agent_policy"] == report["improved_policy"]  # the network now acts greedily on Q^π
    model.save(tmp_path / "m.zip")
    np.testing.assert_array_equal(
        rls.load(tmp_path / "m.zip").predict(np.eye(6, dtype=np.float32), deterministic=True)[0],
        np.array(report["improved_policy"]),
    )


def test_operate_improves_a_trained_model_and_refuses_non_tabular_envs():
    model = SurgicalDQN("MlpPolicy", "rlsurgery/Chain-v0", seed=0, gamma=0.95)
    before = model.predict(np.eye(6, dtype=np.float32), deterministic=True)[0]
    rls.operate(model, "policy_improvement")
    report = model.rls_policy_improvement
    assert report["old_policy"] == before.tolist() and model.surgery_log[-1]["applied"] == "operate"
    with pytest.raises(IncompatibleSurgeryError, match="needs a tabular env exposing transition_table"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["policy_improvement"])
