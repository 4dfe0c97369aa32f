"""Distributional RL: learn the distribution of returns Z(s, a), not only its mean.

``variant: c51`` — Bellemare et al. 2017, https://arxiv.org/abs/1707.06887. Z is a
categorical distribution on K atoms z_j = v_min + j Δz. The target distribution is the
Bellman update projected back onto the support::

    T z_j = clip(r + (1 − d) γ^n z_j, v_min, v_max)
    m_i   = Σ_j [1 − |T z_j − z_i| / Δz]_0^1 · p_j(s', a*)
    L     = − Σ_i m_i log p_i(s, a)                     (cross-entropy)

``variant: qr`` — Dabney et al. 2018, https://arxiv.org/abs/1710.10044. Z is N
quantiles θ_i at midpoints τ̂_i = (2i + 1) / 2N, trained by the quantile Huber loss::

    δ_ij = r + (1 − d) γ^n θ_j(s', a*) − θ_i(s, a)
    L    = Σ_i mean_j |τ̂_i − 1{δ_ij < 0}| · H_κ(δ_ij) / κ

Q(s, a) is the mean of Z (used for acting and for a*). The surgery fills the estimate,
target and loss stages; the next action comes from the next-action stage, so Double Q
composes. The per-sample loss is written as ``td_error`` so prioritized replay uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch as th
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_SUPPORT, param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.nets import transform_networks
from rlsurgery.nets.modules import set_submodule, split_mlp

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


# --------------------------------------------------------------------------- math
def categorical_projection(
    next_probs: th.Tensor,
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    support: th.Tensor,
) -> th.Tensor:
    """Project the Bellman-updated distribution r + (1 − d) γ z onto ``support``.

    :param next_probs: p(s', a*), shape (B, K)
    :param rewards: (B, 1) or (B,)
    :param dones: (B, 1) or (B,)
    :param discounts: γ^n, a float or (B, 1)
    :param support: atoms z, shape (K,), evenly spaced
    :return: projected probabilities, shape (B, K); each row sums to 1

    Worked example: support (0, 1, 2), all mass on z = 1, r = 0.5, γ = 1: the shifted
    atom 1.5 lies half-way between 1 and 2, so the mass splits evenly between them.

    >>> categorical_projection(th.tensor([[0.0, 1.0, 0.0]]), th.tensor([0.5]), th.tensor([0.0]), 1.0,
    ...                        th.tensor([0.0, 1.0, 2.0]))
    tensor([[0.0000, 0.5000, 0.5000]])
    """
    v_min, v_max, n_atoms = support[0], support[-1], support.shape[0]
    delta_z = (v_max - v_min) / (n_atoms - 1)  # not support[1] - support[0]: less round-off
    rewards = rewards.reshape(-1, 1)
    not_done = 1 - dones.reshape(-1, 1)
    if isinstance(discounts, th.Tensor):
        discounts = discounts.reshape(-1, 1)
    shifted = (rewards + not_done * discounts * support.view(1, -1)).clamp(v_min, v_max)  # (B, K)
    # the triangle kernel [1 - |Tz_j - z_i| / Δz]_0^1 is non-zero on the two atoms around Tz_j only:
    # position b_j = (Tz_j - v_min) / Δz in [0, K-1] gives 1 - frac to atom l_j and frac to l_j + 1
    position = ((shifted - v_min) / delta_z).clamp_(0, n_atoms - 1)  # round-off kept inside
    lower = position.floor().clamp_(max=n_atoms - 2)  # b_j = K-1 goes to l = K-2 with frac = 1
    upper_share = position - lower
    rows = th.arange(next_probs.shape[0], device=next_probs.device).view(-1, 1) * n_atoms
    index = (lower.long() + rows).view(-1)
    upper_mass = (next_probs * upper_share).view(-1)
    projected = th.zeros(next_probs.numel(), dtype=next_probs.dtype, device=next_probs.device)
    projected.index_add_(0, index, next_probs.reshape(-1) - upper_mass)
    projected.index_add_(0, index + 1, upper_mass)
    return projected.view_as(next_probs)


def categorical_cross_entropy(logits: th.Tensor, target_probs: th.Tensor) -> th.Tensor:
    """−Σ_i m_i log softmax(logits)_i per sample, shape (B,)."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def quantile_midpoints(n_quantiles: int, device: th.device | str | None = None) -> th.Tensor:
    """τ̂_i = (2i + 1) / 2N, shape (N,)."""
    return (th.arange(n_quantiles, device=device, dtype=th.float32) + 0.5) / n_quantiles


def quantile_huber_loss(current: th.Tensor, target: th.Tensor, kappa: float = 1.0) -> th.Tensor:
    """Quantile Huber loss per sample, shape (B,).

    :param current: θ_i(s, a), shape (B, N)
    :param target: target quantiles, shape (B, N')
    :param kappa: Huber threshold κ
    """
    delta = target.unsqueeze(1) - current.unsqueeze(2)  # (B, N, N')
    abs_delta = delta.abs()
    huber = th.where(abs_delta <= kappa, 0.5 * delta.pow(2), kappa * (abs_delta - 0.5 * kappa))
    tau = quantile_midpoints(current.shape[1], current.device).view(1, -1, 1)
    weight = (tau - (delta.detach() < 0).float()).abs()
    return (weight * huber / kappa).sum(dim=1).mean(dim=1)


# --------------------------------------------------------------------------- readouts
class CategoricalReadout(nn.Module):
    """Q(s, a) = Σ_i z_i softmax(logits)_i; holds the support as a buffer."""

    def __init__(self, v_min: float, v_max: float, n_atoms: int) -> None:
        super().__init__()
        self.register_buffer("support", th.linspace(v_min, v_max, n_atoms))

    def probabilities(self, outputs: th.Tensor) -> th.Tensor:
        """softmax over atoms."""
        return F.softmax(outputs, dim=-1)

    def forward(self, outputs: th.Tensor) -> th.Tensor:
        """(B, A, K) logits -> (B, A) expected returns."""
        return (self.probabilities(outputs) * self.support).sum(dim=-1)


class QuantileReadout(nn.Module):
    """Q(s, a) = mean of the quantiles."""

    def forward(self, outputs: th.Tensor) -> th.Tensor:
        """(B, A, N) quantiles -> (B, A) means."""
        return outputs.mean(dim=-1)


# --------------------------------------------------------------------------- surgery
@dataclass
class DistributionalParams:
    variant: Literal["c51", "qr"] = param("c51", "categorical (C51) or quantile regression (QR-DQN)")
    n_atoms: int = param(51, "C51: number of atoms K", ge=2, le=MAX_SUPPORT)
    v_min: float = param(-10.0, "C51: smallest return on the support")
    v_max: float = param(10.0, "C51: largest return on the support")
    n_quantiles: int = param(200, "QR: number of quantiles N", ge=1, le=MAX_SUPPORT)
    kappa: float = param(1.0, "QR: Huber threshold κ", gt=0.0)

    def check(self) -> None:
        if self.variant == "c51" and not self.v_min < self.v_max:
            raise ValueError(
                f"parameter 'v_min' must be < 'v_max' (got v_min={self.v_min}, v_max={self.v_max})"
            )

    @property
    def atoms(self) -> int:
        """Outputs per action."""
        return self.n_atoms if self.variant == "c51" else self.n_quantiles


@register(proof="tests/value/test_distributional.py::test_c51_agent_target_is_the_projected_bellman_update")
class DistributionalRL(Surgery):
    """Learn the return distribution: C51 (categorical) or QR-DQN (quantiles)."""

    key = "distributional_rl"
    cost_note = (
        "the head outputs K atoms (51) or N quantiles (200) per action instead of one value, and "
        "the loss needs the target distribution projected onto the support (C51) or the pairwise "
        "quantile Huber loss (QR)"
    )
    sb3_representable = False  # atoms per action and a readout instead of SB3's Q head
    attaches_to = (Attachment.NETWORK, Attachment.LOSS)
    Params = DistributionalParams
    stages = ("estimate", "target", "loss")
    build_order = 10  # the output representation comes first; dueling and noisy build on it
    params: DistributionalParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def modify_networks(self, agent: SurgicalDQN) -> None:
        p = self.params

        def to_distributional(net: nn.Module) -> None:
            try:
                _, output = split_mlp(net.q_net)
            except TypeError as exc:
                raise IncompatibleSurgeryError(f"{self.key}: cannot resize the Q head: {exc}") from None
            name = str(len(net.q_net) - 1)
            set_submodule(net.q_net, name, nn.Linear(output.in_features, net.n_actions * p.atoms))
            net.atoms = p.atoms
            net.readout = (
                CategoricalReadout(p.v_min, p.v_max, p.n_atoms) if p.variant == "c51" else QuantileReadout()
            )

        transform_networks(agent, to_distributional)

    def estimate(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.current = logits or quantiles of the taken actions, (B, K)."""
        outputs = agent.q_net.outputs(batch.observations)  # (B, A, K)
        index = batch.actions.long().view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
        batch.current = outputs.gather(1, index).squeeze(1)

    def target(self, agent: SurgicalDQN, batch: Batch) -> None:
        """batch.target = projected distribution (C51) or target quantiles (QR), (B, K)."""
        with th.no_grad():
            outputs = batch.next_target_outputs
            if outputs is None:
                outputs = agent.q_net_target.outputs(batch.next_observations)
            index = batch.next_actions.view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
            next_atoms = outputs.gather(1, index).squeeze(1)  # (B, K)
            if self.params.variant == "c51":
                readout = agent.q_net_target.readout
                batch.target = categorical_projection(
                    readout.probabilities(next_atoms),
                    batch.rewards,
                    batch.dones,
                    batch.discounts,
                    readout.support,
                )
            else:
                batch.target = batch.rewards + (1 - batch.dones) * batch.discounts * next_atoms

    def loss(self, agent: SurgicalDQN, batch: Batch) -> None:
        """Cross-entropy (C51) or quantile Huber loss (QR) per sample; also the TD error."""
        if self.params.variant == "c51":
            batch.elementwise_loss = categorical_cross_entropy(batch.current, batch.target)
        else:
            batch.elementwise_loss = quantile_huber_loss(batch.current, batch.target, self.params.kappa)
        batch.td_error = batch.elementwise_loss.detach()
