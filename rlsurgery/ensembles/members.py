"""Reading the members of a Q network's ensemble head (shared by the ensemble surgeries)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch as th
from torch.nn import functional as F

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.ensemble import EnsembleHead, make_ensemble_head

if TYPE_CHECKING:
    from rlsurgery.agents.dqn_policies import SurgicalQNetwork


def make_q_ensemble(
    key: str, net: SurgicalQNetwork, n_members: int, shared_layers: int, prior_scale: float = 0.0
) -> EnsembleHead:
    """An ensemble head of ``n_members`` copies of ``net``'s Q head (see
    :func:`~rlsurgery.nets.ensemble.make_ensemble_head`), refused with a message naming ``key``."""
    if net.atoms != 1:
        raise IncompatibleSurgeryError(f"{key}: needs one value per action (got {net.atoms} atoms)")
    try:
        return make_ensemble_head(net.q_net, n_members, shared_layers, prior_scale)
    except TypeError as exc:
        raise IncompatibleSurgeryError(f"{key}: cannot build the members: {exc}") from None


def ensemble_head(net: SurgicalQNetwork) -> EnsembleHead:
    """The Q network's ensemble head."""
    head = net.q_net
    if not isinstance(head, EnsembleHead):
        raise IncompatibleSurgeryError("the Q head is no longer an ensemble (was it replaced?)")
    return head


def member_values(net: SurgicalQNetwork, obs: Any) -> th.Tensor:
    """Every head's Q-values, (B, K, A)."""
    return ensemble_head(net).member_outputs(net.extract_features(obs, net.features_extractor))


def member_estimates(values: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Q_k(s_i, a_i) from every member's values (B, K, A) and the taken actions (B,) or (B, 1): (B, K)."""
    index = actions.long().view(-1, 1, 1).expand(-1, values.shape[1], 1)
    return values.gather(2, index).squeeze(2)


def member_targets(values: th.Tensor, rewards: th.Tensor, dones: th.Tensor, discounts: Any) -> th.Tensor:
    """y_ik = r_i + (1 − d_i) γ^n max_a Q_k^target(s'_i, a) from the target members' values (B, K, A)."""
    return rewards + (1 - dones) * discounts * values.max(dim=2).values


def masked_ensemble_loss(
    current: th.Tensor, target: th.Tensor, masks: th.Tensor
) -> tuple[th.Tensor, th.Tensor]:
    """Per-sample loss 1/K Σ_k m_ik Huber(δ_ik) and TD error mean_{k: m_ik=1} |δ_ik|, both (B,).

    :param current: Q_k(s_i, a_i), (B, K)
    :param target: y_ik, (B, K)
    :param masks: m_ik, (B, K)
    """
    huber = F.smooth_l1_loss(current, target, reduction="none")
    loss = (masks * huber).mean(dim=1)
    with th.no_grad():
        td_error = (masks * (target - current).abs()).sum(dim=1) / masks.sum(dim=1).clamp(min=1.0)
    return loss, td_error
