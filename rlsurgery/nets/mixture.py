"""Gated mixtures: a gate's softmax weights over K members' outputs.

A gate reads x and gives weights g(x) on the K-simplex; the mixture is the weighted sum of the
members' outputs (Jacobs, Jordan, Nowlan & Hinton 1991, "Adaptive mixtures of local experts";
sparse top-k routing: Shazeer et al. 2017, https://arxiv.org/abs/1701.06538)::

    g(x) = softmax(W_g x + b_g)                    (top_k = k: softmax over the k largest logits, 0 elsewhere)
    y(x) = Σ_k g_k(x) · E_k(x)

:class:`MixtureOfExperts` is such a layer with K experts run as one
:class:`~rlsurgery.nets.ensemble.EnsembleHead` (so plain experts run as one batched product);
the stacking ensemble's meta-model uses :func:`gate_weights` and :func:`mix` on Q-heads.
"""

from __future__ import annotations

import torch as th
from torch import nn

from rlsurgery.nets.ensemble import EnsembleHead


def gate_weights(logits: th.Tensor, top_k: int = 0) -> th.Tensor:
    """Softmax over the last dimension; with ``top_k`` > 0 only the k largest logits get weight.

    >>> g = gate_weights(th.tensor([[1.0, 3.0, 2.0]]), top_k=2)
    >>> [round(v, 3) for v in g[0].tolist()]
    [0.0, 0.731, 0.269]
    """
    if top_k and top_k < logits.shape[-1]:
        kept = logits.topk(top_k, dim=-1).indices
        mask = th.zeros_like(logits, dtype=th.bool).scatter_(-1, kept, True)
        logits = logits.masked_fill(~mask, float("-inf"))
    return th.softmax(logits, dim=-1)


def mix(gates: th.Tensor, outputs: th.Tensor) -> th.Tensor:
    """Σ_k g_k · out_k: ``gates`` (B, K), ``outputs`` (B, K, out) -> (B, out)."""
    return (gates.unsqueeze(-1) * outputs).sum(dim=1)


class MixtureOfExperts(nn.Module):
    """A softly gated mixture of K experts that read the same input.

    :param experts: K modules of the same input and output width
    :param in_features: width of the input (the gate's input)
    :param top_k: route each input to its k highest-gated experts (0: all experts, a soft mixture)
    """

    def __init__(self, experts: list[nn.Module], in_features: int, top_k: int = 0) -> None:
        super().__init__()
        self.experts = EnsembleHead(nn.Sequential(), experts)
        self.gate = nn.Linear(in_features, len(experts))
        self.top_k = int(top_k)
        self.last_gates: th.Tensor | None = None
        """the gate weights of the latest forward pass (detached), for diagnostics"""

    @property
    def n_experts(self) -> int:
        """K."""
        return self.experts.n_members

    def gates(self, x: th.Tensor) -> th.Tensor:
        """g(x), (B, K): non-negative, summing to one per row."""
        return gate_weights(self.gate(x), self.top_k)

    def forward(self, x: th.Tensor) -> th.Tensor:
        gates = self.gates(x)
        self.last_gates = gates.detach()
        return mix(gates, self.experts.member_outputs(x))

    def extra_repr(self) -> str:
        return f"n_experts={self.n_experts}, top_k={self.top_k or 'all'}"


class GatedCombiner(nn.Module):
    """An ensemble's combiner (see :class:`~rlsurgery.nets.ensemble.EnsembleHead`) that mixes its K
    members' outputs with softmax gates read from the head's input: Σ_k g_k(x) f_k(x).

    The gate starts at zero weights, so the first mix is the members' mean.

    :param in_features: width of the head's input
    :param n_members: K
    """

    def __init__(self, in_features: int, n_members: int) -> None:
        super().__init__()
        self.gate = nn.Linear(in_features, n_members)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def gates(self, features: th.Tensor) -> th.Tensor:
        """g(x), (B, K)."""
        return gate_weights(self.gate(features))

    def forward(self, outputs: th.Tensor, features: th.Tensor) -> th.Tensor:
        return mix(self.gates(features), outputs)
