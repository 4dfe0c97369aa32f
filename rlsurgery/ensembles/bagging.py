"""Bagging for value learning: bootstrapped DQN, optionally with randomized prior functions.

Osband, Blundell, Pritzel & Van Roy 2016, https://arxiv.org/abs/1602.04621; priors: Osband,
Aslanides & Cassirer 2018, https://arxiv.org/abs/1806.03335. K heads Q_1 … Q_K (an
:class:`~rlsurgery.nets.ensemble.EnsembleHead`, prior β·p_k included in each Q_k). Every stored
transition i carries a bootstrap mask m_i ∈ {0, 1}^K, m_ik ~ Bernoulli(p), and head k learns only
from the transitions its mask keeps::

    y_ik = r_i + (1 − d_i) γ^n max_a Q_k^target(s'_i, a)
    L_i  = 1/K Σ_k m_ik · Huber(Q_k(s_i, a_i) − y_ik)

Acting while collecting: one head, drawn uniformly at the start of each episode (per env), acts
greedily for the whole episode — deep exploration instead of ε-greedy, which this surgery
replaces (ε is no longer used). Deterministic predictions use the ensemble: the mean of the heads
(``evaluation=mean``, what the network's forward and an export compute) or their majority vote
(``evaluation=vote``, ties to the larger mean).

The masks are not stored: m_ik is a fixed hash of the transition's flat buffer index, head k and a
salt drawn when the agent is built (saved with it), so masks survive ``save``/``load`` with the
replay buffer and cost no memory. A transition later written into the same slot gets that slot's
mask, still independent of the transition. The per-sample TD error is the mean |δ_ik| over the
heads that keep i, so prioritized replay composes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch as th
from gymnasium import spaces

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.ensembles.members import (
    ensemble_head,
    make_q_ensemble,
    masked_ensemble_loss,
    member_estimates,
    member_values,
)
from rlsurgery.nets import transform_networks
from rlsurgery.nets.ensemble import vote
from rlsurgery.runtime.acting import env_actions

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.agents.dqn_policies import SurgicalQNetwork
    from rlsurgery.core.batch import Batch

_MASK64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64: a bijection whose output bits look independent."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def bootstrap_masks(indices: np.ndarray, n_members: int, probability: float, salt: int) -> np.ndarray:
    """m_ik ~ Bernoulli(p) as a fixed function of (index i, head k, salt): (B, K) float32.

    >>> m = bootstrap_masks(np.arange(10_000), 4, 0.5, salt=7)
    >>> m.shape, bool(abs(m.mean() - 0.5) < 0.02)
    ((10000, 4), True)
    >>> bool((m == bootstrap_masks(np.arange(10_000), 4, 0.5, salt=7)).all())  # fixed per transition
    True
    """
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1, 1)
    heads = np.arange(n_members, dtype=np.uint64).reshape(1, -1)
    with np.errstate(over="ignore"):
        key = idx * np.uint64(n_members) + heads + np.uint64(salt & _MASK64) * np.uint64(0x9E3779B97F4A7C15)
        uniform = (_mix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (uniform < probability).astype(np.float32)


@dataclass
class BaggingParams:
    n_members: int = param(10, "number of heads K", ge=1, le=100)
    mask_probability: float = param(0.5, "p: chance that a head trains on a transition", gt=0.0, le=1.0)
    prior_scale: float = param(
        0.0, "β: weight of each head's fixed random prior network (0: no priors)", ge=0.0
    )
    shared_layers: int = param(
        0, "hidden layers of the Q head that the heads share (0: separate heads)", ge=0
    )
    evaluation: Literal["mean", "vote"] = param(
        "mean", "deterministic actions from the heads' mean Q-value, or their majority vote"
    )


@dataclass
class BaggingState:
    salt: int = 0
    """salt of the bootstrap masks, drawn when the agent is built"""
    active: list[int] | None = None
    """the head acting in each env's current episode"""


