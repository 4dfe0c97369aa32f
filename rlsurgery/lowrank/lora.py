"""Low-rank adaptation (LoRA): every Linear's weight frozen, a trainable rank-r update beside it.

Hu et al. 2021, https://arxiv.org/abs/2106.09685::

    h = W₀x + b + (α/r)·B A x,   A ∈ ℝ^{r×in} (random), B ∈ ℝ^{out×r} (zero at insertion)

so the outputs are unchanged at insertion, and only A and B train: every other parameter of the
online networks (W₀, biases, SB3's ``log_std``) is frozen, and only r·(in + out) numbers per layer
move. The update is merged back into one matrix, W = W₀ + (α/r)·B A, by
:meth:`~rlsurgery.nets.blocks.LoRALinear.merged` (for export). Typical use: ``rls.operate`` on a
trained model, then ``learn`` on the new task. Target networks get the same layers and are loaded
from their online networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.blocks import LoRALinear
from rlsurgery.nets.groups import train_only
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.modules import replace_modules
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.pruning.neurons import parameter_count


@dataclass
class LowRankAdaptationParams:
    rank: int = param(4, "r: rank of each layer's update B·A", ge=1, le=MAX_WIDTH)
    alpha: float = param(8.0, "α: the update is scaled by α/r", gt=0.0)


@register(proof="tests/lowrank/test_lora.py::test_lora_starts_as_the_model_and_trains_only_its_factors")
class LowRankAdaptation(NetworkSurgery):
    """Freeze every weight and add a trainable low-rank update (α/r)·B·A to each Linear layer."""

    key = "low_rank_adaptation"
    Params = LowRankAdaptationParams
    params: LowRankAdaptationParams
    sb3_representable = False  # LoRA layers are not an SB3 net_arch
    build_order = 24

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        nets = online_networks(agent).values()
        if not any(isinstance(m, nn.Linear) for net in nets for m in net.modules()):
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no Linear layer"
            )
        before = parameter_count(agent)
        rank, alpha = self.params.rank, self.params.alpha

        def adapt(net: nn.Module) -> None:
            adapted = {id(m.base) for m in net.modules() if isinstance(m, LoRALinear)}
            replace_modules(
                net,
                lambda name, module: isinstance(module, nn.Linear) and id(module) not in adapted,
                lambda name, module: LoRALinear(module, rank, alpha),
            )

        transform_networks(agent, adapt, copy_targets=True)
        factors = [
            p
            for net in nets
            for m in net.modules()
            if isinstance(m, LoRALinear)
            for p in (m.lora_a, m.lora_b)
        ]
        self.state(agent).result.update(
            parameters_before=before,
            parameters_after=parameter_count(agent),
            trainable_parameters=train_only(agent, factors),
        )
