"""Weight reparametrizations (catalog section 12): spectral and weight normalization.

Miyato et al. 2018 (spectral normalization, https://arxiv.org/abs/1802.05957); Salimans &
Kingma 2016 (weight normalization, https://arxiv.org/abs/1602.07868)::

    spectral_normalization   W̄ = W / σ_max(W), σ_max by power iteration (one step per training forward)
    weight_normalization     w_i = g_i · v_i / ‖v_i‖ per output unit i (g starts at ‖w_i‖: outputs unchanged)

Applied with ``torch.nn.utils.parametrizations`` to the Linear / Conv2d layers of the online
networks (and the same to their targets, which are then copied from them); the optimizers
are rebuilt over the new parameters. Both refuse to combine with the pruning surgeries, which
reparametrize the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets import rebuild_optimizers
from rlsurgery.nets.layout import find_networks, target_pairs
from rlsurgery.nets.masks import PRUNABLE, PRUNING_KEYS, output_layer_names


class ReparametrizationSurgery(Surgery):
    """Shared plumbing: which layers, targets, optimizers."""

    attaches_to = (Attachment.NETWORK,)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    build_order = 60  # after layer-building surgeries, before re-initialization (80) and masks (90)
    conflicts: ClassVar[tuple[str, ...]] = PRUNING_KEYS
    conflict_reason = "both reparametrize the same weights"
    params: Any

    def reparametrize(self, layer: nn.Module) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reparametrize()")

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        for net in find_networks(agent).values():
            outputs = set() if self.params.include_output else output_layer_names(net)
            for name, layer in list(net.named_modules()):
                if (
                    isinstance(layer, PRUNABLE)
                    and name not in outputs
                    and not parametrize.is_parametrized(layer)
                ):
                    self.reparametrize(layer)
        for online, target in target_pairs(agent):
            target.load_state_dict(online.state_dict())
        agent.policy.to(agent.device)
        rebuild_optimizers(agent)


@dataclass
class SpectralParams:
    n_power_iterations: int = param(1, "power-iteration steps per training forward pass", ge=1)
    include_output: bool = param(True, "also the output layers")


@register(
    proof="tests/normalization/test_normalization.py::test_spectral_norm_bounds_sigma_and_weight_norm_preserves_outputs"
)
class SpectralNormalization(ReparametrizationSurgery):
    """Divide each weight matrix by its largest singular value (power iteration)."""

    key = "spectral_normalization"
    cost_note = (
        "every training forward pass takes a power-iteration step (two matrix-vector products) and "
        "W/σ for every layer; eval forward passes recompute W/σ"
    )
    Params = SpectralParams
    params: SpectralParams

    def reparametrize(self, layer: nn.Module) -> None:
        parametrizations.spectral_norm(layer, n_power_iterations=self.params.n_power_iterations)


@dataclass
class WeightNormParams:
    include_output: bool = param(True, "also the output layers")


@register(
    proof="tests/normalization/test_normalization.py::test_spectral_norm_bounds_sigma_and_weight_norm_preserves_outputs"
)
class WeightNormalization(ReparametrizationSurgery):
    """w = g · v / ‖v‖ per output unit (function-preserving when applied)."""

    key = "weight_normalization"
    Params = WeightNormParams
    params: WeightNormParams

    def reparametrize(self, layer: nn.Module) -> None:
        parametrizations.weight_norm(layer)
