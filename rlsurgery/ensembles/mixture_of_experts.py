"""Mixture of experts in the penultimate layer: one hidden block becomes K gated experts.

Obando-Ceron, Sokar, Willi, Lyle, Farebrother, Foerster, Dziugaite, Precup & Castro 2024,
"Mixtures of Experts Unlock Parameter Scaling for Deep RL", https://arxiv.org/abs/2402.08609:
replacing the penultimate dense layer of a value network by a mixture of experts lets its
parameter count grow with returns that grow too. Here hidden block l (its ``Linear`` and
activation; the last hidden one by default) of every MLP of every network becomes::

    h_l(x) = Σ_k g_k(x) · E_k(x),     g(x) = softmax(W_g x + b_g)     (top_k: the k largest only)

with E_1 the block that was there and E_2 … E_K fresh copies of it. This is a softly gated
mixture (Jacobs et al. 1991; Shazeer et al. 2017's top-k routing with ``top_k``), not the
paper's Soft MoE, which dispatches *tokens* (conv features) to expert slots: an MLP layer has a
single token. K = 1 leaves the network's function unchanged (one expert, gate weight 1).
With ``top_k`` the outputs are those of sparse routing, but every expert still runs (one
batched product for all of them: no compute is saved at these sizes), and there is neither
Shazeer's gate noise nor a load-balancing loss; catalog section 25's "conditional computation"
is this routing, not its savings.

Every network of the agent gets it (DQN's Q network, PPO/A2C's policy and value MLPs, SAC/TD3's
actor and critics; targets copy their online network), the optimizers are rebuilt over the
new parameters, and ``load`` rebuilds the layers before loading their weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.mixture import MixtureOfExperts
from rlsurgery.nets.mlp import MLPStack, replace_hidden_block
from rlsurgery.nets.modules import fresh_copy
from rlsurgery.nets.surgery import StructuralSurgery


def expert_layer(block: list[nn.Module], n_experts: int, top_k: int) -> MixtureOfExperts:
    """A :class:`MixtureOfExperts`: ``block`` as its first expert, fresh copies as the others."""
    first = nn.Sequential(*block)
    experts = [first] + [fresh_copy(first) for _ in range(n_experts - 1)]
    return MixtureOfExperts(experts, block[0].in_features, top_k)


@dataclass
class MixtureOfExpertsParams:
    n_experts: int = param(4, "K: experts in the layer", ge=1, le=64)
    top_k: int = param(0, "route each input to its k highest-gated experts (0: all, a soft mixture)", ge=0)
    position: int = param(-1, "hidden layer to turn into experts (-1: the penultimate layer of the network)")

    def check(self) -> None:
        """top_k ≤ n_experts."""
        if self.top_k > self.n_experts:
            raise ValueError(f"'top_k' ({self.top_k}) must not exceed 'n_experts' ({self.n_experts})")


@register(proof="tests/ensembles/test_mixture_of_experts.py::test_the_layer_is_the_gated_sum_of_its_experts")
class MixtureOfExpertsSurgery(StructuralSurgery):
    """A gated mixture of K experts in place of one hidden block (the penultimate layer) of every network."""

    key = "mixture_of_experts"
    cost_note = "K experts instead of one hidden layer: K times its parameters and work, plus a gate"
    Params = MixtureOfExpertsParams
    params: MixtureOfExpertsParams
    build_order = 80  # after the surgeries that reshape plain MLP stacks (the experts copy the result)

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        p = self.params

        def to_experts(_net: nn.Module, stack: MLPStack) -> None:
            i = self.hidden_index(stack, p.position)
            replace_hidden_block(stack, i, lambda block: expert_layer(block, p.n_experts, p.top_k))

        self.edit(agent, to_experts, copy_targets=True)  # experts and gate drawn once, for online and target
