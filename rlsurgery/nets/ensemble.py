"""Ensemble heads: K members in one module, so every network surgery, ``save``/``load`` and
``inspect`` see all of them.

An :class:`EnsembleHead` replaces an output head (a DQN's ``q_net`` MLP). Its members read the
output of an optional shared ``trunk`` (the head's first hidden layers); each member may carry a
fixed random *prior* network read on the trunk's input, added with weight β (Osband, Aslanides &
Cassirer 2018, https://arxiv.org/abs/1806.03335)::

    f_k(x) = g_k(trunk(x)) + β · p_k(x)          p_k frozen, k = 1 … K
    f(x)   = 1/K Σ_k f_k(x)                      (``forward``: the ensemble's mean)

Member 0 is the head that was there; the others are fresh copies of it (new initial weights),
and each prior is a fresh copy of trunk + head with ``requires_grad`` off. The surgeries that use
an ensemble (bagging, boosting, stacking, snapshots) decide how the members are trained and read.
"""

from __future__ import annotations

import torch as th
from torch import nn

from rlsurgery.nets.modules import fresh_copy, modules_of_type, split_mlp


def vote(member_values: th.Tensor) -> th.Tensor:
    """Majority vote over members of their argmax actions; ties go to the largest mean value.

    :param member_values: (B, K, A) values of each member
    :return: actions (B,)

    >>> vote(th.tensor([[[1.0, 0.0], [0.0, 5.0], [2.0, 1.0]]])).tolist()  # two of three vote 0
    [0]
    """
    n_actions = member_values.shape[-1]
    votes = nn.functional.one_hot(member_values.argmax(dim=-1), n_actions).sum(dim=1)  # (B, A)
    mean = member_values.mean(dim=1)
    winners = votes == votes.max(dim=1, keepdim=True).values
    return mean.masked_fill(~winners, float("-inf")).argmax(dim=1)


class EnsembleHead(nn.Module):
    """K output heads on a shared trunk, each with an optional frozen prior network.

    :param trunk: layers shared by every member (may be empty)
    :param members: the K trained heads, each reading the trunk's output
    :param priors: K frozen networks reading the trunk's input, or None
    :param prior_scale: β, the weight of the priors
    """

    def __init__(
        self,
        trunk: nn.Module,
        members: list[nn.Module],
        priors: list[nn.Module] | None = None,
        prior_scale: float = 0.0,
    ) -> None:
        super().__init__()
        if priors is not None and len(priors) != len(members):
            raise ValueError(f"{len(members)} members but {len(priors)} priors")
        self.trunk = trunk
        self.members = nn.ModuleList(members)
        self.priors = nn.ModuleList(priors) if priors is not None else None
        self.prior_scale = float(prior_scale)
        for prior in self.priors or ():
            prior.requires_grad_(False)

    @property
    def n_members(self) -> int:
        """K."""
        return len(self.members)

    def member_outputs(self, features: th.Tensor) -> th.Tensor:
        """Every member's output, (B, K, out)."""
        hidden = self.trunk(features)
        outputs = [member(hidden) for member in self.members]
        if self.priors is not None and self.prior_scale:
            with th.no_grad():
                prior_outputs = [prior(features) for prior in self.priors]
            outputs = [out + self.prior_scale * prior for out, prior in zip(outputs, prior_outputs)]
        return th.stack(outputs, dim=1)

    def forward(self, features: th.Tensor) -> th.Tensor:
        """The members' mean, (B, out)."""
        return self.member_outputs(features).mean(dim=1)


def make_ensemble_head(
    head: nn.Module, n_members: int, shared_layers: int = 0, prior_scale: float = 0.0
) -> EnsembleHead:
    """Turn ``head`` into an :class:`EnsembleHead` of ``n_members`` (see module docstring).

    :param head: the output head (an SB3 MLP where ``shared_layers > 0``)
    :param n_members: K
    :param shared_layers: the head's first hidden layers that the members share
    :param prior_scale: β; 0 gives members without priors
    :raises TypeError: ``shared_layers > 0`` on a head that is not an MLP, or with fewer hidden layers
    """
    if shared_layers:
        blocks, output = split_mlp(head)
        if shared_layers > len(blocks):
            raise TypeError(
                f"the head has {len(blocks)} hidden layers, fewer than shared_layers={shared_layers}"
            )
        trunk: nn.Module = nn.Sequential(*blocks[:shared_layers])
        member: nn.Module = nn.Sequential(*blocks[shared_layers:], output)
    else:
        trunk, member = nn.Sequential(), head
    members = [member] + [fresh_copy(member) for _ in range(n_members - 1)]
    priors = None
    if prior_scale:
        priors = [fresh_copy(nn.Sequential(trunk, member)) for _ in range(n_members)]
    return EnsembleHead(trunk, members, priors, prior_scale)


def ensemble_heads(module: nn.Module) -> tuple[EnsembleHead, ...]:
    """The ensemble heads inside ``module``."""
    return modules_of_type(module, EnsembleHead)
