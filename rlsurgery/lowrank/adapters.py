"""Adapter layers: a small bottleneck residual module after every hidden layer; only adapters train.

Houlsby et al. 2019, https://arxiv.org/abs/1902.00751 (parameter-efficient transfer)::

    h ↦ h + W_up φ(W_down h + b_down) + b_up,   W_down ∈ ℝ^{m×d}, W_up ∈ ℝ^{d×m}, m ≪ d
    W_up = 0, b_up = 0 at insertion: the network computes what it did

Every other parameter of the online networks is frozen, so a trained policy adapts to a new task
through 2·m·d + m + d numbers per hidden layer. Adapters go into every MLP stack (DQN's Q
network, PPO/A2C's policy and value MLPs, SAC/TD3's actor and critics); target networks get the
same modules and are loaded from their online networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.blocks import BottleneckAdapter
from rlsurgery.nets.groups import train_only
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.mlp import insert_after_block, mlp_stacks
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.pruning.neurons import parameter_count


@dataclass
class AdapterLayersParams:
    bottleneck: int = param(8, "m: width of each adapter's bottleneck", ge=1, le=MAX_WIDTH)


@register(proof="tests/lowrank/test_adapters.py::test_adapters_start_as_identities_and_alone_train")
class AdapterLayers(NetworkSurgery):
    """Insert a zero-initialised bottleneck adapter after each hidden layer and train only the adapters."""

    key = "adapter_layers"
    Params = AdapterLayersParams
    params: AdapterLayersParams
    sb3_representable = False  # adapters are not an SB3 net_arch
    build_order = 24

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        nets = online_networks(agent).values()
        if not any(mlp_stacks(net) for net in nets):
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no MLP with a hidden layer "
                "(policy_kwargs net_arch is empty?)"
            )
        before = parameter_count(agent)

        def insert(net: nn.Module) -> None:
            for stack in mlp_stacks(net):
                for i in reversed(range(len(stack.hidden))):
                    insert_after_block(
                        stack, i, [BottleneckAdapter(stack.linear(i).out_features, self.params.bottleneck)]
                    )

        transform_networks(agent, insert, copy_targets=True)
        adapters = [
            p
            for net in nets
            for m in net.modules()
            if isinstance(m, BottleneckAdapter)
            for p in m.parameters()
        ]
        self.state(agent).result.update(
            parameters_before=before,
            parameters_after=parameter_count(agent),
            trainable_parameters=train_only(agent, adapters),
        )
