"""Dueling architecture: separate state-value and advantage streams.

Wang et al. 2016, https://arxiv.org/abs/1511.06581::

    Q(s, a) = V(s) + (A(s, a) − 1/|A| Σ_a' A(s, a'))

Subtracting the mean advantage makes V and A identifiable: the mean over actions of
Q(s, ·) is exactly V(s). With a distributional head the streams output one value per
atom and the combination is applied atom by atom to the logits/quantiles (as Rainbow).

Network surgery: the Q head (an SB3 MLP) keeps its first hidden layers as a shared
trunk; its last ``stream_layers`` hidden layers and output layer become the advantage
stream, and a freshly initialised copy of them (with one output per atom) the value
stream. With no hidden layers (e.g. CnnPolicy's default) both streams are linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch as th
from gymnasium import spaces
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.nets import transform_networks
from rlsurgery.nets.modules import fresh_copy, split_mlp

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN


def dueling_combine(value: th.Tensor, advantage: th.Tensor) -> th.Tensor:
    """Q = V + (A − mean_a A); value (B, 1, K), advantage (B, A, K) -> (B, A, K).

    >>> q = dueling_combine(th.tensor([[[1.0]]]), th.tensor([[[2.0], [4.0]]]))
    >>> q.squeeze(-1)
    tensor([[0., 2.]])
    """
    return value + advantage - advantage.mean(dim=1, keepdim=True)


class DuelingHead(nn.Module):
    """Shared trunk, then value and advantage streams combined by :func:`dueling_combine`.

    :param trunk: shared layers (may be empty)
    :param value: value stream, outputs ``atoms`` numbers
    :param advantage: advantage stream, outputs ``n_actions * atoms`` numbers
    :param n_actions: number of actions
    :param atoms: outputs per action
    """

    def __init__(
        self, trunk: nn.Module, value: nn.Module, advantage: nn.Module, n_actions: int, atoms: int
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.value = value
        self.advantage = advantage
        self.n_actions = n_actions
        self.atoms = atoms

    def streams(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """V (B, 1, K) and A (B, A, K) before combination."""
        hidden = self.trunk(features)
        value = self.value(hidden).view(-1, 1, self.atoms)
        advantage = self.advantage(hidden).view(-1, self.n_actions, self.atoms)
        return value, advantage

    def forward(self, features: th.Tensor) -> th.Tensor:
        """Combined outputs, flattened to (B, A * K) like a plain head."""
        return dueling_combine(*self.streams(features)).flatten(1)


@dataclass
class DuelingParams:
    stream_layers: int = param(
        1, "hidden layers at the end of the MLP each stream gets its own copy of", ge=0
    )


def make_dueling_head(mlp: nn.Module, n_actions: int, atoms: int, stream_layers: int) -> DuelingHead:
    """Turn an SB3 MLP head into a :class:`DuelingHead` (see module docstring)."""
    blocks, output = split_mlp(mlp)
    n_stream = min(stream_layers, len(blocks))
    trunk = nn.Sequential(*blocks[: len(blocks) - n_stream])
    stream_blocks = blocks[len(blocks) - n_stream :]
    advantage = nn.Sequential(*stream_blocks, output)
    value_output = nn.Linear(output.in_features, atoms)
    value = nn.Sequential(*[fresh_copy(b) for b in stream_blocks], value_output)
    return DuelingHead(trunk, value, advantage, n_actions, atoms)


@register(proof="tests/value/test_dueling.py::test_mean_advantage_is_zero")
class DuelingArchitecture(Surgery):
    """Q = V + (A − mean A): split the Q head into value and advantage streams."""

    key = "dueling_architecture"
    cost_note = (
        "each stream has its own copy of the last `stream_layers` hidden layers (1 by default, as "
        "Wang et al.): at [256, 256] that is about 2× the multiply-adds of the Q network, whose "
        "last hidden layer is its largest; stream_layers=0 gives linear streams on a shared trunk"
    )
    sb3_representable = False  # a value and an advantage stream instead of SB3's Q head
    attaches_to = (Attachment.NETWORK,)
    Params = DuelingParams
    build_order = 20  # after the output representation (distributional), before layer swaps (noisy)
    params: DuelingParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    def modify_networks(self, agent: SurgicalDQN) -> None:
        def to_dueling(net: nn.Module) -> None:
            try:
                net.q_net = make_dueling_head(net.q_net, net.n_actions, net.atoms, self.params.stream_layers)
            except TypeError as exc:
                raise IncompatibleSurgeryError(f"{self.key}: cannot split the Q head: {exc}") from None

        transform_networks(agent, to_dueling)
