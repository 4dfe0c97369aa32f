"""Ensemble heads: K members in one module, so every network surgery, ``save``/``load`` and
``inspect`` see all of them.

An :class:`EnsembleHead` replaces an output head (a DQN's ``q_net`` MLP). Its members read the
output of an optional shared ``trunk`` (the head's first hidden layers); each member may carry a
fixed random *prior* network read on the trunk's input, added with weight β (Osband, Aslanides &
Cassirer 2018, https://arxiv.org/abs/1806.03335)::

    f_k(x) = g_k(trunk(x)) + β · p_k(x)          p_k frozen, k = 1 … K
    f(x)   = 1/K Σ_k f_k(x)                      (``forward``: the ensemble's mean)
    f(x)   = combiner(f_1(x) … f_K(x), x)         (with a ``combiner``: a weighted or learnt mix)

Member 0 is the head that was there; the others are fresh copies of it (new initial weights),
and each prior is a fresh copy of trunk + head with ``requires_grad`` off. The surgeries that use
an ensemble (bagging, boosting, stacking, snapshots) decide how the members are trained and read.

Speed: while the members (and the priors) are plain MLPs of one shape — ``nn.Linear`` layers and
element-wise activations — they run as one batched matrix product per layer over weights stacked
on the fly (:func:`stacked_mlp`), the same function of the same parameters, so gradients reach
every member's own ``nn.Linear``. Any other member (a surgery replaced a layer) runs one by one.
"""

from __future__ import annotations

import torch as th
from torch import nn

from rlsurgery.nets.modules import cached_walk, fresh_copy, modules_of_type, split_mlp

#: modules that act element by element, identically on any batch shape (safe on stacked inputs)
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.ELU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Softplus, nn.Sigmoid, nn.Identity)


def plain_layers(module: nn.Module) -> tuple[nn.Module, ...] | None:
    """``module``'s layers in order when it is a plain MLP (nested ``nn.Sequential`` of exact
    ``nn.Linear`` and :data:`ELEMENTWISE` modules), else None."""
    if type(module) is nn.Linear or type(module) in ELEMENTWISE:
        return (module,)
    if type(module) is not nn.Sequential:
        return None
    layers: list[nn.Module] = []
    for child in module:
        inner = plain_layers(child)
        if inner is None:
            return None
        layers.extend(inner)
    return tuple(layers)


def stack_plan(nets: nn.ModuleList) -> tuple | None:
    """The layer lists of ``nets`` when all are plain MLPs of the same shape (cached), else None."""

    def walk() -> tuple:
        plans = [plain_layers(net) for net in nets]
        if not plans or any(p is None for p in plans):
            return ()
        signature = [
            [(type(m), getattr(m, "weight", None) is not None and m.weight.shape) for m in p] for p in plans
        ]
        if any(s != signature[0] for s in signature) or any(
            type(m) is nn.Linear and m.bias is None for m in plans[0]
        ):
            return ()
        return tuple(plans)

    plan = cached_walk(nets, stack_plan, walk)
    return plan or None


def stacked_mlp(plans: tuple, x: th.Tensor) -> th.Tensor:
    """Run K plain MLPs of one shape as batched products: ``x`` (B, in) or (K, B, in) -> (B, K, out)."""
    hidden = x.expand(len(plans), *x.shape) if x.dim() == 2 else x
    for j, layer in enumerate(plans[0]):
        if type(layer) is nn.Linear:
            weight = th.stack([p[j].weight for p in plans]).transpose(1, 2)  # (K, in, out)
            bias = th.stack([p[j].bias for p in plans]).unsqueeze(1)  # (K, 1, out)
            hidden = th.baddbmm(bias, hidden, weight)
        else:
            hidden = layer(hidden)
    return hidden.transpose(0, 1)


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
    :param combiner: ``combiner(outputs (B, K, out), features (B, in)) -> (B, out)``, what ``forward``
        returns instead of the members' mean (None: the mean)
    """

    def __init__(
        self,
        trunk: nn.Module,
        members: list[nn.Module],
        priors: list[nn.Module] | None = None,
        prior_scale: float = 0.0,
        combiner: nn.Module | None = None,
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
        self.combiner = combiner

    @property
    def n_members(self) -> int:
        """K."""
        return len(self.members)

    def member_outputs(self, features: th.Tensor) -> th.Tensor:
        """Every member's output, (B, K, out)."""
        hidden = self.trunk(features)
        outputs = self._run(self.members, hidden)
        if self.priors is not None and self.prior_scale:
            with th.no_grad():
                prior = self._run(self.priors, features)
            outputs = outputs + self.prior_scale * prior
        return outputs

    def member_output(self, features: th.Tensor, k: int) -> th.Tensor:
        """Member k's output alone, (B, out) (what acting with one member needs)."""
        out = self.members[k](self.trunk(features))
        if self.priors is not None and self.prior_scale:
            with th.no_grad():
                prior = self.priors[k](features)
            out = out + self.prior_scale * prior
        return out

    @staticmethod
    def _run(nets: nn.ModuleList, x: th.Tensor) -> th.Tensor:
        plan = stack_plan(nets)
        if plan is not None:
            return stacked_mlp(plan, x)
        return th.stack([net(x) for net in nets], dim=1)

    def combine(self, outputs: th.Tensor, features: th.Tensor) -> th.Tensor:
        """The ensemble's output from its members' ``outputs`` (B, K, out): the combiner's, or the mean."""
        if self.combiner is None:
            return outputs.mean(dim=1)
        return self.combiner(outputs, features)

    def forward(self, features: th.Tensor) -> th.Tensor:
        """The ensemble's output, (B, out): the members' mean, or what the combiner makes of them."""
        return self.combine(self.member_outputs(features), features)


class WeightedMean(nn.Module):
    """Σ_k w_k f_k / Σ_k w_k with fixed weights w (a buffer, saved with the model): members with
    weight 0 are left out (boosting's members not yet added).

    :param n_members: K; every weight starts at 1
    """

    def __init__(self, n_members: int) -> None:
        super().__init__()
        self.register_buffer("weights", th.ones(n_members))

    def forward(self, outputs: th.Tensor, features: th.Tensor) -> th.Tensor:
        w = self.weights.view(1, -1, 1)
        return (w * outputs).sum(dim=1) / self.weights.sum()


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
