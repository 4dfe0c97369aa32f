"""Boosting for value learning: Q-heads added one after another, each fitted where the ensemble errs.

Freund & Schapire 1997 (AdaBoost, https://doi.org/10.1006/jcss.1997.1504) reweight the examples
the current ensemble gets wrong; Friedman 2001 (gradient boosting,
https://doi.org/10.1214/aos/1013203451) fits each new learner to what the ensemble still misses.
Here the K members of an :class:`~rlsurgery.nets.ensemble.EnsembleHead` enter in stages of S env
steps. In stage s the ensemble is the mean of members 0 … s; only member s trains (the earlier
ones are frozen), on the ensemble's TD error, with each sampled transition weighted by how badly
the ensemble *before* member s did on it::

    F_s(x, a)   = 1/(s+1) Σ_{j ≤ s} Q_j(x, a)          (acting, targets: ε-greedy on F_s)
    y_i         = r_i + (1 − d_i) γ^n max_a F_s^target(s'_i, a)
    w_i         = |F_{s−1}(s_i, a_i) − y_i|^α / mean_batch(|F_{s−1} − y|^α)     (stage 0: w_i = 1)
    L_i         = w_i · Huber(F_s(s_i, a_i) − y_i),   gradients through Q_s only

When stage s begins, member s starts from member s − 1's weights (online and target; fresh
optimizer moments), so the ensemble moves only by (Q_{s−1} − F_{s−1}) / (s + 1): not at all when
member 1 joins, a little later. The earlier members get no gradient (``requires_grad`` off) and
stay fixed; with ``shared_layers`` > 0 the shared trunk keeps training with every member, so they
change through it. α (``focus``) sets how much the hard transitions
dominate (0: uniform weights, ordinary training of each new member). The weights multiply any
other per-sample weights (prioritized replay's importance weights, batch mining).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch as th
from gymnasium import spaces

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.ensembles.members import ensemble_head, make_q_ensemble, member_estimates, member_values
from rlsurgery.nets import transform_networks
from rlsurgery.nets.ensemble import WeightedMean
from rlsurgery.runtime.schedules import run_length

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.agents.dqn_policies import SurgicalQNetwork
    from rlsurgery.core.batch import Batch


def staged_estimate(member_estimates: th.Tensor, stage: int) -> tuple[th.Tensor, th.Tensor | None]:
    """(F_s, F_{s−1}) at the taken actions from every member's estimate (B, K): F_s's gradient reaches
    member ``stage`` only; F_{s−1} is None in stage 0."""
    frozen = member_estimates[:, :stage].detach()
    current = (frozen.sum(dim=1) + member_estimates[:, stage]) / (stage + 1)
    previous = frozen.mean(dim=1) if stage else None
    return current, previous


def boosting_weights(previous: th.Tensor, target: th.Tensor, focus: float) -> th.Tensor:
    """w_i = |F_{s−1} − y|^α normalised to mean 1 over the batch, (B,).

    >>> boosting_weights(th.tensor([0.0, 0.0]), th.tensor([1.0, 3.0]), focus=1.0).tolist()
    [0.5, 1.5]
    """
    hardness = (previous - target).abs().pow(focus)
    return hardness / hardness.mean().clamp(min=1e-8)


@dataclass
class BoostingParams:
    n_members: int = param(5, "K: members added one after another", ge=1, le=100)
    stage_steps: int = param(
        0, "S: env steps of each member's stage (0: the training run split into K)", ge=0
    )
    focus: float = param(1.0, "α: weight exponent of the previous ensemble's TD error (0: uniform)", ge=0.0)
    shared_layers: int = param(
        0, "hidden layers of the Q head that the members share (trained with every member)", ge=0
    )


@dataclass
class BoostingState:
    stage: int = 0
    """s: the member being trained (members 0 … s form the ensemble)"""


@register(
    proof="tests/ensembles/test_boosting.py::test_the_new_member_fits_the_transitions_the_ensemble_gets_wrong"
)
class Boosting(Surgery):
    """Members added in stages; each fits the ensemble's TD error, weighted towards its previous mistakes."""

    key = "boosting"
    cost_note = "K heads; each update runs the members added so far (the earlier ones without gradients)"
    sb3_representable = False
    attaches_to = (Attachment.NETWORK, Attachment.LOSS)
    families = ("dqn",)
    Params = BoostingParams
    State = BoostingState
    stages = ("estimate", "weighting", "on_step")
    build_order = 90  # after every change of the head's architecture: each member is a copy of it
    params: BoostingParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def modify_networks(self, agent: SurgicalDQN) -> None:
        p = self.params

        def to_ensemble(net: SurgicalQNetwork) -> None:
            net.q_net = make_q_ensemble(self.key, net, p.n_members, p.shared_layers)
            net.q_net.combiner = WeightedMean(p.n_members)

        transform_networks(agent, to_ensemble)
        self.show_stage(agent, 0)  # a buffer of the combiner: ``load`` restores the stage's weights

    def stage_steps(self, agent: SurgicalDQN) -> int:
        """S in env steps."""
        return self.params.stage_steps or max(1, run_length(agent) // self.params.n_members)

    @staticmethod
    def train_only(agent: SurgicalDQN, stage: int) -> None:
        """Only member ``stage`` of the online ensemble has gradients: the optimizer leaves the others
        (their gradients stay None, so Adam's moments cannot move them either)."""
        for k, member in enumerate(ensemble_head(agent.q_net).members):
            member.requires_grad_(k == stage)

    @staticmethod
    def show_stage(agent: SurgicalDQN, stage: int) -> None:
        """Members 0 … ``stage`` form the online and the target ensemble."""
        for net in (agent.q_net, agent.q_net_target):
            weights = ensemble_head(net).combiner.weights
            weights.copy_((th.arange(len(weights), device=weights.device) <= stage).float())

    def on_step(self, agent: SurgicalDQN) -> None:
        """Start the next member's stage (from its predecessor's weights) when S steps have passed."""
        state = self.state(agent)
        stage = min(self.params.n_members - 1, agent.num_timesteps // self.stage_steps(agent))
        while state.stage < stage:
            state.stage += 1
            for net in (agent.q_net, agent.q_net_target):
                members = ensemble_head(net).members
                members[state.stage].load_state_dict(members[state.stage - 1].state_dict())
            for weight in ensemble_head(agent.q_net).members[state.stage].parameters():
                agent.policy.optimizer.state.pop(weight, None)  # fresh moments for the new member
            self.show_stage(agent, state.stage)
            agent.logger.record("train/boosting_stage", state.stage)

    def estimate(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.current = F_s(s, a), gradients to member s only; F_{s−1}(s, a) goes into the extras."""
        stage = self.state(agent).stage
        self.train_only(agent, stage)
        values = member_values(agent.q_net, batch.observations)[:, : stage + 1]
        current, previous = staged_estimate(member_estimates(values, batch.actions), stage)
        batch.current = current.unsqueeze(1)
        batch.extras["boosting_previous"] = previous

    def weighting(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.weights ×= w (:func:`boosting_weights`); stage 0 leaves them."""
        previous = batch.extras.get("boosting_previous")
        if previous is None or self.params.focus == 0:
            return
        with th.no_grad():
            weights = boosting_weights(previous, batch.target.view(-1), self.params.focus)
        batch.extras["boosting_weights"] = weights
        batch.weights = weights if batch.weights is None else batch.weights.view(-1) * weights
