"""Policy improvement: one greedy step of policy iteration, on tabular MDPs.

Howard 1960; Sutton & Barto 2018, §4.2-4.3 (http://incompleteideas.net/book/the-book-2nd.html).
For a policy π on an MDP with transition probabilities P[s, a, s'] and expected rewards R[s, a]::

    evaluate   V^π = (I − γ P_π)⁻¹ R_π,   Q^π(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) V^π(s')
    improve    π'(s) = argmax_a Q^π(s, a)
    theorem    V^π'(s) ≥ V^π(s) for every state s

The surgery applies the step to an agent on an env that exposes its model
(``transition_table()`` and ``state_observation(s)``, as ``rlsurgery/Chain-v0``): π is
the agent's greedy policy; the DQN family's Q-network is fitted to Q^π (so its greedy
policy becomes π' and its outputs stay action values); an actor-critic policy is fitted to
the actions of π'. its state's ``result`` holds V^π and V^π' per state.

The Q-network is fitted for ``epochs`` steps, then on (up to ``max_epochs``) until it acts
greedily on Q^π in every state: action gaps of Q^π can be much smaller than its values, and a
fit that stopped at a fixed count could leave the old policy in place. Where Q^π ties, any of
the tied actions is greedy (π' picks the first); a fit that never gets there warns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets import target_pairs
from rlsurgery.nets.layout import layout_of
from rlsurgery.policy.imitation import Demonstrations, fit_policy
from rlsurgery.runtime.models import evaluation_env


def evaluate_policy(
    probabilities: np.ndarray, rewards: np.ndarray, policy: np.ndarray, gamma: float
) -> np.ndarray:
    """V^π by solving (I − γ P_π) V = R_π for a deterministic policy (one action per state)."""
    states = np.arange(len(policy))
    p_pi = probabilities[states, policy]
    r_pi = rewards[states, policy]
    return np.linalg.solve(np.eye(len(policy)) - gamma * p_pi, r_pi)


def action_values(
    probabilities: np.ndarray, rewards: np.ndarray, values: np.ndarray, gamma: float
) -> np.ndarray:
    """Q(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) V(s')."""
    return rewards + gamma * probabilities @ values


def improve(probabilities: np.ndarray, rewards: np.ndarray, policy: np.ndarray, gamma: float) -> np.ndarray:
    """The greedy policy π'(s) = argmax_a Q^π(s, a)."""
    q = action_values(probabilities, rewards, evaluate_policy(probabilities, rewards, policy, gamma), gamma)
    return q.argmax(axis=1)


def greedy_states(q: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Per state, whether ``actions`` is greedy for ``q`` (an action tied with the best counts)."""
    tolerance = 1e-9 * max(1.0, float(np.abs(q).max()))
    return q[np.arange(len(actions)), actions] >= q.max(axis=1) - tolerance


@dataclass
class PolicyImprovementParams:
    gamma: float | None = param(None, "discount of the evaluation (None: the agent's gamma)", gt=0.0, lt=1.0)
    epochs: int = param(300, "full-batch Adam steps fitting the network to the improved policy", ge=1)
    max_epochs: int = param(
        5000,
        "DQN family: steps at most, going on after 'epochs' until the network acts greedily on Q^π",
        ge=1,
    )
    learning_rate: float = param(1e-2, "Adam learning rate of the fit", gt=0.0)

    def check(self) -> None:
        """epochs ≤ max_epochs."""
        if self.epochs > self.max_epochs:
            raise ValueError(f"'epochs' must be <= 'max_epochs' (got {self.epochs} > {self.max_epochs})")


@register(proof="tests/policy/test_improvement.py::test_improved_values_dominate_state_by_state")
class PolicyImprovement(Surgery):
    """One policy-iteration step on a tabular env: exact evaluation of the agent's policy, greedy on Q^π."""

    key = "policy_improvement"
    State: ClassVar[type | None] = ResultState
    attaches_to = (Attachment.POST_TRAINING,)
    Params = PolicyImprovementParams
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo")
    operates_in_place = True
    needs_surgical_agent = False  # improves a plain SB3 model too (unrecorded)
    params: PolicyImprovementParams

    def after_build(self, agent: BaseAlgorithm) -> None:
        self.apply(agent)

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Improve a trained model in place (``operate`` records it on a surgical agent)."""
        if env_id is not None:
            model.rls_env_id = env_id  # type: ignore[attr-defined]
        self.apply(model)
        return model

    def apply(self, agent: BaseAlgorithm) -> dict[str, Any]:
        """Evaluate, improve, fit; returns (and stores) the values before and after."""
        env = evaluation_env(agent, self.key).unwrapped
        if not (hasattr(env, "transition_table") and hasattr(env, "state_observation")):
            raise IncompatibleSurgeryError(
                f"{self.key}: needs a tabular env exposing transition_table() and state_observation(s) "
                f"(e.g. rlsurgery/Chain-v0); {type(env).__name__} does not"
            )
        probabilities, rewards = env.transition_table()
        n_states = probabilities.shape[0]
        gamma = self.params.gamma if self.params.gamma is not None else float(agent.gamma)
        observations = np.stack([env.state_observation(s) for s in range(n_states)])
        old = np.asarray(agent.predict(observations, deterministic=True)[0]).reshape(-1)
        old_values = evaluate_policy(probabilities, rewards, old, gamma)
        q_old = action_values(probabilities, rewards, old_values, gamma)
        new = q_old.argmax(axis=1)
        self._fit(agent, observations, q_old, new)
        fitted = np.asarray(agent.predict(observations, deterministic=True)[0]).reshape(-1)
        missed = np.flatnonzero(~greedy_states(q_old, fitted))
        if len(missed):
            warnings.warn(
                f"{self.key}: after the fit the agent is not greedy on Q^π in states {missed.tolist()}; "
                "raise epochs / max_epochs or the learning rate",
                stacklevel=2,
            )
        report = {
            "gamma": gamma,
            "old_policy": old.tolist(),
            "improved_policy": new.tolist(),
            "agent_policy": fitted.tolist(),
            "old_values": old_values.tolist(),
            "improved_values": evaluate_policy(probabilities, rewards, new, gamma).tolist(),
        }
        self.state(agent).result = report
        return report

    def _fit(
        self, agent: BaseAlgorithm, observations: np.ndarray, q_old: np.ndarray, new: np.ndarray
    ) -> None:
        p = self.params
        layout = layout_of(agent)
        if layout.kind != "q":
            fit_policy(agent, Demonstrations(observations, new), p.epochs, len(new), p.learning_rate, seed=0)
            return
        obs = th.as_tensor(observations, device=agent.device)
        target = th.as_tensor(q_old, dtype=th.float32, device=agent.device)
        q_net = layout.acting_network(agent.policy)
        optimizer = th.optim.Adam(q_net.parameters(), lr=p.learning_rate)
        for step in range(1, p.max_epochs + 1):
            outputs = q_net(obs)
            if step > p.epochs and greedy_states(q_old, outputs.argmax(dim=1).cpu().numpy()).all():
                break
            loss = F.mse_loss(outputs, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for online, target_net in target_pairs(agent):
            target_net.load_state_dict(online.state_dict())