@register(proof="tests/ensembles/test_bagging.py::test_each_head_learns_only_from_its_bootstrap_sample")
class Bagging(Surgery):
    """Bootstrapped DQN: K heads, each trained on its own bootstrap sample, one head per episode."""

    key = "bagging"
    cost_note = (
        "K heads (10) instead of one: K forward passes of the head for acting, for the target and "
        "for the loss of every update; priors add K frozen forward passes"
    )
    sb3_representable = False  # K heads instead of SB3's Q head
    attaches_to = (Attachment.NETWORK, Attachment.LOSS, Attachment.EXPLORATION)
    Params = BaggingParams
    State = BaggingState
    stages = ("next_action", "target", "estimate", "loss", "act", "on_step")
    selects_actions = True
    build_order = 90  # after every change of the head's architecture: each head is a copy of it
    params: BaggingParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def modify_networks(self, agent: SurgicalDQN) -> None:
        p = self.params

        def to_ensemble(net: SurgicalQNetwork) -> None:
            net.q_net = make_q_ensemble(self.key, net, p.n_members, p.shared_layers, p.prior_scale)

        transform_networks(agent, to_ensemble)

    def after_build(self, agent: SurgicalDQN) -> None:
        self.state(agent).salt = int(np.random.randint(0, 2**62))

    # ------------------------------------------------------------------ acting
    def _active(self, agent: SurgicalDQN, n: int) -> list[int]:
        state = self.state(agent)
        if state.active is None or len(state.active) != agent.n_envs:
            state.active = [int(k) for k in np.random.randint(0, self.params.n_members, size=agent.n_envs)]
        return [state.active[i % len(state.active)] for i in range(n)]

    def act(
        self,
        agent: SurgicalDQN,
        observation: Any,
        state: Any,
        episode_start: np.ndarray | None,
        deterministic: bool,
    ) -> tuple[np.ndarray, Any]:
        """Greedy in the acting head of each env's episode; deterministic: the ensemble's mean or vote."""
        if deterministic and self.params.evaluation == "mean":
            return agent.policy.predict(observation, state, episode_start, deterministic=True)
        agent.policy.set_training_mode(False)
        obs, vectorized = agent.policy.obs_to_tensor(observation)
        with th.no_grad():
            if deterministic:
                return env_actions(vote(member_values(agent.q_net, obs)), vectorized), state
            net = agent.q_net
            features = net.extract_features(obs, net.features_extractor)
            heads = np.asarray(self._active(agent, features.shape[0]))
            actions = th.empty(features.shape[0], dtype=th.long, device=features.device)
            for k in np.unique(heads):  # only the acting heads run
                rows = th.as_tensor(np.flatnonzero(heads == k), device=features.device)
                actions[rows] = ensemble_head(net).member_output(features[rows], int(k)).argmax(dim=1)
        return env_actions(actions, vectorized), state

    def on_step(self, agent: SurgicalDQN) -> None:
        """Draw a new acting head for every env whose episode just ended."""
        buffer = agent.replay_buffer
        if buffer is None or (buffer.pos == 0 and not buffer.full):
            return
        ended = np.asarray(buffer.dones[(buffer.pos - 1) % buffer.buffer_size], dtype=bool).reshape(-1)
        active = self._active(agent, agent.n_envs)
        for env in np.flatnonzero(ended):
            active[env] = int(np.random.randint(0, self.params.n_members))
        self.state(agent).active = active

    # ------------------------------------------------------------------ loss
    def next_action(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.next_actions = argmax_a Q_k^target(s', a) for every head, (B, K)."""
        with th.no_grad():
            next_values = member_values(agent.q_net_target, batch.next_observations)
            batch.extras["member_next_values"] = next_values
            batch.next_actions = next_values.argmax(dim=2)

    def target(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.target = y_ik, (B, K)."""
        with th.no_grad():
            next_values = batch.extras.get("member_next_values")
            if next_values is None:
                next_values = member_values(agent.q_net_target, batch.next_observations)
            next_q = next_values.gather(2, batch.next_actions.unsqueeze(2)).squeeze(2)
            batch.target = batch.rewards + (1 - batch.dones) * batch.discounts * next_q

    def estimate(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.current = Q_k(s, a) for every head, (B, K)."""
        batch.current = member_estimates(member_values(agent.q_net, batch.observations), batch.actions)

    def loss(self, agent: SurgicalDQN, batch: Batch) -> None:
        """The masked loss and TD error of :func:`masked_ensemble_loss`; ``extras["bootstrap_masks"]``."""
        if batch.indices is None:
            raise IncompatibleSurgeryError(
                f"{self.key}: the replay buffer ({type(agent.replay_buffer).__name__}) does not say which "
                "transitions it sampled, so they have no bootstrap masks"
            )
        masks = th.as_tensor(
            bootstrap_masks(
                batch.indices, self.params.n_members, self.params.mask_probability, self.state(agent).salt
            ),
            device=batch.current.device,
        )
        batch.extras["bootstrap_masks"] = masks
        batch.elementwise_loss, batch.td_error = masked_ensemble_loss(batch.current, batch.target, masks)
