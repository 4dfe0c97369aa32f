"""Hard example mining (catalog section 7) for the replay agents: the DQN family, SAC and TD3.

Shrivastava et al. 2016 (online hard example mining, https://arxiv.org/abs/1604.03540); Loshchilov
& Hutter 2015 (selecting batches by loss, https://arxiv.org/abs/1511.06343)::

    sample m·B transitions, compute every per-sample loss, train on the B largest:
    L = (1/B) Σ_{i ∈ top-B(ℓ)} w_i ℓ_i          (w_i: importance weights, e.g. prioritized replay)

The agent samples m·B transitions (its batch size is multiplied by m when it is built), and the
``weighting`` stage gives the B hardest weight m and the others 0, so the mean over m·B equals
the mean over the top B. Their TD errors still reach prioritized replay for all m·B. On SAC and
TD3 the weights act on the critics' loss (ℓ_i summed over the critics); the actor's loss is
the plain mean over all m·B sampled states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.batch import Batch
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery


def top_k_weights(losses: th.Tensor, keep: int) -> th.Tensor:
    """Weight n/keep on the ``keep`` largest losses, 0 elsewhere (so the mean is the top-k mean)."""
    weights = th.zeros_like(losses)
    weights[losses.detach().topk(keep).indices] = losses.numel() / keep
    return weights


@dataclass
class MiningParams:
    factor: int = param(4, "m: transitions sampled per kept one (m·B are sampled per update)", ge=2, le=100)


@dataclass
class MiningState:
    kept_batch_size: int | None = None
    """B: the transitions each update trains on (the agent samples m·B)"""


@register(proof="tests/batches/test_mining.py::test_the_update_trains_on_the_hardest_transitions")
class HardExampleMining(Surgery):
    """Train each update on the B highest-loss transitions of m·B sampled ones."""

    key = "hard_example_mining"
    cost_note = (
        "every update runs forward and backward on m·B sampled transitions (4× the batch by "
        "default) to rank their losses"
    )
    attaches_to = (Attachment.LOSS,)
    families = ("dqn", "sac", "td3")
    family_notes: ClassVar[dict[str, str]] = {
        f: "weights the critics' loss; the actor's loss averages all m·B states" for f in ("sac", "td3")
    }
    stages = ("weighting",)
    refusals: ClassVar[dict[str, str]] = {
        f: "an on-policy update uses each rollout sample as collected, with no larger pool to mine"
        for f in ("ppo", "a2c", "trpo")
    }
    Params = MiningParams
    params: MiningParams
    State = MiningState

    def configure(self, agent: BaseAlgorithm) -> None:
        state = self.state(agent)
        if state.kept_batch_size is None:  # a loaded model's batch size is already multiplied
            state.kept_batch_size = int(agent.batch_size)
            agent.batch_size = int(agent.batch_size) * self.params.factor

    def weighting(self, agent: BaseAlgorithm, batch: Batch) -> None:
        losses = batch.elementwise_loss
        per_sample = losses.reshape(len(losses), -1).sum(dim=1)  # SAC/TD3: one column per critic
        keep = max(1, len(per_sample) // self.params.factor)
        weights = top_k_weights(per_sample, keep)
        batch.weights = weights if batch.weights is None else batch.weights.view(-1) * weights
