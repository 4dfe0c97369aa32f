"""Stacking for value learning: a meta-model learnt on replay combines K Q-heads.

Wolpert 1992, "Stacked generalization", https://doi.org/10.1016/S0893-6080(05)80023-1; Breiman
1996, "Stacked regressions", https://doi.org/10.1007/BF00117832. K members of an
:class:`~rlsurgery.nets.ensemble.EnsembleHead` each learn their own Q-function (own targets, as
independent DQN heads from different initial weights); a small meta-model — softmax gates read
from the head's input, a :class:`~rlsurgery.nets.mixture.GatedCombiner` — learns on the same
replay batches how to weigh them, state by state::

    Q_stack(x, a) = Σ_k g_k(x) · Q_k(x, a),       g(x) = softmax(W x + b)   (W = 0, b = 0 at first: the mean)
    y_ik = r_i + (1 − d_i) γ^n max_a Q_k^target(s'_i, a)
    y_i  = r_i + (1 − d_i) γ^n max_a Q_stack^target(s'_i, a)
    L_i  = 1/K Σ_k Huber(Q_k(s_i, a_i) − y_ik)  +  λ · Huber(Q_stack(s_i, a_i) − y_i)

In the meta term the members' values and the features are constants (stop-gradient), so it trains
the gates only, and the members (and a features extractor) only their own terms. Acting is the
agent's own (ε-greedy) on Q_stack, which is the network's forward. The meta-model sees the
members' training batches rather than a held-out fold; with replay's constant stream of new
transitions the members do not fit those exactly.
The per-sample TD error (for prioritized replay) is |Q_stack − y_i|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch as th
from gymnasium import spaces
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.ensembles.members import ensemble_head, make_q_ensemble, member_estimates, member_targets
from rlsurgery.nets import transform_networks
from rlsurgery.nets.mixture import GatedCombiner

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.agents.dqn_policies import SurgicalQNetwork
    from rlsurgery.core.batch import Batch


def members_and_stack(net: SurgicalQNetwork, obs: Any) -> tuple[th.Tensor, th.Tensor]:
    """(every member's values (B, K, A), Q_stack (B, A) with the members' values and the features as
    constants: the meta term trains the gate alone)."""
    features = net.extract_features(obs, net.features_extractor)
    head = ensemble_head(net)
    values = head.member_outputs(features)
    return values, head.combine(values.detach(), features.detach())


def stacking_loss(current: th.Tensor, target: th.Tensor, meta_weight: float) -> tuple[th.Tensor, th.Tensor]:
    """Per-sample loss and TD error from ``current``, ``target`` (B, K + 1): members first, Q_stack last."""
    huber = F.smooth_l1_loss(current, target, reduction="none")
    loss = huber[:, :-1].mean(dim=1) + meta_weight * huber[:, -1]
    with th.no_grad():
        td_error = (target[:, -1] - current[:, -1]).abs()
    return loss, td_error


@dataclass
class StackingParams:
    n_members: int = param(5, "K: Q-heads that the meta-model combines", ge=1, le=100)
    meta_weight: float = param(1.0, "λ: weight of the meta-model's TD loss", gt=0.0)
    shared_layers: int = param(0, "hidden layers of the Q head that the members share", ge=0)


@register(proof="tests/ensembles/test_stacking.py::test_the_meta_model_learns_to_combine_the_members")
class Stacking(Surgery):
    """K Q-heads trained side by side and a gating meta-model, learnt on replay, that combines them."""

    key = "stacking"
    cost_note = "K heads and a gate: K forward passes of the head for acting, targets and every update"
    sb3_representable = False
    attaches_to = (Attachment.NETWORK, Attachment.LOSS)
    families = ("dqn",)
    Params = StackingParams
    stages = ("next_action", "target", "estimate", "loss")
    build_order = 90  # after every change of the head's architecture: each member is a copy of it
    params: StackingParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def modify_networks(self, agent: SurgicalDQN) -> None:
        p = self.params

        def to_stack(net: SurgicalQNetwork) -> None:
            net.q_net = make_q_ensemble(self.key, net, p.n_members, p.shared_layers)
            net.q_net.combiner = GatedCombiner(net.features_dim, p.n_members)

        transform_networks(agent, to_stack)

    def next_action(self, agent: SurgicalDQN, batch: Batch) -> None:
        """``extras["member_next_values"]`` and ``extras["stack_next_values"]`` at s' (target network)."""
        with th.no_grad():
            values, stack = members_and_stack(agent.q_net_target, batch.next_observations)
        batch.extras["member_next_values"] = values
        batch.extras["stack_next_values"] = stack
        batch.next_actions = stack.argmax(dim=1, keepdim=True)

    def target(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.target = [y_i1 … y_iK, y_i], (B, K + 1)."""
        with th.no_grad():
            members = member_targets(
                batch.extras["member_next_values"], batch.rewards, batch.dones, batch.discounts
            )
            stack = member_targets(
                batch.extras["stack_next_values"].unsqueeze(1), batch.rewards, batch.dones, batch.discounts
            )
        batch.target = th.cat([members, stack], dim=1)

    def estimate(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.current = [Q_1 … Q_K, Q_stack] at the taken actions, (B, K + 1)."""
        values, stack = members_and_stack(agent.q_net, batch.observations)
        members = member_estimates(values, batch.actions)
        batch.current = th.cat([members, stack.gather(1, batch.actions.long().view(-1, 1))], dim=1)

    def loss(self, agent: SurgicalDQN, batch: Batch) -> None:
        """The loss and TD error of :func:`stacking_loss`."""
        batch.elementwise_loss, batch.td_error = stacking_loss(
            batch.current, batch.target, self.params.meta_weight
        )
